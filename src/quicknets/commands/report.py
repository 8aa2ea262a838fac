"""quicknets report RUN: one self-contained HTML page with the run's settings, results and figures.

quicknets report RUN                               # RUN/report.html
quicknets report --sweep NAME [--storage URL]      # runs/sweeps/NAME.html: the whole sweep
"""

from quicknets.commands.common import add_all_settings, add_data_dir, add_runs_dir, given


def add_parser(sub) -> None:
    p = sub.add_parser(
        "report",
        help="write a run's (or a sweep's) HTML report",
        description="Write one HTML page (figures embedded, nothing fetched from "
        "the network) with the run's settings, per-epoch table, test "
        "metrics, per-class table and figures; with --sweep, the "
        "sweep's ranked table, curves, settings against the metric "
        "and trials.",
    )
    p.add_argument(
        "run", metavar="RUN", nargs="?", default=None, help="run name, unique prefix, or folder"
    )
    p.add_argument(
        "--sweep",
        default=None,
        type=given,
        metavar="NAME",
        help="the page of sweep NAME instead (default: runs/sweeps/NAME.html)",
    )
    p.add_argument(
        "--storage",
        default=None,
        type=given,
        metavar="URL",
        help="with --sweep: read the sweep from its study, every machine's trials",
    )
    p.add_argument(
        "--out",
        default=None,
        type=given,
        help="the HTML file (default: <run>/report.html, runs/sweeps/NAME.html)",
    )
    add_all_settings(p)
    add_data_dir(p)
    add_runs_dir(p)
    p.set_defaults(handler=run)


def run(args) -> int:
    from quicknets.base.errors import QuicknetsError

    if (args.run is None) == (args.sweep is None):
        raise QuicknetsError("give a RUN, or --sweep NAME (not both)")
    if args.out is not None:  # a wrong name: said before any work, not after
        from quicknets.base.storage import html_path

        html_path(args.out, "the report")
    if args.sweep is not None:
        from quicknets.outputs.report import write_sweep_report
        from quicknets.sweeps import load_sweep

        view = load_sweep(args.sweep, args.runs_dir, args.storage)
        path = write_sweep_report(view, args.out, args.runs_dir, args.all_settings)
    else:
        for flag, value in (("--storage", args.storage), ("--all-settings", args.all_settings)):
            if value:
                raise QuicknetsError(f"{flag} goes with --sweep NAME")
        from quicknets.outputs.report import write_report
        from quicknets.records.runs import load_run

        record = load_run(args.run, args.runs_dir)
        path = write_report(record, path=args.out, data_dir=args.data_dir)
    print(f"wrote: {path}")
    print(f"open: {path.resolve().as_uri()}")
    return 0
