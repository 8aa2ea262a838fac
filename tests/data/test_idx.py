"""IDX reading on generated files: round trips, gzip, and every way a file can be broken."""

import gzip

import numpy as np
import pytest

from quicknets.base.errors import QuicknetsError
from quicknets.data.idx import parse_idx, read_idx, write_idx


@pytest.mark.parametrize("compress", [False, True])
def test_round_trip(tmp_path, compress):
    images = np.random.default_rng(0).integers(0, 256, (5, 28, 28), dtype=np.uint8)
    write_idx(tmp_path / "x", images, compress)
    back, digest = read_idx(tmp_path / "x")
    assert back.dtype == np.uint8 and back.shape == (5, 28, 28)
    assert np.array_equal(back, images)
    assert len(digest) == 64


def test_digest_is_of_decompressed_content(tmp_path):
    labels = np.arange(10, dtype=np.uint8)
    write_idx(tmp_path / "raw", labels)
    write_idx(tmp_path / "packed", labels, compress=True)
    assert read_idx(tmp_path / "raw")[1] == read_idx(tmp_path / "packed")[1]


def test_header_fields_parsed_big_endian():
    content = (
        bytes([0, 0, 0x08, 2]) + (3).to_bytes(4, "big") + (2).to_bytes(4, "big") + bytes(range(6))
    )
    assert parse_idx(content).tolist() == [[0, 1], [2, 3], [4, 5]]


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "bad magic"),
        (b"\x01\x00\x08\x01", "bad magic"),
        (bytes([0, 0, 0x42, 1]), "type code 0x42"),
        (bytes([0, 0, 0x08, 3, 0, 0]), "header cut short"),
        (bytes([0, 0, 0x08, 1, 0, 0, 0, 5, 1, 2]), "truncated"),
        (bytes([0, 0, 0x08, 1, 0, 0, 0, 1, 1, 2]), "trailing data"),
    ],
)
def test_broken_content(content, message):
    with pytest.raises(QuicknetsError, match=message):
        parse_idx(content, "f")


def test_truncated_file_named_in_error(tmp_path):
    write_idx(tmp_path / "x", np.zeros((10, 28, 28), np.uint8))
    data = (tmp_path / "x").read_bytes()
    (tmp_path / "x").write_bytes(data[:-100])
    with pytest.raises(QuicknetsError, match=f"{tmp_path / 'x'} is truncated"):
        read_idx(tmp_path / "x")


def test_truncated_gzip(tmp_path):
    write_idx(tmp_path / "x.gz", np.zeros((100, 28, 28), np.uint8), compress=True)
    data = (tmp_path / "x.gz").read_bytes()
    (tmp_path / "x.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(QuicknetsError, match="corrupt or truncated gzip"):
        read_idx(tmp_path / "x.gz")


def test_corrupt_gzip(tmp_path):
    good = gzip.compress(bytes(1000))
    (tmp_path / "x.gz").write_bytes(good[:10] + b"\xff" * 20 + good[30:])
    with pytest.raises(QuicknetsError, match="corrupt or truncated gzip"):
        read_idx(tmp_path / "x.gz")


def test_missing_file(tmp_path):
    with pytest.raises(QuicknetsError, match="cannot read"):
        read_idx(tmp_path / "nope")


def test_write_refuses_other_dtypes(tmp_path):
    with pytest.raises(QuicknetsError, match="uint8 or int8"):
        write_idx(tmp_path / "x", np.zeros(3, np.float32))


def test_header_size_is_exact_where_int64_would_overflow():
    content = bytes([0, 0, 0x08, 3]) + (2**32 - 1).to_bytes(4, "big") * 3
    with pytest.raises(QuicknetsError, match=f"promises {16 + (2**32 - 1) ** 3} for"):
        parse_idx(content, "f")


def test_empty_file_parses_to_no_items(tmp_path):
    """An IDX file may hold 0 items; whether that is usable data is for the loader to say."""
    write_idx(tmp_path / "x", np.zeros((0, 28, 28), np.uint8))
    assert read_idx(tmp_path / "x")[0].shape == (0, 28, 28)
