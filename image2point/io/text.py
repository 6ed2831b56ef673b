"""Text tables of points (.txt, .xyz, .csv): one point per line, at least x, y, z.

The delimiter is detected from the first data line: a comma, else a semicolon, else runs of
whitespace. The first non-blank line may be a header of column names ("x,y,z,red,green,blue",
CloudCompare's "//X,Y,Z,R,G,B"); names are lower-cased. Without a header the columns are
x, y, z, column3, column4, ... unless ``fields`` names them. Values are parsed as float64.
:func:`read_numeric_table` reads the datasets' own tables (a fixed column count, float32) with the
same parser.
"""

from __future__ import annotations

import io
import re
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from image2point.errors import DataError
from image2point.io.cloud import PointCloud, cloud_from_columns, name_columns

DELIMITER_CANDIDATES = (",", ";")  # tried in this order; a line with neither is split on whitespace
HEADER_PREFIXES = ("//", "#")  # written before a header line by some tools
FLOAT32_MAX = float(np.finfo(np.float32).max)
_COLUMN_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

NumberedLine = tuple[int, str]  # (1-based line number in the file, line text)


def read_text(path: str | Path, fields: Sequence[str] | None = None) -> PointCloud:
    """The cloud in a text table; ``fields`` names headerless columns, or selects from a header's."""
    path = Path(path)
    numbered = non_blank_lines(read_utf8(path))
    if not numbered:
        raise DataError("no points: the file holds only blank lines", path)
    header = _header_names(numbered[0][1])
    data = numbered[1:] if header is not None else numbered
    if not data:
        raise DataError(f"no points: the file holds only a header line ({', '.join(header or ())})", path)
    table = parse_numeric_lines(data, detect_delimiter(data[0][1]), path)
    if header is None:
        return cloud_from_columns(name_columns(table, fields, path), path)
    header_line = numbered[0][0]
    if len(header) != table.shape[1]:
        raise DataError(
            f"wrong column count: the header on line {header_line} names {len(header)} columns "
            f"but the data has {table.shape[1]}",
            path,
        )
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:
        raise DataError(f"the header on line {header_line} names {', '.join(repeated)} more than once", path)
    columns = {name: np.ascontiguousarray(table[:, index]) for index, name in enumerate(header)}
    return cloud_from_columns(columns, path, fields)


def read_utf8(path: Path) -> str:
    """The file's text, or DataError naming the first line that is not UTF-8."""
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise DataError(f"cannot read file: {error.strerror or error}", path) from error
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        line_number = raw[: error.start].count(b"\n") + 1
        raise DataError(f"line {line_number}: not UTF-8 text", path) from error


def non_blank_lines(text: str, first_line_number: int = 1) -> list[NumberedLine]:
    return [(number, line) for number, line in enumerate(text.splitlines(), first_line_number) if line.strip()]


def detect_delimiter(line: str) -> str | None:
    """The first of DELIMITER_CANDIDATES in ``line``; None (whitespace) when there is none."""
    return next((candidate for candidate in DELIMITER_CANDIDATES if candidate in line), None)


def parse_numeric_lines(lines: Sequence[NumberedLine], delimiter: str | None, path: Path,
                        num_columns: int | None = None) -> np.ndarray:
    """float64 [len(lines), C] from lines of C numbers each, or DataError naming the first bad line.

    num_columns: the count every line must have; None takes the first line's. The fast path is
    numpy's C parser; when it refuses the lines, a line-by-line pass finds the first line with
    another number of values or a value that is not a number.
    """
    try:
        table = np.loadtxt([line for _, line in lines], dtype=np.float64, delimiter=delimiter, comments=None, ndmin=2)
        if num_columns is None or table.shape[1] == num_columns:
            return table
    except ValueError:
        pass
    first_number, first_line = lines[0]
    expected = len(_split(first_line, delimiter)) if num_columns is None else num_columns
    rows = []
    for number, line in lines:
        tokens = _split(line, delimiter)
        if len(tokens) != expected:
            raise DataError(_column_count_problem(number, len(tokens), expected, delimiter,
                                                  None if num_columns is not None else first_number), path)
        row = []
        for token in tokens:
            value = _number(token)
            if value is None:
                raise DataError(f"line {number}: {token!r} is not a number", path)
            row.append(value)
        rows.append(row)
    return np.asarray(rows, dtype=np.float64).reshape(len(rows), expected)


