"""load_dataset: the real Fashion-MNIST, the search order, verification, cache, splits, fetching."""

import dataclasses
import gzip
import hashlib
import os
import shutil

import numpy as np
import pytest
import torch

from conftest import FASHION_DIR, make_idx_dataset
from quicknets.base.errors import QuicknetsError
from quicknets.data import builtin, datasets, fetch
from quicknets.data import loading as data_module
from quicknets.data.idx import read_idx
from quicknets.data.loading import load_dataset, normalize


def test_real_fashion_mnist(fashion):
    assert fashion.train_images.shape == (60000, 28, 28)
    assert fashion.test_images.shape == (10000, 28, 28)
    assert fashion.train_images.dtype == torch.uint8
    assert fashion.train_labels.bincount().tolist() == [6000] * 10
    assert fashion.test_labels.bincount().tolist() == [1000] * 10
    assert fashion.classes[0] == "T-shirt/top" and fashion.classes[-1] == "Ankle Boot"
    assert fashion.source == str(FASHION_DIR)


def test_normalize_whole_batch_to_minus_one_one():
    x = torch.tensor([[[0, 255], [51, 204]]], dtype=torch.uint8)
    out = normalize(x)
    assert out.shape == (1, 1, 2, 2)
    assert out.flatten().tolist() == pytest.approx([-1.0, 1.0, -0.6, 0.6])
    assert normalize(x, 0.0, 1.0).max() == 1.0


def test_validation_split_is_seeded_and_disjoint(tiny_dir):
    a = load_dataset("mnist", tiny_dir, val_split=0.2, seed=1, verify=False)
    b = load_dataset("mnist", tiny_dir, val_split=0.2, seed=1, verify=False)
    c = load_dataset("mnist", tiny_dir, val_split=0.2, seed=2, verify=False)
    full = load_dataset("mnist", tiny_dir, verify=False)
    assert len(a.val_labels) == 60 and len(a.train_labels) == 240
    assert torch.equal(a.val_images, b.val_images)
    assert not torch.equal(a.val_images, c.val_images)
    # every training image lands in exactly one of the two parts
    rows = {bytes(x.numpy()) for x in full.train_images}
    parts = [bytes(x.numpy()) for x in torch.cat([a.train_images, a.val_images])]
    assert len(parts) == len(full.train_images) and set(parts) == rows
    assert full.val_images is None


@pytest.mark.parametrize("stratify", [True, False])
def test_a_dataset_read_once_splits_per_seed_as_loading_it_with_that_seed(tiny_dir, stratify):
    """split_dataset (setup_sharing reads the data once, then splits per seed) gives each seed
    the split and normalisation that loading the data with that seed gives, bit for bit: the
    same tensors, the same first shuffled batch, the same record; and the split itself is the
    one taken from the whole training set, as loading always took it."""
    from quicknets.data.loading import (
        channel_stats,
        describe,
        random_split,
        split_dataset,
        stratified_split,
    )

    read = load_dataset("mnist", tiny_dir, verify=False)
    before = [t.clone() for t in (read.train_images, read.train_labels)]
    for seed, fraction, mean, std in [
        (0, 0.2, 0.5, 0.5),
        (3, 0.2, "auto", "auto"),
        (7, 0.1, 0.1, 2),
    ]:
        loaded = load_dataset(
            "mnist", tiny_dir, fraction, seed, mean, std, verify=False, stratify=stratify
        )
        split = split_dataset(read, fraction, seed, mean, std, stratify)
        keep, held = (stratified_split if stratify else random_split)(
            read.train_labels, fraction, seed
        )  # the reference: the whole training set's split
        for part, index in (("train", keep), ("val", held)):
            for kind in ("images", "labels"):
                got, want = getattr(split, f"{part}_{kind}"), getattr(loaded, f"{part}_{kind}")
                assert torch.equal(got, want) and got.dtype == want.dtype, (seed, part, kind)
                assert torch.equal(got, getattr(read, f"train_{kind}")[index])
        assert torch.equal(split.test_images, loaded.test_images)
        stats = channel_stats(split.train_images)
        assert (split.mean, split.std) == (loaded.mean, loaded.std)
        assert (split.mean, split.std) == (stats if mean == "auto" else (mean, float(std)))
        assert describe(split) == describe(loaded) and split.preprocessing == loaded.preprocessing
        batches = [next(iter(d.loader("train", batch_size=16, seed=seed))) for d in (split, loaded)]
        assert all(torch.equal(a, b) for a, b in zip(*batches))  # the same bits, same machine
    assert read.val_images is None and read.seed == 0  # the data as read is left as it was
    assert all(torch.equal(a, b) for a, b in zip(before, (read.train_images, read.train_labels)))
    with pytest.raises(QuicknetsError, match="has a validation split already"):
        split_dataset(split, 0.1, 1)
    with pytest.raises(QuicknetsError, match="val_split must be in"):
        split_dataset(read, 1.0, 1)


