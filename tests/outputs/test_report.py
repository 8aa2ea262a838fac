"""The HTML run report: its content, its escaping, and a real headless browser rendering it."""

import base64
import dataclasses
import io
import re
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import HANG_S, need
from quicknets.evaluation.metrics import evaluate
from quicknets.networks.models import network
from quicknets.outputs.report import FIGURES, render_report, run_figures, save_figures, write_report
from quicknets.outputs.trust_section import TRUST_FIGURES
from quicknets.records.runs import load_run, save_run
from quicknets.training.loop import train

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]


@pytest.fixture
def tiny_run(tiny, tiny_dir, runs_dir):
    """A saved run of a small network on the generated data (2 epochs, with validation)."""
    torch.manual_seed(0)
    model = network("784-32-10")
    history = train(model, tiny, epochs=2, quiet=True, threads=1)
    config = {
        "data": {
            "dataset": "mnist",
            "data_dir": str(tiny_dir),
            "val_split": 0.0,
            "mean": 0.5,
            "std": 0.5,
            "verify": False,
        },
        "model": {"spec": "784-32-10"},
        "train": {"optimizer": "adam", "lr": 0.003, "epochs": 2, "batch_size": 64, "seed": 0},
    }
    path = save_run(model, config, history, evaluate(model, tiny), runs_dir=runs_dir)
    return load_run(path), model


def test_the_reliability_diagram_is_of_the_probabilities_the_model_reports(tiny_run, tiny):
    """reliability_figure draws the test set's probabilities after the model's temperature, and
    says both ECEs in its title; without a temperature, plot_reliability's own title."""
    from quicknets.evaluation.calibration import calibration, reliability, temperature_scale
    from quicknets.evaluation.metrics import log_probabilities
    from quicknets.outputs.report import reliability_figure

    _, model = tiny_run
    assert "ECE" in reliability_figure(model, tiny).axes[0].get_title()
    model.preprocessing = dataclasses.replace(model.preprocessing, temperature=3.0)
    fig = reliability_figure(model, tiny)
    raw = log_probabilities(model, model.preprocessing.normalize(tiny.test_images))
    tempered = temperature_scale(raw, 3.0)
    after, before = (calibration(x, tiny.test_labels)["ece"] for x in (tempered, raw))
    assert fig.axes[0].get_title() == (
        f"reliability at temperature 3.000: ECE {after:.4f} (before: {before:.4f})"
    )
    want = np.nan_to_num(reliability(tempered.exp(), tiny.test_labels)["accuracy"])
    heights = [bar.get_height() for bar in fig.axes[0].patches[:15]]  # the accuracy bars
    assert heights == pytest.approx(want.tolist(), abs=1e-12)


def embedded_images(html: str) -> list:
    return [base64.b64decode(m) for m in re.findall(r'src="data:image/png;base64,([^"]+)"', html)]


