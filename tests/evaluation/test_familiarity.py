"""Familiarity: each score against a brute-force reference, the threshold, AUROC and FPR95
against their definitions, outside images from every source, and a small real fit."""

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image

from quicknets.base.errors import QuicknetsError
from quicknets.data.idx import write_idx
from quicknets.data.preprocessing import Preprocessing
from quicknets.evaluation.familiarity import (
    METHODS,
    Familiarity,
    familiarity_scores,
    fit_familiarity,
    fit_statistics,
    load_familiarity,
    load_outside,
    logits_and_features,
    ood_metrics,
    reference_sets,
    save_familiarity,
    score,
    threshold_at,
)
from quicknets.networks.models import network


def features(n=300, d=6, classes=3, seed=0) -> tuple:
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % classes
    f = torch.randn(n, d, generator=g) + labels[:, None].float() * 2
    return f, labels


def test_msp_and_energy_are_their_formulas():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 0.5]])
    fitted = Familiarity("msp")
    expected = np.exp(2) / (np.exp(2) + 1 + np.exp(-1))
    assert score(fitted, logits, None).tolist() == pytest.approx([expected, 1 / 3], abs=1e-12)
    energy = score(Familiarity("energy"), logits, None)
    assert energy.tolist() == pytest.approx(
        [np.log(np.exp(2) + 1 + np.exp(-1)), 0.5 + np.log(3)], abs=1e-6
    )


def test_mahalanobis_against_a_loop_over_classes():
    f, labels = features()
    stats = fit_statistics("mahalanobis", f, labels, 3)
    x = f.double().numpy()
    means = np.stack([x[labels.numpy() == c].mean(0) for c in range(3)])
    centred = x - means[labels.numpy()]
    covariance = centred.T @ centred / len(x)
    assert stats["means"].numpy() == pytest.approx(means, abs=1e-5)
    assert stats["precision"].numpy() == pytest.approx(
        np.linalg.inv(covariance), rel=1e-4, abs=1e-4
    )
    queries, _ = features(20, seed=1)
    q = queries.double().numpy()
    precision = np.linalg.inv(covariance)
    expected = [-min((v - m) @ precision @ (v - m) for m in means) for v in q]
    got = score(Familiarity("mahalanobis", stats), None, queries)
    assert got.tolist() == pytest.approx(expected, rel=1e-4)


def test_mahalanobis_copes_with_dead_features():
    f, labels = features()
    f[:, 2] = 0  # a ReLU unit that never fires: a singular covariance
    stats = fit_statistics("mahalanobis", f, labels, 3)
    assert torch.isfinite(score(Familiarity("mahalanobis", stats), None, f)).all()
    with pytest.raises(QuicknetsError, match="class 3 has no training images"):
        fit_statistics("mahalanobis", f, labels, 4)


@pytest.mark.parametrize("k", [1, 3, 10])
def test_knn_against_sorted_distances(k):
    f, labels = features(200, d=5)
    stats = fit_statistics("knn", f, labels, 3, bank_size=50, seed=3)
    bank = stats["bank"]
    assert bank.shape == (50, 5)
    assert bank.dtype == torch.float16  # unit vectors: half the bytes
    assert torch.allclose(bank.float().norm(dim=1), torch.ones(50), atol=2e-3)
    queries, _ = features(30, d=5, seed=2)
    z = queries / queries.norm(dim=1, keepdim=True)
    expected = [-sorted(torch.dist(q, b).item() for b in bank.float())[k - 1] for q in z]
    got = score(Familiarity("knn", stats, k=k), None, queries)
    assert got.tolist() == pytest.approx(expected, abs=1e-5)
    with pytest.raises(QuicknetsError, match="k must be"):
        score(Familiarity("knn", stats, k=51), None, queries)


def test_threshold_lets_the_share_pass():
    scores = torch.arange(1, 101, dtype=torch.float64)
    assert threshold_at(scores, 0.95) == 6.0  # 6..100: exactly 95 pass
    assert threshold_at(scores, 1.0) == 1.0
    assert threshold_at(scores.flip(0), 0.9) == 11.0
    ties = torch.tensor([1.0, 2.0, 2.0, 2.0, 3.0])
    assert threshold_at(ties, 0.8) == 2.0  # 4 of 5 pass
    g = torch.Generator().manual_seed(0)
    for n in (7, 100, 1001):
        s = torch.randn(n, generator=g, dtype=torch.float64)
        for rate in (0.5, 0.9, 0.95, 0.99):
            t = threshold_at(s, rate)
            assert (s >= t).double().mean() >= rate - 1e-12
            assert (s > t).double().mean() < rate  # the largest such threshold
    with pytest.raises(QuicknetsError, match="pass_rate"):
        threshold_at(scores, 0.0)