@pytest.mark.parametrize("split", [-0.1, 1.0])
def test_bad_val_split(tiny_dir, split):
    with pytest.raises(QuicknetsError, match="val_split"):
        load_dataset("mnist", tiny_dir, val_split=split, verify=False)


def test_unknown_dataset():
    with pytest.raises(QuicknetsError, match="unknown dataset 'cifar'"):
        load_dataset("cifar")


def test_gzipped_and_raw_files_give_the_same_tensors(tmp_path):
    raw = load_dataset("mnist", make_idx_dataset(tmp_path / "raw"), verify=False)
    packed = load_dataset("mnist", make_idx_dataset(tmp_path / "gz", compress=True), verify=False)
    assert torch.equal(raw.train_images, packed.train_images)
    assert torch.equal(raw.test_labels, packed.test_labels)


def test_data_dir_comes_before_the_debian_folder(tiny_dir):
    d = load_dataset("fashion-mnist", tiny_dir, verify=False)
    assert d.source == str(tiny_dir) and len(d.train_labels) == 300


def test_a_missing_data_dir_is_fetched_into_never_replaced_by_other_copies(tmp_path, monkeypatch):
    monkeypatch.setenv("QUICKNETS_MIRROR", f"file://{tmp_path}/no-mirror")
    with pytest.raises(QuicknetsError, match="could not be downloaded") as e:
        load_dataset("fashion-mnist", tmp_path / "typo")  # the Debian copy exists, yet
    assert str(FASHION_DIR) not in str(e.value)


def test_environment_folder_is_searched(tiny_dir, monkeypatch):
    monkeypatch.setenv("QUICKNETS_DATA", str(tiny_dir))
    assert load_dataset("kmnist", verify=False, download=False).source == str(tiny_dir)


def test_torchvision_layout_is_found(tmp_path):
    make_idx_dataset(tmp_path / "MNIST" / "raw")
    assert load_dataset("mnist", tmp_path, verify=False).source == str(tmp_path / "MNIST" / "raw")


def test_generated_files_fail_verification(tiny_dir):
    with pytest.raises(QuicknetsError, match="does not match the official mnist content"):
        load_dataset("mnist", tiny_dir, download=False)


def test_wrong_dataset_is_named(tiny_dir, monkeypatch):
    """Upstream once served MNIST as Fashion-MNIST: a file with another dataset's digest says so."""
    digest = read_idx(tiny_dir / "train-images-idx3-ubyte")[1]
    mnist = dataclasses.replace(
        datasets.DATASETS["mnist"],
        sha256={**datasets.DATASETS["mnist"].sha256, "train_images": digest},
    )
    monkeypatch.setitem(datasets.DATASETS, "mnist", mnist)
    with pytest.raises(QuicknetsError, match="holds mnist data, not fashion-mnist"):
        load_dataset("fashion-mnist", tiny_dir)


