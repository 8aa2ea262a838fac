"""Your own data as uint8 tensors: a CSV file, a folder of class folders, or an .npz file.

    source = read_source("fashion-mnist_train.csv")   # its test set: fashion-mnist_test.csv
    source = read_source("pets", image_size=32)       # pets/train/, pets/test/ or class folders
    source.tensors["train_images"]   # uint8 (N, H, W) grey, (N, 3, H, W) colour; labels int64
    source.classes, source.origin    # class names; format, path, digest, test set (recorded)

CSV (csvdata.py): one image per row, the label first, then the pixels (whole numbers 0..255),
with or without a header (Kaggle's `label,pixel1,...,pixel784` as it is). A row of P pixels is
a square image: P = S*S grey, or P = 3*S*S colour stored plane by plane (red, green, blue, as
CIFAR's files are). The test file is the one beside it with "test" for "train" in its name.
Folders (imagefolders.py): `train/` and `test/` each holding one folder per class, or the class
folders alone; class names are the folder names. Hidden files are ignored; a file that is not a
readable image is refused (the count, and the first named), not skipped: quietly training on
less than the folder holds would change the experiment. Images keep their size and channels
when all share them; --image-size and --channels bring them to one, as images.decode_image
does for a file classified later.
npz (here): x_train, y_train, x_test, y_test as keras.datasets returns them, (N, H, W) or
(N, H, W, C).
Labels are class numbers 0, 1, ... (the classes are 0..the largest) or names (sorted).

Without a test set (or with --test FRACTION), a fraction of each class (default 0.2) is held out,
always the same images (seed 0, whatever the run's seed: runs over seeds share one test set).
A parsed CSV and a decoded folder are cached under a SHA-256 of their files' content (the
digest the run records), so a second load reads the files once and a changed file is read again.
"""

import hashlib
import io
import os
import re
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from quicknets.base.errors import QuicknetsError
from quicknets.data.datasets import DATASETS
from quicknets.data.rawdata import as_tensors, content_digest, label_classes, read_bytes

SUFFIXES = (".csv", ".csv.gz", ".npz")
TEST_FRACTION = 0.2  # held out for testing when a source has no test set
SPLIT_SEED = 0  # fixed: the test set must not change with the run's seed
CACHE_FORMAT = 1  # in the cache key: bump it when what a reader returns changes


@dataclass
class Source:
    name: str
    classes: list
    tensors: dict  # train_images, train_labels, test_images, test_labels
    origin: dict  # what a run records: format, path, test set, content digest


def resolve_path(name) -> str:
    return os.path.abspath(os.path.expanduser(str(name)))


def as_fraction(text) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value


def read_source(path, test=None, image_size: int = 0, channels: int = 0) -> Source:
    """Train and test tensors, class names and the record of a CSV file, a folder or an .npz
    (see the module docstring). `test`: a test file or folder, or the fraction of each class
    held out (None: the test set found beside it, else 0.2)."""
    path = Path(resolve_path(path))
    if not path.exists():
        raise QuicknetsError(
            f"no file or folder {path} (--dataset takes a built-in name: "
            f"{', '.join(DATASETS)}, or the path of a CSV file, an .npz file or "
            "a folder of class folders)"
        )
    kind = (
        "folder"
        if path.is_dir()
        else "npz"
        if path.name.lower().endswith(".npz")
        else "csv"
        if path.name.lower().endswith((".csv", ".csv.gz"))
        else None
    )
    if kind is None:
        raise QuicknetsError(
            f"{path} is not a CSV file (.csv, .csv.gz), an .npz file or a folder of class folders"
        )
    fraction, test_path = _test_choice(test)
    if image_size and image_size < 1 or channels not in (0, 1, 3):
        raise QuicknetsError(
            f"image_size must be positive and channels 1 or 3, got {image_size} and {channels}"
        )
    from quicknets.data.csvdata import csv_plan
    from quicknets.data.imagefolders import folder_plan

    plan = {"csv": csv_plan, "folder": folder_plan, "npz": _npz_plan}[kind]
    # a fraction given is held out even where a test set exists; a path given is the test set
    name, found_test, digest, build = plan(path, test_path, look=fraction is None)
    key = hashlib.sha256(f"{kind} v{CACHE_FORMAT} {digest} {image_size} {channels}".encode())
    cached = _cache_file(kind, name, key.hexdigest())
    saved = _read_cache(cached, key.hexdigest())
    if saved is None:
        tensors, classes = build(image_size, channels)
        saved = {"tensors": tensors, "classes": classes}
        _write_cache(cached, key.hexdigest(), saved)
    tensors, classes = saved["tensors"], saved["classes"]
    if found_test is None:  # held out: always the same images of each class
        fraction = TEST_FRACTION if fraction is None else fraction
        tensors = hold_out(tensors, fraction, path)
    origin = {
        "format": kind,
        "path": str(path),
        "digest": digest,
        "test_path": str(found_test) if found_test else None,
        "test_fraction": 0.0 if found_test else fraction,
        "test_seed": None if found_test else SPLIT_SEED,
    }
    return Source(name, classes, tensors, origin)


