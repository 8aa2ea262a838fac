"""The data audit (audit/checks.py, audit/page.py, `quicknets audit`): each finding against a
brute-force reference, planted problems found on a small Fashion-MNIST CSV, and one error line
for each kind of bad input."""

import importlib.util
import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from quicknets.audit import checks as A
from quicknets.base.errors import QuicknetsError
from quicknets.cli import main

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "audit.py"


def _bench():
    spec = importlib.util.spec_from_file_location("audit_bench", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _random_images(n, seed=0, shape=(28, 28)):
    return torch.from_numpy(np.random.default_rng(seed).integers(0, 256, (n, *shape), np.uint8))


# -- exact duplicates: against a brute-force comparison of every pair --------------------------


def _brute_pairs(a, b=None):
    """[[first, copy]] within a (b None), or [[first index in a, j]] for each b[j] in a."""
    a = a.reshape(len(a), -1)
    if b is None:
        pairs = []
        for j in range(len(a)):
            same = [i for i in range(j) if torch.equal(a[i], a[j])]
            if same:
                pairs.append([same[0], j])
        return sorted(pairs)
    b = b.reshape(len(b), -1)
    return sorted(
        [
            [next(i for i in range(len(a)) if torch.equal(a[i], b[j])), j]
            for j in range(len(b))
            if any(torch.equal(a[i], b[j]) for i in range(len(a)))
        ]
    )


@pytest.mark.parametrize("shape", [(28, 28), (3, 8, 8), (5, 7)])
def test_exact_duplicates_match_every_pair_compared(shape):
    train, test = _random_images(60, 1, shape), _random_images(30, 2, shape)
    train[[7, 19, 40]] = train[3].clone()  # a group of four: three pairs with its first
    train[55] = train[50]
    test[[4, 9]] = test[0].clone()
    test[[12, 25]] = train[[19, 33]]  # a test image equal to a group, and to a single image
    test[26] = train[33]
    found = A.exact_duplicates(train, test)
    assert found["train"] == _brute_pairs(train) == [[3, 7], [3, 19], [3, 40], [50, 55]]
    assert found["test"] == _brute_pairs(test) == [[0, 4], [0, 9], [25, 26]]
    assert found["train_test"] == _brute_pairs(train, test) == [[3, 12], [33, 25], [33, 26]]


def test_one_changed_pixel_is_not_an_exact_duplicate():
    train = _random_images(10)
    train[5] = train[2]
    train[5, 27, 27] ^= 1
    assert A.exact_duplicates(train, train[:0])["train"] == []


# -- the kNN search, near duplicates and outliers -----------------------------------------------


def test_nearest_neighbours_match_cdist():
    x = torch.rand(300, 40, generator=torch.Generator().manual_seed(0))
    d, i = A.nearest_neighbours(x, k=5)
    ref = torch.cdist(x.double(), x.double())
    ref.fill_diagonal_(float("inf"))
    rd, ri = ref.topk(5, dim=1, largest=False)
    assert torch.allclose(d.double(), rd / 40**0.5, atol=1e-5)
    assert torch.equal(i, ri)


def test_the_search_in_blocks_gives_the_same(monkeypatch):
    x = torch.rand(97, 12, generator=torch.Generator().manual_seed(1))
    whole = A.nearest_neighbours(x, k=3)
    monkeypatch.setattr(A, "BLOCK", 97 * 5)  # 5 rows at a time, the last block short
    parts = A.nearest_neighbours(x, k=3)
    assert torch.equal(whole[1], parts[1]) and torch.allclose(whole[0], parts[0])


@pytest.mark.parametrize("shape", [(28, 28), (3, 9, 7), (1, 5, 5)])
def test_pooled_distance_is_at_most_the_full_one(shape):
    """So a near duplicate on full pixels is a candidate on pooled ones (odd sides too)."""
    a, b = _random_images(200, 3, shape), _random_images(200, 4, shape)
    pa, pb = A.pooled_features(a), A.pooled_features(b)
    pooled = (pa - pb).pow(2).mean(1).sqrt()
    full = (a.float() - b.float()).div(255).pow(2).reshape(200, -1).mean(1).sqrt()
    assert (pooled <= full + 1e-6).all()
    assert (pooled / full).mean() > 0.4  # and not vacuous: random pixels give about 0.5


def test_near_duplicates_are_found_and_exact_ones_left_out(fashion):
    train = fashion.test_images[:400].clone()
    test = fashion.test_images[400:600].clone()
    noise = torch.from_numpy(np.random.default_rng(0).integers(-6, 7, (28, 28))).int()
    train[10] = (train[3].int() + noise).clamp(0, 255).to(torch.uint8)  # near: rms ~0.014
    test[5] = (train[7].int() + noise).clamp(0, 255).to(torch.uint8)
    train[20] = train[4]  # exact: not a near duplicate
    images = torch.cat([train, test])
    near = A.near_duplicates(images, 400, A.nearest_neighbours(A.pooled_features(images)))
    rms = lambda a, b: float((a.float() - b.float()).div(255).pow(2).mean().sqrt())  # noqa: E731
    assert [p[:2] for p in near["train"]] == [[3, 10]]
    assert near["train"][0][2] == pytest.approx(rms(train[3], train[10]), abs=1e-4)
    assert [p[:2] for p in near["train_test"]] == [[7, 5]]
    assert near["test"] == []
    # the reference: every pair below the threshold, compared brute force
    flat = images.reshape(len(images), -1).float() / 255
    d = torch.cdist(flat, flat) / 28
    pairs = [(i, j) for i, j in (d < A.NEAR_RMS).nonzero().tolist() if i < j and d[i, j] > 0]
    assert len(pairs) == sum(len(v) for v in near.values())


def test_outliers_are_the_farthest_from_their_neighbours():
    images = torch.full((200, 28, 28), 100, dtype=torch.uint8)
    images += torch.from_numpy(np.random.default_rng(0).integers(0, 5, (200, 28, 28), np.uint8))
    images[17] = 255  # the odd one out, in train
    images[150] = 0  # and in test
    labels = torch.zeros(200, dtype=torch.long)
    found = A.outliers(
        A.nearest_neighbours(A.pooled_features(images)), labels, 120, ["a"], share=0.01
    )
    assert [(x["split"], x["index"]) for x in found] == [("train", 17), ("test", 30)]


# -- folds, balance, label issues ---------------------------------------------------------------


def test_groups_join_copies_of_copies_and_share_a_fold():
    groups = A.duplicate_groups(10, [[5, 8], [2, 5], [7, 9, 0.01]])
    assert groups.tolist() == [0, 1, 2, 3, 4, 2, 6, 7, 2, 7]
    labels = torch.arange(400) % 4
    groups = A.duplicate_groups(400, [[0, 100], [0, 204], [3, 399]])
    fold = A.assign_folds(labels, groups, 4, seed=0)
    assert fold[0] == fold[100] == fold[204] and fold[3] == fold[399]
    counts = torch.stack([torch.bincount(fold[labels == c], minlength=4) for c in range(4)])
    assert (counts.max(1).values - counts.min(1).values <= 2).all()  # stratified
    assert not torch.equal(fold, A.assign_folds(labels, groups, 4, seed=1))  # seeded


def test_the_imbalance_line_names_the_classes_and_their_counts(tiny):
    import dataclasses

    y = tiny.train_labels
    keep = (y != 3) | (torch.cumsum(y == 3, 0) <= 10)
    few = dataclasses.replace(tiny, train_images=tiny.train_images[keep], train_labels=y[keep])
    counts = torch.bincount(few.train_labels).tolist()
    large = max(range(10), key=lambda c: (counts[c], -c))
    (line,) = [x for x in A.summary_lines(A.audit(few, labels=False)) if x.startswith("classes")]
    assert line == (
        f"classes: imbalanced, in train the largest class, {large}, has {counts[large]} images "
        f"and the smallest, 3, 10: a ratio of {counts[large] / 10:.2f}; train with "
        "--class-weights auto to weigh them evenly"
    )


def test_class_counts_and_imbalance():
    labels = torch.tensor([0] * 30 + [1] * 10 + [2] * 20)
    counts = A.class_counts(labels, ["a", "b", "c"])
    assert counts == {"a": 30, "b": 10, "c": 20}
    assert A.imbalance(counts) == {
        "ratio": 3.0,
        "imbalanced": True,
        "largest": "a",
        "smallest": "b",
    }
    assert A.imbalance({"a": 10, "b": 12})["imbalanced"] is False
    assert A.imbalance({"a": 10, "b": 0})["ratio"] is None  # an empty class: infinite


def test_label_issues_rank_confidently_wrong_labels_first():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 100)
    probs = np.full((300, 3), 0.05)
    probs[np.arange(300), labels] = 0.9
    wrong = [4, 150, 260]
    labels_given = labels.copy()
    labels_given[wrong] = (labels[wrong] + 1) % 3
    probs[120, :] = [0.3, 0.4, 0.3]  # unsure, but of its own label
    probs += rng.uniform(0, 0.01, probs.shape)
    probs /= probs.sum(1, keepdims=True)
    issues = A.label_issues(torch.from_numpy(labels_given), probs, ["x", "y", "z"], "train")
    assert sorted(i["index"] for i in issues[:3]) == wrong
    first = issues[0]
    assert first["label"] == ["x", "y", "z"][labels_given[first["index"]]]
    assert first["suggested"] == ["x", "y", "z"][labels[first["index"]]]
    assert first["score"] == pytest.approx(
        probs[first["index"], labels_given[first["index"]]], abs=1e-4
    )
    assert [i["score"] for i in issues] == sorted(i["score"] for i in issues)