def test_corrupt_copy_of_real_data_is_refused(tmp_path):
    for f in FASHION_DIR.glob("*.gz"):
        shutil.copy(f, tmp_path / f.name)
    labels = gzip.decompress((FASHION_DIR / "t10k-labels-idx1-ubyte.gz").read_bytes())
    flipped = labels[:100] + bytes([(labels[100] + 1) % 10]) + labels[101:]
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(flipped))
    with pytest.raises(QuicknetsError, match="t10k-labels-idx1-ubyte.gz does not match"):
        load_dataset("fashion-mnist", tmp_path)


def test_truncated_copy_of_real_data_is_refused(tmp_path):
    for f in FASHION_DIR.glob("*.gz"):
        shutil.copy(f, tmp_path / f.name)
    images = gzip.decompress((FASHION_DIR / "t10k-images-idx3-ubyte.gz").read_bytes())
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(images[:-784]))
    with pytest.raises(QuicknetsError, match="t10k-images-idx3-ubyte.gz is truncated"):
        load_dataset("fashion-mnist", tmp_path)


def test_offline_with_no_files_lists_places_and_the_package(monkeypatch, tmp_path):
    monkeypatch.setenv("QUICKNETS_MIRROR", f"file://{tmp_path}/no-mirror")
    monkeypatch.setenv("QUICKNETS_DATA", str(tmp_path / "env"))
    info = dataclasses.replace(datasets.DATASETS["fashion-mnist"], debian_dir=str(tmp_path / "deb"))
    monkeypatch.setitem(datasets.DATASETS, "fashion-mnist", info)
    with pytest.raises(QuicknetsError) as e:
        load_dataset("fashion-mnist")
    message = str(e.value)
    assert "could not be downloaded" in message and "\n" not in message  # one error line
    assert str(tmp_path / "env") in message and str(tmp_path / "deb") in message
    assert "apt-get install dataset-fashion-mnist" in message


def test_download_from_a_mirror_checks_md5(monkeypatch, tmp_path):
    mirror = make_idx_dataset(tmp_path / "mirror", compress=True)
    md5s = {f.name: hashlib.md5(f.read_bytes()).hexdigest() for f in mirror.iterdir()}
    monkeypatch.setattr(fetch, "_sources", lambda info: ([f"file://{mirror}/"], md5s))
    d = load_dataset("kmnist", tmp_path / "target", verify=False)
    assert d.source == str(tmp_path / "target") and len(d.test_labels) == 100
    assert sorted(p.name for p in (tmp_path / "target").iterdir()) == sorted(md5s)


def test_download_with_wrong_md5_saves_nothing(monkeypatch, tmp_path):
    mirror = make_idx_dataset(tmp_path / "mirror", compress=True)
    md5s = {f.name: "0" * 32 for f in mirror.iterdir()}
    monkeypatch.setattr(fetch, "_sources", lambda info: ([f"file://{mirror}/"], md5s))
    with pytest.raises(QuicknetsError, match="is not the official"):
        load_dataset("kmnist", tmp_path / "target")
    assert not (tmp_path / "target").exists() or not any((tmp_path / "target").iterdir())


# --- the data is the data the user named: its files under their common names, or an error ---


def _rename(folder, rename):
    for f in list(folder.iterdir()):
        f.rename(folder / rename(f.name))
    return folder


@pytest.mark.parametrize(
    "rename, compress",
    [
        (
            lambda n: n.replace("-idx", ".idx"),
            False,
        ),  # train-images.idx3-ubyte: Kaggle, LeCun copies
        (lambda n: n.replace("-idx", ".idx"), True),  # train-images.idx3-ubyte.gz
        (str.upper, False),  # TRAIN-IMAGES-IDX3-UBYTE
        (str.upper, True),  # TRAIN-IMAGES-IDX3-UBYTE.GZ
        (lambda n: n.replace("-idx", ".IDX").replace(".gz", ".Gz"), True),
    ],
)
def test_data_dir_files_under_other_common_names_are_used(tmp_path, rename, compress):
    reference = load_dataset("mnist", make_idx_dataset(tmp_path / "ref"), verify=False)
    folder = _rename(make_idx_dataset(tmp_path / "mine", compress=compress), rename)
    d = load_dataset("fashion-mnist", folder, verify=False, download=False)
    assert d.source == str(folder)  # not the Debian copy of Fashion-MNIST
    assert torch.equal(d.train_images, reference.train_images)
    assert torch.equal(d.test_labels, reference.test_labels)


