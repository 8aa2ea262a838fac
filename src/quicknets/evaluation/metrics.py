"""Test a network: exact loss and accuracy over a whole split, per class, and what it confuses.

    results = evaluate(model, data)            # the test set; split="val" for the validation set
    results["accuracy"], results["per_class"], results["confusion"], results["most_confused"]

The images get the model's own preprocessing (model.preprocessing, set by training and saved with
it), so a model evaluated on data loaded with other settings still sees what it was trained on.

The loss is the mean over every image (summed per batch, divided once), not a mean of batch
means. The pure functions below take labels and predictions, so they are checked against a
brute-force reference in the tests. The metrics' names and directions are in metric_names.py,
which does not import torch.
"""

import torch
from torch import nn
from torch.nn import functional as F

from quicknets.base.errors import QuicknetsError
from quicknets.data.loading import Dataset
from quicknets.data.preprocessing import preprocessing_of
from quicknets.evaluation.calibration import calibration_summary, format_calibration
from quicknets.networks.models import log_probabilities  # here too: where callers look for it


def confusion_matrix(y_true: torch.Tensor, y_pred: torch.Tensor, k: int) -> torch.Tensor:
    """(k, k) counts: row = true class, column = predicted class."""
    return torch.bincount(y_true.long() * k + y_pred.long(), minlength=k * k).reshape(k, k)


def per_class_accuracy(cm: torch.Tensor) -> list:
    """Recall per class: the diagonal over the row sums; None (undefined, null in JSON) for a
    class with no images."""
    totals = cm.sum(1).tolist()
    return [cm[i, i].item() / totals[i] if totals[i] else None for i in range(len(cm))]


# largest class / smallest class (images in a split) from which the classes are imbalanced: the
# per-class table then adds the balanced accuracy, and the audit calls the training set so
IMBALANCE_RATIO = 1.5


def balanced_accuracy(cm: torch.Tensor) -> float:
    """The mean recall over the classes that have images (scikit-learn's
    balanced_accuracy_score): each class counts the same, however many images it has."""
    recalls = [a for a in per_class_accuracy(cm) if a is not None]
    return sum(recalls) / len(recalls)


def imbalanced(counts: list, ratio: float = IMBALANCE_RATIO) -> bool:
    """Whether the largest of `counts` (images per class) is at least `ratio` times the
    smallest; a class with none makes it so (an infinite ratio)."""
    return max(counts) >= ratio * min(counts)


def most_confused(cm: torch.Tensor, classes: list, top: int = 5) -> list:
    """The off-diagonal cells with the most images: [{true, predicted, count}], largest first."""
    pairs = [
        (cm[i, j].item(), i, j)
        for i in range(len(cm))
        for j in range(len(cm))
        if i != j and cm[i, j] > 0
    ]
    pairs.sort(key=lambda p: (-p[0], p[1], p[2]))
    return [{"true": classes[i], "predicted": classes[j], "count": n} for n, i, j in pairs[:top]]


def evaluate(model: nn.Module, data: Dataset, split: str = "test") -> dict:
    """Loss (mean NLL per image, unweighted), accuracy, balanced accuracy (the mean of the
    per-class accuracies), per-class accuracy, confusion matrix (k, k), the most-confused pairs
    and the calibration of `model` on a split ("test", "val" or "train") of `data`, its images
    normalised by the model's own preprocessing. A class with no images in the split has
    accuracy None (undefined). Raises QuicknetsError for a split the data lacks or that holds
    no images, or data whose shape or classes are not the model's.

    The loss and accuracy are the network's own (its log-probabilities as trained: comparable
    with the history's, and a temperature never changes the top class). "calibration" is
    calibration.calibration_summary: ECE, MCE, NLL and Brier score before and, where the
    model's preprocessing has a temperature, after it; "ece" is the ECE of the probabilities
    the model reports (after the temperature where it has one), the record's test_ece."""
    if not isinstance(model, nn.Module):
        raise QuicknetsError(f"evaluate needs a network, not {type(model).__name__}")
    if not isinstance(data, Dataset):
        raise QuicknetsError(
            f"evaluate needs a dataset (quicknets.load_dataset(...)), not {type(data).__name__}"
        )
    if split not in ("test", "val", "train"):
        raise QuicknetsError(f"split must be test, val or train, not {split!r}")
    images, labels = getattr(data, f"{split}_images"), getattr(data, f"{split}_labels")
    if images is None:
        raise QuicknetsError(f"this dataset has no {split} split (set val_split to make one)")
    if len(labels) == 0:  # an accuracy of no images is undefined, not 0
        raise QuicknetsError(f"the {split} split of {data.name} holds no images")
    pre = preprocessing_of(model, data)
    log_probs = log_probabilities(model, pre.normalize(images)).cpu()
    preds = log_probs.argmax(1)
    k = len(data.classes)
    cm = confusion_matrix(labels, preds, k)
    per_class = per_class_accuracy(cm)
    calibration = calibration_summary(log_probs, labels, pre.temperature)
    return {
        "split": split,
        "n": len(labels),
        "loss": F.nll_loss(log_probs, labels, reduction="sum").item() / len(labels),
        "accuracy": (preds == labels).sum().item() / len(labels),
        "balanced_accuracy": balanced_accuracy(cm),
        "ece": (calibration["after"] or calibration["before"])["ece"],
        "calibration": calibration,
        "per_class": [
            {"class": c, "accuracy": a, "n": int(cm[i].sum())}
            for i, (c, a) in enumerate(zip(data.classes, per_class))
        ],
        "confusion": cm.tolist(),
        "most_confused": most_confused(cm, data.classes),
        "classes": list(data.classes),
    }


def format_results(results: dict) -> str:
    """Test accuracy and loss, the calibration line (calibration.format_calibration), then a
    per-class table ("-" for the undefined accuracy of a class with no images), the balanced
    accuracy where the split's classes are imbalanced (counts IMBALANCE_RATIO apart or more)
    and the most-confused pairs."""
    lines = [
        f"{results['split']} accuracy: {results['accuracy']:.4f}  "
        f"{results['split']} loss: {results['loss']:.4f}  images: {results['n']}",
    ]
    if results.get("calibration"):  # records before calibration was measured have none
        lines.append(format_calibration(results["calibration"]))
    lines.append(f"{'class':<14} {'accuracy':>8} {'images':>7}")
    lines += [
        f"{row['class']:<14} {_share(row['accuracy']):>8} {row['n']:>7}"
        for row in results["per_class"]
    ]
    if imbalanced([row["n"] for row in results["per_class"]]) and "balanced_accuracy" in results:
        lines.append(
            f"balanced accuracy: {results['balanced_accuracy']:.4f} (the mean of the "
            "per-class accuracies: the classes are imbalanced)"
        )
    if results["most_confused"]:
        lines.append(
            "most confused (true -> predicted: count): "
            + ", ".join(
                f"{p['true']} -> {p['predicted']}: {p['count']}" for p in results["most_confused"]
            )
        )
    return "\n".join(lines)


def _share(value) -> str:
    """An accuracy to 4 places; "-" where it is undefined (None; NaN in records written before
    JSON was strict)."""
    return "-" if value is None or value != value else f"{value:.4f}"
