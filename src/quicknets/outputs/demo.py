"""A local web page that classifies a photo or a drawing with a trained network (Gradio).

    from quicknets.outputs.demo import build_page, serve
    serve(load_model("mlp-256-128-64_adam_lr0.003_s0-f77fb2"), port=7860)  # until Ctrl-C
    page = build_page(model)    # the gr.Blocks, to launch yourself or mount in an app

Upload an image (any size or colour) or draw on the sketchpad: the page shows the image as the
network sees it (brought to its input size by images.load_image, like `quicknets classify RUN
photo.jpg`), every class's probability as a bar (gr.Label, the likeliest as its heading), the
top class in the notebook's banner and, with Captum installed, why: the Integrated Gradients
map of the top class over the image (red: for it, blue: against; `classify --explain`). It
listens on 127.0.0.1 only. Gradio is an optional extra (pip install 'quicknets[demo]'),
imported only here.

A file that is not an image (a text file named .png, an empty or a truncated file) or is too
large is refused with quicknets' own error line, shown on the page in place of the banner and
printed once in the terminal (no traceback). Limits: MAX_UPLOAD_MB MiB a file (Gradio refuses a
larger one in the browser) and PIL's Image.MAX_IMAGE_PIXELS pixels (89,478,485 by default, about
a 9459x9459 picture; read_image refuses more before decoding: no decompression bomb). `serve`
keeps the uploads in a temporary folder of its own (in the system's, $TMPDIR), removed when it
stops, Ctrl-C included.
"""

import errno
import importlib.util
import io
import logging
import os
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from quicknets.base.errors import Interrupted, QuicknetsError
from quicknets.data.images import load_image
from quicknets.data.preprocessing import Preprocessing
from quicknets.evaluation.attribution import METHODS, explain, methods_for
from quicknets.evaluation.classification import banner, familiarity_note, predict_proba
from quicknets.plots.attribution import blend_explanation

HOST = "127.0.0.1"  # the page is for this machine only
PORT = 7860  # Gradio's usual port
CANVAS = 420  # pixels a side of the sketchpad; its brush is 1/20 of that (MNIST's strokes)
VIEW = 224  # pixels a side of the enlarged "as the network sees it" image
FONTS = ["ui-sans-serif", "system-ui", "sans-serif"]  # local fonts: the page fetches nothing
MAX_UPLOAD_MB = 20  # MiB a file: a 12-megapixel phone photo is 3-8 MB as JPEG, ~20 MB as PNG
METHOD = "integrated_gradients"  # the map shown where the network gives gradients


def gradio():
    """The gradio module, or the one error line that says how to install it."""
    try:
        import gradio
    except ImportError:
        raise QuicknetsError(
            "the demo needs Gradio, an optional extra: pip install 'quicknets[demo]'"
        ) from None
    return gradio


def as_network_sees(pixels: torch.Tensor) -> np.ndarray:
    """uint8 (C, H, W) input -> an enlarged (VIEW-ish) grey or RGB picture, pixels kept square
    (nearest neighbour), to show what the network is given."""
    picture = enlarged(pixels.permute(1, 2, 0).numpy())  # (H, W, C)
    return picture[..., 0] if pixels.shape[0] == 1 else picture


