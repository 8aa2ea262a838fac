"""The demo page: served on 127.0.0.1, driven in headless system Chromium by Playwright (an upload
is labelled with its right class, a drawing is classified, a bad upload shows its error line),
Ctrl-C stops it with one line and leaves no upload behind, and a busy port or a missing Gradio
is one error line."""

import importlib.util
import io
import os
import shutil
import signal
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from conftest import HANG_S, finish, need, read_line, write_blank_png
from quicknets.base.errors import Interrupted
from quicknets.cli import main
from quicknets.config.configs import RunConfig
from quicknets.data.preprocessing import Preprocessing
from quicknets.evaluation.classification import predict_proba
from quicknets.outputs import demo
from quicknets.outputs.demo import as_network_sees, blank, classify_file, classify_upload
from quicknets.records.experiment import run
from quicknets.records.runs import load_model

WAIT_MS = HANG_S * 1000  # Playwright waits on events (an element, a function): only a hang ends
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def trained(fashion, tmp_path_factory):
    """A recorded run of a small network, 1 epoch on Fashion-MNIST: (folder, model)."""
    runs = tmp_path_factory.mktemp("runs")
    path, _ = run(
        RunConfig.build(network="784-64-10", epochs=1, threads=1), runs, data=fashion, quiet=True
    )
    return path, load_model(path)


def test_the_banner_says_when_an_image_does_not_look_like_fashion(trained, fashion):
    from quicknets.evaluation.familiarity import familiarity_scores

    _, model = trained
    fitted = model.familiarity  # the run's, from its familiarity.pt
    noise = np.random.default_rng(0).integers(0, 256, (28, 28), dtype=np.uint8)
    inside = familiarity_scores(model, fashion.test_images[:100], fitted)
    familiar = fashion.test_images[int(inside.argmax())].numpy()  # the likest of 100
    scores = familiarity_scores(model, np.stack([noise, familiar]), fitted)
    assert scores[0] < fitted.threshold <= scores[1]  # the oracle: noise fails, that one passes
    for pixels, unlike in [(noise, True), (familiar, False)]:
        png = io.BytesIO()
        Image.fromarray(pixels).save(png, format="PNG")
        png.seek(0)
        _, _, banner, _ = classify_file(model, png, model.preprocessing)
        words = "does not look like Fashion-MNIST (familiarity "
        assert (words in banner) is unlike and banner.endswith("\n```")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_file_and_a_drawing_take_the_same_way_to_the_network(trained, fashion):
    _, model = trained
    pre = model.preprocessing
    png = io.BytesIO()
    Image.fromarray(fashion.test_images[1].numpy()).save(png, format="PNG")
    png.seek(0)
    picture, scores, banner, why = classify_file(model, png, pre)
    assert why is None  # no map unless asked
    assert picture.shape == (224, 224)  # 28x28, each pixel an 8x8 square
    assert np.array_equal(picture[::8, ::8], fashion.test_images[1].numpy())
    want = predict_proba(model, fashion.test_images[1:2])[0].tolist()
    assert list(scores) == fashion.classes and scores == dict(zip(fashion.classes, want))
    top = max(scores, key=scores.get)
    assert f"#{top:^38}#" in banner
    # a drawing as the sketchpad gives it: black strokes on a transparent canvas
    drawing = Image.new("RGBA", (420, 420), (0, 0, 0, 0))
    assert blank(drawing) and blank(Image.new("RGBA", (9, 9), "white"))
    ImageDraw.Draw(drawing).rectangle((150, 60, 270, 380), fill=(0, 0, 0, 255))  # trousers?
    assert not blank(drawing)
    file = io.BytesIO()
    drawing.save(file, format="PNG")
    file.seek(0)
    picture, scores, _, _ = classify_file(model, file, pre)
    assert picture.max() == 255 and picture[:, :8].max() == 0  # a light object on black
    assert sum(scores.values()) == pytest.approx(1.0, abs=1e-5)
    assert as_network_sees(fashion.test_images[:1]).shape == (224, 224)


NOTES_ERROR = "error: cannot read notes.png as an image (cannot identify image file 'notes.png')"
ODD_NAME = "<img src=x onerror=alert(1)>*x*.png"  # HTML and Markdown in a file name


