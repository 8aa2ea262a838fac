"""Calibration: ECE, MCE, NLL and Brier against hand-computed values and a brute-force Guo et al.
reference; temperature scaling against a grid search; one real check on Fashion-MNIST. Then the
temperature wired through: kept in the model, used by predict, classify and evaluate, recorded
before and after, printed by `quicknets evaluate`, carried by exports, drawn by show and report,
on a built-in dataset and on a folder of 32x32 RGB images."""

import dataclasses
import math

import numpy as np
import pytest
import torch

from quicknets.base.errors import QuicknetsError
from quicknets.evaluation.calibration import (
    MEASURES,
    brier_score,
    calibrate,
    calibration,
    calibration_summary,
    expected_calibration_error,
    fit_temperature,
    format_calibration,
    max_calibration_error,
    negative_log_likelihood,
    reliability,
    set_temperature,
    temperature_scale,
)


def guo_ece(probs: np.ndarray, labels: np.ndarray, bins: int = 15) -> tuple:
    """Guo et al.'s reference (_ECELoss) written as a loop: bins (lower, upper]."""
    conf, pred = probs.max(1), probs.argmax(1)
    edges = np.linspace(0, 1, bins + 1)
    ece, mce = 0.0, 0.0
    for lower, upper in zip(edges[:-1], edges[1:]):
        inside = (conf > lower) & (conf <= upper)
        if inside.any():
            gap = abs((pred[inside] == labels[inside]).mean() - conf[inside].mean())
            ece += inside.mean() * gap
            mce = max(mce, gap)
    return ece, mce


def two_class(confidences, correct) -> tuple:
    """Probabilities (N, 2) whose top class 0 has the given confidence; label 0 when correct."""
    p = torch.tensor(confidences, dtype=torch.float64)
    return torch.stack([p, 1 - p], 1), torch.tensor([0 if c else 1 for c in correct])


def test_ece_mce_brier_nll_by_hand():
    # bins of width 1/15: 0.9 in (0.867, 0.933], 0.7 in (0.667, 0.733], 0.55 in (0.533, 0.6]
    probs, labels = two_class([0.9, 0.9, 0.7, 0.55], [True, False, True, False])
    # gaps: |0.5 - 0.9| (half the images), |1 - 0.7| (a quarter), |0 - 0.55| (a quarter)
    assert expected_calibration_error(probs, labels) == pytest.approx(
        0.5 * 0.4 + 0.25 * 0.3 + 0.25 * 0.55, abs=1e-12
    )
    assert max_calibration_error(probs, labels) == pytest.approx(0.55, abs=1e-12)
    # Brier: 2 * (1 - p_true)^2 for two classes: p_true = 0.9, 0.1, 0.7, 0.45
    assert brier_score(probs, labels) == pytest.approx((0.02 + 1.62 + 0.18 + 0.605) / 4, abs=1e-12)
    assert negative_log_likelihood(probs.log(), labels) == pytest.approx(
        -(math.log(0.9) + math.log(0.1) + math.log(0.7) + math.log(0.45)) / 4, abs=1e-12
    )
    diagram = reliability(probs, labels)
    assert sum(diagram["count"]) == 4 and diagram["count"][13] == 2
    assert diagram["accuracy"][13] == 0.5 and diagram["confidence"][10] == pytest.approx(0.7)
    assert math.isnan(diagram["accuracy"][0])  # an empty bin


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("bins", [1, 10, 15])
def test_ece_and_mce_match_guo_reference(seed, bins):
    g = torch.Generator().manual_seed(seed)
    probs = torch.softmax(torch.randn(500, 7, generator=g, dtype=torch.float64) * 3, 1)
    labels = torch.randint(0, 7, (500,), generator=g)
    ece, mce = guo_ece(probs.numpy(), labels.numpy(), bins)
    assert expected_calibration_error(probs, labels, bins) == pytest.approx(ece, abs=1e-12)
    assert max_calibration_error(probs, labels, bins) == pytest.approx(mce, abs=1e-12)
    summary = calibration(probs.log(), labels, bins)
    assert summary["ece"] == pytest.approx(ece, abs=1e-12) and summary["n"] == 500
    assert summary["accuracy"] == (probs.argmax(1) == labels).double().mean().item()


def test_perfect_and_confident_predictions():
    probs = torch.eye(4, dtype=torch.float64)  # confidence 1 falls in the last bin (lower, 1]
    labels = torch.arange(4)
    assert expected_calibration_error(probs, labels) == 0.0
    assert brier_score(probs, labels) == 0.0
    assert expected_calibration_error(probs, (labels + 1) % 4) == 1.0
    assert brier_score(probs, (labels + 1) % 4) == 2.0


