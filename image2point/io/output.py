"""What every writer shares: atomic file replacement and the checks on the arrays it is given.

Writers check their input completely before they open a file, and write through
:func:`atomic_output`, so a failed write leaves neither a partial file nor a temporary one, and an
existing file at the target path stays as it was.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any

import numpy as np

from image2point.channels import RGB_CHANNELS
from image2point.checkpoint import atomic_write
from image2point.errors import ConfigError, DataError
from image2point.io.cloud import COORDINATE_NAMES, FLOAT32_COORDINATE_TOLERANCE, float32_rounding_error


@contextlib.contextmanager
def atomic_output(path: str | Path, mode: str = "wb") -> Iterator[IO[Any]]:
    """:func:`image2point.checkpoint.atomic_write` for a user-named output: a path that cannot be
    written (a directory, no permission, a full disk) raises DataError naming it.

    If the body raises, the temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    if path.is_dir():
        raise DataError("cannot write: it is a directory", path)
    try:
        with atomic_write(path, mode) as handle:
            yield handle
    except OSError as error:
        raise DataError(f"cannot write: {error.strerror or error}", path) from error


def require_output_directory(directory: str | Path) -> None:
    """DataError naming the file in the way when ``directory`` cannot be a directory (it, or one of its
    parents, is a file); checked before any work whose outputs would go there."""
    directory = Path(directory)
    for candidate in (directory, *directory.parents):
        if candidate.is_dir():
            return
        if candidate.exists():
            raise DataError(f"is a file, so the output directory {directory} cannot be created", candidate)


def check_new_run_directory(run_dir: str | Path, option: str, resume: bool = False) -> Path:
    """``run_dir`` as a Path; ConfigError when it exists and is not an empty directory (unless ``resume``
    continues it). option: the setting that names it (``--run-dir``, ``train.run_dir``), for the advice."""
    run_dir = Path(run_dir)
    if not resume and run_dir.exists() and (not run_dir.is_dir() or any(run_dir.iterdir())):
        raise ConfigError(f"{run_dir}: run directory exists and is not empty; choose another {option}")
    return run_dir


def make_run_directory(run_dir: str | Path, option: str, resume: bool = False) -> Path:
    """Create the run directory ``run_dir`` after :func:`check_new_run_directory`; the directory."""
    run_dir = check_new_run_directory(run_dir, option, resume)
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def checked_points(points: np.ndarray) -> np.ndarray:
    """points as float64 [N, 3] with N >= 1 and finite values, or ValueError."""
    points = np.asarray(points)
    if points.ndim != 2 or points.shape[1] != len(COORDINATE_NAMES):
        raise ValueError(f"points must be [N, 3], got shape {points.shape}")
    if points.dtype.kind not in "iuf":
        raise ValueError(f"points must be numeric, got dtype {points.dtype}")
    if len(points) == 0:
        raise ValueError("no points to write")
    points = points.astype(np.float64, copy=False)
    if not np.isfinite(points).all():
        raise ValueError(f"points hold {int((~np.isfinite(points)).sum())} NaN or Inf values")
    return points


def checked_fields(
    fields: Mapping[str, np.ndarray] | None,
    num_points: int,
    colors: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Fields as arrays of [N] or [N, k] numbers, with ``colors`` (uint8 [N, 3]) added as "rgb"."""
    checked: dict[str, np.ndarray] = {}
    for name, values in (fields or {}).items():
        values = np.asarray(values)
        if name in COORDINATE_NAMES:
            raise ValueError(f"{name!r} is a coordinate; pass it in points, not in fields")
        if not name or not name.isascii() or any(character.isspace() for character in name):
            raise ValueError(f"field name {name!r} must be non-empty ASCII without whitespace")
        if values.ndim not in (1, 2) or len(values) != num_points:
            raise ValueError(f"field {name!r} must be [{num_points}] or [{num_points}, k], got shape {values.shape}")
        if values.dtype.kind not in "biuf":
            raise ValueError(f"field {name!r} must hold numbers, got dtype {values.dtype}")
        checked[name] = values.astype(np.uint8) if values.dtype.kind == "b" else values
    if colors is not None:
        if "rgb" in checked:
            raise ValueError("colors given twice: as colors and as fields['rgb']")
        checked["rgb"] = checked_colors(colors, num_points, np.uint8)
    return checked


def checked_colors(colors: np.ndarray, num_points: int, dtype: type[np.unsignedinteger]) -> np.ndarray:
    """colors as ``dtype`` [N, 3], or ValueError when they are not integers in that type's range."""
    colors = np.asarray(colors)
    if colors.shape != (num_points, RGB_CHANNELS):
        raise ValueError(f"colors must be [{num_points}, 3], got shape {colors.shape}")
    return as_integer_type(colors, dtype, "colors")


def as_integer_type(values: np.ndarray, dtype: type[np.integer], what: str) -> np.ndarray:
    """values cast to the integer ``dtype``, or ValueError when some are not whole numbers in its range."""
    values = np.asarray(values)
    limits = np.iinfo(dtype)
    if values.dtype.kind not in "biuf":
        raise ValueError(f"{what} must hold numbers, got dtype {values.dtype}")
    if values.dtype.kind == "f" and not np.array_equal(values, np.round(values)):
        raise ValueError(f"{what} must be whole numbers, got values like {values[values != np.round(values)][0]}")
    if values.size and (values.min() < limits.min or values.max() > limits.max):
        raise ValueError(
            f"{what} must lie in {limits.min}..{limits.max} for {np.dtype(dtype).name}, "
            f"got {values.min()}..{values.max()}"
        )
    return values.astype(dtype)


def coordinate_dtype(points: np.ndarray) -> np.dtype:
    """float32 when it keeps every coordinate within FLOAT32_COORDINATE_TOLERANCE, else float64."""
    if float32_rounding_error(points) <= FLOAT32_COORDINATE_TOLERANCE:
        return np.dtype(np.float32)
    return np.dtype(np.float64)


def require_float32_coordinates(points: np.ndarray, format_name: str) -> None:
    """ValueError when a float32-only format would move some coordinate by more than the tolerance."""
    error = float32_rounding_error(points)
    if error > FLOAT32_COORDINATE_TOLERANCE:
        raise ValueError(
            f"{format_name} stores float32 coordinates, which would move these points by up to {error:.3g} "
            f"(coordinates reach {np.abs(points).max():.6g}); recentre() the cloud first"
        )


def split_columns(
    fields: Mapping[str, np.ndarray],
    triplet_names: Mapping[str, tuple[str, str, str]],
) -> dict[str, np.ndarray]:
    """Fields as scalar columns for formats without multi-valued properties (PLY, LAS extra bytes).

    An [N, 3] field listed in triplet_names becomes its three names (rgb -> red, green, blue); any
    other [N, k] field becomes name_0 .. name_{k-1}, and an [N, 1] field one column called name.
    Readers join them back (see image2point.io.cloud.join_columns).
    """
    columns: dict[str, np.ndarray] = {}
    for name, values in fields.items():
        if values.ndim == 1 or values.shape[1] == 1:
            parts = {name: values.reshape(-1)}
        elif name in triplet_names and values.shape[1] == len(triplet_names[name]):
            parts = dict(zip(triplet_names[name], values.T, strict=True))
        else:
            parts = {f"{name}_{index}": column for index, column in enumerate(values.T)}
        for part_name, column in parts.items():
            if part_name in columns or part_name in COORDINATE_NAMES:
                raise ValueError(f"field {name!r} would be written as {part_name!r}, which another field also uses")
            columns[part_name] = np.ascontiguousarray(column)
    return columns
