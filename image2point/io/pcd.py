"""PCD files (the Point Cloud Library's format), read and written without extra packages.

A header of VERSION, FIELDS, SIZE, TYPE, COUNT, WIDTH, HEIGHT, VIEWPOINT, POINTS and DATA lines
precedes the data, which is "ascii" (one point per line) or "binary" (packed little-endian
records). "binary_compressed" (LZF) is refused with a hint to convert the file. A field with
COUNT k > 1 becomes an [N, k] field. PCL packs colours into one 4-byte field "rgb" (0x00RRGGBB,
stored as a float's bits) or "rgba" (0xAARRGGBB): both are unpacked into "rgb" uint8 [N, 3], and
rgba's alpha into "alpha". PCL's padding fields, named "_", hold no data and are skipped.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Literal

import numpy as np

from image2point.errors import DataError
from image2point.io.cloud import COORDINATE_NAMES, PointCloud, cloud_from_columns, counted
from image2point.io.output import (
    RGB_CHANNELS,
    as_integer_type,
    atomic_output,
    checked_fields,
    checked_points,
    coordinate_dtype,
)
from image2point.io.text import NumberedLine, non_blank_lines, parse_numeric_lines

PcdDataFormat = Literal["ascii", "binary"]
PCD_DATA_FORMATS = ("ascii", "binary")
UNSUPPORTED_DATA_FORMAT = "binary_compressed"
PCD_VERSION = "0.7"
HEADER_KEYS = ("VERSION", "FIELDS", "SIZE", "TYPE", "COUNT", "WIDTH", "HEIGHT", "VIEWPOINT", "POINTS", "DATA")
# (TYPE, SIZE) -> numpy type; PCD data is little-endian.
PCD_TYPES = {
    ("F", 4): np.dtype("<f4"),
    ("F", 8): np.dtype("<f8"),
    ("I", 1): np.dtype("i1"),
    ("I", 2): np.dtype("<i2"),
    ("I", 4): np.dtype("<i4"),
    ("I", 8): np.dtype("<i8"),
    ("U", 1): np.dtype("u1"),
    ("U", 2): np.dtype("<u2"),
    ("U", 4): np.dtype("<u4"),
    ("U", 8): np.dtype("<u8"),
}
PADDING_FIELD = "_"
PACKED_COLOR_FIELDS = ("rgb", "rgba")
PACKED_COLOR_BYTES = 4
OPAQUE_ALPHA = 255  # written into the unused top byte of a packed rgb, as PCL's PointXYZRGB does
RED_SHIFT, GREEN_SHIFT, BLUE_SHIFT, ALPHA_SHIFT = 16, 8, 0, 24
BYTE_MASK = 0xFF
# How write_pcd names the components of "normals", as PCL's Normal point type does.
NORMAL_FIELDS = ("normal_x", "normal_y", "normal_z")
# ASCII value formats that round-trip exactly: 9 significant digits for float32, 17 for float64.
ASCII_FORMATS = {"f4": "%.9g", "f8": "%.17g"}
ASCII_INTEGER_FORMAT = "%d"
DEFAULT_VIEWPOINT = "0 0 0 1 0 0 0"  # translation (x, y, z) and rotation quaternion (w, x, y, z)
# The fewest bytes an ascii value takes: one digit and a separator.
ASCII_MIN_VALUE_BYTES = 2
_MAX_HEADER_LINES = 64  # a PCD header has at most one line per key, plus comments


@dataclasses.dataclass(frozen=True)
class PcdHeader:
    """The parsed header of a PCD file and where its data starts."""

    fields: tuple[str, ...]
    types: tuple[np.dtype, ...]
    counts: tuple[int, ...]
    num_points: int
    data_format: str
    data_offset: int  # byte offset of the first data byte
    data_line: int  # line number of the DATA line

    @property
    def record_names(self) -> tuple[str, ...]:
        """FIELDS with each padding field renamed to a unique name, so that a record dtype can hold them."""
        taken = set(self.fields)
        names = []
        for index, name in enumerate(self.fields):
            if name == PADDING_FIELD:
                name = f"{PADDING_FIELD}padding{index}"
                while name in taken:
                    name += PADDING_FIELD
                taken.add(name)
            names.append(name)
        return tuple(names)

    @property
    def record_dtype(self) -> np.dtype:
        """One binary record, with the names of :attr:`record_names`."""
        return np.dtype(
            [
                (name, dtype, (count,) if count > 1 else ())
                for name, dtype, count in zip(self.record_names, self.types, self.counts, strict=True)
            ]
        )


def read_pcd(path: str | Path, fields: Sequence[str] | None = None) -> PointCloud:
    """The cloud in an ascii or binary PCD file; ``fields`` selects attributes (None keeps all)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise DataError(f"cannot read file: {error.strerror or error}", path) from error
    header = read_pcd_header(raw, path)
    if header.data_format == "binary":
        columns = _binary_columns(raw, header, path)
    else:
        columns = _ascii_columns(raw, header, path)
    return cloud_from_columns(_unpacked_colors(columns, path), path, fields, column_kind="field")