def enlarged(picture: np.ndarray) -> np.ndarray:
    """(H, W, ...) -> about VIEW pixels a side, each pixel a square (nearest neighbour)."""
    scale = max(1, VIEW // max(picture.shape[:2]))
    return picture.repeat(scale, axis=0).repeat(scale, axis=1)


def classify_file(model, source, pre: Preprocessing, method=None) -> tuple:
    """(picture as the network sees it, {class: probability}, banner text, its attribution map
    over it) for an image file or file object, laid out as pre.layout says. Under the banner, for
    an image unlike the training images, the words classify prints (familiarity_note). The map:
    `method`'s (attribution.METHODS), for the top class, as an enlarged uint8 (H, W, 3) picture;
    None without a method."""
    pixels = load_image(source, pre.shape, pre.layout)  # uint8 (C, H, W)
    probs = predict_proba(model, [pixels])[0].tolist()
    names = list(pre.classes) or [str(i) for i in range(len(probs))]
    scores = dict(zip(names, probs))
    top = max(scores, key=scores.get)
    why = None
    if method is not None:
        heat = explain(model, pixels, method, target=names.index(top))  # (H, W)
        why = enlarged(blend_explanation(pixels, heat, model=model))
    text = "\n".join(filter(None, [banner(top), familiarity_note(model, pixels)]))
    return as_network_sees(pixels), scores, f"```\n{text}\n```", why


def map_method(model):
    """The attribution method the page shows: METHOD, or the first the network offers (an
    ONNX export gives no gradients: Occlusion); None without Captum (the extra `explain`)."""
    if importlib.util.find_spec("captum") is None:
        return None
    offered = methods_for(model, default_only=True)
    return METHOD if METHOD in offered else offered[0]


def blank(picture) -> bool:
    """Nothing drawn: fully transparent, or one colour all over."""
    bands = picture.convert("RGBA").getextrema()  # ((min, max) per band)
    return bands[3][1] == 0 or all(low == high for low, high in bands)


def refusal(message: str) -> str:
    """The page's banner for a refused upload: the error line, as the command line prints it
    (a code block: the message's characters are shown, never read as Markdown or HTML)."""
    return f"```\nerror: {message}\n```"


def classify_upload(model, file, pre: Preprocessing, log, method=None) -> tuple:
    """What the page shows for an upload: classify_file's four outputs, or for a file that is
    not an image or too large nothing but the error line in the banner's place (also given to
    log, once). `file`: Gradio's FileData as a dict ({"path", "orig_name", ...}) or None. The
    page passes it unprocessed (preprocess=False): Gradio would open it with PIL itself, and
    a bad file would end in a traceback and a bare "Error"."""
    if file is None:
        return None, None, "", None
    path = file["path"]
    try:
        return classify_file(model, path, pre, method)
    except QuicknetsError as e:  # named as the user named it, not as Gradio's copy
        message = str(e).replace(str(path), file.get("orig_name") or Path(path).name)
        log(f"demo: {message}")
        return None, None, refusal(message), None


def build_page(model, title: str = "", log=None):
    """The demo page (a gr.Blocks) for `model`, which carries its preprocessing. A refused
    upload's error line goes to the page and to log(line) (default: one line on stderr)."""
    gr = gradio()
    pre = model.preprocessing or Preprocessing()
    c, h, w = pre.shape
    empty = (None, None, "", None)
    log = log or (lambda line: print(line, file=sys.stderr, flush=True))
    method = map_method(model)

    def from_upload(file):
        return classify_upload(model, file, pre, log, method)

    def from_sketch(value):
        drawing = (value or {}).get("composite")
        if drawing is None or blank(drawing):
            return empty
        file = io.BytesIO()  # through a PNG, so a drawing takes the path of an uploaded file
        drawing.save(file, format="PNG")
        file.seek(0)
        return classify_file(model, file, pre, method)

    what = ", ".join(pre.classes[:4]) + (", ..." if len(pre.classes) > 4 else "")
    with gr.Blocks(title=f"quicknets {title}".strip(), analytics_enabled=False) as page:
        gr.Markdown(
            f"## quicknets: {title or 'a trained network'}\n"
            f"{pre.dataset or 'images'} ({what}). Upload a photo or draw one: it is "
            f"brought to the network's {h}x{w} input as the dataset's images were "
            f"(files up to {MAX_UPLOAD_MB} MB; transparency is seen on white)."
        )
        with gr.Row():
            with gr.Column():
                with gr.Tab("Upload"):
                    upload = gr.Image(
                        type="filepath",
                        label="a photo or picture",
                        sources=["upload", "clipboard"],
                        elem_id="upload",
                        height=VIEW + 60,
                    )
                with gr.Tab("Draw"):
                    gr.Markdown(
                        "Pick the brush on the left, then draw one "
                        f"{'character' if pre.layout == 'digits' else 'item'}."
                    )
                    sketch = gr.Sketchpad(
                        type="pil",
                        label="draw here",
                        elem_id="sketch",
                        canvas_size=(CANVAS, CANVAS),
                        brush=gr.Brush(
                            default_size=CANVAS // 20, colors=["#000000"], color_mode="fixed"
                        ),
                    )
            with gr.Column():
                seen = gr.Image(
                    label=f"as the network sees it ({c}x{h}x{w})",
                    interactive=False,
                    elem_id="seen",
                    height=VIEW + 60,
                )
                label = gr.Label(
                    num_top_classes=len(pre.classes) or None,
                    label="class probabilities",
                    elem_id="probabilities",
                )
                top = gr.Markdown(elem_id="banner")
                why = gr.Image(
                    label=f"why: {METHODS[method].title} for the top class (red: for it, "
                    "blue: against)"
                    if method
                    else "why: pip install 'quicknets[explain]' for the attribution map",
                    interactive=False,
                    elem_id="why",
                    height=VIEW + 60,
                )
        outputs = [seen, label, top, why]
        # input: once per upload or paste (change fired twice for a file the browser cannot
        # show); preprocess=False: see classify_upload
        upload.input(from_upload, upload, outputs, preprocess=False)
        upload.clear(lambda: empty, None, outputs)
        sketch.change(from_sketch, sketch, outputs)
    return page


def check_port(port: int) -> None:
    """A port this process could listen on at HOST, or the error line that says it is taken."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # as the server will: a port left in TIME_WAIT by closed connections is free, one
        # with a listener is not
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise QuicknetsError(
                    f"port {port} on {HOST} is in use: choose another with --port"
                ) from None
            raise QuicknetsError(f"cannot listen on {HOST}:{port}: {e.strerror}") from None


class _HungUp(logging.Filter):
    """Drops uvicorn's traceback for a browser that hung up mid-upload (Starlette's
    ClientDisconnect: the page refused a file over the limit, or was closed): nothing went
    wrong on the server, and the terminal shows one line per bad upload, not a traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not _hung_up(record.exc_info[1] if record.exc_info else None)