def test_auroc_and_fpr95_against_their_definitions():
    g = torch.Generator().manual_seed(0)
    inside = torch.randn(400, generator=g, dtype=torch.float64).round(decimals=1) + 1.5
    outside = torch.randn(300, generator=g, dtype=torch.float64).round(decimals=1)
    result = ood_metrics(inside, outside)
    wins = (inside[:, None] > outside[None]).double() + 0.5 * (inside[:, None] == outside[None])
    assert result["auroc"] == pytest.approx(wins.mean().item(), abs=1e-12)  # Mann-Whitney
    t = threshold_at(inside, 0.95)
    assert result["fpr95"] == pytest.approx((outside >= t).double().mean().item(), abs=1e-12)
    assert ood_metrics(inside + 100, outside)["auroc"] == pytest.approx(1.0, abs=1e-12)
    assert (result["n_in"], result["n_out"]) == (400, 300)
    with pytest.raises(QuicknetsError, match="both"):
        ood_metrics(inside, outside[:0])


def test_flip_tta_features_are_the_mean_of_the_pair():
    plain = network("conv4-fc8", seed=0)
    tta = network("conv4-fc8", seed=0, flip_tta=True)
    x = torch.randint(0, 256, (5, 28, 28), dtype=torch.uint8)
    logits, f = logits_and_features(tta, x, layers=(-1,))
    mirrored = x.flip(-1)
    expected = (
        logits_and_features(plain, x, layers=(-1,))[1]
        + logits_and_features(plain, mirrored, layers=(-1,))[1]
    ) / 2
    assert f.shape == (5, 8) and logits.shape == (5, 10)
    assert torch.allclose(f, expected, atol=1e-6)
    assert tta.training  # put back in the mode it was in


def test_layers_are_the_inputs_of_linear_layers():
    model = network("784-32-16-10", seed=0)
    x = torch.randint(0, 256, (4, 28, 28), dtype=torch.uint8)
    assert logits_and_features(model, x, layers=(0,))[1].shape == (4, 784)
    one = logits_and_features(model, x, layers=(1,))[1]
    last = logits_and_features(model, x, layers=(-1,))[1]
    assert one.shape == (4, 32) and last.shape == (4, 16)
    both = logits_and_features(model, x)[1]  # every dense hidden layer, each normalised
    assert torch.allclose(
        both,
        torch.cat(
            [torch.nn.functional.normalize(one, dim=1), torch.nn.functional.normalize(last, dim=1)],
            1,
        ),
    )
    assert torch.equal(logits_and_features(model, x, layers=(1, 2))[1], both)
    cnn = network("conv4-fc8", seed=0)  # its one hidden dense layer: the penultimate features
    assert logits_and_features(cnn, x)[1].shape == (4, 8)
    for bad in [(3,), (), (-4,), (1.0,), (True,)]:
        with pytest.raises(QuicknetsError, match="layers are indices"):
            logits_and_features(model, x, layers=bad)
    with pytest.raises(QuicknetsError, match="shape"):
        logits_and_features(model, torch.zeros(4, 32, 32, dtype=torch.uint8))
    with pytest.raises(QuicknetsError, match="uint8"):
        logits_and_features(model, torch.zeros(4, 28, 28, dtype=torch.int64))
    # floats are read as classify reads them: unit (0..1) and pixels (0..255) give the same
    pixels = torch.randint(0, 256, (4, 1, 28, 28), dtype=torch.uint8)
    want = logits_and_features(model, pixels)[1]
    torch.testing.assert_close(logits_and_features(model, pixels.float() / 255)[1], want)
    torch.testing.assert_close(logits_and_features(model, pixels.float(), scale="pixels")[1], want)
    with pytest.raises(QuicknetsError, match="LogSoftmax"):
        logits_and_features(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 2)), x)


