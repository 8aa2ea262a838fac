"""quicknets show RUN: write a run's figures (curves, confusion matrix, predictions, top losses,
reliability diagram)."""

from quicknets.commands.common import add_data_dir, add_runs_dir, given


def add_parser(sub) -> None:
    p = sub.add_parser(
        "show",
        help="write a run's figures as PNG files",
        description="Draw a run's training curves, confusion matrix, sample "
        "predictions, most confidently wrong test images and reliability "
        "diagram (calibration) from its record and saved model, into <run>/figures/.",
    )
    p.add_argument("run", metavar="RUN", help="run name, unique prefix, or folder")
    p.add_argument(
        "--out", default=None, type=given, help="folder for the PNG files (default: <run>/figures)"
    )
    add_data_dir(p)
    add_runs_dir(p)
    p.set_defaults(handler=run)


def run(args) -> int:
    from quicknets.base.storage import output_path
    from quicknets.commands.common import load_run_data
    from quicknets.outputs.report import run_figures, save_figures
    from quicknets.records.runs import load_model, load_run

    # a file in the way, say, is an error before the figures are drawn
    folder = output_path(args.out, folder=True) if args.out else None
    record = load_run(args.run, args.runs_dir)
    model = load_model(record)  # before drawing anything: a run without a model writes nothing
    data = load_run_data(record, args.data_dir)
    folder = folder or output_path(record.path / "figures", folder=True)
    for path in save_figures(run_figures(record, model, data), folder):
        print(f"wrote: {path}")
    return 0