def test_real_data_under_the_dotted_names_verifies(tmp_path, fashion):
    """Digests are of the content, so an unpacked, renamed official copy is the official data."""
    for f in FASHION_DIR.glob("*.gz"):
        dotted = f.name.removesuffix(".gz").replace("-idx", ".idx")  # t10k-images.idx3-ubyte
        (tmp_path / dotted).write_bytes(gzip.decompress(f.read_bytes()))
    d = load_dataset("fashion-mnist", tmp_path, download=False)
    assert d.source == str(tmp_path)
    assert torch.equal(d.train_images, fashion.train_images)
    assert torch.equal(d.test_labels, fashion.test_labels)


def test_torchvision_raw_folder_with_both_copies_uses_the_unpacked_one(tmp_path):
    raw = make_idx_dataset(tmp_path / "FashionMNIST" / "raw")
    make_idx_dataset(tmp_path / "FashionMNIST" / "raw", compress=True)
    files = builtin.locate("fashion-mnist", tmp_path, download=False)
    assert files["train_images"] == raw / "train-images-idx3-ubyte"
    assert sorted(p.name for p in files.values()) == sorted(datasets.FILES.values())


@pytest.mark.parametrize("download", [False, True])
def test_existing_data_dir_without_the_files_is_an_error_not_another_copy(
    tmp_path, monkeypatch, download
):
    monkeypatch.setenv("QUICKNETS_MIRROR", f"file://{tmp_path}/no-mirror")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "train-images-idx3-ubyte.zip").write_bytes(b"not one of the four")
    with pytest.raises(QuicknetsError) as e:
        load_dataset("fashion-mnist", mine, download=download)  # the Debian copy exists, yet
    message = str(e.value)
    assert message.startswith(
        f"{mine} does not hold the fashion-mnist files and they could not be downloaded into it"
    )
    assert ("downloads are off" in message) != download
    for name in datasets.FILES.values():
        assert name in message
    assert str(mine / "FashionMNIST" / "raw") in message and str(FASHION_DIR) not in message
    assert "\n" not in message


def test_existing_empty_data_dir_is_downloaded_into(monkeypatch, tmp_path):
    mirror = make_idx_dataset(tmp_path / "mirror", compress=True)
    md5s = {f.name: hashlib.md5(f.read_bytes()).hexdigest() for f in mirror.iterdir()}
    monkeypatch.setattr(fetch, "_sources", lambda info: ([f"file://{mirror}/"], md5s))
    (tmp_path / "mine").mkdir()
    d = load_dataset("fashion-mnist", tmp_path / "mine", verify=False)
    assert d.source == str(tmp_path / "mine") and len(d.train_labels) == 300


def test_part_of_a_set_is_an_error_naming_the_missing_file(tmp_path, monkeypatch):
    mirror = make_idx_dataset(tmp_path / "mirror", compress=True)
    md5s = {f.name: hashlib.md5(f.read_bytes()).hexdigest() for f in mirror.iterdir()}
    monkeypatch.setattr(fetch, "_sources", lambda info: ([f"file://{mirror}/"], md5s))
    folder = make_idx_dataset(tmp_path / "mine")
    (folder / "t10k-labels-idx1-ubyte").rename(folder / "t10k-labels-idx1-ubyte.bak")
    with pytest.raises(
        QuicknetsError,
        match=r"holds .* but not t10k-labels-idx1-ubyte \(.gz or "
        "raw\\); add the missing files",
    ):
        load_dataset("mnist", folder, verify=False)  # a mirror works, but never mixes sets
    assert sorted(p.name for p in folder.iterdir()) == [  # nothing was downloaded into it
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte.bak",
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
    ]