# -- end to end: planted problems in a small Fashion-MNIST CSV ------------------------------------


@pytest.fixture(scope="module")
def planted(tmp_path_factory, fashion):
    bench = _bench()
    folder = tmp_path_factory.mktemp("planted")
    truth = bench.plant(
        fashion.test_images[:2000].numpy(),
        fashion.test_labels[:2000].numpy(),
        seed=1,
        flips=20,
        duplicates=6,
        overlaps=4,
    )
    bench.write_csv(folder / "planted_train.csv", *truth["train"])
    bench.write_csv(folder / "planted_test.csv", *truth["test"])
    return folder, truth, bench


def test_the_audit_finds_what_was_planted(planted, capsys):
    folder, truth, _ = planted
    out = folder / "page.html"
    assert main(["audit", str(folder / "planted_train.csv"), "--json", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    found = json.loads(captured.out)  # one JSON object, the rest on stderr
    assert found["duplicates"]["train"] == truth["duplicates"]
    assert found["duplicates"]["train_test"] == truth["train_test"]
    assert found["duplicates"]["test"] == []
    top = {x["index"] for x in found["label_issues"][:40]}
    assert len(top & set(truth["flipped"])) >= 12  # 60% of the 20 among twice as many suspects
    assert found["sizes"] == {"train": 1606, "test": 404}
    assert found["method"]["network"] == "784-256-10" and found["method"]["folds"] == A.FOLDS
    assert json.loads(out.with_suffix(".json").read_text()) == found
    page = out.read_text()
    assert page.count("data:image/png;base64,") >= 4
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)  # nothing fetched
    assert "Likely label errors in train" in page


def test_the_summary_has_one_line_per_kind(planted, capsys, tmp_path):
    folder, _, _ = planted
    code = main(
        [
            "audit",
            str(folder / "planted_train.csv"),
            "--no-labels",
            "--runs-dir",
            str(tmp_path / "runs"),
        ]
    )
    lines = capsys.readouterr().out.splitlines()
    assert code == 0
    kinds = [line.split(":")[0] for line in lines]
    assert kinds == [
        "data",
        "duplicates",
        "near duplicates",
        "classes",
        "outliers",
        "wrote",
        "open",
    ]
    assert lines[1] == "duplicates: 6 in train, 0 in test, 4 test images also in train"
    assert (tmp_path / "runs" / "audits" / "planted.html").is_file()


# -- bad input: one error line each ------------------------------------------------------------


def _error(args, capsys):
    code = main(args)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def test_one_class_is_refused(tmp_path, capsys):
    bench = _bench()
    images = _random_images(30).numpy()
    bench.write_csv(tmp_path / "one_train.csv", images, np.zeros(30, np.int64))
    bench.write_csv(tmp_path / "one_test.csv", images[:5], np.zeros(5, np.int64))
    message = _error(["audit", str(tmp_path / "one_train.csv")], capsys)
    assert "single class" in message  # the loader's word: a classifier needs two


def test_one_class_in_the_training_split_is_refused(tiny):
    import dataclasses

    keep = tiny.train_labels == 3
    one = dataclasses.replace(
        tiny, train_images=tiny.train_images[keep], train_labels=tiny.train_labels[keep]
    )
    with pytest.raises(
        QuicknetsError,
        match=r"has 1 class in its training split \(3\); an "
        "audit needs 2 or more",
    ):
        A.audit(one, labels=False)


@pytest.mark.parametrize("name", ["no/such/folder", "missing.csv", "nope.npz"])
def test_a_missing_path_is_refused(name, tmp_path, capsys):
    message = _error(["audit", str(tmp_path / name)], capsys)
    assert "no file or folder" in message


def test_too_large_for_memory_is_refused_before_reading(planted, capsys, monkeypatch):
    folder, _, _ = planted
    monkeypatch.setattr(A, "available_memory", lambda: 50 * 2**20)  # 50 MiB
    import quicknets.data.loading

    monkeypatch.setattr(quicknets.data.loading, "read_source", lambda *a, **k: pytest.fail("read"))
    message = _error(["audit", str(folder / "planted_train.csv")], capsys)
    assert "MiB of memory" in message and "and 50 MiB are available" in message


def test_the_estimate_is_near_the_truth(planted):
    folder, _, _ = planted
    images, pixels, _ = A.estimate_images(folder / "planted_train.csv", folder / "planted_test.csv")
    assert pixels == 784
    assert abs(images - 2010) < 0.1 * 2010


def _image_folder(root, counts, size=(40, 30), mode="RGB"):
    from PIL import Image

    for c, n in enumerate(counts):
        (root / f"class{c}").mkdir(parents=True)
        for i in range(n):
            Image.new(mode, size, (c * 40, i % 256, 0)).save(root / f"class{c}" / f"{i}.png")


def test_the_estimate_of_a_folder_reads_one_header(tmp_path):
    _image_folder(tmp_path / "pics" / "train", [7, 5])
    _image_folder(tmp_path / "pics" / "test", [2, 2])
    (tmp_path / "pics" / "train" / "class0" / ".DS_Store").write_bytes(b"x")  # hidden
    assert A.estimate_images(tmp_path / "pics") == (16, 3600, 2 * 16 * 3600)  # 40x30x3
    assert A.estimate_images(tmp_path / "pics", image_size=8, channels=1)[:2] == (16, 64)
    (tmp_path / "empty").mkdir()
    assert A.estimate_images(tmp_path / "empty") is None  # the loader says why


def test_a_folder_too_large_for_memory_is_refused_before_decoding(tmp_path, capsys, monkeypatch):
    """A folder of photos: its size is known from its listing and one header, so it is
    refused before its images are decoded (which alone could exhaust the memory)."""
    _image_folder(tmp_path / "pics", [30, 30], size=(256, 256))
    monkeypatch.setattr(A, "available_memory", lambda: 100 * 2**20)  # 100 MiB
    import quicknets.data.imagefolders as folders

    monkeypatch.setattr(folders, "decode_images", lambda *a, **k: pytest.fail("decoded"))
    message = _error(["audit", str(tmp_path / "pics")], capsys)
    need = A.memory_needed(60, 256 * 256 * 3) + 2 * 60 * 256 * 256 * 3
    assert message == (
        f"error: auditing {tmp_path / 'pics'} needs about {need / 2**20:.0f} MiB of memory "
        "(~60 images of 196608 values, read and held as float32 for the neighbour search and "
        "the networks), and 100 MiB are available; audit a part of it"
    )
    # brought to 16x16 grey, the same folder fits
    monkeypatch.setattr(A, "available_memory", lambda: 2**40)
    assert A.estimate_images(tmp_path / "pics", None, 16, 1)[:2] == (60, 256)


def test_the_estimate_reads_npz_headers(tmp_path):
    x = np.zeros((300, 32, 32, 3), np.uint8)
    np.savez(
        tmp_path / "d.npz", x_train=x, y_train=np.zeros(300), x_test=x[:50], y_test=np.zeros(50)
    )
    assert A.estimate_images(tmp_path / "d.npz")[:2] == (350, 3072)
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    assert A.estimate_images(tmp_path / "bad.npz") is None  # the loader gives the error
    assert A.estimate_images(tmp_path) is None  # a folder: checked once loaded


def test_too_large_when_loaded_is_refused(tiny, monkeypatch):
    monkeypatch.setattr(A, "available_memory", lambda: 2**20)
    with pytest.raises(QuicknetsError, match="MiB of memory .* and 1 MiB are available"):
        A.audit(tiny, labels=False)


def test_a_missing_cleanlab_names_the_extra(tiny, monkeypatch):
    monkeypatch.setitem(sys.modules, "cleanlab.filter", None)  # import fails as if absent
    with pytest.raises(QuicknetsError, match=r"pip install 'quicknets\[audit\]'"):
        A.audit(tiny)
    assert A.audit(tiny, labels=False).label_issues == []  # without labels it is not needed


def test_bad_folds_are_refused(planted, capsys):
    folder, _, _ = planted
    assert "--folds must be 2 or more" in _error(
        ["audit", str(folder / "planted_train.csv"), "--folds", "1"], capsys
    )


def test_help_gives_the_defaults_audit_uses(capsys):
    with pytest.raises(SystemExit):
        main(["audit", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert f"(default: {A.FOLDS})" in text and f"(default: {A.EPOCHS})" in text
    assert f"(default: {A.NETWORK}," in text


@pytest.mark.parametrize(
    "flags, said",
    [
        (["--network", "foo"], "unknown network 'foo'"),
        (["--network", "conv4-fc8x"], "unknown layer 'fc8x'"),
        (["--network", "784-16-11"], "the last the number of classes 10"),
        (["--seed", "-1"], "--seed must be at least 0, got -1"),
        (["--out", "page.txt"], "give a name ending in .html, not page.txt"),
    ],
)
def test_bad_settings_are_refused_before_the_slow_steps(planted, capsys, monkeypatch, flags, said):
    folder, _, _ = planted

    def reached(*args, **kwargs):
        raise AssertionError("the neighbour search started before the settings were checked")

    monkeypatch.setattr(A, "nearest_neighbours", reached)
    assert said in _error(["audit", str(folder / "planted_train.csv"), *flags], capsys)


def test_check_fold_settings_takes_what_the_folds_take(tiny):
    A.check_fold_settings(tiny)  # the default network, its ends fitted to the data
    A.check_fold_settings(tiny, f"{tiny.preprocessing.features}-8-{len(tiny.classes)}", seed=3)
    with pytest.raises(QuicknetsError, match="unknown network"):
        A.check_fold_settings(tiny, "nonsense")
