"""The point cloud container that every reader returns and every writer accepts.

Coordinates are float64 so that georeferenced clouds (LAS files in a national grid, with
coordinates near 1e6..1e7 metres) keep millimetre precision; :func:`recentre` moves such a cloud
next to the origin before it is cast to the float32 that networks use.

Readers see a file as named columns ("x", "y", "z", "intensity", "red", ...). :func:`cloud_from_columns`
turns them into a :class:`PointCloud`: x, y and z become ``points``, well-known triplets are joined
into one [N, 3] field (red/green/blue and r/g/b into "rgb", nx/ny/nz and normal_x/normal_y/normal_z
into "normals") and indexed columns ``name_0 .. name_{k-1}`` into one [N, k] field ``name``; every
other column keeps its name.
"""

from __future__ import annotations

import dataclasses
import re
import types
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal

import numpy as np

from image2point.errors import DataError

COORDINATE_NAMES = ("x", "y", "z")
# Scalar columns that readers join into one [N, 3] field; a group is formed only when all three are present.
COLUMN_TRIPLETS = (
    ("rgb", ("red", "green", "blue")),
    ("rgb", ("r", "g", "b")),
    ("normals", ("nx", "ny", "nz")),
    ("normals", ("normal_x", "normal_y", "normal_z")),
)
# Name of a column without a name in the file and in ``fields`` (index counts from 0).
UNNAMED_COLUMN = "column{index}"
_INDEXED_COLUMN = re.compile(r"^(?P<base>.+)_(?P<index>\d+)$")
# Largest coordinate change a float32 cast may cause before a cloud counts as needing recentring,
# in the cloud's unit (metres for LiDAR): 0.1 mm.
FLOAT32_COORDINATE_TOLERANCE = 1e-4
# recentre() rounds its offset to whole units, so the offset is readable and exact in float64.
RECENTRE_OFFSET_ROUNDING = 1.0
RecentreAnchor = Literal["min", "mean"]


@dataclasses.dataclass(frozen=True, eq=False)
class PointCloud:
    """N points with per-point attributes, read from (or to be written to) ``source``.

    points: float64 [N, 3] (other float or integer arrays are converted).
    fields: per-point attributes by name, each [N] or [N, k] (intensity [N], rgb [N, 3], labels [N],
        normals [N, 3], ...), stored as a read-only mapping; "x", "y" and "z" are not fields.
    source: where the cloud came from (a file path), used to name it in errors.
    """

    points: np.ndarray
    fields: Mapping[str, np.ndarray] = dataclasses.field(default_factory=dict)
    source: str = ""

    def __post_init__(self) -> None:
        points = np.asarray(self.points)
        if points.ndim != 2 or points.shape[1] != len(COORDINATE_NAMES):
            raise ValueError(f"points must be [N, 3], got shape {points.shape}")
        if points.dtype.kind not in "iuf":
            raise ValueError(f"points must be numeric, got dtype {points.dtype}")
        fields: dict[str, np.ndarray] = {}
        for name, values in self.fields.items():
            values = np.asarray(values)
            if name in COORDINATE_NAMES:
                raise ValueError(f"{name!r} is a coordinate, not a field")
            if values.ndim not in (1, 2) or len(values) != len(points):
                raise ValueError(f"field {name!r} must be [{len(points)}] or [{len(points)}, k], got {values.shape}")
            fields[name] = values
        object.__setattr__(self, "points", points.astype(np.float64, copy=False))
        object.__setattr__(self, "fields", types.MappingProxyType(fields))
        object.__setattr__(self, "source", str(self.source))

    @property
    def num_points(self) -> int:
        return len(self.points)

    def __len__(self) -> int:
        return self.num_points

    @property
    def attribute_names(self) -> tuple[str, ...]:
        """Names accepted by :meth:`field` and :meth:`features`: the coordinates, then the fields."""
        return COORDINATE_NAMES + tuple(self.fields)

    def field(self, name: str) -> np.ndarray:
        """The attribute called ``name`` ([N] or [N, k]); "x", "y" and "z" give a coordinate column."""
        if name in COORDINATE_NAMES:
            return self.points[:, COORDINATE_NAMES.index(name)]
        if name not in self.fields:
            raise DataError(f"no field {name!r}; available: {', '.join(self.attribute_names)}", self.source or None)
        return self.fields[name]

    def features(self, names: Sequence[str]) -> np.ndarray:
        """float32 [N, C]: the named attributes side by side ([N, k] fields give k columns)."""
        if isinstance(names, str):
            raise TypeError(f"names must be a sequence of field names, not the string {names!r}")
        columns = [self.field(name).reshape(self.num_points, -1) for name in names]
        if not columns:
            return np.zeros((self.num_points, 0), dtype=np.float32)
        return np.concatenate(columns, axis=1).astype(np.float32)