def test_outside_images_from_a_folder_an_npz_and_idx(tmp_path):
    pre = Preprocessing()
    g = np.random.default_rng(0)
    pictures = g.integers(0, 256, (3, 28, 28), dtype=np.uint8)
    (tmp_path / "photos" / "more").mkdir(parents=True)
    for i, p in enumerate(pictures):
        Image.fromarray(p).save(tmp_path / "photos" / ("more" if i == 2 else "") / f"{i}.png")
    (tmp_path / "photos" / ".hidden.png").write_bytes(b"not an image")
    images = load_outside(tmp_path / "photos", pre)
    assert images.shape == (3, 1, 28, 28) and images.dtype == torch.uint8
    # sorted paths: 0.png, 1.png, more/2.png; pixels as they are, as .npz and IDX are read
    assert torch.equal(images[:, 0], torch.from_numpy(pictures))
    rgb = g.integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    (tmp_path / "rgb").mkdir()
    for i, p in enumerate(rgb):
        Image.fromarray(p).save(tmp_path / "rgb" / f"{i}.png")
    colour = load_outside(tmp_path / "rgb", Preprocessing((3, 32, 32), (0.5,) * 3, (0.5,) * 3))
    assert torch.equal(colour, torch.from_numpy(rgb).permute(0, 3, 1, 2))

    x = g.integers(0, 256, (7, 28, 28), dtype=np.uint8)
    np.savez(tmp_path / "keras.npz", x_train=x[:2], x_test=x)
    assert torch.equal(load_outside(tmp_path / "keras.npz", pre)[:, 0], torch.from_numpy(x))
    np.savez(tmp_path / "one.npz", images=x[..., None].astype(np.float32))  # (N, H, W, 1)
    assert torch.equal(load_outside(tmp_path / "one.npz", pre)[:, 0], torch.from_numpy(x))
    write_idx(tmp_path / "t10k-images-idx3-ubyte", x)
    assert torch.equal(
        load_outside(tmp_path / "t10k-images-idx3-ubyte", pre)[:, 0], torch.from_numpy(x)
    )


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda d: d / "missing", "no file or folder"),
        (lambda d: d, "holds no image files"),
        (lambda d: (d / "bad.png").write_bytes(b"junk") and d, "cannot read .*bad.png"),
        (
            lambda d: np.savez(d / "a.npz", x_test=np.zeros((2, 32, 32), np.uint8)) or d / "a.npz",
            r"shape \(1, 32, 32\)",
        ),
        (
            lambda d: (
                np.savez(d / "a.npz", x_test=np.zeros((2, 28, 28, 3), np.uint8)) or d / "a.npz"
            ),
            r"shape \(3, 28, 28\)",
        ),
        (
            lambda d: np.savez(d / "a.npz", x_test=np.full((2, 28, 28), 0.5)) or d / "a.npz",
            "not pixels",
        ),
        (
            lambda d: np.savez(d / "a.npz", a=np.zeros(2), b=np.zeros(2)) or d / "a.npz",
            "single array",
        ),
        (lambda d: (d / "a.npz").write_bytes(b"junk") and d / "a.npz", "cannot read"),
        (lambda d: (d / "a.txt").write_text("x") and d / "a.txt", "not a folder of images"),
    ],
)
def test_bad_outside_data_is_one_clear_error(tmp_path, make, match):
    folder = tmp_path / "out"
    folder.mkdir()
    with pytest.raises(QuicknetsError, match=match):
        load_outside(make(folder), Preprocessing())


