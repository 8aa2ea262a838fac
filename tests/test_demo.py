"""The demo page: served on 127.0.0.1, driven in headless system Chromium by Playwright (an upload
is labelled with its right class, a drawing is classified), Ctrl-C stops it with one line, and a
busy port or a missing Gradio is one error line."""
import io
import os
import select
import shutil
import signal
import socket
import subprocess
import sys

import numpy as np
import pytest

from conftest import need
from PIL import Image, ImageDraw

from quicknets.classification import predict_proba
from quicknets.cli import main
from quicknets.config import RunConfig
from quicknets.demo import as_network_sees, blank, classify_file
from quicknets.experiment import run
from quicknets.runs import load_model

CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync"]


@pytest.fixture(scope="module")
def trained(fashion, tmp_path_factory):
    """A recorded run of a small network, 1 epoch on Fashion-MNIST: (folder, model)."""
    runs = tmp_path_factory.mktemp("runs")
    path, _ = run(RunConfig.build(network="784-64-10", epochs=1, threads=1), runs, data=fashion,
                  quiet=True)
    return path, load_model(path)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def read_line(stream, timeout: float) -> str:
    """The next line of a child's output, or "" if none came within `timeout` seconds."""
    ready, _, _ = select.select([stream], [], [], timeout)
    return stream.readline() if ready else ""


def test_a_file_and_a_drawing_take_the_same_way_to_the_network(trained, fashion):
    _, model = trained
    pre = model.preprocessing
    png = io.BytesIO()
    Image.fromarray(fashion.test_images[1].numpy()).save(png, format="PNG")
    png.seek(0)
    picture, scores, banner = classify_file(model, png, pre)
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
    picture, scores, _ = classify_file(model, file, pre)
    assert picture.max() == 255 and picture[:, :8].max() == 0  # a light object on black
    assert sum(scores.values()) == pytest.approx(1.0, abs=1e-5)
    assert as_network_sees(fashion.test_images[:1]).shape == (224, 224)


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
    env = {**os.environ, "GRADIO_TEMP_DIR": str(tmp_path / "gradio")}
    child = subprocess.Popen([sys.executable, "-m", "quicknets", "demo", str(path), "--port",
                              str(port)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, env=env)
    try:
        line = read_line(child.stdout, 120)
        url = f"http://127.0.0.1:{port}/"
        assert line == f"demo: {url}  (Ctrl-C stops it)\n", (line, child.stderr.read()
                                                              if child.poll() is not None else "")
        with playwright.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
            try:
                page = browser.new_page(viewport={"width": 1280, "height": 1000})
                page.goto(url)
                page.locator("#upload input[type=file]").set_input_files(str(image))
                shown = page.locator("#probabilities [data-testid=label-output-value]")
                shown.wait_for(timeout=60_000)
                assert shown.inner_text() == truth
                bars = page.locator("#probabilities").inner_text()
                assert all(name in bars for name in fashion.classes)  # a bar per class
                assert truth in page.locator("#banner").inner_text()
                assert page.locator("#seen img").count() == 1

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
                    " return img && img.src !== before; }", arg=before, timeout=60_000)
                assert shown.inner_text() in fashion.classes
                page.wait_for_timeout(1000)  # the page's last requests answered before the
            finally:                         # browser goes (a busy machine is slow)
                browser.close()
        child.send_signal(signal.SIGINT)  # Ctrl-C
        out, err = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
    assert child.returncode == 130
    assert out == "" and err == "interrupted: demo stopped\n"


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
    assert err == ("error: the demo needs Gradio, an optional extra: "
                   "pip install 'quicknets[demo]'\n")
