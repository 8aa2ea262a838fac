"""quicknets evaluate RUN: test a saved model again, on the test or validation split. RUN may
also be a file written by `quicknets export` (ONNX, TorchScript, safetensors)."""

from quicknets.commands.common import add_data_dir, add_runs_dir


def add_parser(sub) -> None:
    p = sub.add_parser(
        "evaluate",
        help="test a saved run's model",
        description="Load a run's model and data and print its test metrics.",
    )
    p.add_argument(
        "run",
        metavar="RUN",
        help="run name, unique prefix, or folder; or a file written by `quicknets export`",
    )
    p.add_argument(
        "--split",
        default="test",
        choices=["test", "val", "train"],
        help="which split to evaluate on (default: test)",
    )
    add_data_dir(p)
    add_runs_dir(p)
    p.set_defaults(handler=run)


def run(args) -> int:
    from quicknets.commands.common import load_run_data
    from quicknets.evaluation.metrics import evaluate, format_results
    from quicknets.outputs.exporting import export_data, is_export, load_exported
    from quicknets.records.runs import load_model, load_run

    if is_export(args.run):
        model = load_exported(args.run)
        data = export_data(model, args.data_dir)
        print(
            f"model: {args.run} ({model.info['export']} export of run "
            f"{model.info.get('run') or '?'})"
        )
    else:
        record = load_run(args.run, args.runs_dir)
        model = load_model(record)
        data = load_run_data(record, args.data_dir)
        print(f"run: {record.path}")
    if args.split == "val" and data.val_labels is None:  # not "set val_split": it is recorded
        from quicknets.base.errors import QuicknetsError

        raise QuicknetsError(
            f"{args.run} was trained without a validation set (--val-split), "
            "so it has no val split; --split test or train"
        )
    print(format_results(evaluate(model, data, args.split)))
    return 0