def test_the_page_shows_the_map_of_the_top_class_over_the_image(trained, fashion):
    """The fourth output: explain()'s Integrated Gradients map for the top class, blended over
    the image as draw_explanation paints it, enlarged as the picture is; an RGB network too."""
    need("captum")
    from quicknets.evaluation.attribution import explain
    from quicknets.networks.models import network
    from quicknets.plots.attribution import blend_explanation

    _, model = trained
    png = io.BytesIO()
    Image.fromarray(fashion.test_images[0].numpy()).save(png, format="PNG")
    png.seek(0)
    picture, scores, _, why = classify_file(
        model, png, model.preprocessing, method="integrated_gradients"
    )
    top = max(scores, key=scores.get)
    heat = explain(model, fashion.test_images[0], target=top)
    assert why.shape == (224, 224, 3) and why.dtype == np.uint8
    assert np.array_equal(why[::8, ::8], blend_explanation(fashion.test_images[0], heat))
    assert not np.array_equal(why[..., 0], picture)  # coloured where the map is not 0
    black = fashion.test_images[0].numpy() == 0  # IG is 0 there: the image shows as it is
    assert (why[::8, ::8][black] == 0).all()
    rgb = network("conv4-fc16", input_shape=(3, 32, 32))
    rgb.preprocessing = Preprocessing(
        (3, 32, 32), (0.5,) * 3, (0.25,) * 3, fashion.classes, "", "resize"
    )
    photo = io.BytesIO()
    Image.new("RGB", (60, 40), (200, 30, 30)).save(photo, format="PNG")
    photo.seek(0)
    picture, _, _, why = classify_file(rgb, photo, rgb.preprocessing, method="integrated_gradients")
    assert picture.shape == why.shape == (224, 224, 3)


def test_the_page_picks_a_method_the_network_offers(trained, monkeypatch):
    """Integrated Gradients; Occlusion for a network run outside torch (an ONNX export gives
    no gradients); no map without Captum."""
    need("captum")
    _, model = trained

    class OutsideTorch(torch.nn.Module):
        preprocessing = model.preprocessing

        def forward(self, x):
            return torch.from_numpy(model(x).detach().numpy())

    assert demo.map_method(model) == "integrated_gradients"
    assert demo.map_method(OutsideTorch()) == "occlusion"
    monkeypatch.setitem(sys.modules, "captum", None)
    assert demo.map_method(model) is None


def bad_uploads(folder) -> dict:
    """Files a user may upload that are no image: {name: the error line's start}. Each sits in
    a folder of its own, as Gradio keeps uploads (<hash>/<name>)."""
    files = {"notes.png": b"just some text\n", "empty.png": b""}
    png = io.BytesIO()
    Image.new("L", (50, 50), 128).save(png, format="PNG")
    files["cut.png"] = png.getvalue()[:60]  # a truncated PNG
    for i, (name, data) in enumerate(files.items()):
        (folder / str(i)).mkdir()
        (folder / str(i) / name).write_bytes(data)
    (folder / "3").mkdir()
    write_blank_png(folder / "3" / "huge.png", 20000, 20000)  # 400 megapixels in 25 kB
    return {
        "notes.png": "cannot read notes.png as an image (cannot identify image file 'notes.png')",
        "empty.png": "cannot read empty.png as an image (cannot identify image file 'empty.png')",
        "cut.png": "cannot read cut.png as an image (",
        "huge.png": "huge.png is too large to load: Image size (400000000 pixels) exceeds "
        "limit of ",
    }


def test_the_page_shows_the_probabilities_after_the_models_temperature(trained, fashion):
    """A model with a temperature (fitted on a validation split) shows softmax(log_probs / T)."""
    import copy
    import dataclasses

    from quicknets.evaluation.calibration import temperature_scale

    _, model = trained
    tempered = copy.deepcopy(model)
    tempered.preprocessing = dataclasses.replace(model.preprocessing, temperature=1.6)
    png = io.BytesIO()
    Image.fromarray(fashion.test_images[2].numpy()).save(png, format="PNG")
    png.seek(0)
    _, scores, _, _ = classify_file(tempered, png, tempered.preprocessing)
    with torch.no_grad():
        raw = model(model.preprocessing.normalize(fashion.test_images[2:3]))
    assert list(scores.values()) == temperature_scale(raw, 1.6).exp()[0].tolist()
    assert list(scores.values()) != raw.exp()[0].tolist()


