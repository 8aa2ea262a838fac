"""Your own data as uint8 tensors: a CSV file, a folder of class folders, or an .npz file.

    source = read_source("fashion-mnist_train.csv")   # its test set: fashion-mnist_test.csv
    source = read_source("pets", image_size=32)       # pets/train/, pets/test/ or class folders
    source.tensors["train_images"]   # uint8 (N, H, W) grey, (N, 3, H, W) colour; labels int64
    source.classes, source.origin    # class names; format, path, digest, test set (recorded)

CSV: one image per row, the label first, then the pixels (whole numbers 0..255), with or without
a header (Kaggle's `label,pixel1,...,pixel784` works as it is). A row of P pixels is a square
image: P = S*S grey, or P = 3*S*S colour stored plane by plane (all red, then green, then blue,
as CIFAR's files are). Labels are class numbers 0, 1, ... (the classes are 0..the largest) or
names (sorted). The test file is the one beside it named with "test" for "train"
(mnist_train.csv -> mnist_test.csv), or --test PATH.
Folders: `train/` and `test/` each holding one folder per class, or the class folders alone;
class names are the folder names (sorted), images any format PIL reads, in subfolders too.
Hidden files and folders (.DS_Store, ._x, .ipynb_checkpoints), Thumbs.db and desktop.ini are
ignored; a file that is not a readable image is refused (the count, and the first named), not
skipped: quietly training on less than the folder holds would change the experiment. Images
keep their size and channels when all share them; --image-size and --channels bring them to
one (scaled, aspect ratio not kept; grey <-> RGB), as images.decode_image does for a file
classified later.
npz: x_train, y_train, x_test, y_test as keras.datasets returns them (N, H, W) or (N, H, W, C).

Without a test set (or with --test FRACTION), a fraction of each class (default 0.2) is held out,
always the same images (seed 0, whatever the run's seed: runs over seeds share one test set).
A parsed CSV and a decoded folder are cached under a SHA-256 of their files' content (the
digest the run records), so a second load reads one file and a changed file is read again.
"""
import hashlib
import io
import math
import os
import re
import sys
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from quicknets.datasets import DATASETS
from quicknets.errors import QuicknetsError

SUFFIXES = (".csv", ".csv.gz", ".npz")
TEST_FRACTION = 0.2  # held out for testing when a source has no test set
SPLIT_SEED = 0  # fixed: the test set must not change with the run's seed
IGNORED = {"thumbs.db", "desktop.ini", "__macosx"}  # besides names starting with "."
CACHE_FORMAT = 1  # in the cache key: bump it when what a reader returns changes
CSV_CHUNK = 8192  # rows parsed at once by the fast path (about 18 MB of text for 28x28)
POOL_MIN = 2000  # a folder with fewer images is decoded in this process


@dataclass
class Source:
    name: str
    classes: list
    tensors: dict  # train_images, train_labels, test_images, test_labels
    origin: dict  # what a run records: format, path, test set, content digest


def is_path(name, test: bool = False) -> bool:
    """Whether --dataset (or, with test=True, --test) names a file or folder rather than a
    built-in dataset (or a fraction): a path separator, a data suffix, or something there."""
    if not isinstance(name, (str, os.PathLike)) or not str(name).strip():
        return False
    text = str(name)
    if test and _fraction(text) is not None:
        return False
    if not test and text.lower().replace("_", "-") in DATASETS:
        return False
    return ("/" in text or os.sep in text or text.startswith("~")
            or text.lower().endswith(SUFFIXES) or Path(text).exists())


def resolve_path(name) -> str:
    return os.path.abspath(os.path.expanduser(str(name)))


