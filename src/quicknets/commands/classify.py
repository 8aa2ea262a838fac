"""quicknets classify RUN (--index N | IMAGE ...): the class in a banner, then probabilities;
under the banner, for an image unlike the training images, "does not look like Fashion-MNIST
(familiarity ... < threshold ...)". RUN may also be a file written by `quicknets export` (ONNX
and TorchScript exports carry no familiarity statistics: no such line). --explain [METHOD] names
an attribution map of the predicted class, which --plot draws over the image
(evaluation/attribution.py)."""

from quicknets.commands.common import add_data_dir, add_runs_dir, given

DEFAULT_METHOD = "integrated_gradients"  # works for every network; attribution.METHODS


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
        default=[],  # without a default argparse calls a `*` positional required
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
    p.add_argument(
        "--explain",
        metavar="METHOD",
        nargs="?",
        const=DEFAULT_METHOD,
        default=None,
        help="also explain the predicted class with an attribution map, which --plot draws "
        "over the image: METHOD is integrated_gradients (the default), occlusion, saliency, "
        "or grad_cam (convolutional networks only)",
    )
    add_data_dir(p)
    add_runs_dir(p)
    p.set_defaults(handler=run, trailing="images")  # `RUN --top 5 shoe.png` too


def run(args) -> int:
    import sys

    from quicknets.base.errors import QuicknetsError
    from quicknets.commands.common import load_run_data
    from quicknets.evaluation.classification import banner, classify, familiarity_note
    from quicknets.outputs.exporting import export_data, is_export, load_exported
    from quicknets.records.runs import load_model, load_trained, run_familiarity

    method = _explain_method(args)  # before the run is loaded: a misspelt name fails at once
    if not args.images and not args.index:
        raise QuicknetsError(
            "classify needs something to classify: IMAGE files after RUN, or --index N for "
            "the test image at index N (repeatable)"
        )
    if args.top < 1:
        raise QuicknetsError(f"--top must be at least 1, not {args.top}")
    items = [(f"test image {i}", i) for i in args.index] + [(str(f), f) for f in args.images]
    paths = []
    if args.plot:
        from quicknets.plots.figures import plot_paths

        paths = plot_paths(args.plot, len(items))  # a bad name or place: before any work
    if is_export(args.run):
        model = load_exported(args.run)  # the preprocessing and classes are in the file
        data = export_data(model, args.data_dir) if args.index else None
    else:
        record, note = load_trained(args.run, args.runs_dir)  # results.json: not needed
        if note:
            print(note, file=sys.stderr)
        model = load_model(record)  # with its own preprocessing: shape, normalisation, classes
        data = load_run_data(record, args.data_dir) if args.index else None
        run_familiarity(record, model, data, args.data_dir)  # fitted once for an older run
    if method is not None:
        from quicknets.evaluation.attribution import METHODS, check_method

        method = check_method(model, method)  # grad_cam on an MLP: the methods it has
    plots = []  # (image, its top row): drawn once every image has been classified
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
        if method is not None:
            drawn = "" if args.plot else " (--plot PATH draws it over the image)"
            print(f"explanation: {METHODS[method].title} for {top[0]['class']}{drawn}")
        plots.append((image, top[0]))
    if args.plot:
        _draw(paths, plots, model, data, method)
    return 0


def _explain_method(args):
    """--explain's METHOD as attribution.METHODS names it, or None without --explain. An image
    file written right after a bare --explain (argparse gives it to the option) is an image."""
    if args.explain is None:
        return None
    from pathlib import Path

    from quicknets.base.errors import QuicknetsError
    from quicknets.evaluation.attribution import method_name

    try:
        return method_name(args.explain)
    except QuicknetsError:
        if not Path(args.explain).is_file():
            raise
    args.images.append(args.explain)
    return DEFAULT_METHOD


def _draw(paths: list, plots: list, model, data, method) -> None:
    """Each image beside its probabilities (and its attribution map) into its path."""
    from quicknets.evaluation.attribution import METHODS, explain
    from quicknets.plots.figures import save_figure, view_classify

    for out, (image, top) in zip(paths, plots):
        truth = int(data.test_labels[image]) if isinstance(image, int) else None
        pixels = data.test_images[image] if isinstance(image, int) else image
        heat, title = None, None
        if method is not None:
            heat = explain(model, image, method, target=top["index"], data=data)
            title = f"{METHODS[method].title}\nfor {top['class']}"
        figure = view_classify(
            pixels, model, true_label=truth, data=data, explanation=heat, explanation_title=title
        )
        save_figure(figure, out)
        print(f"wrote: {out}")