def read_pcd_header(raw: bytes, path: Path) -> PcdHeader:
    entries: dict[str, list[str]] = {}
    offset = 0
    line_number = 0
    while "DATA" not in entries:
        if offset >= len(raw) or line_number >= _MAX_HEADER_LINES:
            raise DataError("no DATA line: not a PCD file, or its header is cut short", path)
        end = raw.find(b"\n", offset)
        end = len(raw) if end == -1 else end
        line_bytes, offset = raw[offset:end], end + 1
        line_number += 1
        try:
            line = line_bytes.decode("ascii").strip()
        except UnicodeDecodeError as error:
            raise DataError(f"line {line_number}: not a PCD header line", path) from error
        if not line or line.startswith("#"):
            continue
        key, *values = line.split()
        if key not in HEADER_KEYS:
            raise DataError(f"line {line_number}: unknown PCD header entry {key!r}", path)
        if key in entries:
            raise DataError(f"line {line_number}: {key} appears twice in the header", path)
        entries[key] = values
    data_offset = min(offset, len(raw))
    header = _parsed_header(entries, data_offset, line_number, path)
    _check_declared_size(header, len(raw) - data_offset, path)
    return header


def _parsed_header(entries: dict[str, list[str]], data_offset: int, data_line: int, path: Path) -> PcdHeader:
    for key in ("FIELDS", "SIZE", "TYPE", "WIDTH"):
        if key not in entries:
            raise DataError(f"the header has no {key} line", path)
    names = tuple(entries["FIELDS"])
    sizes = _integers(entries, "SIZE", path)
    counts = _integers(entries, "COUNT", path) if "COUNT" in entries else (1,) * len(names)
    type_codes = tuple(entries["TYPE"])
    for key, values in (("SIZE", sizes), ("TYPE", type_codes), ("COUNT", counts)):
        if len(values) != len(names):
            raise DataError(f"FIELDS names {len(names)} fields but {key} has {len(values)} entries", path)
    types = []
    for name, code, size, count in zip(names, type_codes, sizes, counts, strict=True):
        if (code, size) not in PCD_TYPES:
            raise DataError(f"field {name!r}: TYPE {code} with SIZE {size} is not a PCD type", path)
        if count < 1:
            raise DataError(f"field {name!r}: COUNT must be at least 1, got {count}", path)
        types.append(PCD_TYPES[(code, size)])
    width = _single_integer(entries, "WIDTH", path)
    height = _single_integer(entries, "HEIGHT", path) if "HEIGHT" in entries else 1
    num_points = _single_integer(entries, "POINTS", path) if "POINTS" in entries else width * height
    if width * height != num_points:
        raise DataError(f"WIDTH {width} x HEIGHT {height} = {width * height} but POINTS is {num_points}", path)
    data_format = " ".join(entries["DATA"]).lower()
    if data_format == UNSUPPORTED_DATA_FORMAT:
        raise DataError(
            "DATA binary_compressed (LZF) is not supported; convert the file to binary first, "
            "e.g. with PCL's pcl_convert_pcd_ascii_binary <in.pcd> <out.pcd> 1",
            path,
        )
    if data_format not in PCD_DATA_FORMATS:
        raise DataError(f"DATA {data_format!r} is not one of {', '.join(PCD_DATA_FORMATS)}", path)
    non_padding = [name for name in names if name != PADDING_FIELD]
    repeated = sorted({name for name in non_padding if non_padding.count(name) > 1})
    if repeated:
        raise DataError(f"FIELDS names {', '.join(repeated)} more than once", path)
    return PcdHeader(names, tuple(types), counts, num_points, data_format, data_offset, data_line)


