"""The report's "Can you trust it?": its figures from the saved model, the robustness figure once
`evaluate --robustness` recorded one, and a line for each figure that cannot be drawn."""

import base64
import io
import re

import numpy as np
import pytest
import torch
from PIL import Image

from quicknets.evaluation.metrics import evaluate, log_probabilities
from quicknets.evaluation.robustness import robustness
from quicknets.networks.models import network
from quicknets.outputs.report import write_report
from quicknets.outputs.trust_section import (
    TRUST_FIGURES,
    familiarity_figure,
    render_trust,
    trust_figures,
)
from quicknets.records.runs import load_run, save_run, update_results
from quicknets.training.loop import train


@pytest.fixture
def tiny_run(tiny, tiny_dir, runs_dir):
    torch.manual_seed(0)
    model = network("784-32-10")
    history = train(model, tiny, epochs=2, quiet=True, threads=1)
    config = {
        "data": {"dataset": "mnist", "data_dir": str(tiny_dir), "verify": False},
        "model": {"spec": "784-32-10"},
        "train": {"epochs": 2, "seed": 0},
    }
    path = save_run(model, config, history, evaluate(model, tiny), runs_dir=runs_dir)
    return load_run(path), model


def section(html: str) -> str:
    start = html.index("<h2>Can you trust it?</h2>")
    return html[start : html.index("<h2>", start + 1)]


def pngs_of(html: str) -> dict:
    found = re.findall(r'alt="([a-z_]+)" src="data:image/png;base64,([^"]+)"', html)
    return {name: base64.b64decode(data) for name, data in found}


def test_the_section_holds_its_figures_and_then_the_robustness_one(tiny_run, tiny):
    run, model = tiny_run
    html = section(write_report(run, model, tiny).read_text())
    figures = pngs_of(html)
    assert list(figures) == ["reliability", "familiarity", "attribution"]
    for png in figures.values():
        with Image.open(io.BytesIO(png)) as img:
            assert img.format == "PNG" and img.width > 300
            assert np.asarray(img.convert("L")).std() > 10  # drawn, not blank
    assert f"quicknets evaluate {run.name} --robustness" in html
    assert "Captum" not in html

    result = robustness(model, tiny.test_images, tiny.test_labels)
    update_results(run, {"robustness": result})
    again = load_run(run.path)
    html = section(write_report(again, model, tiny).read_text())
    assert list(pngs_of(html)) == list(TRUST_FIGURES)
    assert "--robustness" not in html


def test_the_reliability_figure_is_of_the_test_probabilities(tiny_run, tiny, monkeypatch):
    from quicknets.plots.figures import new_figure

    run, model = tiny_run
    seen = {}

    def plot(probs, labels):
        seen["probs"], seen["labels"] = probs, labels
        return new_figure(1, 1)

    monkeypatch.setattr("quicknets.plots.trust.plot_reliability", plot)
    trust_figures(run, model, tiny)
    expected = log_probabilities(model, model.preprocessing.normalize(tiny.test_images)).exp()
    assert torch.equal(seen["probs"], expected) and torch.equal(seen["labels"], tiny.test_labels)


def test_familiarity_is_fitted_on_a_bounded_seeded_subsample(tiny, monkeypatch):
    from quicknets.evaluation import familiarity

    model = network("784-16-10")
    train(model, tiny, epochs=1, quiet=True, threads=1)
    fitted_on = []
    real = familiarity.fit_familiarity

    def fit(model, data, *args, **kwargs):
        fitted_on.append(data)
        return real(model, data, *args, **kwargs)

    monkeypatch.setattr(familiarity, "fit_familiarity", fit)
    familiarity_figure(model, tiny, fit_images=50, scored=30, noise=20)
    familiarity_figure(model, tiny, fit_images=50, scored=30, noise=20)
    first, second = fitted_on
    for split, n in (("train", 50), ("test", 30)):
        images, labels = getattr(first, f"{split}_images"), getattr(first, f"{split}_labels")
        assert len(images) == n and torch.equal(images, getattr(second, f"{split}_images"))
        whole = {
            (bytes(x.numpy()), int(y))
            for x, y in zip(getattr(tiny, f"{split}_images"), getattr(tiny, f"{split}_labels"))
        }  # each image of the split, with its own label
        assert all((bytes(x.numpy()), int(y)) in whole for x, y in zip(images, labels))
    familiarity_figure(model, tiny, fit_images=10_000, scored=10_000, noise=20)  # fewer: all
    assert torch.equal(fitted_on[2].train_images, tiny.train_images)
    assert torch.equal(fitted_on[2].test_images, tiny.test_images)


def test_missing_figures_say_what_adds_them():
    html = render_trust({"reliability": b"\x89PNG"}, "my<run>")
    assert "pip install 'quicknets[explain]'" in html
    assert "quicknets evaluate my&lt;run&gt; --robustness" in html
    every = render_trust({name: b"\x89PNG" for name in TRUST_FIGURES})
    assert "<p>" not in every and every.count("<figure>") == len(TRUST_FIGURES)


def test_without_captum_the_attribution_is_left_out(tiny_run, tiny, monkeypatch):
    import builtins

    run, model = tiny_run
    real_import = builtins.__import__

    def no_captum(name, *args, **kwargs):
        if name.startswith("captum"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_captum)
    assert list(trust_figures(run, model, tiny)) == ["reliability", "familiarity"]