def test_a_failed_download_leaves_no_partial_set(monkeypatch, tmp_path):
    mirror = make_idx_dataset(tmp_path / "mirror", compress=True)
    (mirror / "t10k-labels-idx1-ubyte.gz").unlink()  # the last of the four is not there
    monkeypatch.setattr(fetch, "_sources", lambda info: ([f"file://{mirror}/"], {}))
    with pytest.raises(QuicknetsError, match="could not be downloaded into it"):
        load_dataset("kmnist", tmp_path / "target", verify=False)
    assert not (tmp_path / "target").exists() or not any((tmp_path / "target").iterdir())


def test_data_dir_that_is_a_file(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(QuicknetsError, match="is a file, not a folder"):
        load_dataset("mnist", tmp_path / "f", download=False)


# --- the decoded cache follows the content of the files ---


def _cache_files():
    return sorted((builtin.cache_dir() / "decoded").glob("mnist-*.pt"))


def test_decoded_cache_is_used_for_the_same_content_wherever_it_lies(tmp_path, monkeypatch):
    first = load_dataset("mnist", make_idx_dataset(tmp_path / "a", seed=11), verify=False)
    before = _cache_files()

    def no_decode(*args):
        raise AssertionError("decoded again")

    monkeypatch.setattr(builtin, "_decode", no_decode)
    moved = shutil.copytree(tmp_path / "a", tmp_path / "b")  # new path and mtimes, same bytes
    second = load_dataset("mnist", moved, verify=False)
    assert torch.equal(first.train_images, second.train_images)
    assert torch.equal(first.test_labels, second.test_labels)
    assert _cache_files() == before


def test_decoded_cache_is_rebuilt_when_content_changes_behind_same_size_and_mtime(tmp_path):
    folder = make_idx_dataset(tmp_path / "d", seed=12)
    first = load_dataset("mnist", folder, verify=False)
    stats = {f: f.stat() for f in folder.iterdir()}
    make_idx_dataset(folder, seed=13)  # same sizes; then the old mtimes put back
    for f, st in stats.items():
        os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
        assert f.stat().st_size == st.st_size
    second = load_dataset("mnist", folder, verify=False)
    expected = load_dataset("mnist", make_idx_dataset(tmp_path / "fresh", seed=13), verify=False)
    assert not torch.equal(first.train_images, second.train_images)
    assert torch.equal(second.train_images, expected.train_images)
    assert torch.equal(second.train_labels, expected.train_labels)


def _flip_a_byte_in_the_middle(path):
    content = bytearray(path.read_bytes())
    content[len(content) // 2] ^= 0xFF
    path.write_bytes(bytes(content))


def _cache_file(folder):
    """The decoded cache file of the generated set in `folder` (loaded as mnist, unverified)."""
    raw = {k: f.read_bytes() for k, f in builtin.find_files(folder).items()}
    key = builtin._cache_key(raw)
    return builtin.cache_dir() / "decoded" / f"mnist-{key[:16]}-nv.pt", key


@pytest.mark.parametrize(
    "damage",
    [
        lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]),  # truncated
        lambda p: p.write_bytes(b"garbage"),
        _flip_a_byte_in_the_middle,  # torch.load alone reads this without a word
        lambda p: torch.save({"train_images": torch.zeros(1)}, p),  # another format
    ],
)
def test_damaged_decoded_cache_is_rebuilt(tmp_path, damage):
    folder = make_idx_dataset(tmp_path / "d", seed=14)
    first = load_dataset("mnist", folder, verify=False)
    cached, key = _cache_file(folder)
    damage(cached)
    assert builtin._read_cache(cached, key) is None
    second = load_dataset("mnist", folder, verify=False)
    for name in ("train_images", "train_labels", "test_images", "test_labels"):
        assert torch.equal(getattr(first, name), getattr(second, name))
    assert builtin._read_cache(cached, key) is not None  # replaced by a good one


# --- files that cannot be a split's data: one line each (with verification off) ---


def _write(folder, name, array):
    from quicknets.data.idx import write_idx

    write_idx(folder / name, np.asarray(array, dtype=np.uint8))


