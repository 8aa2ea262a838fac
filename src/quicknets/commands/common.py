"""Flags and steps shared by several commands."""


def add_runs_dir(parser) -> None:
    parser.add_argument("--runs-dir", default=None,
                        help="folder of run records (default: $QUICKNETS_RUNS or ./runs)")


def load_run_data(run, data_dir=None):
    """The dataset a run was trained on, with the same normalisation and split."""
    from quicknets.data import load_dataset
    d = run.config["data"]
    return load_dataset(d["dataset"], data_dir or d.get("data_dir") or None,
                        val_split=d.get("val_split", 0.0), seed=run.config["train"]["seed"],
                        mean=d.get("mean", 0.5), std=d.get("std", 0.5),
                        verify=d.get("verify", True))
