"""How sure should you be? Calibration of a network's probabilities, and temperature scaling.

    log_probs = log_probabilities(model, pre.normalize(data.test_images))   # (N, C)
    calibration(log_probs, data.test_labels)      # {"ece", "mce", "nll", "brier", "accuracy", "n"}
    t = fit_temperature(val_log_probs, data.val_labels)   # a float T > 0, fitted by NLL
    scaled = temperature_scale(log_probs, t)      # log-probabilities of softmax(logits / T)
    summary = calibration_summary(log_probs, labels, t)   # before, after, T: what evaluate records
    result = calibrate(model, data)   # T fitted on the validation split and kept in the model's
                                      # preprocessing; the test set before/after

Definitions follow Guo, Pleiss, Sun & Weinberger, "On Calibration of Modern Neural Networks",
ICML 2017, section 2: a prediction's confidence is its top probability; the confidences fall
into `bins` (15) equal-width bins (lower, upper] of [0, 1], as their reference code
(github.com/gpleiss/temperature_scaling, `_ECELoss`) bins them; the expected calibration error
is the mean over bins of |accuracy - mean confidence| weighted by the bin's share of images,
the maximum calibration error the largest such gap over non-empty bins. NLL is the mean
-log p(true class); the Brier score the mean over images of sum over classes (p_c - y_c)^2
(Brier 1950; 0 is perfect, 2 the worst). Everything is computed in float64.

Temperature scaling divides the logits by one T > 0, fitted on held-out data by minimising the
NLL. A network's log-probabilities serve as logits (log_softmax(z) = z - logsumexp(z): a shift
per row, which softmax ignores). The fit runs torch's L-BFGS (strong-Wolfe line search) on
log T, as Guo et al.'s reference code runs L-BFGS on T: log T keeps T positive, and the NLL is
convex in 1/T, so the one minimum is found from T = 1.

A model keeps its temperature in its preprocessing (Preprocessing.temperature; 1.0: none):
training fits it on the validation split when there is one (training.loop.fit), and
classify, predict_proba, evaluate's calibration, export and the demo report
temperature_scale(log-probabilities, T). The network's own outputs stay as trained: the loss,
the accuracy (the top class does not change under T) and the history do not depend on T.
"""

import dataclasses
import math

import torch
from torch import nn
from torch.nn import functional as F

from quicknets.base.errors import QuicknetsError
from quicknets.data.preprocessing import preprocessing_of
from quicknets.networks.models import log_probabilities

BINS = 15  # Guo et al.'s number of equal-width confidence bins
TEMPERATURE_RANGE = (0.01, 100.0)  # a fitted T outside this is clamped (log T kept in range)


def _check(values: torch.Tensor, labels: torch.Tensor, what: str) -> tuple:
    values = torch.as_tensor(values)
    labels = torch.as_tensor(labels)
    if values.dim() != 2 or values.shape[1] < 2 or not values.is_floating_point():
        raise QuicknetsError(
            f"{what} must be floats of shape (N, classes), with at least two "
            f"classes, not {values.dtype} {tuple(values.shape)}"
        )
    if labels.dim() != 1 or len(labels) != len(values) or labels.is_floating_point():
        raise QuicknetsError(
            f"labels must be whole numbers of shape ({len(values)},), not "
            f"{labels.dtype} {tuple(labels.shape)}"
        )
    if len(labels) == 0:
        raise QuicknetsError("no predictions to measure")
    if labels.min() < 0 or labels.max() >= values.shape[1]:
        raise QuicknetsError(
            f"labels must be class indices 0..{values.shape[1] - 1}, found "
            f"{int(labels.min())}..{int(labels.max())}"
        )
    return values.detach().cpu().double(), labels.detach().cpu().long()


