"""Writers for every format :func:`image2point.io.read_point_cloud` reads back, all atomic.

write_ply, write_pcd and write_las live with their readers (ply.py, pcd.py, las.py); this module
adds KITTI scans and labels, .npy, and :func:`write_point_cloud`, which picks the writer by extension.
Each writer checks its input before it opens a file and writes through a temporary file in the
target's directory, so an error never leaves a partial file behind.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

from image2point.errors import DataError
from image2point.io.cloud import COORDINATE_NAMES, PointCloud
from image2point.io.kitti import LABEL_DTYPE, SCAN_FIELDS, SCAN_VALUE_DTYPE
from image2point.io.las import write_las
from image2point.io.output import (
    as_integer_type,
    atomic_output,
    checked_fields,
    checked_points,
    require_float32_coordinates,
)
from image2point.io.pcd import write_pcd
from image2point.io.ply import write_ply

__all__ = [
    "WRITERS",
    "write_kitti_bin",
    "write_kitti_label",
    "write_las",
    "write_npy",
    "write_pcd",
    "write_ply",
    "write_point_cloud",
]


def write_kitti_bin(path: str | Path, points: np.ndarray, intensity: np.ndarray | None = None) -> None:
    """Write a KITTI velodyne scan: float32 x, y, z, intensity per point (intensity 0 when None).

    Raises ValueError when float32 would move some coordinate by more than 0.1 mm: recentre first.
    """
    points = checked_points(points)
    require_float32_coordinates(points, "a KITTI .bin scan")
    if intensity is None:
        intensity = np.zeros(len(points))
    intensity = np.asarray(intensity)
    if intensity.shape != (len(points),):
        raise ValueError(f"intensity must be [{len(points)}], got shape {intensity.shape}")
    if intensity.dtype.kind not in "biuf" or not np.isfinite(intensity).all():
        raise ValueError("intensity must hold finite numbers")
    records = np.concatenate([points, intensity[:, None]], axis=1).astype(SCAN_VALUE_DTYPE)
    with atomic_output(path, "wb") as handle:
        handle.write(records.tobytes())


def write_kitti_label(path: str | Path, labels: np.ndarray) -> None:
    """Write SemanticKITTI labels: one little-endian uint32 per point (values 0 .. 2**32 - 1)."""
    labels = np.asarray(labels)
    if labels.ndim != 1 or len(labels) == 0:
        raise ValueError(f"labels must be [N] with N >= 1, got shape {labels.shape}")
    stored = as_integer_type(labels, np.uint32, "labels").astype(LABEL_DTYPE)
    with atomic_output(path, "wb") as handle:
        handle.write(stored.tobytes())


def write_npy(path: str | Path, points: np.ndarray, fields: Mapping[str, np.ndarray] | None = None) -> None:
    """Write a structured .npy array: float64 x, y, z and each field with its dtype ([N, k] as a sub-array)."""
    points = checked_points(points)
    fields = checked_fields(fields, len(points))
    layout = [(name, np.float64) for name in COORDINATE_NAMES]
    layout += [(name, values.dtype, values.shape[1:]) for name, values in fields.items()]
    records = np.empty(len(points), dtype=layout)
    for axis, name in enumerate(COORDINATE_NAMES):
        records[name] = points[:, axis]
    for name, values in fields.items():
        records[name] = values
    with atomic_output(path, "wb") as handle:
        np.save(handle, records, allow_pickle=False)


def _write_cloud_kitti_bin(path: Path, cloud: PointCloud) -> None:
    extra = [name for name in cloud.fields if name not in SCAN_FIELDS]
    if extra:
        raise ValueError(f"a KITTI .bin scan holds x, y, z, intensity only; the cloud also has {', '.join(extra)}")
    write_kitti_bin(path, cloud.points, cloud.fields.get("intensity"))


WRITERS: dict[str, Callable[[Path, PointCloud], None]] = {
    ".ply": lambda path, cloud: write_ply(path, cloud.points, cloud.fields),
    ".pcd": lambda path, cloud: write_pcd(path, cloud.points, cloud.fields),
    ".las": lambda path, cloud: write_las(path, cloud.points, cloud.fields),
    ".laz": lambda path, cloud: write_las(path, cloud.points, cloud.fields),
    ".npy": lambda path, cloud: write_npy(path, cloud.points, cloud.fields),
    ".bin": _write_cloud_kitti_bin,
}


def write_point_cloud(path: str | Path, cloud: PointCloud) -> None:
    """Write ``cloud`` with all its fields in the format of ``path``'s extension (see WRITERS)."""
    path = Path(path)
    writer = WRITERS.get(path.suffix.lower())
    if writer is None:
        raise DataError(f"cannot write extension {path.suffix or '(none)'!r}; writable: {', '.join(WRITERS)}", path)
    writer(path, cloud)
