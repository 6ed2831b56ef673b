"""LAS and LAZ files, through laspy (LAZ needs its lazrs backend: pip install "laspy[lazrs]").

LAS stores each coordinate as an int32 count of ``scale`` units from ``offset``; reading applies the
file's scale and offset, giving float64 coordinates. Read: x, y, z, "intensity" (uint16),
"classification" (uint8), "rgb" (uint16 [N, 3]) when the point format has colours, and every
extra-bytes dimension under its own name. Written: LAS 1.4 point format 6 (7 with colours), scale
0.001 and an offset at the rounded centre of the bounding box, so coordinates near 1e7 keep
millimetre precision; fields other than intensity, classification and rgb become extra-bytes
dimensions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from image2point.errors import DataError
from image2point.io.cloud import COORDINATE_NAMES, PointCloud, cloud_from_columns, describe_error
from image2point.io.output import (
    RGB_CHANNELS,
    as_integer_type,
    atomic_output,
    checked_colors,
    checked_fields,
    checked_points,
    split_columns,
)

LAS_INSTALL_HINT = 'reading and writing .las/.laz files needs laspy: pip install "laspy[lazrs]"'
COMPRESSED_SUFFIX = ".laz"
LAS_VERSION = "1.4"
POINT_FORMAT_WITHOUT_COLORS = 6
POINT_FORMAT_WITH_COLORS = 7
DEFAULT_LAS_SCALE = 0.001  # one millimetre
LAS_OFFSET_ROUNDING = 1.0  # write_las rounds its offset to whole units
COLOR_DIMENSIONS = ("red", "green", "blue")
# 8-bit colours are spread over LAS's 16-bit range: 255 * 257 = 65535.
UINT8_TO_UINT16_COLOR = 257
LAS_INTEGER_FIELDS = {"intensity": np.uint16, "classification": np.uint8}
# How write_las splits [N, 3] fields other than rgb into extra-bytes dimensions.
LAS_TRIPLETS = {"normals": ("nx", "ny", "nz")}
_STORED_COORDINATE_RANGE = np.iinfo(np.int32)


def _import_laspy():
    try:
        import laspy
    except ImportError as error:
        raise ImportError(LAS_INSTALL_HINT) from error
    return laspy


def _laz_decoder_errors() -> tuple[type[Exception], ...]:
    """What the lazrs backend raises for a damaged LAZ file (it does not wrap them in laspy's errors)."""
    try:
        import lazrs
    except ImportError:
        return ()
    return (lazrs.LazrsError,)


def read_las(path: str | Path, fields: Sequence[str] | None = None) -> PointCloud:
    """The cloud in a LAS or LAZ file; ``fields`` selects attributes (None keeps all)."""
    laspy = _import_laspy()
    path = Path(path)
    try:
        las = laspy.read(str(path))
    except laspy.errors.LaspyException as error:
        if "LazBackend" in str(error):
            raise ImportError(f"{path}: {LAS_INSTALL_HINT} (the lazrs backend decompresses LAZ)") from error
        raise DataError(f"not a readable LAS/LAZ file: {describe_error(error)}", path) from error
    except (ValueError, EOFError, OSError, *_laz_decoder_errors()) as error:
        raise DataError(f"not a readable LAS/LAZ file: {describe_error(error)}", path) from error
    if len(las.points) == 0:
        raise DataError("no points: the LAS header declares 0 points", path)
    dimensions = set(las.point_format.dimension_names)
    columns = {name: np.asarray(getattr(las, name), dtype=np.float64) for name in COORDINATE_NAMES}
    for name in ("intensity", "classification", *COLOR_DIMENSIONS):
        if name in dimensions:
            columns[name] = np.array(las[name])
    for name in las.point_format.extra_dimension_names:
        columns[name] = np.array(las[name])
    return cloud_from_columns(columns, path, fields, column_kind="dimension")


def write_las(
    path: str | Path,
    points: np.ndarray,
    fields: Mapping[str, np.ndarray] | None = None,
    colors: np.ndarray | None = None,
    scale: float = DEFAULT_LAS_SCALE,
) -> None:
    """Write a LAS file (or LAZ, by the .laz suffix) atomically.

    fields: "intensity" (whole numbers 0..65535) and "classification" (0..255) go to the standard
        dimensions; "rgb" like colors; others become extra-bytes dimensions ([N, k] ones as
        name_0 .. name_{k-1}, "normals" as nx, ny, nz).
    colors: uint8 [N, 3] (scaled by 257 to LAS's 16 bits) or uint16 [N, 3] (stored as given).
    scale: coordinate resolution; coordinates are stored within scale / 2 of their value.
    """
    laspy = _import_laspy()
    points = checked_points(points)
    if not scale > 0:
        raise ValueError(f"scale must be positive, got {scale}")
    fields = checked_fields(fields, len(points))
    rgb = _las_colors(fields.pop("rgb", None), colors, len(points))
    standard = {
        name: as_integer_type(fields.pop(name), dtype, f"LAS {name}")
        for name, dtype in LAS_INTEGER_FIELDS.items()
        if name in fields
    }
    extra = split_columns(fields, LAS_TRIPLETS)
    offset = _las_offset(points, scale)
    header = laspy.LasHeader(
        point_format=POINT_FORMAT_WITH_COLORS if rgb is not None else POINT_FORMAT_WITHOUT_COLORS,
        version=LAS_VERSION,
    )
    header.scales = np.full(len(COORDINATE_NAMES), scale)
    header.offsets = offset
    standard_names = {name.lower() for name in header.point_format.dimension_names}
    for name, values in extra.items():
        if name.lower() in standard_names:
            raise ValueError(f"field {name!r} clashes with the standard LAS dimension of that name; rename it")
        if values.dtype == np.float16:
            extra[name] = values.astype(np.float32)
    header.add_extra_dims([laspy.ExtraBytesParams(name, values.dtype) for name, values in extra.items()])
    las = laspy.LasData(header)
    las.x, las.y, las.z = points[:, 0], points[:, 1], points[:, 2]
    for name, values in {**standard, **extra}.items():
        las[name] = values
    if rgb is not None:
        las.red, las.green, las.blue = rgb[:, 0], rgb[:, 1], rgb[:, 2]
    with atomic_output(path, "wb") as handle:
        las.write(handle, do_compress=Path(path).suffix.lower() == COMPRESSED_SUFFIX)


def _las_colors(rgb_field: np.ndarray | None, colors: np.ndarray | None, num_points: int) -> np.ndarray | None:
    if rgb_field is not None and colors is not None:
        raise ValueError("colors given twice: as colors and as fields['rgb']")
    given = colors if colors is not None else rgb_field
    if given is None:
        return None
    given = np.asarray(given)
    if given.shape != (num_points, RGB_CHANNELS):
        raise ValueError(f"colors must be [{num_points}, 3], got shape {given.shape}")
    if given.dtype == np.uint8:
        return given.astype(np.uint16) * UINT8_TO_UINT16_COLOR
    return checked_colors(given, num_points, np.uint16)


def _las_offset(points: np.ndarray, scale: float) -> np.ndarray:
    """The rounded bounding-box centre, after checking every point fits LAS's int32 coordinates."""
    low, high = points.min(axis=0), points.max(axis=0)
    offset = np.round((low + high) / 2 / LAS_OFFSET_ROUNDING) * LAS_OFFSET_ROUNDING
    reach = np.maximum(np.abs(high - offset), np.abs(low - offset)) / scale
    if reach.max() > _STORED_COORDINATE_RANGE.max:
        raise ValueError(
            f"the cloud spans {np.max(high - low):.6g} units, too far for LAS's int32 coordinates at scale {scale}; "
            "use a coarser scale"
        )
    return offset