@pytest.mark.parametrize(
    "name, array, message",
    [
        (
            "train-images-idx3-ubyte",
            np.zeros((0, 28, 28)),
            "train-images-idx3-ubyte holds no images",
        ),
        ("t10k-images-idx3-ubyte", np.zeros((0, 28, 28)), "t10k-images-idx3-ubyte holds no images"),
        (
            "t10k-images-idx3-ubyte",
            np.zeros((100, 32, 32)),
            "t10k-images-idx3-ubyte holds uint8 images of 32x32 pixels; "
            "quicknets takes uint8 28x28",
        ),
        (
            "t10k-labels-idx1-ubyte",
            np.zeros(99),
            "t10k-labels-idx1-ubyte holds 99 labels but .*t10k-images-idx3-ubyte holds 100 images",
        ),
        (
            "train-labels-idx1-ubyte",
            np.arange(300) % 11,
            r"train-labels-idx1-ubyte holds label 10, outside the 10 classes of mnist \(0..9\)",
        ),
        (
            "t10k-labels-idx1-ubyte",
            np.zeros((100, 28, 28)),
            r"t10k-labels-idx1-ubyte holds an array of shape \(100, 28, 28\), not labels",
        ),
        ("t10k-images-idx3-ubyte", np.zeros(100), r"holds an array of shape \(100,\), not images"),
    ],
)
def test_files_that_cannot_be_the_data_are_one_line(tmp_path, name, array, message):
    folder = make_idx_dataset(tmp_path / "d")
    _write(folder, name, array)
    with pytest.raises(QuicknetsError, match=message) as e:
        load_dataset("mnist", folder, verify=False)
    assert "\n" not in str(e.value)


def _imbalanced(folder, counts=(40, 40, 40, 2), seed=0):
    """IDX files whose last class is small: counts[c] training images of class c (a bar in row
    band c), and 4 test images of each class."""
    from quicknets.data.idx import write_idx

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for split, per_class in (("train", counts), ("t10k", [4] * len(counts))):
        labels = np.repeat(np.arange(len(per_class)), per_class).astype(np.uint8)
        rng.shuffle(labels)
        images = rng.integers(0, 60, size=(len(labels), 28, 28), dtype=np.uint8)
        for i, c in enumerate(labels):
            images[i, 2 + 2 * c : 4 + 2 * c, 4:24] = 220
        write_idx(folder / f"{split}-images-idx3-ubyte", images)
        write_idx(folder / f"{split}-labels-idx1-ubyte", labels)
    return folder


def _check_stratified(full_labels, data, fraction):
    """Brute force: each class gives floor or ceil of its share, the total is round(N * f),
    every class keeps a training image, and the parts are the whole."""
    n = len(full_labels)
    n_val = round(n * fraction)
    assert len(data.val_labels) == n_val and len(data.train_labels) == n - n_val
    classes = sorted(set(full_labels.tolist()))
    for c in classes:
        n_c = int((full_labels == c).sum())
        share = n_c * n_val / n
        got = int((data.val_labels == c).sum())
        assert int(share) <= got <= int(share) + 1, (c, got, share)
        assert int((data.train_labels == c).sum()) == n_c - got >= 1


def test_the_validation_split_is_stratified_and_a_small_class_keeps_training_images(tmp_path):
    folder = _imbalanced(tmp_path / "imb")
    full = load_dataset("mnist", folder, verify=False)
    lost = [
        seed
        for seed in range(20)  # the old plain random split loses the small class
        if 3
        not in full.train_labels[data_module.random_split(full.train_labels, 0.5, seed)[0]].tolist()
    ]
    assert lost, "the data should show the old split's failure for some seed"
    for seed in range(20):
        data = load_dataset("mnist", folder, val_split=0.5, seed=seed, verify=False)
        _check_stratified(full.train_labels, data, 0.5)
        assert data.val_stratified and data_module.describe(data)["val_stratified"] is True
    a, b = (load_dataset("mnist", folder, val_split=0.3, seed=s, verify=False) for s in (1, 1))
    c = load_dataset("mnist", folder, val_split=0.3, seed=2, verify=False)
    assert torch.equal(a.val_images, b.val_images) and not torch.equal(a.val_images, c.val_images)