def calibrated_logits(n: int, seed: int) -> tuple:
    """Logits z and labels drawn from softmax(z): calibrated at T = 1 by construction."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, 10, generator=g, dtype=torch.float64) * 2
    labels = torch.multinomial(torch.softmax(z, 1), 1, generator=g)[:, 0]
    return z, labels


@pytest.mark.parametrize("sharpen", [0.5, 3.0])
def test_temperature_undoes_a_known_miscalibration(sharpen):
    z, labels = calibrated_logits(20000, seed=0)
    log_probs = torch.log_softmax(z * sharpen, 1)  # over-confident for sharpen > 1
    t = fit_temperature(log_probs, labels)
    assert t == pytest.approx(sharpen, rel=0.05)  # scaling by T = sharpen restores z
    assert (t > 1) == (sharpen > 1)

    def nll(ts):
        return [negative_log_likelihood(temperature_scale(log_probs, float(g)), labels) for g in ts]

    coarse = np.linspace(math.log(0.1), math.log(10), 101)  # a brute-force search on log T
    step = coarse[1] - coarse[0]
    centre = coarse[int(np.argmin(nll(np.exp(coarse))))]
    fine = np.linspace(centre - step, centre + step, 101)
    fine_nll = nll(np.exp(fine))
    assert negative_log_likelihood(temperature_scale(log_probs, t), labels) <= min(fine_nll) + 1e-9
    assert abs(math.log(t) - fine[int(np.argmin(fine_nll))]) <= fine[1] - fine[0]
    before = expected_calibration_error(log_probs.exp(), labels)
    after = expected_calibration_error(temperature_scale(log_probs, t).exp(), labels)
    assert after < before / 2


def test_temperature_one_changes_nothing():
    z, labels = calibrated_logits(2000, seed=1)
    log_probs = torch.log_softmax(z, 1).float()
    assert torch.equal(temperature_scale(log_probs, 1.0), log_probs)
    assert calibration(temperature_scale(log_probs, 1.0), labels) == calibration(log_probs, labels)
    scaled = temperature_scale(log_probs, 2.5)  # any T keeps every prediction
    assert torch.equal(scaled.argmax(1), log_probs.argmax(1)) and scaled.dtype == torch.float32
    assert fit_temperature(torch.log_softmax(z, 1), labels) == pytest.approx(1.0, abs=0.1)


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf"), "2", True])
def test_a_temperature_must_be_positive(bad):
    with pytest.raises(QuicknetsError, match="positive"):
        temperature_scale(torch.zeros(2, 3), bad)


@pytest.mark.parametrize(
    "values, labels, match",
    [
        (torch.zeros(4), torch.zeros(4, dtype=torch.long), "shape"),
        (torch.zeros(4, 3), torch.zeros(3, dtype=torch.long), "labels"),
        (torch.zeros(4, 3), torch.zeros(4), "labels"),
        (torch.zeros(4, 3), torch.tensor([0, 1, 2, 3]), "class indices"),
        (torch.zeros(0, 3), torch.zeros(0, dtype=torch.long), "no predictions"),
        (torch.zeros(4, 3, dtype=torch.long), torch.zeros(4, dtype=torch.long), "floats"),
    ],
)
def test_bad_inputs_are_one_clear_error(values, labels, match):
    for f in (expected_calibration_error, brier_score, calibration, fit_temperature):
        with pytest.raises(QuicknetsError, match=match):
            f(values, labels)


def test_calibrate_needs_a_validation_split(tiny):
    from quicknets.networks.models import network

    with pytest.raises(QuicknetsError, match="validation split"):
        calibrate(network("784-16-10"), tiny)


def test_scaling_lowers_the_test_ece_of_the_default_network(fashion):
    """The default network, 3 epochs on 10,000 training images (over-confident by then): train
    fits the temperature on the 6,000-image validation split, and the test set's ECE and NLL
    are lower after it; calibrate() fits the same T again from the same outputs."""
    from quicknets import evaluate, load_dataset, network, train

    data = load_dataset("fashion-mnist", val_split=0.1, seed=0)
    small = dataclasses.replace(
        data, train_images=data.train_images[:10000], train_labels=data.train_labels[:10000]
    )
    model = network("784-256-128-64-10")
    train(model, small, optimizer="adam", lr=0.003, epochs=3, batch_size=64, quiet=True)
    fitted = model.preprocessing.temperature
    assert fitted > 1.0  # over-confident: softened
    results = evaluate(model, small)
    before, after = results["calibration"]["before"], results["calibration"]["after"]
    assert results["calibration"]["temperature"] == fitted and results["ece"] == after["ece"]
    assert after["ece"] < before["ece"] and after["nll"] < before["nll"]
    assert after["brier"] < before["brier"]
    result = calibrate(model, small)
    # the same outputs and the same fit; the loop ran at its own thread count, so the float64
    # sums may be ordered otherwise: T to L-BFGS's tolerance, not to the bit
    assert result["temperature"] == pytest.approx(fitted, rel=1e-6)
    assert result["after"]["ece"] < result["before"]["ece"]
    assert result["after"]["accuracy"] == result["before"]["accuracy"] == results["accuracy"]
    assert result["before"]["n"] == 10000


# the temperature wired through: a model keeps it, and every probability quicknets reports uses it


@pytest.fixture
def tempered(tiny_dir):
    """(model, data): 784-32-10 trained 2 epochs on the tiny set with a validation split of 60
    images, so that it has a temperature of its own."""
    from quicknets import load_dataset, network, train

    data = load_dataset("mnist", tiny_dir, val_split=0.2, verify=False)
    model = network("784-32-10")
    train(model, data, epochs=2, quiet=True, threads=1)
    assert model.preprocessing.temperature != 1.0
    return model, data


def test_predict_proba_and_classify_report_the_tempered_probabilities(tempered):
    from quicknets import classify, predict, predict_proba

    model, data = tempered
    t = model.preprocessing.temperature
    images = data.test_images  # 100 images: one batch of predict_proba
    with torch.no_grad():
        raw = model(model.preprocessing.normalize(images))  # (100, 10) the network's own
        one = model(model.preprocessing.normalize(images[3:4]))
    want = temperature_scale(raw, t).exp()
    assert torch.equal(predict_proba(model, images), want)
    assert not torch.allclose(want, raw.exp())  # the temperature changes them
    assert torch.equal(predict(model, images), raw.argmax(1))  # and never the class
    top = classify(model, 3, data, top=10)
    assert [r["probability"] for r in top] == temperature_scale(one, t).exp()[0].sort(
        descending=True
    ).values.tolist()


def test_set_temperature_keeps_it_in_the_model_and_the_saved_file(tempered, tmp_path):
    from quicknets.evaluation.metrics import log_probabilities
    from quicknets.networks.models import load_saved, save_model

    model, data = tempered
    pre = model.preprocessing
    val = log_probabilities(model, pre.normalize(data.val_images))
    model.preprocessing = dataclasses.replace(pre, temperature=1.0)  # as trained without one
    t = set_temperature(model, data)
    assert t == fit_temperature(val, data.val_labels) == model.preprocessing.temperature
    assert dataclasses.replace(model.preprocessing, temperature=1.0) == dataclasses.replace(
        pre, temperature=1.0
    )  # nothing else changed
    save_model(model, tmp_path / "model.pt")
    assert load_saved(tmp_path / "model.pt").preprocessing.temperature == t
    no_val = dataclasses.replace(data, val_images=None, val_labels=None)
    with pytest.raises(QuicknetsError, match="fitted on a validation split"):
        set_temperature(model, no_val)


def test_evaluate_records_calibration_before_and_after(tempered):
    from torch.nn import functional as F

    from quicknets import evaluate
    from quicknets.evaluation.metrics import log_probabilities

    model, data = tempered
    pre = model.preprocessing
    results = evaluate(model, data)
    raw = log_probabilities(model, pre.normalize(data.test_images))
    # the loss and accuracy are the network's own, the metric the history has always had
    assert results["loss"] == F.nll_loss(raw, data.test_labels, reduction="sum").item() / 100
    before = calibration(raw, data.test_labels)
    after = calibration(temperature_scale(raw, pre.temperature), data.test_labels)
    assert results["calibration"] == {
        "temperature": pre.temperature,
        "before": {k: before[k] for k in MEASURES},
        "after": {k: after[k] for k in MEASURES},
    }
    assert results["ece"] == after["ece"]
    assert before["nll"] == pytest.approx(results["loss"], rel=1e-6)  # float64 vs float32 sums
    model.preprocessing = dataclasses.replace(pre, temperature=1.0)
    untempered = evaluate(model, data)
    assert untempered["calibration"]["after"] is None and untempered["ece"] == before["ece"]


def test_the_calibration_line():
    summary = {
        "temperature": 1.23456,
        "before": {"ece": 0.04214, "mce": 0.2, "nll": 0.35, "brier": 0.171},
        "after": {"ece": 0.01126, "mce": 0.09, "nll": 0.33, "brier": 0.169},
    }
    assert format_calibration(summary) == (
        "calibration: ece 0.0421 -> 0.0113  mce 0.2000 -> 0.0900  nll 0.3500 -> 0.3300  "
        "brier 0.1710 -> 0.1690  (temperature 1.2346, fitted on val)"
    )
    assert format_calibration({**summary, "temperature": 1.0, "after": None}) == (
        "calibration: ece 0.0421  mce 0.2000  nll 0.3500  brier 0.1710  "
        "(no temperature fitted: training fits one when it has a validation split)"
    )
    z, labels = calibrated_logits(500, seed=2)
    line = format_calibration(calibration_summary(torch.log_softmax(z, 1), labels, 2.0))
    assert line.startswith("calibration: ece ") and line.endswith(
        "(temperature 2.0000, fitted on val)"
    )


def rgb_folder(root, n_per_class: int = 30):
    """A folder of class folders of 32x32 RGB PNGs: noise with a bright square in the class's
    channel (learnable in an epoch or two)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for c, name in enumerate(("red", "green", "blue")):
        (root / name).mkdir(parents=True)
        for i in range(n_per_class):
            x = rng.integers(0, 120, (32, 32, 3), dtype=np.uint8)
            x[8:24, 8:24, c] = rng.integers(140, 256)
            Image.fromarray(x).save(root / name / f"{i:03d}.png")
    return root