def _fraction(text) -> float | None:
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
        raise QuicknetsError(f"no file or folder {path} (--dataset takes a built-in name: "
                             f"{', '.join(DATASETS)}, or the path of a CSV file, an .npz file or "
                             "a folder of class folders)")
    kind = "folder" if path.is_dir() else "npz" if path.name.lower().endswith(".npz") else \
        "csv" if path.name.lower().endswith((".csv", ".csv.gz")) else None
    if kind is None:
        raise QuicknetsError(f"{path} is not a CSV file (.csv, .csv.gz), an .npz file or a "
                             "folder of class folders")
    fraction, test_path = _test_choice(test)
    if image_size and image_size < 1 or channels not in (0, 1, 3):
        raise QuicknetsError(f"image_size must be positive and channels 1 or 3, got "
                             f"{image_size} and {channels}")
    plan = {"csv": _csv_plan, "folder": _folder_plan, "npz": _npz_plan}[kind]
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
    origin = {"format": kind, "path": str(path), "digest": digest,
              "test_path": str(found_test) if found_test else None,
              "test_fraction": 0.0 if found_test else fraction,
              "test_seed": None if found_test else SPLIT_SEED}
    return Source(name, classes, tensors, origin)


def _test_choice(test) -> tuple:
    """(fraction or None, test path or None) from the --test value."""
    if test is None or str(test).strip() == "":
        return None, None
    fraction = _fraction(test) if not isinstance(test, os.PathLike) else None
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
        raise QuicknetsError(f"{path} has too few images to hold out a test set (give --test "
                             "PATH)")
    keep = torch.ones(len(labels), dtype=torch.bool)
    keep[test] = False
    images = tensors["train_images"]
    return {"train_images": images[keep], "train_labels": labels[keep],
            "test_images": images[test], "test_labels": labels[test]}


# -- CSV ---------------------------------------------------------------------------------------

def _csv_plan(path: Path, test_path, look: bool):
    test_path = test_path or (_beside(path) if look else None)
    raws = {"train": _read_bytes(path), "test": _read_bytes(test_path) if test_path else b""}
    digest = _digest([("train", raws["train"]), ("test", raws["test"])])
    base = re.sub(r"\.csv(\.gz)?$", "", path.name, flags=re.I)
    name = re.sub(r"[-_. ]*train$", "", base, flags=re.I) or path.parent.name

    def build(image_size, channels):
        pixels, (labels, first) = parse_csv(raws["train"], path)
        if test_path:
            test_pixels, (test_labels, test_first) = parse_csv(raws["test"], test_path)
            if test_pixels.shape[1] != pixels.shape[1]:
                raise QuicknetsError(
                    f"{test_path} has rows of {test_pixels.shape[1] + 1} values, {path} of "
                    f"{pixels.shape[1] + 1} (a label, then {pixels.shape[1]} pixels); a test "
                    "file without labels (Kaggle's digit-recognizer test.csv)? give --test 0.2 "
                    "to hold out part of the training set instead")
        shape = row_shape(pixels.shape[1], path)
        classes, (y_train, y_test) = label_classes(
            labels, test_labels if test_path else None, lambda i: f"{path} line {first + i}",
            lambda i: f"{test_path} line {test_first + i}", path)
        arrays = {"train_images": pixels.reshape(-1, *shape), "train_labels": y_train}
        if test_path:
            arrays |= {"test_images": test_pixels.reshape(-1, *shape), "test_labels": y_test}
        return _as_tensors(arrays, image_size, channels), classes
    return name, test_path, digest, build


def _beside(path: Path) -> Path | None:
    """mnist_train.csv -> mnist_test.csv (TRAIN -> TEST, Train -> Test) when it exists."""
    name = path.name
    at = name.lower().rfind("train")
    if at < 0:
        return None
    word = name[at:at + 5]
    test = "TEST" if word.isupper() else "Test" if word[0].isupper() else "test"
    other = path.with_name(name[:at] + test + name[at + 5:])
    return other if other.is_file() else None


