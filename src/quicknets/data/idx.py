"""Read IDX files (the MNIST family's format), gzipped or raw, checking every byte is accounted for.

    array, sha256 = read_idx("train-images-idx3-ubyte.gz")   # numpy uint8 (N, 28, 28), digest

The digest is of the decompressed content, so a repackaged `.gz` of the same data has the same one.
"""

import gzip
import hashlib
import math
import zlib
from pathlib import Path

import numpy as np

from quicknets.base.errors import QuicknetsError

# IDX type codes (third byte of the magic number) and the numpy dtype they hold, big-endian.
_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_raw(path) -> bytes:
    """The bytes of `path` as stored (gzipped or not)."""
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise QuicknetsError(f"cannot read {path}: {e.strerror or e}") from None


def decompress(raw: bytes, name) -> bytes:
    """The IDX content of a file's bytes (gzip is recognised by its magic bytes, not its name)."""
    if raw[:2] != b"\x1f\x8b":
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as e:
        raise QuicknetsError(
            f"{name} is a corrupt or truncated gzip file ({e}); delete it and fetch the data again"
        ) from None


def parse_idx(content: bytes, name: str = "IDX data") -> np.ndarray:
    """Parse IDX bytes into an array; any size mismatch is an error naming `name`."""
    if len(content) < 4 or content[0] != 0 or content[1] != 0:
        raise QuicknetsError(f"{name} is not an IDX file (bad magic number)")
    code, ndim = content[2], content[3]
    if code not in _DTYPES or ndim == 0:
        raise QuicknetsError(f"{name} is not an IDX file (type code 0x{code:02x}, {ndim} dims)")
    header = 4 + 4 * ndim
    if len(content) < header:
        raise QuicknetsError(f"{name} is truncated (header cut short)")
    shape = tuple(int.from_bytes(content[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_DTYPES[code])
    expected = header + math.prod(shape) * dtype.itemsize  # exact: no int64 overflow
    if len(content) < expected:
        raise QuicknetsError(
            f"{name} is truncated: {len(content)} bytes, its header "
            f"promises {expected} for shape {shape}; fetch it again"
        )
    if len(content) > expected:
        raise QuicknetsError(
            f"{name} has {len(content) - expected} bytes of trailing data "
            f"after shape {shape}; it is corrupt, fetch it again"
        )
    array = np.frombuffer(content, dtype=dtype, offset=header).reshape(shape)
    return array.astype(dtype.newbyteorder("="), copy=True)


def read_idx(path) -> tuple[np.ndarray, str]:
    """Read one IDX file; return the array and the SHA-256 of its decompressed content."""
    content = decompress(read_raw(path), path)
    return parse_idx(content, str(path)), hashlib.sha256(content).hexdigest()


def write_idx(path, array: np.ndarray, compress: bool = False) -> None:
    """Write `array` as an IDX file (used by tests and by anyone making a small dataset)."""
    array = np.asarray(array)
    codes = {np.dtype(np.uint8): 0x08, np.dtype(np.int8): 0x09}
    if array.dtype not in codes:
        raise QuicknetsError(f"write_idx takes uint8 or int8 arrays, not {array.dtype}")
    header = bytes([0, 0, codes[array.dtype], array.ndim])
    header += b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    content = header + array.tobytes()
    Path(path).write_bytes(gzip.compress(content) if compress else content)