def test_fashion_mnist_validation_split_holds_a_tenth_of_each_class(fashion):
    kept, held = data_module.stratified_split(fashion.train_labels, 0.1, 0)
    assert fashion.train_labels[held].bincount().tolist() == [600] * 10
    assert len(kept) == 54000 and not set(kept.tolist()) & set(held.tolist())


@pytest.mark.parametrize("counts, split", [((2,) * 10, 0.9), ((30, 1), 0.97)])
def test_a_split_that_would_leave_a_class_without_training_images_is_refused(
    tmp_path, counts, split
):
    folder = _imbalanced(tmp_path / "few", counts)
    with pytest.raises(
        QuicknetsError,
        match=f"val_split {split} would hold out .* leave a class with no training images",
    ):
        load_dataset("mnist", folder, val_split=split, verify=False)


def test_a_class_of_one_image_keeps_it_for_training(tmp_path):
    folder = _imbalanced(tmp_path / "one", (20, 20, 1))
    full = load_dataset("mnist", folder, verify=False)
    for seed in range(5):
        _check_stratified(
            full.train_labels,
            load_dataset("mnist", folder, val_split=0.5, seed=seed, verify=False),
            0.5,
        )


def test_every_source_gets_the_stratified_split(tmp_path):
    """CSV, class folders and .npz go through the same split as IDX files."""
    from PIL import Image

    rng = np.random.default_rng(0)
    counts = (30, 30, 3)
    labels = np.repeat(np.arange(3), counts)
    images = rng.integers(0, 256, size=(len(labels), 8, 8), dtype=np.uint8)
    test_labels = np.arange(3).repeat(2)
    test_images = rng.integers(0, 256, size=(6, 8, 8), dtype=np.uint8)
    np.savez(
        tmp_path / "d.npz", x_train=images, y_train=labels, x_test=test_images, y_test=test_labels
    )
    for name, (x, y) in (("train", (images, labels)), ("test", (test_images, test_labels))):
        rows = np.concatenate([y[:, None], x.reshape(len(x), -1)], 1)
        np.savetxt(tmp_path / f"d_{name}.csv", rows, fmt="%d", delimiter=",")
        for i, (img, c) in enumerate(zip(x, y)):
            (tmp_path / "folder" / name / str(c)).mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(tmp_path / "folder" / name / str(c) / f"{i:03d}.png")
    for path in ("d.npz", "d_train.csv", "folder"):
        full = load_dataset(str(tmp_path / path))
        assert full.train_labels.bincount().tolist() == list(counts)
        for seed in range(5):
            data = load_dataset(str(tmp_path / path), val_split=0.5, seed=seed)
            _check_stratified(full.train_labels, data, 0.5)


def test_a_record_made_before_keeps_its_random_split(tmp_path):
    from quicknets.config.configs import RunConfig

    folder = _imbalanced(tmp_path / "imb")
    config = RunConfig.build(
        dataset="mnist", data_dir=str(folder), verify=False, val_split=0.25, seed=3
    )
    full = load_dataset("mnist", folder, verify=False)
    kept, held = data_module.random_split(full.train_labels, 0.25, 3)
    old = data_module.load_recorded(config, recorded={"dataset": "mnist", "val_split": 0.25})
    assert torch.equal(old.val_images, full.train_images[held]) and not old.val_stratified
    assert torch.equal(old.train_labels, full.train_labels[kept])
    new = data_module.load_recorded(
        config, recorded=data_module.describe(old) | {"val_stratified": True}
    )
    assert new.val_stratified and not torch.equal(new.val_images, old.val_images)
    assert torch.equal(data_module.load_recorded(config).val_images, new.val_images)