@pytest.mark.parametrize(
    "files, shape, first, message",
    [  # files: (name, (C, H, W)) written in order; first: the file the error names
        ([("a.png", (1, 32, 32))], (1, 28, 28), "a.png", "32x32 grey; the model takes 28x28 grey"),
        ([("a.png", (1, 20, 20))], (1, 28, 28), "a.png", "20x20 grey; the model takes 28x28 grey"),
        ([("a.png", (1, 28, 40))], (1, 28, 28), "a.png", "40x28 grey"),
        ([("a.png", (3, 28, 28))], (1, 28, 28), "a.png", "28x28 RGB; the model takes 28x28 grey"),
        ([("a.png", (1, 32, 32))], (3, 32, 32), "a.png", "32x32 grey; the model takes 32x32 RGB"),
        (  # a mixed folder: the first other file in sorted order is named, none is resized
            [
                ("a.png", (1, 28, 28)),
                ("b/c.png", (1, 28, 28)),
                ("b/d.png", (1, 100, 100)),
                ("e.png", (3, 28, 28)),
            ],
            (1, 28, 28),
            "b/d.png",
            "100x100 grey; the model takes 28x28 grey",
        ),
    ],
)
def test_a_folder_of_other_sizes_or_channels_is_refused_naming_the_first(
    tmp_path, files, shape, first, message
):
    g = np.random.default_rng(0)
    for name, (c, h, w) in files:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        pixels = g.integers(0, 256, (h, w, c), dtype=np.uint8)
        Image.fromarray(pixels[..., 0] if c == 1 else pixels).save(tmp_path / name)
    layout = "fashion" if shape[0] == 1 else "resize"  # as Fashion-MNIST's runs, as own RGB data
    pre = Preprocessing(shape, (0.5,) * shape[0], (0.5,) * shape[0], layout=layout)
    with pytest.raises(QuicknetsError) as e:
        load_outside(tmp_path, pre)
    line = str(e.value)
    assert "\n" not in line and line.startswith(f"{tmp_path / first} is {message}")


def test_outside_images_from_a_builtin_dataset(fashion):
    images = load_outside("fashion-mnist", Preprocessing())
    assert torch.equal(images[:, 0], fashion.test_images)  # its test set
    with pytest.raises(QuicknetsError, match="shape"):
        load_outside("fashion-mnist", Preprocessing((3, 32, 32), (0.5,), (0.5,)))


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32)])
def test_reference_sets(shape):
    sets = reference_sets(shape, crops=10, noise=20)
    assert {k: tuple(v.shape) for k, v in sets.items()} == {
        "digits": (1797, *shape),
        "photos": (10, *shape),
        "noise": (20, *shape),
    }
    assert all(v.dtype == torch.uint8 for v in sets.values())
    digits = sets["digits"].double()
    assert digits[..., 0, :].mean() < 1 and digits[..., 0].mean() < 1  # black border
    assert digits.amax((1, 2, 3)).min() > 200  # a light digit
    again = reference_sets(shape, crops=10, noise=20)
    assert all(torch.equal(sets[k], again[k]) for k in sets)  # seeded


@pytest.fixture(scope="module")
def trained(fashion):
    """The default network, 1 epoch on 10,000 Fashion-MNIST images, 2,000 held out."""
    from quicknets.training.loop import train

    data = dataclasses.replace(
        fashion,
        train_images=fashion.train_images[:10000],
        train_labels=fashion.train_labels[:10000],
        val_images=fashion.train_images[-2000:],
        val_labels=fashion.train_labels[-2000:],
    )
    model = network("784-256-128-64-10")
    train(model, data, epochs=1, quiet=True, threads=1)
    return model, data


@pytest.mark.parametrize("method", METHODS)
def test_every_method_fits_and_passes_its_share(trained, method):
    model, data = trained
    fitted = fit_familiarity(model, data, method=method, bank_size=1000)
    assert fitted.threshold_split == "val"
    val = familiarity_scores(model, data.val_images, fitted)
    assert (val >= fitted.threshold).double().mean() >= 0.95
    test = familiarity_scores(model, data.test_images[:2000], fitted)
    assert 0.85 < (test >= fitted.threshold).double().mean() < 1.0  # unseen, like val
    d = 256 + 128 + 64  # the outputs of every dense hidden layer
    sizes = {"msp": 0, "energy": 0, "mahalanobis": 10 * d + d * d, "knn": 1000 * d}
    assert fitted.size() == sizes[method]


def test_the_default_tells_noise_and_digits_from_fashion(trained):
    model, data = trained
    fitted = fit_familiarity(model, data)
    sets = reference_sets(crops=20, noise=200)
    inside = familiarity_scores(model, data.test_images[:2000], fitted)
    assert ood_metrics(inside, familiarity_scores(model, sets["noise"], fitted))["auroc"] > 0.95
    assert ood_metrics(inside, familiarity_scores(model, sets["digits"], fitted))["auroc"] > 0.9
    no_val = dataclasses.replace(data, val_images=None, val_labels=None)
    fitted = fit_familiarity(model, no_val, "msp")
    assert fitted.threshold_split == "train"  # a held-out part of train, never the test set
    # the held-out tenth: the last rows of the seeded order, none of them in the knn bank
    order = torch.randperm(10000, generator=torch.Generator().manual_seed(0))
    held = familiarity_scores(model, no_val.train_images[order[-1000:]], fitted)
    assert fitted.threshold == threshold_at(held)
    knn = fit_familiarity(model, no_val, bank_size=50000)  # the bank: every other image
    assert len(knn.statistics["bank"]) == 9000
    with pytest.raises(QuicknetsError, match="unknown familiarity method"):
        fit_familiarity(model, data, method="odin")


