"""Flags and steps shared by several commands."""

import argparse


def given(text: str) -> str:
    """The argparse type of a name or path option: an empty value (`--resume ""`, an unset
    shell variable) is a usage error, never read as the option not given."""
    if not text.strip():
        raise argparse.ArgumentTypeError("expected a name or path, got an empty value")
    return text


def preset_name(text: str) -> str:
    """The argparse type of --preset: an earlier name (`cnn`) read as today's (`accurate`), so
    help and errors offer only today's names."""
    from quicknets.config.presets import OLD_NAMES

    return OLD_NAMES.get(text, text)


def add_runs_dir(parser) -> None:
    parser.add_argument(
        "--runs-dir",
        default=None,
        type=given,
        help="folder of run records (default: $QUICKNETS_RUNS or ./runs)",
    )


def add_all_settings(parser) -> None:
    parser.add_argument(
        "--all-settings",
        action="store_true",
        help="show every setting in the tables, not only those that differ between the runs",
    )


def add_data_dir(parser) -> None:
    parser.add_argument(
        "--data-dir",
        default=None,
        help="folder holding the dataset's files (default: where the run found them)",
    )


def load_run_data(run, data_dir=None):
    """The dataset a run was trained on, with the same normalisation and split (a warning if
    data from a path changed since)."""
    from quicknets.data.loading import load_recorded

    return load_recorded(run.config, data_dir, recorded=run.meta.get("data"))