def cloud_from_columns(
    columns: Mapping[str, np.ndarray],
    source: str | Path,
    selected: Sequence[str] | None = None,
    column_kind: str = "column",
) -> PointCloud:
    """A validated PointCloud from a file's named columns ([N] or [N, k] arrays, in file order).

    selected: field names to keep (after triplets and indexed columns are joined); None keeps all.
    column_kind: what the file calls a column ("vertex property", "dataset", ...), for error messages.
    """
    names = list(columns)
    missing = [name for name in COORDINATE_NAMES if name not in columns]
    if missing:
        listed = ", ".join(repr(name) for name in missing)
        raise DataError(f"no {listed} {column_kind}; the file has {', '.join(names) or 'none'}", source)
    for name, values in columns.items():
        if values.dtype.kind not in "biuf":
            raise DataError(f"{column_kind} {name!r} holds {values.dtype} values, not numbers", source)
        if name in COORDINATE_NAMES and values.ndim != 1:
            raise DataError(f"{column_kind} {name!r} has shape {values.shape}; one value per point expected", source)
        if values.ndim not in (1, 2):
            raise DataError(f"{column_kind} {name!r} has shape {values.shape}; [N] or [N, k] expected", source)
    points = np.stack([columns[name] for name in COORDINATE_NAMES], axis=1).astype(np.float64)
    fields = join_columns({name: values for name, values in columns.items() if name not in COORDINATE_NAMES})
    for name, values in fields.items():
        if len(values) != len(points):
            raise DataError(f"{column_kind} {name!r} has {len(values)} values for {len(points)} points", source)
    if selected is not None:
        fields = _selected_fields(fields, selected, source)
    cloud = PointCloud(points=points, fields=fields, source=str(source))
    validate_point_cloud(cloud)
    return cloud


def name_columns(table: np.ndarray, names: Sequence[str] | None, source: str | Path) -> dict[str, np.ndarray]:
    """The columns of a table without column names ([N, C]: headerless text, .npy, .bin, HDF5).

    names: one name per column, in order; None names them x, y, z, column3, column4, ...
    """
    num_columns = table.shape[1]
    if names is None:
        if num_columns < len(COORDINATE_NAMES):
            raise DataError(f"wrong column count: {num_columns} columns; at least 3 (x, y, z) are needed", source)
        names = [*COORDINATE_NAMES, *(UNNAMED_COLUMN.format(index=index) for index in range(3, num_columns))]
    if isinstance(names, str):
        raise TypeError(f"fields must be a sequence of names, not the string {names!r}")
    if len(names) != num_columns:
        raise DataError(
            f"wrong column count: {num_columns} columns but fields names {len(names)} ({', '.join(names)})", source
        )
    repeated = sorted({name for name in names if list(names).count(name) > 1})
    if repeated:
        raise DataError(f"fields names {', '.join(repeated)} more than once", source)
    return {name: np.ascontiguousarray(table[:, index]) for index, name in enumerate(names)}