def reliability(probs: torch.Tensor, labels: torch.Tensor, bins: int = BINS) -> dict:
    """The reliability diagram's numbers: probabilities (N, C) and labels (N,) -> {"edges":
    bins + 1 bin edges, "count", "accuracy", "confidence": one per bin (accuracy and
    confidence nan for an empty bin)}. A confidence c falls in bin i when edges[i] < c <=
    edges[i + 1]."""
    probs, labels = _check(probs, labels, "probabilities")
    if isinstance(bins, bool) or not isinstance(bins, int) or bins < 1:
        raise QuicknetsError(f"bins must be a whole number of at least 1, not {bins!r}")
    confidence, predicted = probs.max(1)
    correct = (predicted == labels).double()
    edges = torch.linspace(0, 1, bins + 1, dtype=torch.float64)
    index = torch.bucketize(confidence, edges[1:]).clamp(max=bins - 1)  # (lower, upper]
    count = torch.bincount(index, minlength=bins).double()
    hits = torch.bincount(index, weights=correct, minlength=bins)
    sure = torch.bincount(index, weights=confidence, minlength=bins)
    nan = torch.full_like(count, float("nan"))
    return {
        "edges": edges.tolist(),
        "count": count.long().tolist(),
        "accuracy": torch.where(count > 0, hits / count, nan).tolist(),
        "confidence": torch.where(count > 0, sure / count, nan).tolist(),
    }


def bin_gaps(diagram: dict) -> list:
    """(share of images, |accuracy - confidence|) of each non-empty bin."""
    n = sum(diagram["count"])
    return [
        (c / n, abs(a - s))
        for c, a, s in zip(diagram["count"], diagram["accuracy"], diagram["confidence"])
        if c > 0
    ]


def expected_calibration_error(
    probs: torch.Tensor, labels: torch.Tensor, bins: int = BINS
) -> float:
    """ECE (Guo et al. eq. 3): sum over bins of (images in bin / N) * |accuracy - confidence|,
    in [0, 1], for probabilities (N, C) and labels (N,)."""
    return sum(w * gap for w, gap in bin_gaps(reliability(probs, labels, bins)))


def max_calibration_error(probs: torch.Tensor, labels: torch.Tensor, bins: int = BINS) -> float:
    """MCE (Guo et al. eq. 5): the largest |accuracy - confidence| over non-empty bins."""
    return max(gap for _, gap in bin_gaps(reliability(probs, labels, bins)))