def test_a_bad_upload_shows_its_error_line_on_the_page_and_once_in_the_terminal(trained, tmp_path):
    """What the page's upload handler returns: the banner's place holds the error line, the
    picture and the bars are cleared (no earlier result left beside the new file), and the
    line is logged once, the file named as the user named it, not by Gradio's copy."""
    _, model = trained
    lines = []
    for i, (name, start) in enumerate(bad_uploads(tmp_path).items()):
        path = tmp_path / str(i) / name
        seen, scores, banner, why = classify_upload(
            model,
            {"path": str(path), "orig_name": name},
            model.preprocessing,
            lines.append,
            "occlusion",
        )
        assert seen is None and scores is None and why is None
        assert banner.startswith(f"```\nerror: {start}") and banner.endswith("\n```"), name
        message = banner.removeprefix("```\nerror: ").removesuffix("\n```")
        assert lines[-1] == f"demo: {message}"
        assert str(tmp_path) not in lines[-1]
    assert len(lines) == 4
    assert classify_upload(model, None, model.preprocessing, lines.append) == (
        None,
        None,
        "",
        None,
    )
    odd = tmp_path / "4" / ODD_NAME  # shown as it is written, never as Markdown or HTML
    odd.parent.mkdir()
    odd.write_bytes(b"")
    banner = classify_upload(
        model, {"path": str(odd), "orig_name": odd.name}, model.preprocessing, lines.append
    )[2]
    assert banner.startswith(f"```\nerror: cannot read {ODD_NAME} as an image")
    good = tmp_path / "good.png"
    Image.new("L", (28, 28), 0).save(good)
    assert (
        classify_upload(
            model, {"path": str(good), "orig_name": "good.png"}, model.preprocessing, lines.append
        )[2]
        == classify_file(model, good, model.preprocessing)[2]
    )
    assert len(lines) == 5


def test_serve_keeps_uploads_in_its_own_folder_and_removes_it(trained, tmp_path, monkeypatch):
    """In-process, Ctrl-C as the sleep's KeyboardInterrupt: while it runs, Gradio's temp dir
    is a folder of the demo's own in the system's temp folder; after, it is gone and the
    environment is as it was."""
    need("gradio")
    _, model = trained
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))  # the system temp folder
    monkeypatch.setenv("GRADIO_TEMP_DIR", "/the/users/own")
    during = []

    def interrupt(seconds):
        folder = os.environ["GRADIO_TEMP_DIR"]
        during.append(folder)
        (tmp_path / folder / "upload.png").write_bytes(b"")  # as an upload would be
        raise KeyboardInterrupt

    monkeypatch.setattr(demo.time, "sleep", interrupt)
    with pytest.raises(Interrupted, match="demo stopped"):
        demo.serve(model, free_port(), log=lambda line: None)
    assert len(during) == 1 and during[0].startswith(str(tmp_path / "quicknets-demo-"))
    assert not os.path.exists(during[0]) and os.environ["GRADIO_TEMP_DIR"] == "/the/users/own"