def _hung_up(error, depth: int = 0) -> bool:
    """Whether `error`, its causes or the members of its exception groups (anyio's task groups
    wrap it) are a ClientDisconnect."""
    if error is None or depth > 20:
        return False
    if type(error).__name__ == "ClientDisconnect":
        return True
    members = getattr(error, "exceptions", None) if isinstance(error, BaseExceptionGroup) else ()
    return any(_hung_up(e, depth + 1) for e in members or ()) or _hung_up(
        error.__cause__ or error.__context__, depth + 1
    )


def serve(model, port: int = PORT, title: str = "", log=print) -> None:
    """Serve the demo page on HOST:port until Ctrl-C, which closes it and raises Interrupted.
    Uploads go to a temporary folder of its own, removed when it stops however it stops
    ($GRADIO_TEMP_DIR names it while it runs, and is put back after)."""
    if not 1 <= port <= 65535:
        raise QuicknetsError(f"--port must be in 1..65535, not {port}")
    gr = gradio()
    check_port(port)  # Gradio would look for another port, or say so in a traceback
    uploads = tempfile.mkdtemp(prefix="quicknets-demo-")
    before = os.environ.get("GRADIO_TEMP_DIR")
    os.environ["GRADIO_TEMP_DIR"] = uploads  # read by Gradio at each upload, not only at start
    page, hung_up = None, _HungUp()
    logging.getLogger("uvicorn.error").addFilter(hung_up)
    try:
        page = build_page(model, title)
        theme = gr.themes.Default(font=FONTS, font_mono=["ui-monospace", "monospace"])
        try:
            page.launch(
                server_name=HOST,
                server_port=port,
                prevent_thread_lock=True,
                quiet=True,
                share=False,
                inbrowser=False,
                ssr_mode=False,
                theme=theme,
                max_file_size=MAX_UPLOAD_MB * 2**20,
            )
        except OSError as e:  # taken between check_port and now
            raise QuicknetsError(f"cannot serve on {HOST}:{port}: {e}") from None
        log(f"demo: http://{HOST}:{port}/  (Ctrl-C stops it)")
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        raise Interrupted("demo stopped") from None
    finally:
        if page is not None:
            page.close(verbose=False)  # verbose: "Closing server running on port: ..."
        if before is None:
            os.environ.pop("GRADIO_TEMP_DIR", None)
        else:
            os.environ["GRADIO_TEMP_DIR"] = before
        shutil.rmtree(uploads, ignore_errors=True)
        logging.getLogger("uvicorn.error").removeFilter(hung_up)
