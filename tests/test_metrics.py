"""Metrics against brute-force references."""
import torch
from torch.nn import functional as F

from quicknets.metrics import (confusion_matrix, evaluate, evaluate_tensors, format_results,
                               most_confused, per_class_accuracy)
from quicknets.models import network


def brute_confusion(y_true, y_pred, k):
    cm = [[0] * k for _ in range(k)]
    for t, p in zip(y_true.tolist(), y_pred.tolist()):
        cm[t][p] += 1
    return cm


def test_confusion_matrix_matches_brute_force():
    g = torch.Generator().manual_seed(0)
    y_true, y_pred = torch.randint(0, 7, (500,), generator=g), torch.randint(0, 7, (500,), generator=g)
    assert confusion_matrix(y_true, y_pred, 7).tolist() == brute_confusion(y_true, y_pred, 7)


def test_per_class_accuracy_and_most_confused():
    y_true = torch.tensor([0, 0, 0, 0, 1, 1, 2, 2, 2])
    y_pred = torch.tensor([0, 1, 1, 2, 1, 1, 0, 0, 2])
    cm = confusion_matrix(y_true, y_pred, 4)
    acc = per_class_accuracy(cm)
    assert acc[:3] == [0.25, 1.0, 1 / 3] and acc[3] != acc[3]  # class 3 has no images: nan
    pairs = most_confused(cm, ["a", "b", "c", "d"], top=2)
    assert pairs == [{"true": "a", "predicted": "b", "count": 2},
                     {"true": "c", "predicted": "a", "count": 2}]


def test_evaluate_is_exact_over_the_whole_split(tiny):
    torch.manual_seed(0)
    model = network("784-32-10")
    results = evaluate(model, tiny)
    x, y = tiny.normalize(tiny.test_images), tiny.test_labels
    with torch.no_grad():
        log_probs = model(x)
    assert results["n"] == len(y) == 100
    assert abs(results["loss"] - F.nll_loss(log_probs, y).item()) < 1e-5
    preds = log_probs.argmax(1)
    assert results["accuracy"] == (preds == y).sum().item() / len(y)
    assert results["confusion"] == brute_confusion(y, preds, 10)
    assert [r["class"] for r in results["per_class"]] == tiny.classes
    for i, row in enumerate(results["per_class"]):
        mask = y == i
        assert row["n"] == mask.sum().item()
        assert row["accuracy"] == (preds[mask] == i).sum().item() / mask.sum().item()
    same = evaluate_tensors(model, x, y)
    assert abs(same["loss"] - results["loss"]) < 1e-6 and same["accuracy"] == results["accuracy"]
    assert "test accuracy:" in format_results(results)


def test_evaluate_keeps_training_mode(tiny):
    model = network("784-32-10", dropout=0.5)
    model.train()
    evaluate(model, tiny)
    assert model.training