def rendered(html: str, tmp_path):
    """The page as headless Chromium built it, with a probe that writes, once the page has
    loaded, how many of its images decoded (`data-images="ok/all"` on the body)."""
    probe = (
        "<script>window.addEventListener('load', () => { const imgs = [...document.images];"
        " const ok = imgs.filter(i => i.complete && i.naturalWidth > 0).length;"
        " document.body.setAttribute('data-images', ok + '/' + imgs.length); });</script>"
    )
    probed = tmp_path / "probed.html"
    probed.write_text(html.replace("</body>", probe + "</body>"))
    dom = chromium("--virtual-time-budget=5000", "--dump-dom", probed.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    return dom


def test_report_holds_the_whole_run_and_fetches_nothing(tiny_run, tiny):
    run, model = tiny_run
    path = write_report(run, model, tiny)
    assert path == run.path / "report.html"
    html = path.read_text()
    for heading in (
        "Test results",
        "Figures",
        "Can you trust it?",
        "Epochs",
        "Network",
        "Settings",
    ):
        assert f"<h2>{heading}</h2>" in html
    assert f"test accuracy <b>{run.results['accuracy']:.4f}</b>" in html
    assert "batch 64, 2 epochs, seed 0" in html
    assert all(f"<td>{name}</td>" in html for name in tiny.classes)  # the per-class table
    assert html.count('<tr><td class="num">') == len(run.history)  # one row per epoch
    assert "784-32-10" in html and "adam" in html and run.meta["torch"] in html
    # the network's table: parameters and FLOPs per layer, and the totals (784*32+32, 32*10+10)
    assert "<th>FLOPs</th>" in html and "<td>Linear</td><td>(1, 32)</td>" in html
    assert (
        f'<td>total</td><td></td><td></td><td class="num">{25_450:,}</td>'
        f'<td class="num">{2 * (784 * 32 + 32 * 10):,}</td>' in html
    )
    images = embedded_images(html)
    assert (
        len(images) == len(FIGURES) - 1 + len(TRUST_FIGURES) - 1
    )  # reliability once; no robustness yet
    for png in images:
        with Image.open(io.BytesIO(png)) as img:
            assert img.format == "PNG" and img.width > 300
    # nothing from the network: every src and href is inline data
    assert re.findall(r'(?:src|href)\s*=\s*"(?!data:)', html) == []
    assert "http:" not in html and "https:" not in html
    assert not list(run.path.glob(".*.tmp"))
    run.history = run.history[:1]  # one epoch is "1 epoch", not "1 epochs"
    assert "batch 64, 1 epoch, seed 0" in write_report(run, model, tiny).read_text()


def test_report_says_the_familiarity_fit(tiny_run, tiny):
    from quicknets.records.runs import fit_run_familiarity

    run, model = tiny_run
    assert "<p>Familiarity:" not in write_report(run, model, tiny).read_text()  # none recorded
    fit = fit_run_familiarity(run.path, model, tiny)  # what training records
    run.results["familiarity"] = fit
    html = write_report(run, model, tiny).read_text()
    assert (
        f"<p>Familiarity: knn (k = 1), threshold <b>{fit['threshold']:.4g}</b>, passed by 95% "
        "of the held-out training images;" in html
    )
    assert "said not to look like the training images.</p>" in html  # no wall time: no "Fitted in"
    assert "Fitted in" not in html


def test_report_escapes_text_from_the_record(tiny_run, tiny):
    run, model = tiny_run
    run.results["per_class"][0]["class"] = "<script>alert(1)</script>"
    train = dataclasses.replace(run.config.train, optimizer="a&b", lr=1e-05)
    run.config = dataclasses.replace(run.config, train=train)
    pngs = {"curves": b"\x89PNG fake"}
    html = render_report(run, pngs, "layer <0>")
    assert "<script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "a&amp;b" in html and "layer &lt;0&gt;" in html
    assert "<td>lr</td><td>1e-05</td>" in html  # settings as recorded, not rounded away


def test_show_figures_are_written_next_to_the_record(tiny_run, tiny):
    run, model = tiny_run
    paths = save_figures(run_figures(run, model, tiny), run.path / "figures")
    assert sorted(p.name for p in paths) == sorted(f"{n}.png" for n in FIGURES)
    for p in paths:
        with Image.open(p) as img:
            assert np.asarray(img.convert("L")).std() > 10


def test_each_top_loss_sits_beside_its_attribution_map(tiny_run, tiny, monkeypatch):
    """With Captum: the report's top-losses figure pairs each image with its Integrated
    Gradients map for the predicted class (as plot_top_losses_explained draws it); without
    Captum, the images alone, and the report is still written."""
    need("captum")
    from quicknets.evaluation.attribution import explain_batch
    from quicknets.plots.attribution import normalized_map
    from quicknets.plots.figures import top_losses

    run, model = tiny_run
    rows = top_losses(model, tiny, k=9)
    assert len(rows) == 9
    figure = run_figures(run, model, tiny)["top_losses"]
    assert len(figure.axes) == 18  # three lines of three (image, map) pairs
    chosen = tiny.test_images[[r["index"] for r in rows]]
    maps = explain_batch(model, chosen, targets=[r["predicted"] for r in rows])
    for i in range(9):
        shown = figure.axes[2 * i + 1].images[1].get_array()
        np.testing.assert_allclose(shown, normalized_map(maps[i].numpy()))
    assert "Integrated Gradients map" in FIGURES["top_losses"]
    monkeypatch.setitem(sys.modules, "captum", None)  # as if the extra were not installed
    assert len(run_figures(run, model, tiny)["top_losses"].axes) == 9
    assert "Integrated Gradients map" in write_report(run, model, tiny).read_text()


def chromium(*args, timeout=HANG_S) -> subprocess.CompletedProcess:
    exe = shutil.which("chromium")
    if exe is None:
        pytest.fail("chromium is missing: apt-get install chromium (scripts/setup.sh test does it)")
    with tempfile.TemporaryDirectory(prefix="quicknets-chromium-") as profile:
        return subprocess.run(
            [exe, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
        )


def test_report_renders_in_a_headless_browser(tiny_run, tiny, tmp_path):
    """Chromium opens the page offline: its screenshot is not blank and every image loads."""
    run, model = tiny_run
    html = write_report(run, model, tiny).read_text()
    # a copy with a probe that writes, once the page has loaded, how many images decoded
    dom = rendered(html, tmp_path)
    n = len(FIGURES) - 1 + len(TRUST_FIGURES) - 1  # reliability once; no robustness yet
    assert f'data-images="{n}/{n}"' in dom.stdout, dom.stdout[:500]
    assert "quicknets run" in dom.stdout

    shot = tmp_path / "report.png"
    result = chromium(
        f"--screenshot={shot}", "--window-size=1200,2400", (run.path / "report.html").as_uri()
    )
    assert result.returncode == 0 and shot.is_file(), result.stderr[-2000:]
    with Image.open(shot) as img:
        rgb = np.asarray(img.convert("RGB")).astype(int)
    assert rgb.shape[:2] == (2400, 1200)
    assert rgb.std() > 20, "the screenshot is blank"
    ink = (rgb.min(2) < 128).mean()  # dark pixels: text, axes, the images' black backgrounds
    assert ink > 0.02, f"only {ink:.3%} of the screenshot is drawn"
    # the blue (#1f77b4) of the per-class bars and the curves is on screen
    blue = (abs(rgb - np.array([0x1F, 0x77, 0xB4])).sum(2) < 30).sum()
    assert blue > 500


def test_sweep_page_renders_in_a_headless_browser(tiny_dir, runs_dir, tmp_path):
    """The sweep page: the ranked table, both figures loaded in Chromium, a link to the one run
    that has its own page, and nothing fetched."""
    from quicknets.outputs.report import SWEEP_FIGURES, write_sweep_report
    from quicknets.sweeps import load_sweep, sweep

    sweep(
        {"dataset": "mnist", "data_dir": str(tiny_dir), "verify": False, "epochs": 2},
        grid={"lr": [0.001, 0.01], "network": ["784-8-10", "784-16-10"]},
        seeds=2,
        workers=1,
        threads=1,
        runs_dir=runs_dir,
        name="page",
        log=lambda *a: None,
    )
    view = load_sweep("page", runs_dir)
    best = view.groups[0]["names"][0]
    write_report(load_run(best, runs_dir))  # this run has its own page: the sweep links it
    path = write_sweep_report(view, runs_dir=runs_dir)
    assert path == runs_dir / "sweeps" / "page.html"
    html = path.read_text()
    assert "<h2>Ranking</h2>" in html and html.count("± ") >= 4 * 2  # 4 variants, 2 seeds
    assert len(embedded_images(html)) == len(SWEEP_FIGURES)
    links = re.findall(r'href="([^"]+)"', html)
    assert links == [f"../{best}/report.html"] and (path.parent / links[0]).is_file()
    assert re.findall(r'src\s*=\s*"(?!data:)', html) == []  # every image inline
    assert "http:" not in html and "https:" not in html

    dom = rendered(html, tmp_path)
    n = len(SWEEP_FIGURES)
    assert f'data-images="{n}/{n}"' in dom.stdout, dom.stdout[:500]
    assert "quicknets sweep page" in dom.stdout
