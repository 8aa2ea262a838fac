"""Calibration: ECE, MCE, NLL and Brier against hand-computed values and a brute-force Guo et al.
reference; temperature scaling against a grid search; one real check on Fashion-MNIST."""

import dataclasses
import math

import numpy as np
import pytest
import torch

from quicknets.base.errors import QuicknetsError
from quicknets.evaluation.calibration import (
    brier_score,
    calibrate,
    calibration,
    expected_calibration_error,
    fit_temperature,
    max_calibration_error,
    negative_log_likelihood,
    reliability,
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
    """The default network, 3 epochs on 10,000 training images (over-confident by then), with
    the temperature fitted on a 10% validation split: a lower ECE on the test set."""
    from quicknets import load_dataset, network, train

    data = load_dataset("fashion-mnist", val_split=0.1, seed=0)
    small = dataclasses.replace(
        data, train_images=data.train_images[:10000], train_labels=data.train_labels[:10000]
    )
    model = network("784-256-128-64-10")
    train(model, small, optimizer="adam", lr=0.003, epochs=3, batch_size=64, quiet=True)
    result = calibrate(model, small)
    assert result["temperature"] > 1.0  # over-confident: softened
    assert result["after"]["ece"] < result["before"]["ece"]
    assert result["after"]["nll"] < result["before"]["nll"]
    assert result["after"]["accuracy"] == result["before"]["accuracy"]
    assert result["before"]["n"] == 10000
