"""quicknets demo RUN [--port N]: a local web page that classifies an uploaded photo or a
drawing, showing the image as the network sees it and every class's probability."""

from quicknets.commands.common import add_runs_dir


def add_parser(sub) -> None:
    p = sub.add_parser(
        "demo",
        help="a local web page that classifies photos and drawings",
        description="Serve a page on 127.0.0.1 (Gradio, the optional extra "
        "quicknets[demo]): upload a photo or draw, and see the image "
        "as the network sees it, the class probabilities and the top "
        "class. Ctrl-C stops it.",
    )
    p.add_argument(
        "run",
        metavar="RUN",
        help="run name, unique prefix, or folder; or a file written by `quicknets export`",
    )
    p.add_argument("--port", type=int, default=7860, help="port on 127.0.0.1 (default: 7860)")
    add_runs_dir(p)
    p.set_defaults(handler=run)


def run(args) -> int:
    import sys
    from pathlib import Path

    from quicknets.outputs.demo import gradio, serve
    from quicknets.outputs.exporting import is_export, load_exported
    from quicknets.records.runs import load_model, load_trained, run_familiarity

    gradio()  # a missing extra is said before the model is loaded
    if is_export(args.run):
        model, title = load_exported(args.run), Path(args.run).name
    else:
        record, note = load_trained(args.run, args.runs_dir)  # results.json: not needed
        if note:
            print(note, file=sys.stderr)
        model, title = load_model(record), record.name
        run_familiarity(record, model)  # fitted once for a run trained before runs kept it
    serve(model, args.port, title)
    return 0
