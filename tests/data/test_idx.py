"""kzoo.data.idx.read_idx against idx files written here from the format's definition (big-endian header)."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest

from kzoo.data.idx import read_idx


def _idx_bytes(array: np.ndarray, code: int) -> bytes:
    header = bytes([0, 0, code, array.ndim]) + b"".join(struct.pack(">I", side) for side in array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


@pytest.mark.parametrize(
    "dtype, code", [(np.uint8, 0x08), (np.int8, 0x09), (np.int16, 0x0B), (np.int32, 0x0C), (np.float32, 0x0D),
                    (np.float64, 0x0E)],
)  # fmt: skip
@pytest.mark.parametrize("compressed", [False, True])
def test_reads_every_type_plain_and_gzipped(tmp_path, dtype, code, compressed):
    array = (np.arange(2 * 3 * 4) - 7).reshape(2, 3, 4).astype(dtype)
    if dtype == np.uint8:
        array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    data = _idx_bytes(array, code)
    path = tmp_path / ("images.idx.gz" if compressed else "images.idx")
    path.write_bytes(gzip.compress(data) if compressed else data)
    out = read_idx(path)
    assert out.dtype == np.dtype(dtype) and out.dtype.isnative and out.shape == (2, 3, 4)
    np.testing.assert_array_equal(out, array)


def test_labels_are_one_dimensional(tmp_path):
    (tmp_path / "labels.idx").write_bytes(_idx_bytes(np.array([3, 1, 4], np.uint8), 0x08))
    np.testing.assert_array_equal(read_idx(tmp_path / "labels.idx"), [3, 1, 4])


def test_bad_files_are_named(tmp_path):
    good = _idx_bytes(np.zeros((2, 2), np.uint8), 0x08)
    cases = {
        "magic.idx": (b"\x01\x00\x08\x01" + good[4:], "bad magic number"),
        "type.idx": (b"\x00\x00\x07\x01" + good[4:], "bad magic number"),
        "header.idx": (good[:6], "truncated \\(header\\)"),
        "short.idx": (good[:-1], "truncated or corrupt: 15 bytes, expected 16 for shape \\(2, 2\\)"),
        "long.idx": (good + b"\x00", "17 bytes, expected 16"),
        "bad.gz": (b"not gzip at all", "cannot read idx file"),
    }
    for name, (data, message) in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(ValueError, match=message):
            read_idx(tmp_path / name)
    with pytest.raises(FileNotFoundError, match="idx file not found"):
        read_idx(tmp_path / "none.idx")
