"""Steps shared by the readers of a user's own data (sources.py, csvdata.py, imagefolders.py):
a file's bytes (gunzipped), a content digest, numpy images brought to tensors of one shape, and
class names from raw labels.

    raw = read_bytes(path)                          # bytes, .gz decompressed
    digest = content_digest([("train.csv", raw)])   # SHA-256 over names and contents
    tensors = as_tensors({"train_images": x, ...}, image_size=0, channels=0)
    classes, (y_train, y_test) = label_classes(train, test, row_of, row_of, path)
"""

import hashlib
import zlib
from pathlib import Path

import numpy as np

from quicknets.base.errors import QuicknetsError

MAX_CLASSES = 10000  # class numbers 0..9999: a larger label is an ID, not a class number


def read_bytes(path: Path) -> bytes:
    import gzip

    try:
        raw = Path(path).read_bytes()
    except OSError as e:
        raise QuicknetsError(f"cannot read {path}: {e.strerror or e}") from None
    if str(path).lower().endswith(".gz"):
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:
            raise QuicknetsError(f"{path} is a corrupt or truncated gzip file ({e})") from None
    return raw


def content_digest(parts: list) -> str:
    h = hashlib.sha256()
    for name, raw in parts:
        h.update(name.encode() + b"\0" + hashlib.sha256(raw).digest())
    return h.hexdigest()


def as_tensors(arrays: dict, image_size: int, channels: int) -> dict:
    """numpy images (N, C, H, W) brought to `channels` and `image_size` (0: as they are), as
    torch tensors; 1-channel images as (N, H, W)."""
    import torch

    out = {}
    for key, value in arrays.items():
        if key.endswith("images"):
            value = grey_3d(torch.from_numpy(conform(value, image_size, channels)))
        out[key] = value
    return out


def grey_3d(x):
    """(N, 1, H, W) -> (N, H, W): grey images keep the built-in datasets' layout."""
    return x[:, 0].contiguous() if x.dim() == 4 and x.shape[1] == 1 else x.contiguous()


def conform(images: np.ndarray, image_size: int, channels: int) -> np.ndarray:
    """uint8 (N, C, H, W) in `channels` (grey from RGB as PIL's convert("L") makes it) and
    scaled to image_size x image_size, as images.decode_image treats a file."""
    if channels and channels != images.shape[1]:
        if channels == 3:
            images = np.repeat(images, 3, axis=1)
        else:  # ITU-R 601-2 luma in PIL's fixed point: L = (R*19595 + G*38470 + B*7471) >> 16
            r, g, b = (images[:, i].astype(np.uint32) for i in range(3))
            images = ((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16).astype(np.uint8)[:, None]
    if image_size and images.shape[2:] != (image_size, image_size):
        from quicknets.data.images import resize

        size = (image_size, image_size)
        images = np.stack([resize(x.transpose(1, 2, 0), size).transpose(2, 0, 1) for x in images])
    return np.ascontiguousarray(images)


def label_classes(train, test, train_row, test_row, path) -> tuple:
    """(class names, (train labels, test labels) as int64 tensors) from raw labels: whole
    numbers are class numbers (classes 0..the largest), otherwise names (sorted). A test label
    outside the training set's classes is an error naming its row (`*_row(i)`)."""
    import torch

    numbers = isinstance(train, np.ndarray)
    if numbers:
        if (train < 0).any():
            i = int(np.flatnonzero(train < 0)[0])
            raise QuicknetsError(
                f"{train_row(i)}: label {train[i]} is negative; labels are "
                "class numbers 0, 1, ... or class names"
            )
        if train.max() >= MAX_CLASSES:
            i = int(train.argmax())
            raise QuicknetsError(
                f"{train_row(i)}: label {train[i]} is too large; class numbers "
                f"run from 0 (the classes are 0..the largest, at most "
                f"{MAX_CLASSES})"
            )
        classes = [str(c) for c in range(int(train.max()) + 1)]
        y_train = train
    else:
        train = [str(x) for x in train]
        classes = sorted(set(train))
        index = {c: i for i, c in enumerate(classes)}
        y_train = np.array([index[x] for x in train], np.int64)
    if len(np.unique(y_train)) < 2:
        raise QuicknetsError(
            f"{path} holds a single class ({classes[int(y_train[0])]}); a "
            "classifier needs at least two"
        )
    y_test = None
    if test is not None:
        if numbers and isinstance(test, np.ndarray):
            outside = (test < 0) | (test >= len(classes))
            y_test = test
        else:
            index = {c: i for i, c in enumerate(classes)}
            test = [str(x) for x in test]
            y_test = np.array([index.get(x, -1) for x in test], np.int64)
            outside = y_test < 0
        if outside.any():
            i = int(np.flatnonzero(outside)[0])
            shown = ", ".join(classes[:10]) + (", ..." if len(classes) > 10 else "")
            raise QuicknetsError(
                f"{test_row(i)}: label {test[i]} is not one of the "
                f"{len(classes)} classes of {path} ({shown})"
            )
        y_test = torch.from_numpy(np.ascontiguousarray(y_test, np.int64))
    return classes, (torch.from_numpy(np.ascontiguousarray(y_train, np.int64)), y_test)