def brier_score(probs: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean over images of sum over classes (p_c - [c = label])^2, in [0, 2]."""
    probs, labels = _check(probs, labels, "probabilities")
    target = F.one_hot(labels, probs.shape[1]).double()
    return ((probs - target) ** 2).sum(1).mean().item()


def negative_log_likelihood(log_probs: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean -log p(true class) (nats per image) of log-probabilities (N, C)."""
    log_probs, labels = _check(log_probs, labels, "log-probabilities")
    return F.nll_loss(log_probs, labels).item()


def calibration(log_probs: torch.Tensor, labels: torch.Tensor, bins: int = BINS) -> dict:
    """ECE, MCE (both in [0, 1]), NLL (nats per image), Brier score, accuracy and the number
    of images n, of log-probabilities (N, C) (a network's outputs) and labels (N,)."""
    log_probs, labels = _check(log_probs, labels, "log-probabilities")
    probs = log_probs.exp()
    diagram = reliability(probs, labels, bins)
    gaps = bin_gaps(diagram)
    return {
        "ece": sum(w * gap for w, gap in gaps),
        "mce": max(gap for _, gap in gaps),
        "nll": negative_log_likelihood(log_probs, labels),
        "brier": brier_score(probs, labels),
        "accuracy": (probs.argmax(1) == labels).double().mean().item(),
        "n": len(labels),
    }


def temperature_scale(log_probs: torch.Tensor, temperature: float) -> torch.Tensor:
    """log_softmax(log_probs / T): the log-probabilities after temperature scaling, (N, C),
    in log_probs' dtype. T = 1 returns them as they are (bit for bit)."""
    if (
        not isinstance(temperature, (int, float))
        or isinstance(temperature, bool)
        or not math.isfinite(temperature)
        or temperature <= 0
    ):
        raise QuicknetsError(f"a temperature is a positive number, not {temperature!r}")
    if temperature == 1:
        return log_probs
    return torch.log_softmax(log_probs / temperature, dim=1)


def fit_temperature(log_probs: torch.Tensor, labels: torch.Tensor) -> float:
    """The T > 0 that minimises the NLL of temperature_scale(log_probs, T) against labels:
    held-out log-probabilities (N, C) and labels (N,). T > 1 softens over-confident
    predictions, T < 1 sharpens under-confident ones. L-BFGS on log T from T = 1, in float64;
    T is kept within TEMPERATURE_RANGE."""
    log_probs, labels = _check(log_probs, labels, "log-probabilities")
    low, high = (math.log(t) for t in TEMPERATURE_RANGE)
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS(
        [log_t],
        lr=1.0,
        max_iter=100,
        tolerance_grad=1e-12,
        tolerance_change=1e-15,
        line_search_fn="strong_wolfe",
    )

    def closure():
        opt.zero_grad()
        t = log_t.clamp(low, high).exp()
        loss = F.cross_entropy(log_probs / t, labels)  # = NLL of log_softmax(log_probs / T)
        loss.backward()
        return loss

    opt.step(closure)
    return float(log_t.detach().clamp(low, high).exp())


MEASURES = ("ece", "mce", "nll", "brier")  # what a record keeps, before and after


def calibration_summary(
    log_probs: torch.Tensor, labels: torch.Tensor, temperature: float = 1.0, bins: int = BINS
) -> dict:
    """What a run records of its calibration: {"temperature": T, "before": {ece, mce, nll,
    brier} of the network's own log-probabilities (N, C), "after": the same after
    temperature_scale(log_probs, T), or None where T is 1 (no temperature)}."""
    before = calibration(log_probs, labels, bins)
    after = None
    if temperature != 1:
        scaled = calibration(temperature_scale(log_probs, temperature), labels, bins)
        after = {k: scaled[k] for k in MEASURES}
    return {
        "temperature": float(temperature),
        "before": {k: before[k] for k in MEASURES},
        "after": after,
    }


def format_calibration(summary: dict) -> str:
    """One line: `calibration: ece 0.0421 -> 0.0113  mce ...  nll ...  brier ...  (temperature
    1.2345, fitted on val)`: before -> after the model's temperature; without one, the numbers
    alone and `(no temperature fitted: ...)`. ECE and MCE in [0, 1], NLL in nats per image."""
    before, after = summary["before"], summary.get("after")
    parts = [f"{k} {before[k]:.4f}" + (f" -> {after[k]:.4f}" if after else "") for k in MEASURES]
    note = (
        f"temperature {summary['temperature']:.4f}, fitted on val"
        if after
        else "no temperature fitted: training fits one when it has a validation split"
    )
    return "calibration: " + "  ".join(parts) + f"  ({note})"


def val_log_probabilities(model: nn.Module, data) -> torch.Tensor:
    """The network's own log-probabilities (N, C) of the validation split of `data`, with the
    model's preprocessing; a QuicknetsError where the data has none."""
    if data.val_images is None or len(data.val_images) == 0:
        raise QuicknetsError(
            "temperature scaling is fitted on a validation split, and this "
            "data has none (load it with val_split, e.g. 0.1)"
        )
    pre = preprocessing_of(model, data)
    return log_probabilities(model, pre.normalize(data.val_images)).cpu()


def set_temperature(model: nn.Module, data) -> float:
    """Fit T on the validation split of `data` (fit_temperature: NLL of the network's own
    log-probabilities) and keep it in the model's preprocessing, which save_model, export and
    every probability quicknets reports then carry; returns T. The weights and the network's
    outputs are unchanged. Raises QuicknetsError when the data has no validation split."""
    t = fit_temperature(val_log_probabilities(model, data), data.val_labels)
    model.preprocessing = dataclasses.replace(preprocessing_of(model, data), temperature=t)
    return t


def calibrate(model: nn.Module, data, bins: int = BINS) -> dict:
    """Fit a temperature on the validation split of `data`, keep it in the model (as
    set_temperature) and measure the test set before and after: {"temperature": T, "before":
    calibration(...), "after": calibration(...)} (see calibration). A temperature the model
    had is replaced: T is fitted on the network's own outputs. The images get the model's own
    preprocessing. Raises QuicknetsError when the data has no validation split (load it with
    val_split > 0)."""
    t = set_temperature(model, data)
    pre = preprocessing_of(model, data)
    test = log_probabilities(model, pre.normalize(data.test_images)).cpu()
    return {
        "temperature": t,
        "before": calibration(test, data.test_labels, bins),
        "after": calibration(temperature_scale(test, t), data.test_labels, bins),
    }
