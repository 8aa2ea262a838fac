"""quicknets evaluate RUN: test a saved model again, on the test or validation split. RUN may
also be a file written by `quicknets export` (ONNX, TorchScript, safetensors).

    quicknets evaluate RUN --robustness   # + accuracy under 10 corruptions at severities 0-5

--robustness (evaluation/robustness.py) prints a row per corruption and the mean corruption
accuracy, and adds them to a run's results.json (`robustness`, `mean_corruption_accuracy`: what
`runs --sort` and `compare --sort` read); an export file's are printed only.

--ood PATH adds `ood auroc: X  fpr95: Y`: how well the run's familiarity scores tell its test
images from PATH's (a built-in dataset's test set, a folder of images, an .npz or IDX file;
familiarity.load_outside: images of the network's size and channels, scored as they are).
PATH is read before anything else, so bad input is one error line and writes nothing; a run
trained before runs kept familiarity statistics (or a sweep's trial) has them fitted and saved
at this first use. ONNX and TorchScript exports carry none: an error."""

from quicknets.commands.common import add_data_dir, add_runs_dir, given


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
    p.add_argument(
        "--robustness",
        action="store_true",
        help="also test the split under 10 seeded corruptions at severities 1-5 (as MNIST-C) "
        "and record the mean corruption accuracy in the run (about 50 more passes over it)",
    )
    p.add_argument(
        "--ood",
        metavar="PATH",
        default=None,
        type=given,
        help="also score the test set against outside images: a built-in dataset's name, a "
        "folder of images or an .npz/IDX file, of the network's size and channels; prints "
        "`ood auroc: X  fpr95: Y`",
    )
    add_data_dir(p)
    add_runs_dir(p)
    p.set_defaults(handler=run)


def run(args) -> int:
    import sys

    from quicknets.commands.common import load_run_data
    from quicknets.evaluation.metrics import evaluate, format_results
    from quicknets.outputs.exporting import export_data, is_export, load_exported
    from quicknets.records.runs import load_model, load_trained

    record, note = None, None
    if is_export(args.run):
        model = load_exported(args.run)
        data = export_data(model, args.data_dir)
        print(
            f"model: {args.run} ({model.info['export']} export of run "
            f"{model.info.get('run') or '?'})"
        )
    else:
        record, note = load_trained(args.run, args.runs_dir)  # results.json: not needed
        if note:
            print(note, file=sys.stderr)
        model = load_model(record)
        data = load_run_data(record, args.data_dir)
        print(f"run: {record.path}")
    if args.split == "val" and data.val_labels is None:  # not "set val_split": it is recorded
        from quicknets.base.errors import QuicknetsError

        raise QuicknetsError(
            f"{args.run} was trained without a validation set (--val-split), "
            "so it has no val split; --split test or train"
        )
    outside = None
    if args.ood is not None:  # read first: a bad PATH is an error before anything is written
        from quicknets.evaluation.familiarity import load_outside

        outside = load_outside(args.ood, model.preprocessing, args.data_dir)
        if record is None:  # an export: only safetensors carries the statistics
            from quicknets.evaluation.classification import familiarity_of

            familiarity_of(model)
    print(format_results(evaluate(model, data, args.split)))
    if outside is not None:
        print(ood_line(model, data, outside, record))
    if args.robustness:
        test_robustness(model, data, args.split, record, keep=note is None)
    return 0


def ood_line(model, data, outside, record=None) -> str:
    """`ood auroc: X  fpr95: Y` of the test set against `outside`, uint8 (N, C, H, W)."""
    from quicknets.evaluation.classification import familiarity_of
    from quicknets.evaluation.familiarity import familiarity_scores, ood_metrics
    from quicknets.records.runs import run_familiarity

    fitted = run_familiarity(record, model, data) if record else familiarity_of(model)
    inside = familiarity_scores(model, data.test_images, fitted)
    m = ood_metrics(inside, familiarity_scores(model, outside, fitted))
    return f"ood auroc: {m['auroc']:.4f}  fpr95: {m['fpr95']:.4f}"


def test_robustness(model, data, split: str, record=None, keep: bool = True) -> None:
    """Print the split's accuracy under each corruption and severity and the mean; add the test
    split's to the run's results.json when `record` (a Run) is given, and `keep`: False for a
    results.json that could not be read (load_trained's note), which is left as it is."""
    from quicknets.evaluation.robustness import format_robustness, robustness
    from quicknets.records.runs import update_results

    images, labels = getattr(data, f"{split}_images"), getattr(data, f"{split}_labels")
    result = robustness(model, images, labels)
    print("\n" + format_robustness(result))
    if record is None:
        print("not recorded: an exported model has no run record")
    elif split != "test":
        print(f"not recorded: the record keeps the test split's (this is {split})")
    elif not keep:
        print(f"not recorded: run {record.name}'s results.json cannot be read (see the note)")
    else:
        summary = {"mean_corruption_accuracy": result["mean_corruption_accuracy"]}
        print(f"recorded: {update_results(record, {'robustness': result, **summary})}")