def parse_csv(content: bytes, path) -> tuple:
    """(pixels uint8 (N, P), (labels, first data line)) of a CSV file's bytes: the label first,
    then P pixels. Labels: an int64 array, or a list of str when some are not whole numbers.
    A header is recognised by non-numeric cells. Every error names the file, line and column."""
    text = content[3:] if content.startswith(b"\xef\xbb\xbf") else content  # a UTF-8 BOM
    if b"\r" in text:
        text = text.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    lines = text.rstrip(b"\n").split(b"\n")
    if lines == [b""]:
        raise QuicknetsError(f"{path} is empty")
    first = 1
    if _is_header(lines):
        lines, first = lines[1:], 2
        if not lines:
            raise QuicknetsError(f"{path} holds a header but no rows")
    width = lines[0].count(b",") + 1
    counts = np.fromiter((line.count(b",") for line in lines), np.int64, len(lines)) + 1
    bad = np.flatnonzero(counts != width)
    if width < 2 or len(bad):
        i = int(bad[0]) if len(bad) else 0
        what = "is empty" if not lines[i].strip() else f"has {counts[i]} value(s)"
        raise QuicknetsError(f"{path} line {first + i} {what}; "
                             + (f"line {first} has {width} (a label, then the pixels)"
                                if width >= 2 else "a row is a label, then the pixels"))
    if not b"\n".join(lines).translate(None, b"0123456789,\n"):  # whole numbers only: fast
        values = _parse_digits(lines, width, path, first)
        labels = values[:, 0]
        pixels = values[:, 1:]
    else:
        labels, pixels = _parse_cells(lines, width, path, first)
    if pixels.size and pixels.max() > 255:
        i, j = np.argwhere(pixels > 255)[0]
        raise QuicknetsError(f"{path} line {first + i}, column {j + 2}: {pixels[i, j]} is not "
                             "a pixel value (whole numbers 0..255)")
    return pixels.astype(np.uint8), (labels, first)


def _is_header(lines: list) -> bool:
    """A first row with a word among its pixel cells, or a word over a numbered label column
    (an empty cell is not a word: it is an error in a data row)."""
    cells = lines[0].split(b",")
    if any(_word(c) for c in cells[1:]):
        return True
    return _word(cells[0]) and len(lines) > 1 and _number(lines[1].split(b",")[0])


def _word(cell: bytes) -> bool:
    return bool(cell.strip().strip(b'"')) and not _number(cell)


def _number(cell: bytes) -> bool:
    try:
        float(cell.strip().strip(b'"'))
        return True
    except ValueError:
        return False


def _parse_digits(lines: list, width: int, path, first: int) -> np.ndarray:
    """Rows of comma-separated whole numbers -> int64 (N, width), a chunk at a time by numpy's
    C parser (about 1.5 s for 60000 rows of 785). An empty cell sends a chunk to _parse_cells
    for the error's line and column."""
    out = np.empty((len(lines), width), np.int64)
    for start in range(0, len(lines), CSV_CHUNK):
        chunk = lines[start:start + CSV_CHUNK]
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error")  # numpy warns, then stops, at a malformed cell
                values = np.fromstring(b",".join(chunk), dtype=np.int64, sep=",")
        except (ValueError, DeprecationWarning):
            values = np.zeros(0)
        if values.size != len(chunk) * width:
            _parse_cells(chunk, width, path, first + start)  # raises, naming the cell
            raise QuicknetsError(f"{path}: cannot parse lines {first + start} to "
                                 f"{first + start + len(chunk) - 1}")
        out[start:start + len(chunk)] = values.reshape(len(chunk), width)
    return out


