"""quicknets export RUN --format onnx|torchscript|safetensors [--out PATH]: a run's network in a
file other tools load, checked against the PyTorch model before it is written."""

from quicknets.commands.common import add_data_dir, add_runs_dir, given


def add_parser(sub) -> None:
    p = sub.add_parser(
        "export",
        help="write a run's network as ONNX, TorchScript or safetensors",
        description="Write a finished run's network to a file, with its "
        "preprocessing and class names inside, after checking it "
        "against the PyTorch model on 1,000 test images (same "
        "top-1, probabilities within 1e-5). classify, evaluate and "
        "demo take the file in place of RUN.",
    )
    p.add_argument("run", metavar="RUN", help="run name, unique prefix, or folder")
    p.add_argument(
        "--format",
        default=None,
        metavar="FORMAT",
        help="onnx, torchscript or safetensors (default: from the suffix of --out, else onnx)",
    )
    p.add_argument(
        "--out",
        metavar="PATH",
        default=None,
        type=given,
        help="the file to write, named with its format's suffix (default: RUN's name with "
        ".onnx, .torchscript or .safetensors, in the current folder)",
    )
    add_data_dir(p)
    add_runs_dir(p)
    p.set_defaults(handler=run)


def run(args) -> int:
    import sys

    from quicknets.base.errors import QuicknetsError
    from quicknets.commands.common import load_run_data
    from quicknets.outputs.exporting import (
        CHECK_IMAGES,
        FORMATS,
        TOLERANCE,
        export,
        export_path,
        format_of,
        require,
    )
    from quicknets.records.runs import load_model, load_trained, run_familiarity

    format = format_of(args.format, args.out)  # an unknown format or a missing package: at once
    require(format)
    out = export_path(args.out, format) if args.out else None  # a bad name: before any work
    try:  # a corrupt or missing results.json is a note: the model needs config.json and model.pt
        record, note = load_trained(args.run, args.runs_dir)
    except QuicknetsError as e:
        raise QuicknetsError(f"cannot export: {e}") from None
    if note:
        print(note, file=sys.stderr)
    out = out or export_path(record.name + FORMATS[format], format)
    model = load_model(record)
    data = load_run_data(record, args.data_dir)
    if format == "safetensors":  # it carries the familiarity statistics: fitted for an older run
        run_familiarity(record, model, data)
    done = export(model, out, format, images=data.test_images[:CHECK_IMAGES], run=record)
    difference = done["max_difference"]
    within = f"within {difference:.1e} (allowed {TOLERANCE:.0e})" if difference else "identical"
    print(
        f"checked: {format} against PyTorch on {done['images']} test images: the same top-1 "
        f"class for each, probabilities {within}"
    )
    print(f"wrote: {out} ({done['bytes'] / 1e6:.2f} MB)")
    return 0