def test_the_command_line_records_prints_exports_and_draws_it(tmp_path, capsys):
    """Your own data, 32x32 RGB: train with a validation split records calibration before and
    after; `evaluate RUN` prints the line as recorded; a safetensors export (the same network,
    the same bits) prints it again; show draws the reliability diagram and the report shows
    the line. Without a validation split: no temperature, said so."""
    import json
    import re

    from quicknets.cli import main
    from quicknets.records.runfolder import final_metrics
    from quicknets.records.runs import load_model, load_run

    folder, runs = rgb_folder(tmp_path / "shapes"), tmp_path / "runs"

    def cli(*args) -> list:
        code = main([str(a) for a in args])
        out, err = capsys.readouterr()
        assert code == 0, err
        return out.splitlines()

    common = ("--dataset", folder, "--epochs", "2", "--threads", "1", "--runs-dir", runs)
    name = cli("train", *common, "--val-split", "0.25", "--quiet")[-1].split("/")[-1]
    record = load_run(name, runs)
    recorded = record.results["calibration"]
    t = load_model(record).preprocessing.temperature
    assert recorded["temperature"] == t != 1.0
    assert record.results["ece"] == recorded["after"]["ece"]
    assert final_metrics(record.history, record.results)["test_ece"] == record.results["ece"]
    lines = cli("evaluate", name, "--runs-dir", runs)
    assert lines[1].startswith("test accuracy: ")
    assert lines[2] == format_calibration(recorded)  # evaluated again: the recorded numbers
    assert re.fullmatch(
        r"calibration: ece \S+ -> \S+  mce \S+ -> \S+  nll \S+ -> \S+  brier \S+ -> \S+  "
        rf"\(temperature {t:.4f}, fitted on val\)",
        lines[2],
    )

    file = tmp_path / "shapes.safetensors"
    cli("export", name, "--runs-dir", runs, "--out", file)
    assert cli("evaluate", file)[2] == lines[2]

    cli("show", name, "--runs-dir", runs)
    assert (runs / name / "figures" / "reliability.png").stat().st_size > 1000
    cli("report", name, "--runs-dir", runs)
    assert lines[2].replace(">", "&gt;") in (runs / name / "report.html").read_text()

    plain = cli("train", *common, "--quiet")[-1].split("/")[-1]
    line = cli("evaluate", plain, "--runs-dir", runs)[2]
    assert line.startswith("calibration: ece ") and "->" not in line
    assert line.endswith(
        "(no temperature fitted: training fits one when it has a validation split)"
    )
    assert json.loads((runs / plain / "results.json").read_text())["calibration"]["after"] is None


def test_an_old_record_has_no_temperature_and_evaluates(fashion, tmp_path, capsys):
    """A record written before temperatures were (tests/fixtures/runs-v1) loads with none."""
    import shutil
    from pathlib import Path

    from quicknets.cli import main
    from quicknets.evaluation.metrics import format_results
    from quicknets.records.runfolder import final_metrics
    from quicknets.records.runs import load_model, load_run

    runs = tmp_path / "runs"
    shutil.copytree(Path(__file__).parents[1] / "fixtures" / "runs-v1", runs)
    old = load_run("mlp-32_adam_lr0.003_s0-12117d", runs)
    assert "calibration" not in old.results
    assert final_metrics(old.history, old.results)["test_ece"] is None  # not measured then
    assert "calibration" not in format_results(old.results)  # as recorded: no line
    assert load_model(old).preprocessing.temperature == 1.0
    assert main(["evaluate", old.name, "--runs-dir", str(runs)]) == 0
    line = capsys.readouterr().out.splitlines()[2]
    assert line.startswith("calibration: ece ") and "no temperature fitted" in line
