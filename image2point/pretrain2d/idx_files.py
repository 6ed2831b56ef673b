"""The idx files of LeCun's MNIST distribution (gzipped or not): a big-endian header, then uint8 data."""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np

from image2point.errors import DataError

MNIST_IMAGES_MAGIC = 2051
MNIST_LABELS_MAGIC = 2049
GZIP_SUFFIX = ".gz"
# Big-endian uint32 fields: magic, count, then rows and columns for images.
IDX_IMAGES_HEADER = struct.Struct(">IIII")
IDX_LABELS_HEADER = struct.Struct(">II")


def find_idx_file(root: Path, name: str) -> Path:
    """``root/name.gz``, else ``root/name``; neither raises :class:`DataError`."""
    for path in (root / (name + GZIP_SUFFIX), root / name):
        if path.is_file():
            return path
    raise DataError(f"missing MNIST file (also looked for {name} uncompressed)", root / (name + GZIP_SUFFIX))


def _read_idx_bytes(path: Path) -> bytes:
    try:
        if path.name.endswith(GZIP_SUFFIX):
            with gzip.open(path, "rb") as stream:
                return stream.read()
        return path.read_bytes()
    except (OSError, EOFError, zlib.error) as error:
        raise DataError(f"cannot read idx file: {error}", path) from error


def _unpack_header(data: bytes, header: struct.Struct, magic: int, kind: str, path: Path) -> tuple[int, ...]:
    if len(data) < header.size:
        raise DataError(f"idx file is {len(data)} bytes, shorter than its {header.size}-byte header", path)
    fields = header.unpack_from(data)
    if fields[0] != magic:
        raise DataError(f"idx magic number is {fields[0]}, expected {magic} for {kind}", path)
    return fields[1:]


def _payload(data: bytes, header: struct.Struct, expected: int, path: Path) -> np.ndarray:
    payload = np.frombuffer(data, dtype=np.uint8, offset=header.size)
    if payload.size != expected:
        raise DataError(f"idx file holds {payload.size} data bytes, its header announces {expected}", path)
    # A writable copy: torch refuses to share memory with the read-only buffer of ``data``.
    return payload.copy()


def read_idx_images(path: Path) -> np.ndarray:
    """The uint8 ``[N, rows, cols]`` images of an idx3 file (magic number 2051)."""
    data = _read_idx_bytes(path)
    count, rows, cols = _unpack_header(data, IDX_IMAGES_HEADER, MNIST_IMAGES_MAGIC, "images", path)
    return _payload(data, IDX_IMAGES_HEADER, count * rows * cols, path).reshape(count, rows, cols)


def read_idx_labels(path: Path) -> np.ndarray:
    """The uint8 ``[N]`` labels of an idx1 file (magic number 2049)."""
    data = _read_idx_bytes(path)
    (count,) = _unpack_header(data, IDX_LABELS_HEADER, MNIST_LABELS_MAGIC, "labels", path)
    return _payload(data, IDX_LABELS_HEADER, count, path)