def _parse_cells(lines: list, width: int, path, first: int) -> tuple:
    """The general path (quotes, spaces, decimals, class names): (labels, pixels float)."""
    import csv
    try:
        rows = csv.reader(io.StringIO(b"\n".join(lines).decode("utf-8")))
    except UnicodeDecodeError as e:
        raise QuicknetsError(f"{path} is not a UTF-8 text file (byte {e.start} of the data "
                             "rows)") from None
    labels, pixels = [], np.empty((len(lines), width - 1), np.float64)
    for i, row in enumerate(rows):
        if len(row) != width:
            raise QuicknetsError(f"{path} line {first + i} has {len(row)} value(s); line "
                                 f"{first} has {width} (a label, then the pixels)")
        labels.append(row[0].strip())
        try:
            pixels[i] = [float(c) for c in row[1:]]
        except ValueError:
            j = next(j for j, c in enumerate(row[1:]) if not _number(c.encode()))
            cell = row[j + 1].strip()
            what = "an empty cell" if not cell else f"{cell!r} is not a number"
            raise QuicknetsError(f"{path} line {first + i}, column {j + 2}: {what}") from None
    bad = (pixels < 0) | (pixels > 255) | (pixels != np.round(pixels)) | ~np.isfinite(pixels)
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise QuicknetsError(f"{path} line {first + i}, column {j + 2}: {_show(pixels[i, j])} "
                             "is not a pixel value (whole numbers 0..255)")
    try:
        labels = np.array([int(x) for x in labels], np.int64)
    except ValueError:
        pass  # class names
    return labels, pixels.astype(np.int64)


def _show(x: float) -> str:
    return str(int(x)) if np.isfinite(x) and x == int(x) else str(x)


def row_shape(pixels: int, path) -> tuple:
    """(C, S, S) for rows of `pixels` values: S*S grey or 3*S*S colour."""
    for c in (1, 3):
        side = math.isqrt(pixels // c)
        if pixels % c == 0 and c * side * side == pixels:
            return (c, side, side)
    raise QuicknetsError(f"{path}: rows of {pixels} pixels are not a square image in 1 or 3 "
                         "channels (28x28 = 784, 3x32x32 = 3072)")


def label_classes(train, test, train_row, test_row, path) -> tuple:
    """(class names, (train labels, test labels) as int64 tensors) from raw labels: whole
    numbers are class numbers (classes 0..the largest), otherwise names (sorted). A test label
    outside the training set's classes is an error naming its row (`*_row(i)`)."""
    import torch
    numbers = isinstance(train, np.ndarray)
    if numbers:
        if (train < 0).any():
            i = int(np.flatnonzero(train < 0)[0])
            raise QuicknetsError(f"{train_row(i)}: label {train[i]} is negative; labels are "
                                 "class numbers 0, 1, ... or class names")
        classes = [str(c) for c in range(int(train.max()) + 1)]
        y_train = train
    else:
        train = [str(x) for x in train]
        classes = sorted(set(train))
        index = {c: i for i, c in enumerate(classes)}
        y_train = np.array([index[x] for x in train], np.int64)
    if len(np.unique(y_train)) < 2:
        raise QuicknetsError(f"{path} holds a single class ({classes[int(y_train[0])]}); a "
                             "classifier needs at least two")
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
            raise QuicknetsError(f"{test_row(i)}: label {test[i]} is not one of the "
                                 f"{len(classes)} classes of {path} ({shown})")
        y_test = torch.from_numpy(np.ascontiguousarray(y_test, np.int64))
    return classes, (torch.from_numpy(np.ascontiguousarray(y_train, np.int64)), y_test)


# -- npz ---------------------------------------------------------------------------------------

def _npz_plan(path: Path, test_path, look: bool):
    raws = {"train": _read_bytes(path), "test": _read_bytes(test_path) if test_path else b""}
    digest = _digest([("train", raws["train"]), ("test", raws["test"])])
    arrays = _npz_arrays(raws["train"], path)
    has_test = test_path is not None or look and {"x_test", "y_test"} <= set(arrays)

    def build(image_size, channels):
        x_train, y_train = _npz_split(arrays, "train", path)
        test = None
        if has_test:
            source = _npz_arrays(raws["test"], test_path) if test_path else arrays
            test = _npz_split(source, "test", test_path or path)
            if test[0].shape[1:] != x_train.shape[1:]:
                raise QuicknetsError(f"{test_path or path}: x_test holds images of shape "
                                     f"{test[0].shape[1:]}, x_train of {x_train.shape[1:]}")
        key = lambda file, split: lambda i: f"{file} y_{split}[{i}]"  # noqa: E731
        classes, y = label_classes(y_train, test[1] if test else None, key(path, "train"),
                                   key(test_path or path, "test"), path)
        tensors = {"train_images": x_train, "train_labels": y[0]}
        if test is not None:
            tensors |= {"test_images": test[0], "test_labels": y[1]}
        return _as_tensors(tensors, image_size, channels), classes
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
        raise QuicknetsError(f"{path} has no {' or '.join(missing)} (it holds "
                             f"{', '.join(arrays) or 'nothing'}; expected x_train, y_train, "
                             "x_test, y_test)")
    x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
    if x.ndim == 4 and x.shape[3] in (1, 3):
        x = x.transpose(0, 3, 1, 2)  # (N, H, W, C) -> (N, C, H, W)
    elif x.ndim == 3:
        x = x[:, None]
    else:
        raise QuicknetsError(f"{path}: x_{split} has shape {x.shape}; expected (N, H, W) or "
                             "(N, H, W, C) with C = 1 or 3")
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]  # CIFAR's (N, 1)
    if y.ndim != 1 or len(y) != len(x):
        raise QuicknetsError(f"{path}: y_{split} has shape {y.shape} for {len(x)} images; "
                             f"expected ({len(x)},)")
    if x.dtype != np.uint8:
        if x.dtype.kind not in "iuf" or x.size and (x.min() < 0 or x.max() > 255
                                                    or not np.array_equal(x, np.round(x))):
            raise QuicknetsError(f"{path}: x_{split} holds {x.dtype} values that are not "
                                 "pixels (whole numbers 0..255)")
    if y.dtype.kind == "f" and np.array_equal(y, np.round(y)):
        y = y.astype(np.int64)
    if y.dtype.kind in "iu":
        y = y.astype(np.int64)
    elif y.dtype.kind not in "US":
        raise QuicknetsError(f"{path}: y_{split} holds {y.dtype} values, not class numbers "
                             "or names")
    return np.ascontiguousarray(x.astype(np.uint8)), y if y.dtype.kind in "iu" else list(y)