def _test_choice(test) -> tuple:
    """(fraction or None, test path or None) from the --test value."""
    if test is None or str(test).strip() == "":
        return None, None
    fraction = as_fraction(test) if not isinstance(test, os.PathLike) else None
    if fraction is not None:
        if not 0.0 < fraction < 1.0:
            raise QuicknetsError(f"a test fraction must be between 0 and 1, not {test}")
        return fraction, None
    return None, Path(resolve_path(test))


def hold_out(tensors: dict, fraction: float, path) -> dict:
    """Move `fraction` of each class's training images (at least one of a class with two or
    more) to the test set, chosen by SPLIT_SEED; both keep their order."""
    import torch

    labels = tensors["train_labels"]
    generator = torch.Generator().manual_seed(SPLIT_SEED)
    chosen = []
    for c in labels.unique().tolist():
        members = (labels == c).nonzero().flatten()
        k = min(max(round(len(members) * fraction), 1), len(members) - 1)
        chosen.append(members[torch.randperm(len(members), generator=generator)[:k]])
    test = torch.cat(chosen).sort().values if chosen else torch.zeros(0, dtype=torch.long)
    if len(test) == 0:
        raise QuicknetsError(f"{path} has too few images to hold out a test set (give --test PATH)")
    keep = torch.ones(len(labels), dtype=torch.bool)
    keep[test] = False
    images = tensors["train_images"]
    return {
        "train_images": images[keep],
        "train_labels": labels[keep],
        "test_images": images[test],
        "test_labels": labels[test],
    }


# -- npz ---------------------------------------------------------------------------------------


def _npz_plan(path: Path, test_path, look: bool):
    """(name, test file or None, content digest, build), as csvdata.csv_plan."""
    raws = {"train": read_bytes(path), "test": read_bytes(test_path) if test_path else b""}
    digest = content_digest([("train", raws["train"]), ("test", raws["test"])])
    arrays = _npz_arrays(raws["train"], path)
    has_test = test_path is not None or look and {"x_test", "y_test"} <= set(arrays)

    def build(image_size, channels):
        x_train, y_train = _npz_split(arrays, "train", path)
        test = None
        if has_test:
            source = _npz_arrays(raws["test"], test_path) if test_path else arrays
            test = _npz_split(source, "test", test_path or path)
            if test[0].shape[1:] != x_train.shape[1:]:
                raise QuicknetsError(
                    f"{test_path or path}: x_test holds images of shape "
                    f"{test[0].shape[1:]}, x_train of {x_train.shape[1:]}"
                )
        key = lambda file, split: lambda i: f"{file} y_{split}[{i}]"  # noqa: E731
        classes, y = label_classes(
            y_train,
            test[1] if test else None,
            key(path, "train"),
            key(test_path or path, "test"),
            path,
        )
        tensors = {"train_images": x_train, "train_labels": y[0]}
        if test is not None:
            tensors |= {"test_images": test[0], "test_labels": y[1]}
        return as_tensors(tensors, image_size, channels), classes

    return path.stem, (test_path or path) if has_test else None, digest, build


