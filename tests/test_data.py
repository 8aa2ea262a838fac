"""load_dataset: the real Fashion-MNIST, the search order, verification, cache, splits, fetching."""
import dataclasses
import gzip
import hashlib
import shutil

import pytest
import torch

from conftest import FASHION_DIR, make_idx_dataset
from quicknets import data as data_module
from quicknets import datasets, fetch
from quicknets.data import load_dataset, normalize
from quicknets.errors import QuicknetsError
from quicknets.idx import read_idx


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


def test_a_missing_data_dir_is_fetched_into_never_replaced_by_other_copies(tmp_path,
                                                                        monkeypatch):
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
    mnist = dataclasses.replace(datasets.DATASETS["mnist"],
                                sha256={**datasets.DATASETS["mnist"].sha256, "train_images": digest})
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


def test_labels_out_of_range_are_refused(tmp_path):
    from quicknets.idx import write_idx
    folder = make_idx_dataset(tmp_path / "d")
    write_idx(folder / "t10k-labels-idx1-ubyte", (torch.arange(100) % 11).numpy().astype("uint8"))
    with pytest.raises(QuicknetsError, match="labels outside 0..9"):
        load_dataset("mnist", folder, verify=False)


def test_decoded_cache_is_used_and_invalidated(tiny_dir):
    first = load_dataset("mnist", tiny_dir, verify=False)
    cached = list((data_module.cache_dir() / "decoded").glob("mnist-*-nv.pt"))
    assert cached
    second = load_dataset("mnist", tiny_dir, verify=False)
    assert torch.equal(first.train_images, second.train_images)
    make_idx_dataset(tiny_dir, seed=5)  # new content, new mtime: the cache must not be reused
    third = load_dataset("mnist", tiny_dir, verify=False)
    assert not torch.equal(first.train_images, third.train_images)


def test_offline_with_no_files_lists_places_and_the_package(monkeypatch, tmp_path):
    monkeypatch.setenv("QUICKNETS_MIRROR", f"file://{tmp_path}/no-mirror")
    info = dataclasses.replace(datasets.DATASETS["fashion-mnist"], debian_dir=str(tmp_path / "deb"))
    monkeypatch.setitem(datasets.DATASETS, "fashion-mnist", info)
    (tmp_path / "mine").mkdir()  # an empty folder: every other place is searched too
    with pytest.raises(QuicknetsError) as e:
        load_dataset("fashion-mnist", tmp_path / "mine")
    message = str(e.value)
    assert "could not be downloaded" in message
    assert str(tmp_path / "mine") in message and str(tmp_path / "deb") in message
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