def _check_declared_size(header: PcdHeader, data_bytes: int, path: Path) -> None:
    """Refuse a COUNT the data cannot hold before a record type is built for it (numpy cannot make one of
    10**12 values); too many POINTS are caught by the exact size checks, which allocate nothing first."""
    binary = header.data_format == "binary"
    # Binary values take their SIZE; ascii ones at least a digit and a separator.
    point_bytes = sum(count * (dtype.itemsize if binary else ASCII_MIN_VALUE_BYTES)
                      for dtype, count in zip(header.types, header.counts, strict=True))
    if header.num_points > 0 and point_bytes > data_bytes:
        widest = max(range(len(header.fields)), key=lambda index: header.counts[index])
        raise DataError(f"data size mismatch: COUNT {header.counts[widest]} for field {header.fields[widest]!r} makes "
                        f"one point at least {point_bytes} bytes, but only {data_bytes} bytes of data follow", path)


def _single_integer(entries: dict[str, list[str]], key: str, path: Path) -> int:
    if len(entries[key]) != 1:
        raise DataError(f"{key} must be a single integer, got {' '.join(entries[key]) or 'nothing'}", path)
    return _integers(entries, key, path)[0]


def _integers(entries: dict[str, list[str]], key: str, path: Path) -> tuple[int, ...]:
    values = entries[key]
    try:
        numbers = tuple(int(value) for value in values)
    except ValueError as error:
        raise DataError(f"{key} must be integers, got {' '.join(values)}", path) from error
    if any(number < 0 for number in numbers):
        raise DataError(f"{key} must not be negative, got {' '.join(values)}", path)
    return numbers


def _binary_columns(raw: bytes, header: PcdHeader, path: Path) -> dict[str, np.ndarray]:
    record = header.record_dtype
    data = raw[header.data_offset :]
    expected = header.num_points * record.itemsize
    if len(data) != expected:
        raise DataError(
            f"data size mismatch: the header declares {counted(header.num_points, 'point')} of {record.itemsize} bytes "
            f"({expected} bytes) but {len(data)} bytes of data follow",
            path,
        )
    records = np.frombuffer(data, dtype=record, count=header.num_points)
    return {
        name: records[record_name].astype(records[record_name].dtype.newbyteorder("="))
        for name, record_name in zip(header.fields, header.record_names, strict=True)
        if name != PADDING_FIELD
    }


def _ascii_columns(raw: bytes, header: PcdHeader, path: Path) -> dict[str, np.ndarray]:
    try:
        text = raw[header.data_offset :].decode("ascii")
    except UnicodeDecodeError as error:
        line_number = header.data_line + raw[header.data_offset : header.data_offset + error.start].count(b"\n") + 1
        raise DataError(f"line {line_number}: not ASCII text in DATA ascii", path) from error
    lines: list[NumberedLine] = non_blank_lines(text, first_line_number=header.data_line + 1)
    if len(lines) != header.num_points:
        raise DataError(
            f"data size mismatch: the header declares {counted(header.num_points, 'point')} "
            f"but {counted(len(lines), 'data line')} follow",
            path,
        )
    if not lines:
        raise DataError("no points", path)
    table = parse_numeric_lines(lines, None, path)
    if table.shape[1] != sum(header.counts):
        raise DataError(
            f"line {lines[0][0]}: wrong column count: {table.shape[1]} values where the header declares "
            f"{sum(header.counts)}",
            path,
        )
    columns = {}
    start = 0
    for name, dtype, count in zip(header.fields, header.types, header.counts, strict=True):
        values = table[:, start : start + count]
        start += count
        if name == PADDING_FIELD:
            continue
        if name in PACKED_COLOR_FIELDS and dtype.itemsize == PACKED_COLOR_BYTES and count == 1:
            columns[name] = _ascii_packed_color(values[:, 0], dtype, name, path)
        elif dtype.kind == "f":
            floats = values.astype(dtype.newbyteorder("="))
            columns[name] = floats[:, 0] if count == 1 else floats
        else:
            columns[name] = _ascii_integers(values, dtype, name, path)
    return columns