def join_columns(columns: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Columns with triplets and indexed columns joined into [N, k] fields, in first-member order."""
    groups: dict[str, tuple[str, ...]] = {}
    claimed: set[str] = set()
    for group, members in COLUMN_TRIPLETS:
        if group not in columns and group not in groups and all(member in columns for member in members):
            groups[group] = members
            claimed.update(members)
    for base, members in _indexed_groups(columns, claimed).items():
        groups[base] = members
        claimed.update(members)
    first_member_of = {members[0]: group for group, members in groups.items()}
    joined: dict[str, np.ndarray] = {}
    for name, values in columns.items():
        if name in first_member_of:
            group = first_member_of[name]
            joined[group] = np.stack([columns[member] for member in groups[group]], axis=1)
        elif name not in claimed:
            joined[name] = values
    return joined


def _indexed_groups(columns: Mapping[str, np.ndarray], claimed: set[str]) -> dict[str, tuple[str, ...]]:
    """base -> (base_0, .., base_{k-1}) for complete runs of at least two scalar indexed columns."""
    indices: dict[str, set[int]] = {}
    for name, values in columns.items():
        match = _INDEXED_COLUMN.match(name)
        if match and name not in claimed and values.ndim == 1:
            indices.setdefault(match["base"], set()).add(int(match["index"]))
    groups = {}
    for base, found in indices.items():
        members = tuple(f"{base}_{index}" for index in range(len(found)))
        if len(found) > 1 and all(member in columns for member in members) and base not in columns:
            groups[base] = members
    return groups


def _selected_fields(
    fields: dict[str, np.ndarray], selected: Sequence[str], source: str | Path
) -> dict[str, np.ndarray]:
    wanted = [name for name in selected if name not in COORDINATE_NAMES]
    if len(set(wanted)) != len(wanted):
        repeated = sorted({name for name in wanted if wanted.count(name) > 1})
        raise DataError(f"fields names {', '.join(repeated)} more than once", source)
    missing = [name for name in wanted if name not in fields]
    if missing:
        available = ", ".join(COORDINATE_NAMES + tuple(fields))
        raise DataError(f"no field {', '.join(repr(name) for name in missing)}; available: {available}", source)
    return {name: fields[name] for name in wanted}


def counted(count: int, noun: str) -> str:
    """ "1 point", "2 points": a count with its noun in the right number."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def describe_error(error: BaseException) -> str:
    """A library's exception message on one line (for DataError messages)."""
    return " ".join(str(error).split()) or type(error).__name__


def validate_point_cloud(cloud: PointCloud) -> None:
    """Raises DataError (naming cloud.source) for a cloud no reader should return.

    Checked: at least one point; finite coordinates and float fields (the NaN and Inf values are
    counted); a non-zero extent (not all points identical). Large absolute coordinates are fine:
    see :func:`recentre`.
    """
    source = cloud.source or None
    if cloud.num_points == 0:
        raise DataError("no points", source)
    _check_finite("coordinates", cloud.points, source)
    for name, values in cloud.fields.items():
        if values.dtype.kind == "f":
            _check_finite(f"field {name!r}", values, source)
    if np.all(cloud.points == cloud.points[0]):
        location = tuple(float(value) for value in cloud.points[0])
        if cloud.num_points == 1:
            raise DataError(f"degenerate cloud: a single point at {location}", source)
        raise DataError(f"degenerate cloud: all {cloud.num_points} points are identical, at {location}", source)


def _check_finite(what: str, values: np.ndarray, source: str | None) -> None:
    nan_count = int(np.isnan(values).sum())
    inf_count = int(np.isinf(values).sum())
    if nan_count or inf_count:
        bad_rows = ~np.isfinite(values.reshape(len(values), -1)).all(axis=1)
        raise DataError(
            f"non-finite {what}: {nan_count} NaN and {inf_count} Inf values in {counted(int(bad_rows.sum()), 'point')} "
            f"(first at point {int(np.argmax(bad_rows))})",
            source,
        )


def float32_rounding_error(points: np.ndarray) -> float:
    """Largest change a float32 cast makes to any coordinate of ``points``."""
    points = np.asarray(points, dtype=np.float64)
    if points.size == 0:
        return 0.0
    return float(np.abs(points.astype(np.float32).astype(np.float64) - points).max())


def needs_recentring(points: np.ndarray, tolerance: float = FLOAT32_COORDINATE_TOLERANCE) -> bool:
    """Whether casting ``points`` to float32 would move some coordinate by more than ``tolerance``."""
    return float32_rounding_error(points) > tolerance


def recentre(cloud: PointCloud, anchor: RecentreAnchor = "min") -> tuple[PointCloud, np.ndarray]:
    """(cloud moved next to the origin, float64 [3] offset); original points = moved points + offset.

    anchor "min" subtracts the bounding box's min corner rounded down to whole units (so all moved
    coordinates are >= 0); "mean" subtracts the rounded centroid. After recentring, a cloud spanning
    a few kilometres keeps sub-millimetre precision in float32.
    """
    if anchor == "min":
        offset = np.floor(cloud.points.min(axis=0) / RECENTRE_OFFSET_ROUNDING) * RECENTRE_OFFSET_ROUNDING
    elif anchor == "mean":
        offset = np.round(cloud.points.mean(axis=0) / RECENTRE_OFFSET_ROUNDING) * RECENTRE_OFFSET_ROUNDING
    else:
        raise ValueError(f"anchor must be 'min' or 'mean', got {anchor!r}")
    return dataclasses.replace(cloud, points=cloud.points - offset), offset