# -- folders of class folders ------------------------------------------------------------------

def _folder_plan(root: Path, test_path, look: bool):
    train_root, test_root = root, test_path
    split = {p.name.lower(): p for p in _entries(root) if p.is_dir()}
    if "train" in split:  # train/ and test/, rather than class folders
        train_root = split["train"]
        test_root = test_root or (split.get("test") if look else None)
    train_files, classes = list_images(train_root)
    test_files = []
    if test_root is not None:
        if not test_root.is_dir():
            raise QuicknetsError(f"--test {test_root} is not a folder of class folders, as "
                                 f"{root} is")
        test_files, test_classes = list_images(test_root, single=True)
        unknown = sorted(set(test_classes) - set(classes))
        if unknown:
            raise QuicknetsError(f"{test_root / unknown[0]} is a class that {train_root} does "
                                 f"not have (its classes: {', '.join(classes[:10])}"
                                 f"{', ...' if len(classes) > 10 else ''})")
        index = {c: i for i, c in enumerate(classes)}
        test_files = [(p, index[test_classes[c]]) for p, c in test_files]
    files = [("train", p) for p, _ in train_files] + [("test", p) for p, _ in test_files]
    digest = _files_digest(files, root)

    def build(image_size, channels):
        import torch
        paths = [p for _, p in files]
        arrays = decode_images(paths, image_size, channels, root)
        n = len(train_files)
        tensors = {"train_images": arrays[:n],
                   "train_labels": torch.tensor([c for _, c in train_files], dtype=torch.long)}
        if test_files:
            tensors |= {"test_images": arrays[n:],
                        "test_labels": torch.tensor([c for _, c in test_files],
                                                    dtype=torch.long)}
        return {k: _squeeze(v) for k, v in tensors.items()}, classes
    return root.name, test_root if test_files else None, digest, build