def test_demo_in_a_headless_browser(trained, fashion, tmp_path):
    """Start `quicknets demo` on a free port, upload a test image in Chromium (Playwright) and
    read the class the page shows; draw on the sketchpad; then Ctrl-C."""
    playwright = need("playwright.sync_api")
    need("gradio")
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail("chromium is missing: apt-get install chromium (scripts/setup.sh test does it)")
    path, model = trained
    # a test image the network gets right, and surely (no near tie for the browser to show)
    probs = predict_proba(model, fashion.test_images[:200])
    confident = (probs.max(1).values > 0.9) & (probs.argmax(1) == fashion.test_labels[:200])
    index = int(confident.nonzero()[0])
    truth = fashion.classes[int(fashion.test_labels[index])]
    image = tmp_path / "garment.png"
    Image.fromarray(fashion.test_images[index].numpy()).save(image)

    port = free_port()
    (tmp_path / "tmp").mkdir()  # the system temp folder, where the demo keeps its uploads
    env = {**os.environ, "TMPDIR": str(tmp_path / "tmp")}
    (tmp_path / "notes.png").write_bytes(b"just some text\n")
    (tmp_path / ODD_NAME).write_bytes(b"")
    (tmp_path / "large.png").write_bytes(bytes(demo.MAX_UPLOAD_MB * 2**20 + 1))
    child = subprocess.Popen(
        [sys.executable, "-m", "quicknets", "demo", str(path), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        line = read_line(child, "the demo's address")
        url = f"http://127.0.0.1:{port}/"
        assert line == f"demo: {url}  (Ctrl-C stops it)\n", (
            line,
            child.stderr.read() if child.poll() is not None else "",
        )
        with playwright.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
            try:
                page = browser.new_page(viewport={"width": 1280, "height": 1000})
                page.goto(url)
                page.locator("#upload input[type=file]").set_input_files(str(image))
                shown = page.locator("#probabilities [data-testid=label-output-value]")
                shown.wait_for(timeout=WAIT_MS)
                assert shown.inner_text() == truth
                bars = page.locator("#probabilities").inner_text()
                assert all(name in bars for name in fashion.classes)  # a bar per class
                assert truth in page.locator("#banner").inner_text()
                assert page.locator("#seen img").count() == 1
                if importlib.util.find_spec("captum") is not None:
                    page.locator("#why img").wait_for(timeout=WAIT_MS)  # the map beside it

                before = page.locator("#seen img").evaluate("img => img.src")
                page.get_by_role("tab", name="Draw").click()
                page.locator("#sketch button[aria-label='Brush']").click()
                canvas = page.locator("#sketch canvas").first.bounding_box()
                x, y = canvas["x"] + canvas["width"] / 2, canvas["y"] + canvas["height"] / 2
                page.mouse.move(x - 40, y - 120)
                page.mouse.down()
                page.mouse.move(x - 40, y + 120, steps=10)  # a tall bar: trousers, or a 1
                page.mouse.up()
                page.wait_for_function(  # the drawing as the network sees it replaces the upload
                    "before => { const img = document.querySelector('#seen img');"
                    " return img && img.src !== before; }",
                    arg=before,
                    timeout=WAIT_MS,
                )
                assert shown.inner_text() in fashion.classes

                page.get_by_role("tab", name="Upload").click()  # a text file named .png
                page.locator("#upload input[type=file]").set_input_files(tmp_path / "notes.png")
                page.locator("#banner", has_text="error: ").wait_for(timeout=WAIT_MS)
                assert page.locator("#banner").inner_text().strip() == NOTES_ERROR
                assert page.locator("#seen img").count() == 0  # the drawing's result is gone
                assert page.locator("#why img").count() == 0
                page.locator("#upload input[type=file]").set_input_files(tmp_path / ODD_NAME)
                page.locator("#banner", has_text=ODD_NAME).wait_for(timeout=WAIT_MS)
                page.locator("#upload input[type=file]").set_input_files(tmp_path / "large.png")
                toast = page.locator(".toast-body", has_text="exceed the maximum allowed size")
                toast.wait_for(timeout=WAIT_MS)  # Gradio refuses it in the browser
                assert "20.0 Mb" in toast.inner_text()
                # the page's last requests answered before the browser goes
                page.wait_for_load_state("networkidle", timeout=WAIT_MS)
            finally:
                browser.close()
        child.send_signal(signal.SIGINT)  # Ctrl-C
        out, err = finish(child)
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
    assert child.returncode == 130
    odd = f"cannot read {ODD_NAME} as an image (cannot identify image file {ODD_NAME!r})"
    assert out == "" and err == (
        f"demo: {NOTES_ERROR[len('error: ') :]}\ndemo: {odd}\ninterrupted: demo stopped\n"
    )
    left = [p for p in (tmp_path / "tmp").rglob("*") if not p.is_dir()]
    assert left == [] and not list((tmp_path / "tmp").glob("quicknets-demo-*"))


def test_a_busy_port_is_one_error_line(trained, capsys):
    need("gradio")
    path, _ = trained
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code = main(["demo", str(path), "--port", str(port)])
    out, err = capsys.readouterr()
    assert code == 1 and out == ""
    assert err == f"error: port {port} on 127.0.0.1 is in use: choose another with --port\n"


def test_a_missing_gradio_names_the_extra(trained, capsys, monkeypatch):
    path, _ = trained
    monkeypatch.setitem(sys.modules, "gradio", None)  # as if it were not installed
    code = main(["demo", str(path)])
    out, err = capsys.readouterr()
    assert code == 1 and out == ""
    assert err == (
        "error: the demo needs Gradio, an optional extra: pip install 'quicknets[demo]'\n"
    )


def test_a_browser_that_hangs_up_mid_upload_is_no_traceback():
    """uvicorn logs a ClientDisconnect (the page refused a file over the limit mid-upload),
    wrapped in anyio's exception group, as an error with a traceback: the demo's filter drops
    it and keeps every other record."""
    import logging

    from quicknets.outputs.demo import _HungUp

    class ClientDisconnect(Exception):  # starlette.requests' exception, by name
        pass

    def record(error):
        info = (type(error), error, None) if error is not None else None
        return logging.LogRecord("uvicorn.error", 40, "", 0, "Exception in ASGI app", None, info)

    group = BaseExceptionGroup("task group", [ClientDisconnect()])
    caused = RuntimeError("wrapped")
    caused.__cause__ = group
    keep = _HungUp()
    assert not keep.filter(record(group)) and not keep.filter(record(caused))
    assert keep.filter(record(ValueError("a real error"))) and keep.filter(record(None))