def _ascii_integers(values: np.ndarray, dtype: np.dtype, name: str, path: Path) -> np.ndarray:
    try:
        integers = as_integer_type(values, dtype.newbyteorder("=").type, f"field {name!r}")
    except ValueError as error:
        raise DataError(str(error), path) from error
    return integers[:, 0] if integers.shape[1] == 1 else integers


def _ascii_packed_color(values: np.ndarray, dtype: np.dtype, name: str, path: Path) -> np.ndarray:
    """uint32 packed colours from an ascii column: written as an integer (PCL's way, and the only
    way for TYPE U) or, by older writers, as the float whose bits hold the colour."""
    whole = np.isfinite(values) & (values == np.round(values)) & (values >= 0) & (values <= np.iinfo(np.uint32).max)
    if dtype.kind in "iu" or whole.all():
        return _ascii_integers(values[:, None], np.dtype(np.uint32), name, path)
    if not np.isfinite(values).all():
        raise DataError(f"field {name!r}: colours written as NaN or Inf floats cannot be unpacked", path)
    return values.astype(np.float32).view(np.uint32)


def _unpacked_colors(columns: dict[str, np.ndarray], path: Path) -> dict[str, np.ndarray]:
    unpacked = {}
    for name, values in columns.items():
        if name not in PACKED_COLOR_FIELDS or values.ndim != 1 or values.dtype.itemsize != PACKED_COLOR_BYTES:
            unpacked[name] = values
            continue
        if "rgb" in unpacked or (name == "rgba" and "rgb" in columns):
            raise DataError("both rgb and rgba fields hold colours", path)
        packed = values.view(np.uint32)
        unpacked["rgb"] = np.stack(
            [(packed >> shift) & BYTE_MASK for shift in (RED_SHIFT, GREEN_SHIFT, BLUE_SHIFT)], axis=1
        ).astype(np.uint8)
        if name == "rgba":
            unpacked["alpha"] = ((packed >> ALPHA_SHIFT) & BYTE_MASK).astype(np.uint8)
    return unpacked


def write_pcd(
    path: str | Path,
    points: np.ndarray,
    fields: Mapping[str, np.ndarray] | None = None,
    colors: np.ndarray | None = None,
    data_format: PcdDataFormat = "binary",
) -> None:
    """Write a PCD file (DATA ascii or binary) atomically, readable by PCL.

    x, y, z are F 4, or F 8 when float32 would move some coordinate by more than 0.1 mm.
    fields: per-point attributes [N] or [N, k] (COUNT k); "normals" [N, 3] is written as
        normal_x/normal_y/normal_z and "rgb" (uint8 [N, 3]) as PCL's packed "rgb" field.
    colors: uint8 [N, 3], the same as fields["rgb"].
    """
    if data_format not in PCD_DATA_FORMATS:
        raise ValueError(f"data_format must be one of {PCD_DATA_FORMATS}, got {data_format!r}")
    points = checked_points(points)
    columns = _pcd_columns(points, checked_fields(fields, len(points), colors))
    header = [
        f"# .PCD v{PCD_VERSION} - Point Cloud Data file format",
        f"VERSION {PCD_VERSION}",
        "FIELDS " + " ".join(columns),
        "SIZE " + " ".join(str(values.dtype.itemsize) for values in columns.values()),
        "TYPE " + " ".join(_type_code(values.dtype) for values in columns.values()),
        "COUNT " + " ".join(str(values.shape[1]) for values in columns.values()),
        f"WIDTH {len(points)}",
        "HEIGHT 1",
        f"VIEWPOINT {DEFAULT_VIEWPOINT}",
        f"POINTS {len(points)}",
        f"DATA {data_format}",
    ]
    with atomic_output(path, "wb") as handle:
        handle.write(("\n".join(header) + "\n").encode("ascii"))
        if data_format == "binary":
            handle.write(_binary_records(columns).tobytes())
        else:
            _write_ascii_records(handle, columns)


