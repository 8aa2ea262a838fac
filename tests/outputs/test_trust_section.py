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
    from quicknets.evaluation.calibration import temperature_scale
    from quicknets.plots.figures import new_figure

    run, model = tiny_run
    seen = {}

    def plot(probs, labels, title=None):
        seen["probs"], seen["labels"] = probs, labels
        return new_figure(1, 1)

    monkeypatch.setattr("quicknets.outputs.trust_section.plot_reliability", plot)
    trust_figures(run, model, tiny)
    raw = log_probabilities(model, model.preprocessing.normalize(tiny.test_images))
    expected = temperature_scale(raw, model.preprocessing.temperature).exp()  # as reported
    assert torch.equal(seen["probs"], expected) and torch.equal(seen["labels"], tiny.test_labels)


def _seen_familiarity(monkeypatch) -> list:
    """Record what the familiarity figure draws: [(test scores, noise scores, threshold)]."""
    from quicknets.plots.figures import new_figure

    seen = []

    def plot(inside, outside, threshold=None, title=None):
        seen.append((inside, outside["uniform noise"], threshold))
        return new_figure(1, 1)

    monkeypatch.setattr("quicknets.plots.trust.plot_familiarity", plot)
    return seen


def _fits(monkeypatch) -> list:
    """Count the familiarity fits (each call's data)."""
    from quicknets.evaluation import familiarity

    fitted_on, real = [], familiarity.fit_familiarity

    def fit(model, data, *args, **kwargs):
        fitted_on.append(data)
        return real(model, data, *args, **kwargs)

    monkeypatch.setattr(familiarity, "fit_familiarity", fit)
    return fitted_on


def test_the_familiarity_figure_uses_the_runs_saved_fit_and_threshold(tiny_run, tiny, monkeypatch):
    from quicknets.evaluation.familiarity import familiarity_scores
    from quicknets.records.runs import fit_run_familiarity, load_model

    run, model = tiny_run
    fit_run_familiarity(run.path, model, tiny)  # as training does: familiarity.pt
    loaded = load_model(run)
    saved = loaded.familiarity
    fits, seen = _fits(monkeypatch), _seen_familiarity(monkeypatch)
    trust_figures(run, loaded, tiny)
    assert fits == []  # the run's statistics, not a fit of the report's own
    ((test, noisy, threshold),) = seen
    assert threshold == saved.threshold  # the threshold classify uses
    np.testing.assert_array_equal(test, familiarity_scores(loaded, tiny.test_images, saved))
    noise = torch.randint(
        0,
        256,
        (len(noisy), 1, 28, 28),
        dtype=torch.uint8,
        generator=torch.Generator().manual_seed(0),
    )
    np.testing.assert_array_equal(noisy, familiarity_scores(loaded, noise, saved))


def test_a_run_without_saved_statistics_has_them_fitted_once_and_kept(tiny_run, tiny, monkeypatch):
    from quicknets.records.runs import load_model

    run, model = tiny_run  # trained in Python and saved without familiarity.pt
    assert not (run.path / "familiarity.pt").exists()
    fits, seen = _fits(monkeypatch), _seen_familiarity(monkeypatch)
    trust_figures(run, model, tiny)
    assert len(fits) == 1 and (run.path / "familiarity.pt").is_file()
    loaded = load_model(run)  # what classify and the demo load
    assert seen[0][2] == loaded.familiarity.threshold
    trust_figures(run, loaded, tiny)
    assert len(fits) == 1 and seen[1][2] == seen[0][2]  # one fit per run, one threshold


def test_at_most_scored_test_images_a_seeded_sample(tiny_run, tiny, monkeypatch):
    from quicknets.evaluation.familiarity import familiarity_scores, fit_familiarity

    run, model = tiny_run
    fitted = fit_familiarity(model, tiny)
    seen = _seen_familiarity(monkeypatch)
    for _ in range(2):
        familiarity_figure(model, tiny, fitted, scored=30, noise=20)
    (first, noise, _), (second, _, _) = seen
    assert len(first) == 30 and len(noise) == 20
    np.testing.assert_array_equal(first, second)
    every = familiarity_scores(model, tiny.test_images, fitted).numpy()
    assert set(first.tolist()) <= set(every.tolist())  # each the score of a test image


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
