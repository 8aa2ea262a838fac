"""quicknets audit DATASET: duplicates, near duplicates, likely label errors, class balance and
outliers of a dataset, as one summary line per kind, an HTML page and a JSON file.

    quicknets audit fashion-mnist                          # runs/audits/fashion-mnist.html, .json
    quicknets audit my_train.csv --test my_test.csv --json # one JSON object on stdout
"""

from quicknets.commands.common import add_runs_dir, given


def add_parser(sub) -> None:
    # the defaults are quicknets.audit.checks's FOLDS, NETWORK, EPOCHS (a test keeps them in step):
    # importing it here would import torch for `quicknets --help`
    p = sub.add_parser(
        "audit",
        help="find duplicates, label errors, imbalance and outliers in a dataset",
        description="Audit a dataset: exact and near duplicates inside train, inside test and "
        "between them; likely label errors (cleanlab's Confident Learning on "
        "K-fold out-of-sample probabilities of a small network); class counts and "
        "imbalance; outliers. Prints one line per kind and writes an HTML page "
        "with the images of each finding and a JSON file with every index "
        "(0-based positions in each split as loaded). Label errors need "
        "cleanlab: pip install 'quicknets[audit]'.",
    )
    p.add_argument(
        "dataset",
        metavar="DATASET",
        type=given,
        help="a built-in name or any path --dataset takes (CSV file, folder of "
        "class folders, .npz)",
    )
    p.add_argument(
        "--test",
        default=None,
        type=given,
        metavar="PATH",
        help="your data's test file or folder, where it is not found beside it; or "
        "the fraction of each class held out (default: 0.2)",
    )
    p.add_argument(
        "--data-dir",
        default=None,
        help="folder holding a built-in dataset's files (default: found as train finds them)",
    )
    p.add_argument(
        "--image-size",
        type=int,
        default=0,
        metavar="S",
        help="bring your images to SxS (0: keep their size)",
    )
    p.add_argument(
        "--channels",
        type=int,
        default=0,
        choices=[0, 1, 3],
        help="bring your images to 1 or 3 channels (0: keep)",
    )
    p.add_argument(
        "--folds",
        type=int,
        default=None,
        help="cross-validation folds for the label check (default: 3)",
    )
    p.add_argument(
        "--network",
        default=None,
        type=given,
        help="each fold's network (default: 784-256-10, its ends fitted to the data)",
    )
    p.add_argument("--epochs", type=int, default=None, help="epochs of each fold (default: 4)")
    p.add_argument("--seed", type=int, default=0, help="seed of the folds and networks")
    p.add_argument(
        "--no-labels",
        action="store_true",
        help="skip the label check (no training, no cleanlab needed)",
    )
    p.add_argument(
        "--out",
        default=None,
        type=given,
        metavar="PAGE",
        help="the HTML page; the JSON file goes beside it with .json (default: "
        "runs/audits/<dataset>.html)",
    )
    p.add_argument(
        "--json",
        action="store_true",
        help="print the findings as one JSON object instead of the summary",
    )
    add_runs_dir(p)
    p.set_defaults(handler=run)


def run(args) -> int:
    import json
    import sys

    from quicknets.audit.checks import (
        EPOCHS,
        FOLDS,
        NETWORK,
        audit,
        check_memory,
        estimate_images,
        summary_lines,
    )
    from quicknets.audit.page import page_path, write_audit
    from quicknets.base.errors import QuicknetsError
    from quicknets.base.storage import output_path
    from quicknets.data.loading import is_path, load_dataset
    from quicknets.records.runs import runs_root

    folds = FOLDS if args.folds is None else args.folds
    epochs = EPOCHS if args.epochs is None else args.epochs
    if folds < 2 or epochs < 1:
        raise QuicknetsError(
            f"--folds must be 2 or more and --epochs 1 or more, not {folds} and {epochs}"
        )
    # a wrong name or a place that cannot take the page and its JSON: said before the work
    chosen = page_path(args.out) if args.out else None
    if chosen:
        output_path(chosen.with_suffix(".json"))
    else:
        output_path(runs_root(args.runs_dir) / "audits", folder=True)
    if is_path(args.dataset):  # a file's size says roughly how many images, before parsing
        estimate = estimate_images(args.dataset, args.test, args.image_size, args.channels)
        if estimate:
            check_memory(estimate[0], estimate[1], args.dataset, estimate[2])
    data = load_dataset(
        args.dataset,
        args.data_dir,
        test=args.test,
        image_size=args.image_size,
        channels=args.channels,
    )

    def log(text):  # progress on stderr: stdout holds the results
        print(text, file=sys.stderr)

    found = audit(
        data,
        folds,
        args.network or NETWORK,
        epochs,
        seed=args.seed,
        labels=not args.no_labels,
        log=log,
    )
    out = chosen or runs_root(args.runs_dir) / "audits" / f"{data.name}.html"
    page, js = write_audit(found, data, out)
    if args.json:
        print(json.dumps(found.to_dict()))
        return 0
    for line in summary_lines(found):
        print(line)
    print(f"wrote: {page} and {js}")
    print(f"open: {page.resolve().as_uri()}")
    return 0