def _npz_arrays(raw: bytes, path) -> dict:
    try:
        with np.load(io.BytesIO(raw), allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    except (ValueError, OSError, zlib.error, EOFError) as e:
        raise QuicknetsError(f"cannot read {path} as an .npz file ({e})") from None


def _npz_split(arrays: dict, split: str, path) -> tuple:
    """(images uint8 (N, C, H, W), labels) of x_<split>, y_<split>: (N, H, W) grey or
    (N, H, W, C) channels-last, as keras.datasets gives them."""
    missing = [k for k in (f"x_{split}", f"y_{split}") if k not in arrays]
    if missing:
        raise QuicknetsError(
            f"{path} has no {' or '.join(missing)} (it holds "
            f"{', '.join(arrays) or 'nothing'}; expected x_train, y_train, "
            "x_test, y_test)"
        )
    x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
    if x.ndim == 4 and x.shape[3] in (1, 3):
        x = x.transpose(0, 3, 1, 2)  # (N, H, W, C) -> (N, C, H, W)
    elif x.ndim == 3:
        x = x[:, None]
    else:
        raise QuicknetsError(
            f"{path}: x_{split} has shape {x.shape}; expected (N, H, W) or "
            "(N, H, W, C) with C = 1 or 3"
        )
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]  # CIFAR's (N, 1)
    if y.ndim != 1 or len(y) != len(x):
        raise QuicknetsError(
            f"{path}: y_{split} has shape {y.shape} for {len(x)} images; expected ({len(x)},)"
        )
    if x.dtype != np.uint8 and (
        x.dtype.kind not in "iuf"
        or x.size
        and (x.min() < 0 or x.max() > 255 or not np.array_equal(x, np.round(x)))
    ):
        raise QuicknetsError(
            f"{path}: x_{split} holds {x.dtype} values that are not pixels (whole numbers 0..255)"
        )
    if y.dtype.kind == "f" and np.array_equal(y, np.round(y)):
        y = y.astype(np.int64)
    if y.dtype.kind in "iu":
        y = y.astype(np.int64)
    elif y.dtype.kind not in "US":
        raise QuicknetsError(
            f"{path}: y_{split} holds {y.dtype} values, not class numbers or names"
        )
    return np.ascontiguousarray(x.astype(np.uint8)), y if y.dtype.kind in "iu" else list(y)


def _cache_file(kind: str, name: str, key: str) -> Path:
    from quicknets.base.storage import cache_dir

    safe = re.sub(r"[^A-Za-z0-9_.-]", "-", name)[:40]
    return cache_dir() / "decoded" / f"{kind}-{safe}-{key[:16]}.pt"


def _read_cache(path: Path, key: str) -> dict | None:
    """The saved tensors and classes for `key`; None when missing, stale or damaged."""
    import torch

    try:
        saved = torch.load(path, weights_only=True)
        if saved["key"] == key and all(
            zlib.crc32(t.numpy()) == saved["crc32"][k] for k, t in saved["tensors"].items()
        ):
            return saved
    except Exception:  # missing, or damaged: torch.load reads a flipped byte without a word
        pass
    return None


def _write_cache(path: Path, key: str, saved: dict) -> None:
    from quicknets.base.storage import atomic_torch_save

    crc32 = {k: zlib.crc32(t.numpy()) for k, t in saved["tensors"].items()}
    try:
        atomic_torch_save({**saved, "key": key, "crc32": crc32}, path)
    except OSError as e:  # a read-only cache slows the next load; it does not stop this one
        print(f"warning: cannot write the decoded cache {path}: {e}", file=sys.stderr)