@pytest.mark.parametrize(
    "label_type", [np.int32, np.int64, np.uint8, np.int16, "list", "tensor-int32"]
)
def test_a_dataset_from_numpy_arrays_trains_and_evaluates(tiny, label_type):
    """Images as NumPy arrays (a non-contiguous view among them), labels of any integer type:
    the same numbers as the uint8/int64 tensors load_dataset gives."""
    from quicknets import evaluate, network, train

    x_train, x_test = tiny.train_images.numpy(), tiny.test_images.numpy()
    y_train, y_test = tiny.train_labels.numpy(), tiny.test_labels.numpy()
    if label_type == "list":
        y_train, y_test = y_train.tolist(), y_test.tolist()
    elif label_type == "tensor-int32":
        y_train, y_test = torch.from_numpy(y_train).int(), torch.from_numpy(y_test).int()
    else:
        y_train, y_test = y_train.astype(label_type), y_test.astype(label_type)
    flipped = np.ascontiguousarray(x_test[:, :, ::-1])[:, :, ::-1]  # negative strides
    mine = data_module.Dataset("mine", tiny.classes, x_train, y_train, flipped, y_test)
    assert mine.train_labels.dtype == torch.int64 and mine.train_images.dtype == torch.uint8
    assert torch.equal(mine.test_images, tiny.test_images)
    results = []
    for data in (tiny, mine):
        model = network("784-16-10", seed=0)
        train(model, data, epochs=1, threads=1, quiet=True)
        results.append(evaluate(model, data))
    assert results[0]["accuracy"] == results[1]["accuracy"]
    assert results[0]["loss"] == results[1]["loss"]


def test_a_dataset_takes_channels_last_and_integer_pixels(tiny):
    x = tiny.train_images.numpy()[:, :, :, None]  # (N, 28, 28, 1), Keras's layout
    data = data_module.Dataset(
        "mine",
        tiny.classes,
        x.astype(np.int64),
        tiny.train_labels,
        tiny.test_images,
        tiny.test_labels,
    )
    assert data.train_images.shape == (300, 1, 28, 28) and data.train_images.dtype == torch.uint8
    assert torch.equal(data.train_images[:, 0], tiny.train_images)
    assert data.preprocessing.shape == (1, 28, 28)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"train_images": "float"}, r"train_images holds torch.float32 values.*\(x \* 255\)"),
        ({"train_images": "int"}, "train_images holds values from -1 to 220; pixels are 0..255"),
        ({"train_labels": "high"}, r"train_labels holds class 10, outside the 10 classes \(0..9\)"),
        ({"test_labels": "negative"}, "test_labels holds class -1"),
        ({"train_labels": "float"}, "train_labels holds torch.float32 values, not class numbers"),
        ({"train_labels": "short"}, "train_images holds 300 images but train_labels 299 labels"),
        ({"test_images": "shape"}, r"differ in shape \(C, H, W\)"),
        ({"train_images": "flat"}, r"train_images has shape \(300, 784\)"),
        ({"train_labels": "text"}, "train_labels must be class numbers"),
        ({"classes": []}, "needs its class names"),
    ],
)
def test_a_dataset_built_wrongly_is_one_clear_error(tiny, change, message):
    values = {
        "name": "mine",
        "classes": tiny.classes,
        "train_images": tiny.train_images,
        "train_labels": tiny.train_labels,
        "test_images": tiny.test_images,
        "test_labels": tiny.test_labels,
    }
    forms = {
        "float": lambda v: v.float() / 255,
        "int": lambda v: v.long() - (v == 0).long(),
        "high": lambda v: v.clone().fill_(10),
        "negative": lambda v: v - 1,
        "short": lambda v: v[1:],
        "shape": lambda v: v[:, :20, :20],
        "flat": lambda v: v.reshape(len(v), -1),
        "text": lambda v: ["a"] * len(v),
    }
    for key, how in change.items():
        values[key] = forms[how](values[key]) if isinstance(how, str) else how
    with pytest.raises(QuicknetsError, match=message):
        data_module.Dataset(**values)