def _hidden(name: str) -> bool:
    return name.startswith(".") or name.lower() in IGNORED


def _entries(folder: Path) -> list:
    try:
        return sorted(p for p in folder.iterdir() if not _hidden(p.name))
    except OSError as e:
        raise QuicknetsError(f"cannot read the folder {folder}: {e.strerror or e}") from None


def list_images(root: Path, single: bool = False) -> tuple:
    """([(file, class index)], class names) of a folder of class folders, files (str: 60,000
    Path objects cost a second) in sorted order, hidden ones skipped. No class folder, one
    (unless `single`, for a test folder) or an empty one is an error."""
    classes = [p.name for p in _entries(root) if p.is_dir()]
    if not classes:
        raise QuicknetsError(f"{root} holds no class folders (one folder of images per class, "
                             f"such as {root / 'cat' / '1.png'})")
    if len(classes) == 1 and not single:
        raise QuicknetsError(f"{root} holds a single class folder ({classes[0]}); a classifier "
                             "needs at least two")
    files = []
    for index, name in enumerate(classes):
        found = []
        for folder, dirs, names in os.walk(root / name):
            dirs[:] = sorted(d for d in dirs if not _hidden(d))
            found += [os.path.join(folder, f) for f in sorted(names) if not _hidden(f)]
        if not found:
            raise QuicknetsError(f"{root / name} holds no images (an empty class folder)")
        files += [(p, index) for p in found]
    return files, classes


def _files_digest(files: list, root: Path) -> str:
    """SHA-256 over each file's place under `root` and its content. Read in this thread: for
    60,000 small files, threads only add contention (measured 2.8 s against 0.9 s)."""
    h = hashlib.sha256(b"quicknets folder")
    start = len(str(root)) + 1
    for split, path in files:
        try:
            with open(path, "rb") as f:
                digest = hashlib.sha256(f.read()).digest()
        except OSError as e:
            raise QuicknetsError(f"cannot read {path}: {e.strerror or e}") from None
        h.update(f"{split}/{str(path)[start:]}".encode() + b"\0" + digest)
    return h.hexdigest()


def decode_images(paths: list, image_size: int, channels: int, root: Path):
    """uint8 (N, C, H, W) of image files, in worker processes for a large folder. Unreadable
    files are refused (the count and the first); sizes or channels that differ without
    image_size / channels are an error listing them."""
    import torch
    size = (image_size, image_size) if image_size else None
    jobs = [(paths[i:i + 500], size, channels or None) for i in range(0, len(paths), 500)]
    workers = _workers(len(paths))
    if workers > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor
        # fork where there is one: the workers run PIL and numpy, never torch (whose thread
        # pools a fork cannot copy), as DataLoader's workers do on Linux; and unlike spawn it
        # needs no `if __name__ == "__main__":` in the script that loads the data
        method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context(method)) as p:
            results = [r for chunk in p.map(_decode_chunk, jobs) for r in chunk]
    else:
        results = [r for job in jobs for r in _decode_chunk(job)]
    bad = [(p, r) for p, r in zip(paths, results) if isinstance(r, str)]
    if bad:
        raise QuicknetsError(f"{len(bad)} of {len(paths)} files in {root} cannot be read as "
                             f"images, so none were used; the first: {bad[0][1]}. Remove or "
                             "replace them (hidden files are ignored)")
    shapes = {}
    for path, array in zip(paths, results):
        shapes.setdefault(array.shape, []).append(path)
    if len(shapes) > 1:
        raise QuicknetsError(_mixed(shapes, root))
    return torch.from_numpy(np.stack(results)) if results else torch.zeros(0, 1, 1, 1,
                                                                          dtype=torch.uint8)


