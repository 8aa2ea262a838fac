"""CSV files of images, one per row: the label first, then the pixels (see sources.py).

    plan = csv_plan(Path("mnist_train.csv"), None, look=True)   # its test file: mnist_test.csv
    raw = Path("mnist_train.csv").read_bytes()
    pixels, (labels, first_line) = parse_csv(raw, "mnist_train.csv")

Rows of whole numbers (Kaggle's CSVs) go through numpy's C parser a chunk at a time: 60,000 rows
of 785 in about 1.5 s. Decimals, quotes, spaces or class names take the csv module, a row at a
time. Every error names the file, its line and, for a cell, its column.
"""

import io
import math
import re
import warnings
from pathlib import Path

import numpy as np

from quicknets.base.errors import QuicknetsError
from quicknets.data.rawdata import as_tensors, content_digest, label_classes, read_bytes

CSV_CHUNK = 8192  # rows parsed at once by the fast path (about 18 MB of text for 28x28)


def csv_plan(path: Path, test_path, look: bool):
    """(name, test file or None, content digest, build): build(image_size, channels) parses
    the file (and its test file: `test_path`, else when `look` the one beside it) into
    (tensors, classes). The digest is taken now; the parse only on a cache miss."""
    test_path = test_path or (_beside(path) if look else None)
    raws = {"train": read_bytes(path), "test": read_bytes(test_path) if test_path else b""}
    digest = content_digest([("train", raws["train"]), ("test", raws["test"])])
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
                    "to hold out part of the training set instead"
                )
        shape = row_shape(pixels.shape[1], path)
        classes, (y_train, y_test) = label_classes(
            labels,
            test_labels if test_path else None,
            lambda i: f"{path} line {first + i}",
            lambda i: f"{test_path} line {test_first + i}",
            path,
        )
        arrays = {"train_images": pixels.reshape(-1, *shape), "train_labels": y_train}
        if test_path:
            arrays |= {"test_images": test_pixels.reshape(-1, *shape), "test_labels": y_test}
        return as_tensors(arrays, image_size, channels), classes

    return name, test_path, digest, build


def _beside(path: Path) -> Path | None:
    """mnist_train.csv -> mnist_test.csv (TRAIN -> TEST, Train -> Test) when it exists."""
    name = path.name
    at = name.lower().rfind("train")
    if at < 0:
        return None
    word = name[at : at + 5]
    test = "TEST" if word.isupper() else "Test" if word[0].isupper() else "test"
    other = path.with_name(name[:at] + test + name[at + 5 :])
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
        raise QuicknetsError(
            f"{path} line {first + i} {what}; "
            + (
                f"line {first} has {width} (a label, then the pixels)"
                if width >= 2
                else "a row is a label, then the pixels"
            )
        )
    if not b"\n".join(lines).translate(None, b"0123456789,\n"):  # whole numbers only: fast
        values = _parse_digits(lines, width, path, first)
        labels = values[:, 0]
        pixels = values[:, 1:]
    else:
        labels, pixels = _parse_cells(lines, width, path, first)
    if pixels.size and pixels.max() > 255:
        i, j = np.argwhere(pixels > 255)[0]
        raise QuicknetsError(
            f"{path} line {first + i}, column {j + 2}: {pixels[i, j]} is not "
            "a pixel value (whole numbers 0..255)"
        )
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
        chunk = lines[start : start + CSV_CHUNK]
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error")  # numpy warns, then stops, at a malformed cell
                values = np.fromstring(b",".join(chunk), dtype=np.int64, sep=",")
        except (ValueError, DeprecationWarning):
            values = np.zeros(0)
        if values.size != len(chunk) * width:
            _parse_cells(chunk, width, path, first + start)  # raises, naming the cell
            raise QuicknetsError(
                f"{path}: cannot parse lines {first + start} to {first + start + len(chunk) - 1}"
            )
        out[start : start + len(chunk)] = values.reshape(len(chunk), width)
    return out


def _parse_cells(lines: list, width: int, path, first: int) -> tuple:
    """The general path (quotes, spaces, decimals, class names): (labels, pixels float)."""
    import csv

    try:
        rows = csv.reader(io.StringIO(b"\n".join(lines).decode("utf-8")))
    except UnicodeDecodeError as e:
        raise QuicknetsError(
            f"{path} is not a UTF-8 text file (byte {e.start} of the data rows)"
        ) from None
    labels, pixels = [], np.empty((len(lines), width - 1), np.float64)
    for i, row in enumerate(rows):
        if len(row) != width:
            raise QuicknetsError(
                f"{path} line {first + i} has {len(row)} value(s); line "
                f"{first} has {width} (a label, then the pixels)"
            )
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
        raise QuicknetsError(
            f"{path} line {first + i}, column {j + 2}: {_show(pixels[i, j])} "
            "is not a pixel value (whole numbers 0..255)"
        )
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
    raise QuicknetsError(
        f"{path}: rows of {pixels} pixels are not a square image in 1 or 3 "
        "channels (28x28 = 784, 3x32x32 = 3072)"
    )