def _column_count_problem(number: int, found: int, expected: int, delimiter: str | None,
                          first_number: int | None) -> str:
    if first_number is not None:
        return f"line {number}: wrong column count: {found} values where line {first_number} has {expected}"
    separator = "whitespace" if delimiter is None else repr(delimiter)
    return f"line {number}: expected {expected} {separator}-separated values, found {found}"


def _whole_table(source: Path | io.StringIO, num_columns: int, delimiter: str | None) -> np.ndarray | None:
    """float32 [rows, num_columns] when numpy parses ``source`` whole into finite float32 values, else None
    (also for a file that cannot be read or decoded: the line-by-line path reports those)."""
    try:
        with warnings.catch_warnings():
            # An empty table is reported by the line-by-line path, not as numpy's warning.
            warnings.filterwarnings("ignore", message="loadtxt: input contained no data", category=UserWarning)
            # Values beyond float32's range parse as infinities, refused below.
            table = np.loadtxt(source, dtype=np.float32, delimiter=delimiter, comments=None, ndmin=2)
    except (ValueError, OSError):  # UnicodeDecodeError is a ValueError
        return None
    if table.shape[1] != num_columns or len(table) == 0 or not np.isfinite(table).all():
        return None
    return table


def read_numeric_table(path: Path, num_columns: int, delimiter: str | None, text: str | None = None) -> np.ndarray:
    """float32 [rows, num_columns] of a text table of finite float32 numbers, blank lines skipped.

    delimiter None means runs of whitespace. text, when given, is parsed instead of the file's content
    (for callers that repair a known defect first); path is still named in errors. The fast path is
    numpy's C parser on the whole text; when it refuses the table, the line-by-line parser of
    :func:`parse_numeric_lines` reads it under the same rules or names the first bad line.
    """
    # numpy reads a file it is given by path faster than the same text through Python.
    table = _whole_table(path if text is None else io.StringIO(text), num_columns, delimiter)
    if table is not None:
        return table
    lines = non_blank_lines(read_utf8(path) if text is None else text)
    if not lines:
        raise DataError("file is empty (no data lines)", path)
    table = parse_numeric_lines(lines, delimiter, path, num_columns)
    out_of_range = ~np.isfinite(table) | (np.abs(table) > FLOAT32_MAX)
    if out_of_range.any():
        row, column = (int(index[0]) for index in np.nonzero(out_of_range))
        number, line = lines[row]
        raise DataError(f"line {number}: {_split(line, delimiter)[column]!r} is not a finite float32 value", path)
    return table.astype(np.float32)


def _split(line: str, delimiter: str | None) -> list[str]:
    return line.split() if delimiter is None else [token.strip() for token in line.split(delimiter)]


def _number(token: str) -> float | None:
    """The value of a numeric token as numpy's parser reads it; None for anything else."""
    if "_" in token:  # Python's float() accepts digit separators, numpy does not
        return None
    try:
        return float(token)
    except ValueError:
        return None


def _header_names(line: str) -> list[str] | None:
    """Lower-cased column names when ``line`` is a header (names only, none of them a number)."""
    stripped = line.strip()
    for prefix in HEADER_PREFIXES:
        if stripped.startswith(prefix):
            stripped = stripped[len(prefix) :].strip()
            break
    tokens = _split(stripped, detect_delimiter(stripped))
    if tokens and all(_COLUMN_NAME.match(token) and _number(token) is None for token in tokens):
        return [token.lower() for token in tokens]
    return None
