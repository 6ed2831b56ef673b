"""PLY files: the "vertex" element's properties are the columns.

Reading uses plyfile (ascii, binary little- and big-endian); other elements, such as a mesh's
faces, are not point data and are not read. Writing needs no extra package: binary little-endian
with x, y, z as float, or as double when float would move some coordinate by more than 0.1 mm.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from image2point.errors import DataError
from image2point.io.cloud import COORDINATE_NAMES, PointCloud, cloud_from_columns, describe_error
from image2point.io.output import (
    as_integer_type,
    atomic_output,
    checked_fields,
    checked_points,
    coordinate_dtype,
    split_columns,
)

PLY_INSTALL_HINT = "reading .ply files needs plyfile: pip install plyfile"
VERTEX_ELEMENT = "vertex"
# How write_ply splits [N, 3] fields into PLY's scalar properties.
PLY_TRIPLETS = {"rgb": ("red", "green", "blue"), "normals": ("nx", "ny", "nz")}
HEADER_END = b"end_header"
# Header bytes read to check the declared counts; real headers are a few hundred bytes.
MAX_HEADER_BYTES = 1 << 16
# The fewest bytes an ascii value takes: one digit and a separator.
ASCII_MIN_VALUE_BYTES = 2
PLY_TYPE_BYTES = {"char": 1, "int8": 1, "uchar": 1, "uint8": 1, "short": 2, "int16": 2, "ushort": 2, "uint16": 2,
                  "int": 4, "int32": 4, "uint": 4, "uint32": 4, "float": 4, "float32": 4, "double": 8, "float64": 8}
PLY_TYPE_NAMES = {
    np.dtype(np.int8): "char",
    np.dtype(np.uint8): "uchar",
    np.dtype(np.int16): "short",
    np.dtype(np.uint16): "ushort",
    np.dtype(np.int32): "int",
    np.dtype(np.uint32): "uint",
    np.dtype(np.float32): "float",
    np.dtype(np.float64): "double",
}
# numpy types PLY has no property type for, and the type they are written as (when the values fit).
_PLY_WIDENED_TYPES = {
    np.dtype(np.int64): np.int32,
    np.dtype(np.uint64): np.uint32,
    np.dtype(np.float16): np.float32,
}


def read_ply(path: str | Path, fields: Sequence[str] | None = None) -> PointCloud:
    """The cloud in a PLY file's vertex element; ``fields`` selects attributes (None keeps all)."""
    try:
        import plyfile
    except ImportError as error:
        raise ImportError(PLY_INSTALL_HINT) from error
    path = Path(path)
    _check_declared_counts(path)
    try:
        ply = plyfile.PlyData.read(str(path), mmap=False)
    except (plyfile.PlyParseError, ValueError, EOFError, UnicodeDecodeError, IndexError) as error:
        raise DataError(f"not a readable PLY file: {describe_error(error)}", path) from error
    element_names = [element.name for element in ply.elements]
    if VERTEX_ELEMENT not in element_names:
        raise DataError(f"no 'vertex' element; elements: {', '.join(element_names) or 'none'}", path)
    vertex = ply[VERTEX_ELEMENT]
    if vertex.count == 0:
        raise DataError("no points: the vertex element has 0 entries", path)
    columns = {}
    for prop in vertex.properties:
        if isinstance(prop, plyfile.PlyListProperty):
            raise DataError(f"vertex property {prop.name!r} is a list; only scalar vertex properties are read", path)
        values = vertex.data[prop.name]
        columns[prop.name] = values.astype(values.dtype.newbyteorder("="))
    return cloud_from_columns(columns, path, fields, column_kind="vertex property")


def _check_declared_counts(path: Path) -> None:
    """Refuse element counts the file is too small to hold, before plyfile allocates for them (a header
    declaring 10**12 vertices over a few bytes would ask for terabytes). Headers it cannot parse are left
    to plyfile's own errors."""
    with open(path, "rb") as handle:
        head = handle.read(MAX_HEADER_BYTES)
    end = head.find(HEADER_END)
    body_start = head.find(b"\n", end) + 1
    if end < 0 or body_start == 0:
        return
    binary, elements = True, []  # elements: [name, count, fewest bytes per entry]
    for words in (line.decode("ascii", "replace").split() for line in head[:end].splitlines()):
        if words[:1] == ["format"]:
            binary = words[1:2] != ["ascii"]
        elif words[:1] == ["element"] and len(words) == 3 and words[2].isdigit():
            elements.append([words[1], int(words[2]), 0])
        elif words[:1] == ["property"] and elements and len(words) >= 3:
            # A list's entries start with their length; the list may be empty.
            type_name = words[2] if words[1] == "list" else words[1]
            elements[-1][2] += PLY_TYPE_BYTES.get(type_name, 1) if binary else ASCII_MIN_VALUE_BYTES
    body_bytes = path.stat().st_size - body_start
    if sum(count * entry_bytes for _, count, entry_bytes in elements) > body_bytes:
        name, count, entry_bytes = max(elements, key=lambda element: element[1] * element[2])
        raise DataError(f"not a readable PLY file: the header declares {count} {name} entries (at least "
                        f"{count * entry_bytes} bytes) but only {body_bytes} bytes follow it", path)


def write_ply(
    path: str | Path,
    points: np.ndarray,
    fields: Mapping[str, np.ndarray] | None = None,
    colors: np.ndarray | None = None,
) -> None:
    """Write a binary little-endian PLY point cloud atomically.

    fields: per-point attributes [N] or [N, k]; "rgb" [N, 3] becomes red/green/blue and "normals"
        [N, 3] nx/ny/nz, other [N, k] fields name_0 .. name_{k-1}; int64 values are written as int
        when they fit. colors: uint8 [N, 3], written as red/green/blue (the same as fields["rgb"]).
    """
    points = checked_points(points)
    columns = split_columns(checked_fields(fields, len(points), colors), PLY_TRIPLETS)
    xyz_dtype = coordinate_dtype(points)
    layout = [(name, xyz_dtype) for name in COORDINATE_NAMES]
    for name, values in columns.items():
        columns[name] = _as_ply_type(name, values)
        layout.append((name, columns[name].dtype))
    vertices = np.empty(len(points), dtype=[(name, dtype.newbyteorder("<")) for name, dtype in layout])
    for axis, name in enumerate(COORDINATE_NAMES):
        vertices[name] = points[:, axis]
    for name, values in columns.items():
        vertices[name] = values
    header_lines = [
        "ply",
        "format binary_little_endian 1.0",
        f"element {VERTEX_ELEMENT} {len(points)}",
        *(f"property {PLY_TYPE_NAMES[dtype]} {name}" for name, dtype in layout),
        "end_header",
    ]
    with atomic_output(path, "wb") as handle:
        handle.write(("\n".join(header_lines) + "\n").encode("ascii"))
        handle.write(vertices.tobytes())


def _as_ply_type(name: str, values: np.ndarray) -> np.ndarray:
    dtype = values.dtype.newbyteorder("=")
    if dtype in PLY_TYPE_NAMES:
        return values.astype(dtype, copy=False)
    if dtype in _PLY_WIDENED_TYPES:
        target = _PLY_WIDENED_TYPES[dtype]
        if np.dtype(target).kind == "f":
            return values.astype(target)
        return as_integer_type(values, target, f"field {name!r} (PLY has no 64-bit integers)")
    raise ValueError(f"field {name!r} has dtype {values.dtype}, which PLY cannot store")
