"""Metrics against brute-force references."""

import dataclasses

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from quicknets.base.errors import QuicknetsError
from quicknets.evaluation.metrics import (
    balanced_accuracy,
    confusion_matrix,
    evaluate,
    format_results,
    imbalanced,
    most_confused,
    per_class_accuracy,
)
from quicknets.networks.models import network


def brute_confusion(y_true, y_pred, k):
    cm = [[0] * k for _ in range(k)]
    for t, p in zip(y_true.tolist(), y_pred.tolist()):
        cm[t][p] += 1
    return cm


def test_confusion_matrix_matches_brute_force():
    g = torch.Generator().manual_seed(0)
    y_true, y_pred = (
        torch.randint(0, 7, (500,), generator=g),
        torch.randint(0, 7, (500,), generator=g),
    )
    assert confusion_matrix(y_true, y_pred, 7).tolist() == brute_confusion(y_true, y_pred, 7)


def test_per_class_accuracy_and_most_confused():
    y_true = torch.tensor([0, 0, 0, 0, 1, 1, 2, 2, 2])
    y_pred = torch.tensor([0, 1, 1, 2, 1, 1, 0, 0, 2])
    cm = confusion_matrix(y_true, y_pred, 4)
    acc = per_class_accuracy(cm)
    assert acc == [0.25, 1.0, 1 / 3, None]  # class 3 has no images: undefined
    pairs = most_confused(cm, ["a", "b", "c", "d"], top=2)
    assert pairs == [
        {"true": "a", "predicted": "b", "count": 2},
        {"true": "c", "predicted": "a", "count": 2},
    ]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_balanced_accuracy_is_sklearns(seed):
    """The mean recall over the classes with images, as balanced_accuracy_score; class 6 has
    no true images (predicted all the same: sklearn warns and leaves it out, as we do)."""
    import warnings

    from sklearn.metrics import balanced_accuracy_score

    g = torch.Generator().manual_seed(seed)
    y_true = torch.cat([torch.randint(0, 6, (300,), generator=g), torch.zeros(200, dtype=int)])
    y_pred = torch.where(torch.rand(500, generator=g) < 0.7, y_true, torch.randint(0, 7, (500,)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "y_pred contains classes not in y_true"
        expected = balanced_accuracy_score(y_true.numpy(), y_pred.numpy())
    assert balanced_accuracy(confusion_matrix(y_true, y_pred, 7)) == pytest.approx(
        expected, rel=1e-12
    )


def test_imbalanced_means_counts_1_5_apart_or_an_empty_class():
    assert not imbalanced([100, 100, 67])
    assert imbalanced([100, 100, 66]) and imbalanced([150, 100]) and imbalanced([5, 0])
    assert not imbalanced([149, 100])


def test_the_table_adds_balanced_accuracy_where_the_classes_are_imbalanced(tiny):
    model = network("784-32-10", seed=0)
    results = evaluate(model, tiny)  # tiny's test set: 10 images of each class
    y = tiny.test_labels
    with torch.no_grad():
        preds = model(tiny.normalize(tiny.test_images)).argmax(1)
    recalls = [(preds[y == c] == c).double().mean().item() for c in range(10)]
    assert results["balanced_accuracy"] == pytest.approx(sum(recalls) / 10, rel=1e-12)
    assert "balanced accuracy" not in format_results(results)  # balanced: the accuracy says it
    keep = (y != 3) | (torch.arange(len(y)) % 2 == 0)  # class 3 loses half its images
    half = dataclasses.replace(tiny, test_images=tiny.test_images[keep], test_labels=y[keep])
    results = evaluate(model, half)
    line = [x for x in format_results(results).splitlines() if x.startswith("balanced")]
    assert line == [
        f"balanced accuracy: {results['balanced_accuracy']:.4f} (the mean of the per-class "
        "accuracies: the classes are imbalanced)"
    ]
    old = {k: v for k, v in results.items() if k != "balanced_accuracy"}  # an earlier record
    assert "balanced" not in format_results(old)


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
    assert "test accuracy:" in format_results(results)


def test_evaluate_keeps_training_mode(tiny):
    model = network("784-32-10", dropout=0.5)
    model.train()
    evaluate(model, tiny)
    assert model.training


def test_evaluate_uses_the_models_own_normalisation(tiny_dir):
    from quicknets.data.loading import load_dataset
    from quicknets.data.preprocessing import Preprocessing

    data = load_dataset("mnist", tiny_dir, mean=0.2, std=0.3, verify=False)
    default = load_dataset("mnist", tiny_dir, verify=False)
    model = network("784-32-10").eval()
    model.preprocessing = data.preprocessing
    assert evaluate(model, default) == evaluate(model, data)
    bare = network("784-32-10").eval()  # no preprocessing of its own: the data's is used
    assert evaluate(bare, default)["loss"] != evaluate(bare, data)["loss"]
    model.preprocessing = Preprocessing((1, 14, 14), classes=tuple(data.classes))
    with pytest.raises(QuicknetsError, match="images of shape"):
        evaluate(model, data)
    model.preprocessing = Preprocessing(classes=tuple("abcdefghij"), dataset="letters")
    with pytest.raises(QuicknetsError, match="trained on the classes of letters"):
        evaluate(model, data)


@pytest.mark.parametrize(
    "model, data, message",
    [
        (None, "tiny", "evaluate needs a network"),
        ("net", None, "evaluate needs a dataset"),
        ("net", "tiny", "split must be"),
    ],
)
def test_wrong_inputs(tiny, model, data, message):
    model = network("784-10") if model else None
    data = tiny if data else None
    with pytest.raises(QuicknetsError, match=message):
        evaluate(model, data, "holdout" if model is not None and data is not None else "test")


def test_a_class_without_test_images_is_undefined_and_every_record_is_strict_json(tmp_path, capsys):
    """A class missing from the test set: "-" on screen and in the report, null in
    results.json; every JSON file of the run folder parses with a strict reader."""
    import json

    from quicknets.cli import main
    from quicknets.data.idx import write_idx

    folder = tmp_path / "gap"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for split, labels in (("train", np.arange(200) % 4), ("t10k", np.arange(30) % 3)):
        images = rng.integers(0, 60, size=(len(labels), 28, 28), dtype=np.uint8)
        for i, c in enumerate(labels):
            images[i, 2 + 2 * c : 4 + 2 * c, 4:24] = 220
        write_idx(folder / f"{split}-images-idx3-ubyte", images)
        write_idx(folder / f"{split}-labels-idx1-ubyte", labels.astype(np.uint8))
    runs = tmp_path / "runs"
    assert (
        main(
            [
                "train",
                "--dataset",
                "mnist",
                "--data-dir",
                str(folder),
                "--no-verify",
                "--layers",
                "784-16-10",
                "--epochs",
                "1",
                "--val-split",
                "0.2",
                "--threads",
                "1",
                "--runs-dir",
                str(runs),
                "--quiet",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    row = [line for line in out.splitlines() if line.startswith("3 ")]
    assert row and row[0].split()[1:] == ["-", "0"], out  # class "3": accuracy "-", 0 images
    (run,) = runs.iterdir()

    def refuse(name):
        raise ValueError(f"not strict JSON: {name}")

    files = sorted(run.rglob("*.json"))
    assert {p.name for p in files} >= {"config.json", "meta.json", "history.json", "results.json"}
    parsed = {p.name: json.loads(p.read_text(), parse_constant=refuse) for p in files}
    per_class = parsed["results.json"]["per_class"]
    assert per_class[3] == {"class": "3", "accuracy": None, "n": 0}
    assert all(r["accuracy"] is not None for r in per_class[:3])
    assert main(["evaluate", run.name, "--runs-dir", str(runs)]) == 0
    out = capsys.readouterr().out
    assert [line.split()[1:] for line in out.splitlines() if line.startswith("3 ")] == [["-", "0"]]
    assert main(["report", run.name, "--runs-dir", str(runs)]) == 0
    assert '<td class="num">-</td><td class="num">0</td>' in (run / "report.html").read_text()


def test_an_empty_split_is_refused_not_scored_zero(tiny):
    from quicknets.data.loading import Dataset

    empty = Dataset(
        "empty",
        tiny.classes,
        tiny.train_images,
        tiny.train_labels,
        tiny.test_images[:0],
        tiny.test_labels[:0],
    )
    with pytest.raises(QuicknetsError, match="the test split of empty holds no images"):
        evaluate(network("784-10"), empty)
