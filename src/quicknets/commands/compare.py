"""quicknets compare RUN ...: the settings that differ, the metrics, mean ± std over seeds,
the per-epoch curves overlaid in a PNG, and for two runs McNemar's test on their test set.

    quicknets compare RUN RUN --plot curves.png
    quicknets compare --where optimizer=adam --sort mean_corruption_accuracy   # best first
    quicknets compare --sweep NAME                  # the sweep's finished runs in this runs folder
    quicknets compare --sweep NAME --storage URL    # every trial of its study, from any machine
"""

from quicknets.commands.common import add_all_settings, add_data_dir, add_runs_dir, given


def add_parser(sub) -> None:
    p = sub.add_parser(
        "compare",
        help="compare runs: differing settings, metrics, curves",
        description="Print the settings in which the runs differ and their "
        "metrics; runs that differ only in seed are also shown as "
        "mean ± std with a 95% confidence interval, each variant marked "
        "when not significantly worse than the best (t-tests over seeds, "
        "Holm-corrected). Two runs are also tested against each other on their "
        "test set (McNemar's exact test, from their saved models). Reads the "
        "records; nothing is retrained.",
    )
    p.add_argument(
        "names",
        metavar="RUN",
        nargs="*",
        default=[],  # without a default argparse calls a `*` positional required
        help="run names, unique prefixes or folders (none: use --sweep or --where)",
    )
    p.add_argument(
        "--sweep", default=None, type=given, help="compare every finished trial of this sweep"
    )
    p.add_argument(
        "--storage",
        default=None,
        metavar="URL",
        type=given,
        help="with --sweep: read the sweep from its study (as `sweep --show`), so "
        "every machine's trials are compared",
    )
    p.add_argument(
        "--where",
        action="append",
        default=[],
        metavar="KEY<OP>VALUE",
        help="compare the finished runs matching these filters (as in `runs`)",
    )
    p.add_argument(
        "--sort",
        default=None,
        metavar="METRIC",
        type=given,
        help="list the runs and rank the seed groups best first by this metric, in its "
        "direction (test_accuracy, test_loss, test_ece: lowest first, "
        "mean_corruption_accuracy, ...; a run without it comes last, shown as -)",
    )
    p.add_argument(
        "--plot",
        default=None,
        metavar="FILE.png",
        type=given,
        help="write the overlaid per-epoch curves to this file (.png, .svg, .pdf)",
    )
    add_all_settings(p)
    add_data_dir(p)
    add_runs_dir(p)
    p.set_defaults(handler=run, trailing="names")  # `RUN --plot c.png RUN` too


def run(args) -> int:
    from quicknets.base.errors import QuicknetsError
    from quicknets.records.comparison import compare, format_compare, plot_curves
    from quicknets.records.runs import list_runs, not_a_run

    if args.plot is not None:
        from quicknets.plots.figures import figure_path

        figure_path(args.plot)  # a bad name or place is an error before the table, not after
    if args.sort is not None:
        from quicknets.evaluation.metric_names import metric_name

        metric_name(args.sort)  # an unknown metric is an error before any run is loaded
    if args.storage is not None:
        return compare_study(args)
    refs, skipped = [r for r in args.names if not not_a_run(r)], []  # `compare runs/*`
    if args.sweep or args.where:
        found = list_runs(args.runs_dir, args.where, sweep=args.sweep, skipped=skipped)
        if not found:
            what = " ".join(
                [f"--sweep {args.sweep}"] * bool(args.sweep) + [f"--where {w}" for w in args.where]
            )
            unreadable = f"; skipped {'; '.join(skipped)}" if skipped else ""
            raise QuicknetsError(
                f"no finished run matches {what} (see `quicknets runs --status all`){unreadable}"
            )
        refs += found
    if not refs:
        raise QuicknetsError("nothing to compare: give runs, --sweep NAME or --where FILTER")
    table = compare(refs, args.runs_dir, skipped)
    significance = two_runs(table, args.data_dir)  # different test sets: refused before printing
    print(format_compare(table, args.all_settings, args.sort))
    if significance:  # a paragraph of its own, after the table's
        print("\n" + "\n".join(significance))
    if args.plot is not None:
        from quicknets.plots.figures import save_figure

        print(f"wrote: {save_figure(plot_curves(table), args.plot)}")
    return 0


def two_runs(table: dict, data_dir=None) -> list:
    """For exactly two runs: the lines naming them A and B and McNemar's exact test of them on
    their test set (`mcnemar: only A right ...`); `mcnemar: not given: WHY` when a model or the
    data cannot be loaded. Nothing for one run or more than two. Raises QuicknetsError for runs
    tested on different test sets."""
    from quicknets.base.errors import QuicknetsError
    from quicknets.evaluation.significance import format_mcnemar
    from quicknets.records.comparison import mcnemar_runs, run_predictions

    if len(table["runs"]) != 2:
        return []
    a, b = (row["run"] for row in table["runs"])
    head = f"A = {a.name}, B = {b.name}"
    try:
        predictions = [run_predictions(r, data_dir) for r in (a, b)]
    except QuicknetsError as e:
        return [head, f"mcnemar: not given: {e}"]
    return [head, format_mcnemar(mcnemar_runs(*predictions), "A", "B")]


def compare_study(args) -> int:
    """--sweep NAME --storage URL: the whole sweep ranked from its study, curves from it too."""
    from quicknets.base.errors import QuicknetsError
    from quicknets.sweeps import format_sweep, load_sweep
    from quicknets.sweeps.view import plot_sweep_curves

    if args.sort is not None:
        raise QuicknetsError(
            "--sort does not apply with --storage: the study ranks by the sweep's own metric"
        )
    if not args.sweep or args.names or args.where:
        raise QuicknetsError("--storage compares a whole sweep: give --sweep NAME alone")
    view = load_sweep(args.sweep, args.runs_dir, args.storage)
    print(format_sweep(view, args.all_settings))
    if args.plot is not None:
        from quicknets.plots.figures import save_figure

        print(f"wrote: {save_figure(plot_sweep_curves(view), args.plot)}")
    return 0
