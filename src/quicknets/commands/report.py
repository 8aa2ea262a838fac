"""quicknets report RUN: one self-contained HTML page with the run's settings, results and figures."""
from quicknets.commands.common import add_data_dir, add_runs_dir, given


def add_parser(sub) -> None:
    p = sub.add_parser("report", help="write a run's HTML report",
                       description="Write one HTML page (figures embedded, nothing fetched from "
                                   "the network) with the run's settings, per-epoch table, test "
                                   "metrics, per-class table and figures.")
    p.add_argument("run", metavar="RUN", help="run name, unique prefix, or folder")
    p.add_argument("--out", default=None, type=given,
                   help="the HTML file (default: <run>/report.html)")
    add_data_dir(p)
    add_runs_dir(p)
    p.set_defaults(handler=run)


def run(args) -> int:
    from quicknets.report import write_report
    from quicknets.runs import load_run

    record = load_run(args.run, args.runs_dir)
    path = write_report(record, path=args.out, data_dir=args.data_dir)
    print(f"wrote: {path}")
    print(f"open: {path.resolve().as_uri()}")
    return 0