def _workers(n: int) -> int:
    if n < POOL_MIN:
        return 1
    from quicknets.machine import free_cores
    return max(1, min(free_cores(), 8, n // 1000))


def _decode_chunk(job) -> list:
    """Each file as uint8 (C, H, W), or the reason it cannot be read (a str). Runs in a worker
    process: imports no torch."""
    from quicknets.images import decode_image
    paths, size, channels = job
    out = []
    for path in paths:
        try:
            out.append(decode_image(path, size, channels))
        except QuicknetsError as e:
            out.append(str(e))
    return out


def _mixed(shapes: dict, root: Path) -> str:
    """One line for images that differ in channels or size."""
    by_channels, by_size = {}, {}
    for (c, h, w), paths in shapes.items():
        by_channels.setdefault(c, []).extend(paths)
        by_size.setdefault((h, w), []).extend(paths)
    if len(by_channels) > 1:
        parts = [f"{len(p)} {'grey' if c == 1 else 'colour'} (e.g. {p[0]})"
                 for c, p in sorted(by_channels.items())]
        return (f"{root} holds grey and colour images: {', '.join(parts)}; give --channels 1 "
                "or 3 to bring them to one")
    common = sorted(by_size.items(), key=lambda kv: -len(kv[1]))
    parts = [f"{h}x{w}: {len(p)}" for (h, w), p in common[:4]]
    odd = common[1][1][0]
    return (f"{root} holds images of {len(by_size)} sizes ({', '.join(parts)}"
            f"{', ...' if len(common) > 4 else ''}; e.g. {odd}); give --image-size SIZE to "
            "bring them to SIZE x SIZE")


# -- shared steps ------------------------------------------------------------------------------

def _read_bytes(path: Path) -> bytes:
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


def _digest(parts: list) -> str:
    h = hashlib.sha256()
    for name, raw in parts:
        h.update(name.encode() + b"\0" + hashlib.sha256(raw).digest())
    return h.hexdigest()


def _as_tensors(arrays: dict, image_size: int, channels: int) -> dict:
    """numpy images (N, C, H, W) brought to `channels` and `image_size` (0: as they are), as
    torch tensors; 1-channel images as (N, H, W)."""
    import torch
    out = {}
    for key, value in arrays.items():
        if key.endswith("images"):
            value = _squeeze(torch.from_numpy(conform(value, image_size, channels)))
        out[key] = value
    return out


def _squeeze(x):
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
        from quicknets.images import resize
        size = (image_size, image_size)
        images = np.stack([resize(x.transpose(1, 2, 0), size).transpose(2, 0, 1)
                           for x in images])
    return np.ascontiguousarray(images)


def _cache_file(kind: str, name: str, key: str) -> Path:
    from quicknets.storage import cache_dir
    safe = re.sub(r"[^A-Za-z0-9_.-]", "-", name)[:40]
    return cache_dir() / "decoded" / f"{kind}-{safe}-{key[:16]}.pt"


def _read_cache(path: Path, key: str) -> dict | None:
    """The saved tensors and classes for `key`; None when missing, stale or damaged."""
    import torch
    try:
        saved = torch.load(path, weights_only=True)
        if saved["key"] == key and all(zlib.crc32(t.numpy()) == saved["crc32"][k]
                                       for k, t in saved["tensors"].items()):
            return saved
    except Exception:  # missing, or damaged: torch.load reads a flipped byte without a word
        pass
    return None


def _write_cache(path: Path, key: str, saved: dict) -> None:
    from quicknets.storage import atomic_torch_save
    crc32 = {k: zlib.crc32(t.numpy()) for k, t in saved["tensors"].items()}
    try:
        atomic_torch_save({**saved, "key": key, "crc32": crc32}, path)
    except OSError as e:  # a read-only cache slows the next load; it does not stop this one
        print(f"warning: cannot write the decoded cache {path}: {e}", file=sys.stderr)
