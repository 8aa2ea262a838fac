"""quicknets classify RUN (--index N | IMAGE ...): the class in a banner, then probabilities;
under the banner, for an image unlike the training images, "does not look like Fashion-MNIST
(familiarity ... < threshold ...)". RUN may also be a file written by `quicknets export`
(ONNX and TorchScript exports carry no familiarity statistics: no such line)."""

from quicknets.commands.common import add_data_dir, add_runs_dir, given


def add_parser(sub) -> None:
    p = sub.add_parser(
        "classify",
        help="classify test images or image files with a saved run",
        description="Print the predicted class in a banner, then the top "
        "classes with their probabilities; an image unlike the training images "
        "is said to be so under the banner (its familiarity below the run's threshold).",
    )
    p.add_argument(
        "run",
        metavar="RUN",
        help="run name, unique prefix, or folder; or a file written by `quicknets export`",
    )
    p.add_argument(
        "images",
        metavar="IMAGE",
        nargs="*",
        help="image files (PNG, JPEG or any other format PIL reads)",
    )
    p.add_argument(
        "--index",
        type=int,
        action="append",
        default=[],
        help="a test-set image by index (repeatable)",
    )
    p.add_argument("--top", type=int, default=3, help="how many classes to list (default: 3)")
    p.add_argument(
        "--plot",
        metavar="PATH",
        default=None,
        type=given,
        help="also draw the image beside its class probabilities into PATH (.png, "
        ".svg, .pdf); several images go to PATH-0.png, PATH-1.png, ...",
    )
    add_data_dir(p)
    add_runs_dir(p)
    p.set_defaults(handler=run, trailing="images")  # `RUN --top 5 shoe.png` too


def run(args) -> int:
    from quicknets.base.errors import QuicknetsError
    from quicknets.commands.common import load_run_data
    from quicknets.evaluation.classification import banner, classify, familiarity_note
    from quicknets.outputs.exporting import export_data, is_export, load_exported
    from quicknets.records.runs import load_model, load_run, run_familiarity

    if not args.images and not args.index:
        raise QuicknetsError("give an image file or --index N")
    if args.top < 1:
        raise QuicknetsError(f"--top must be at least 1, not {args.top}")
    if is_export(args.run):
        model = load_exported(args.run)  # the preprocessing and classes are in the file
        data = export_data(model, args.data_dir) if args.index else None
    else:
        record = load_run(args.run, args.runs_dir)
        model = load_model(record)  # with its own preprocessing: shape, normalisation, classes
        data = load_run_data(record, args.data_dir) if args.index else None
        run_familiarity(record, model, data, args.data_dir)  # fitted once for an older run
    items = [(f"test image {i}", i) for i in args.index] + [(str(f), f) for f in args.images]
    plots = []  # (path, image): drawn once every image has been classified
    if args.plot:
        from quicknets.plots.figures import plot_paths, save_figure, view_classify

        plots = list(zip(plot_paths(args.plot, len(items)), (image for _, image in items)))
    for label, image in items:
        top = classify(model, image, data, top=args.top)
        truth = ""
        if isinstance(image, int):
            truth = f" (true class: {data.classes[int(data.test_labels[image])]})"
        print(f"{label}{truth}")
        print(banner(top[0]["class"]))
        note = familiarity_note(model, image, data)
        if note:
            print(note)
        for row in top:
            print(f"{row['class']:<14} {row['probability']:.4f}")
    for path, image in plots:
        truth = int(data.test_labels[image]) if isinstance(image, int) else None
        pixels = data.test_images[image] if isinstance(image, int) else image
        save_figure(view_classify(pixels, model, true_label=truth, data=data), path)
        print(f"wrote: {path}")
    return 0