def _pcd_columns(points: np.ndarray, fields: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """name -> [N, count] little-endian array in a PCD type, coordinates first."""
    xyz_dtype = coordinate_dtype(points)
    columns = {name: points[:, [axis]].astype(xyz_dtype) for axis, name in enumerate(COORDINATE_NAMES)}
    for name, values in fields.items():
        values = values.reshape(len(points), -1)
        if name == "rgb" and values.shape[1] == RGB_CHANNELS:
            parts = {"rgb": _packed_rgb(values)}
        elif name == "normals" and values.shape[1] == len(NORMAL_FIELDS):
            parts = {part: values[:, [axis]] for axis, part in enumerate(NORMAL_FIELDS)}
        else:
            parts = {name: values}
        for part_name, part in parts.items():
            if part_name in columns:
                raise ValueError(f"field {name!r} would be written as {part_name!r}, which another field also uses")
            columns[part_name] = _as_pcd_type(part_name, part)
    return columns


def _packed_rgb(colors: np.ndarray) -> np.ndarray:
    """float32 [N, 1] holding PCL's packed 0xAARRGGBB colour bits, with an opaque alpha."""
    channels = as_integer_type(colors, np.uint8, "field 'rgb'").astype(np.uint32)
    packed = (
        (np.uint32(OPAQUE_ALPHA) << ALPHA_SHIFT)
        | (channels[:, 0] << RED_SHIFT)
        | (channels[:, 1] << GREEN_SHIFT)
        | (channels[:, 2] << BLUE_SHIFT)
    )
    return packed.astype(np.uint32).view(np.float32)[:, None]


def _as_pcd_type(name: str, values: np.ndarray) -> np.ndarray:
    if values.dtype == np.float16:
        values = values.astype(np.float32)
    little_endian = values.dtype.newbyteorder("<")
    if (_type_code(little_endian), little_endian.itemsize) not in PCD_TYPES:
        raise ValueError(f"field {name!r} has dtype {values.dtype}, which PCD cannot store")
    return values.astype(little_endian, copy=False)


def _type_code(dtype: np.dtype) -> str:
    return {"f": "F", "i": "I", "u": "U"}.get(dtype.kind, "?")


def _binary_records(columns: dict[str, np.ndarray]) -> np.ndarray:
    num_points = len(next(iter(columns.values())))
    layout = [
        (name, values.dtype, (values.shape[1],) if values.shape[1] > 1 else ()) for name, values in columns.items()
    ]
    records = np.empty(num_points, dtype=layout)
    for name, values in columns.items():
        records[name] = values if values.shape[1] > 1 else values[:, 0]
    return records


def _write_ascii_records(handle: IO[bytes], columns: dict[str, np.ndarray]) -> None:
    """One line per point; packed rgb as its unsigned integer, as PCL writes it."""
    scalar_columns = []
    formats = []
    for name, values in columns.items():
        if name == "rgb":
            values = values.view(np.uint32)
        for component in values.T:
            scalar_columns.append(component)
            formats.append(ASCII_FORMATS.get(component.dtype.str[1:], ASCII_INTEGER_FORMAT))
    records = np.empty(
        len(scalar_columns[0]), dtype=[(f"c{index}", column.dtype) for index, column in enumerate(scalar_columns)]
    )
    for index, column in enumerate(scalar_columns):
        records[f"c{index}"] = column
    np.savetxt(handle, records, fmt=formats, delimiter=" ")