@pytest.mark.parametrize("method", ["knn", "mahalanobis", "energy"])
def test_a_saved_fit_gives_the_same_scores(trained, method, tmp_path):
    model, data = trained
    fitted = fit_familiarity(model, data, method=method, bank_size=1000)
    save_familiarity(fitted, tmp_path / "familiarity.pt")
    again = load_familiarity(tmp_path / "familiarity.pt")
    assert (
        again.describe() == fitted.describe()
        and again.statistics.keys() == fitted.statistics.keys()
    )
    images = torch.cat([data.test_images[:500], reference_sets(crops=10, noise=50)["noise"][:, 0]])
    assert torch.equal(
        familiarity_scores(model, images, again), familiarity_scores(model, images, fitted)
    )
    # the threshold passes its share of the validation images, before and after
    val = familiarity_scores(model, data.val_images, again)
    assert (val >= again.threshold).double().mean() >= 0.95
    assert (val >= again.threshold).double().mean() < 0.95 + 2 / len(val)  # the largest such


def test_bad_familiarity_files_are_one_line(tmp_path):
    import pickle

    with pytest.raises(QuicknetsError, match="no familiarity statistics at"):
        load_familiarity(tmp_path / "missing.pt")
    save_familiarity(Familiarity("knn", {"bank": torch.zeros(3, 2).half()}), tmp_path / "f.pt")
    data = (tmp_path / "f.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    (tmp_path / "code.pt").write_bytes(pickle.dumps(Preprocessing()))
    torch.save({"statistics": {}}, tmp_path / "bare.pt")
    for name, message in [
        ("cut.pt", "cannot read familiarity statistics"),
        ("code.pt", "cannot read familiarity statistics .*: it is corrupt or not a file of plain"),
        ("bare.pt", "familiarity statistics without a valid 'method'"),
    ]:
        with pytest.raises(QuicknetsError, match=message) as e:
            load_familiarity(tmp_path / name)
        assert "weights_only" not in str(e.value)  # torch's advice to run the file's code


def test_predict_returns_the_scores_and_who_passes(trained):
    from quicknets.evaluation.classification import familiarity_note, predict

    model, data = trained
    with pytest.raises(QuicknetsError, match="carries no familiarity statistics"):
        predict(model, data.test_images[:5], familiarity=True)
    assert familiarity_note(model, data.test_images[0]) == ""  # none fitted: no words
    model.familiarity = fitted = fit_familiarity(model, data)
    try:
        images = torch.cat([data.test_images[:100], reference_sets(noise=20)["noise"][:, 0]])
        classes, scores, familiar = predict(model, images, familiarity=True)
        assert torch.equal(classes, predict(model, images))
        assert torch.equal(scores, familiarity_scores(model, images, fitted))
        assert torch.equal(familiar, scores >= fitted.threshold) and familiar.dtype == torch.bool
        assert not familiar[100:].any()  # noise
        names, _, _ = predict(model, images[:3], names=True, familiarity=True)
        assert names == predict(model, images[:3], names=True)
        # floats in 0..1 (ToTensor's) are read as such: the same scores as their pixels
        unit = predict(model, images.float() / 255, familiarity=True)[1]
        torch.testing.assert_close(unit, scores)
        assert predict(model, images[:0], familiarity=True)[1].shape == (0,)
        notes = [familiarity_note(model, image) for image in images]
        for note, passes in zip(notes, familiar.tolist()):
            assert (note == "") is passes
        assert notes[-1] == (
            f"does not look like Fashion-MNIST (familiarity {scores[-1]:.4g} < threshold "
            f"{fitted.threshold:.4g})"
        )
    finally:
        del model.familiarity
