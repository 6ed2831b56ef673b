"""read_point_cloud: every supported point cloud file through one call, chosen by extension.

Sources with column names (PLY, PCD, LAS, structured .npy, text with a header) keep them, and
``fields`` selects which attributes to keep. Sources without names (KITTI .bin, plain .npy,
headerless text, HDF5 arrays) take them from ``fields``, one per column in order; by default they
are x, y, z then column3, column4, ... (x, y, z, intensity for KITTI .bin). Every reader
validates the cloud it returns (see image2point.io.cloud.validate_point_cloud).
"""

from __future__ import annotations

import glob
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from image2point.errors import DataError
from image2point.io.cloud import PointCloud, cloud_from_columns, counted, describe_error, name_columns
from image2point.io.kitti import SCAN_FIELDS, read_label_file, read_scan_records
from image2point.io.las import read_las
from image2point.io.pcd import read_pcd
from image2point.io.ply import read_ply
from image2point.io.text import non_blank_lines, parse_numeric_lines, read_text, read_utf8

H5_INSTALL_HINT = "reading .h5 files needs h5py: pip install h5py"
H5_POINT_DATASETS = ("points", "xyz", "data")  # the first one present is read
H5_LABEL_DATASETS = ("labels", "label")
LABEL_FIELD = "labels"
LABEL_EXTENSIONS = (".label", ".npy", ".txt", ".labels")
_GLOB_CHARACTERS = frozenset("*?[")

Reader = Callable[[Path, Sequence[str] | None], PointCloud]


def read_kitti_bin(path: str | Path, fields: Sequence[str] | None = None) -> PointCloud:
    """A KITTI velodyne scan: float32 records of x, y, z, intensity (or of the values ``fields`` names)."""
    path = Path(path)
    names = tuple(fields) if fields is not None else SCAN_FIELDS
    return cloud_from_columns(name_columns(read_scan_records(path, names), names, path), path)


def read_npy(path: str | Path, fields: Sequence[str] | None = None) -> PointCloud:
    """A .npy array [N, C >= 3] (columns named by ``fields``), or a structured [N] array with x, y, z fields."""
    path = Path(path)
    array = _load_npy(path)
    if array.dtype.names is not None:
        if array.ndim != 1:
            raise DataError(
                f"wrong rank: structured array of shape {array.shape}; one record per point [N] expected", path
            )
        columns = {name: np.ascontiguousarray(array[name]) for name in array.dtype.names}
        return cloud_from_columns(columns, path, fields, column_kind="record field")
    if array.ndim != 2:
        batch_hint = "; it looks like a batch of several clouds [B, N, C]" if array.ndim == 3 else ""
        raise DataError(
            f"wrong rank: array of shape {array.shape}; a single cloud [N, C >= 3] is expected{batch_hint}", path
        )
    if array.dtype.kind not in "biuf":
        raise DataError(f"array of dtype {array.dtype}; numbers expected", path)
    return cloud_from_columns(name_columns(array, fields, path), path)


def _load_npy(path: Path) -> np.ndarray:
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, EOFError, OSError) as error:
        raise DataError(f"not a readable .npy file: {describe_error(error)}", path) from error
    if not isinstance(array, np.ndarray):
        array.close()
        raise DataError("an .npz archive of several arrays, not one .npy array", path)
    return array


def read_h5(path: str | Path, fields: Sequence[str] | None = None) -> PointCloud:
    """One cloud from an HDF5 file: dataset points, xyz or data [N, C >= 3], and optional labels [N]."""
    try:
        import h5py
    except ImportError as error:
        raise ImportError(H5_INSTALL_HINT) from error
    path = Path(path)

    def dataset_array(file: h5py.File, name: str, single_cloud: bool = False) -> np.ndarray:
        dataset = file[name]
        if not isinstance(dataset, h5py.Dataset):
            raise DataError(f"{name!r} is a group, not a dataset", path)
        if single_cloud:
            _check_single_cloud_shape(dataset.shape, name, path)
        return np.asarray(dataset[()])

    try:
        with h5py.File(path, "r") as file:
            name = next((candidate for candidate in H5_POINT_DATASETS if candidate in file), None)
            if name is None:
                raise DataError(
                    f"no point dataset: expected one of {', '.join(H5_POINT_DATASETS)}; "
                    f"the file holds {', '.join(sorted(file)) or 'nothing'}",
                    path,
                )
            table = dataset_array(file, name, single_cloud=True)
            label_name = next((candidate for candidate in H5_LABEL_DATASETS if candidate in file), None)
            labels = None if label_name is None else dataset_array(file, label_name)
    except OSError as error:
        raise DataError(f"not a readable HDF5 file: {describe_error(error)}", path) from error
    columns = name_columns(table, fields, path)
    if labels is not None:
        if labels.ndim > 2 or labels.size != len(table) or (labels.ndim == 2 and labels.shape[1] != 1):
            raise DataError(
                f"label count mismatch: dataset {label_name!r} of shape {labels.shape} for {len(table)} points", path
            )
        if LABEL_FIELD in columns:
            raise DataError(f"fields names a {LABEL_FIELD!r} column and dataset {label_name!r} holds labels too", path)
        columns[LABEL_FIELD] = labels.reshape(-1)
    return cloud_from_columns(columns, path, column_kind="dataset column")


def _check_single_cloud_shape(shape: tuple[int, ...], name: str, path: Path) -> None:
    """DataError unless a dataset of this shape holds one cloud [N, C]; checked before the data is read."""
    if len(shape) == 3:
        raise DataError(
            f"dataset {name!r} of shape {shape} holds {counted(shape[0], 'cloud')} of {counted(shape[1], 'point')}; "
            "a single cloud [N, C >= 3] is expected: save one cloud per file",
            path,
        )
    if len(shape) != 2:
        raise DataError(f"wrong rank: dataset {name!r} has shape {shape}; a single cloud [N, C >= 3] is expected", path)


READERS: dict[str, Reader] = {
    ".ply": read_ply,
    ".pcd": read_pcd,
    ".las": read_las,
    ".laz": read_las,
    ".bin": read_kitti_bin,
    ".npy": read_npy,
    ".txt": read_text,
    ".xyz": read_text,
    ".csv": read_text,
    ".h5": read_h5,
    ".hdf5": read_h5,
}
SUPPORTED_EXTENSIONS = tuple(READERS)


def read_point_cloud(
    path: str | Path,
    fields: Sequence[str] | None = None,
    labels_path: str | Path | None = None,
) -> PointCloud:
    """The validated cloud in ``path``, read by the reader for its extension (see SUPPORTED_EXTENSIONS).

    fields: for sources without column names, one name per column; for sources with names, the
        attributes to keep (all when None).
    labels_path: per-point labels to attach as the "labels" field (see :func:`read_labels`); their
        count must equal the number of points.
    """
    path = Path(path)
    reader = _reader_for(path)
    if not path.exists():
        raise DataError("file not found", path)
    if not path.is_file():
        raise DataError("not a file", path)
    if path.stat().st_size == 0:
        raise DataError("empty file (0 bytes)", path)
    if isinstance(fields, str):
        raise TypeError(f"fields must be a sequence of names, not the string {fields!r}")
    cloud = reader(path, fields)
    if labels_path is None:
        return cloud
    return with_labels(cloud, read_labels(labels_path), labels_path)


def _reader_for(path: Path) -> Reader:
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        raise DataError(
            f"unsupported extension {path.suffix or '(none)'!r}; supported: {', '.join(SUPPORTED_EXTENSIONS)}", path
        )
    return reader


def read_labels(path: str | Path) -> np.ndarray:
    """Per-point integer labels [N]: SemanticKITTI .label (uint32, returned as stored), an integer
    .npy [N] or [N, 1], or text (.txt, .labels) with one integer per line (int64)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in LABEL_EXTENSIONS:
        raise DataError(
            f"unsupported label extension {suffix or '(none)'!r}; supported: {', '.join(LABEL_EXTENSIONS)}", path
        )
    if not path.is_file():
        raise DataError("file not found", path)
    if suffix == ".label":
        labels = read_label_file(path)
    elif suffix == ".npy":
        labels = _npy_labels(path)
    else:
        labels = _text_labels(path)
    if len(labels) == 0:
        raise DataError("no labels", path)
    return labels


def _npy_labels(path: Path) -> np.ndarray:
    array = _load_npy(path)
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 1:
        raise DataError(f"wrong rank: labels of shape {array.shape}; [N] or [N, 1] expected", path)
    if array.dtype.kind not in "iu":
        raise DataError(f"labels of dtype {array.dtype}; integers expected", path)
    return array


def _text_labels(path: Path) -> np.ndarray:
    lines = non_blank_lines(read_utf8(path))
    if not lines:
        raise DataError("no labels", path)
    table = parse_numeric_lines(lines, None, path)
    if table.shape[1] != 1:
        raise DataError(f"wrong column count: {table.shape[1]} values per line; one label per line expected", path)
    not_whole = np.flatnonzero(table[:, 0] != np.round(table[:, 0]))
    if len(not_whole):
        first = not_whole[0]
        raise DataError(f"line {lines[first][0]}: {table[first, 0]} is not an integer label", path)
    return table[:, 0].astype(np.int64)


def with_labels(cloud: PointCloud, labels: np.ndarray, labels_path: str | Path) -> PointCloud:
    """cloud with ``labels`` (read from labels_path, named in errors) as its "labels" field."""
    if len(labels) != cloud.num_points:
        raise DataError(
            f"label count mismatch: {len(labels)} labels for the {cloud.num_points} points of {cloud.source}",
            labels_path,
        )
    if LABEL_FIELD in cloud.fields:
        raise DataError(f"{cloud.source} already has a {LABEL_FIELD!r} field; refusing to replace it", labels_path)
    return PointCloud(cloud.points, {**cloud.fields, LABEL_FIELD: labels}, cloud.source)


def iter_input_paths(inputs: Sequence[str | Path]) -> list[Path]:
    """The point cloud files that ``inputs`` name, in order and without repeats.

    Each input is a file (its extension must be supported), a directory (its files with supported
    extensions, not recursive, sorted by name) or a glob pattern (matching files with supported
    extensions, sorted; ``**`` recurses). A directory or pattern without such a file raises DataError.
    """
    if isinstance(inputs, (str, Path)):
        raise TypeError(f"inputs must be a sequence of paths, not the single path {inputs!r}")
    if not inputs:
        raise DataError("no input paths given")
    found: dict[Path, None] = {}
    for item in inputs:
        for path in _input_files(item):
            found.setdefault(path, None)
    return list(found)


def _input_files(item: str | Path) -> list[Path]:
    path = Path(item)
    supported = ", ".join(SUPPORTED_EXTENSIONS)
    if path.is_dir():
        files = sorted(entry for entry in path.iterdir() if entry.is_file() and _is_supported(entry))
        if not files:
            raise DataError(f"no point cloud file in this directory (looked for {supported}; not recursive)", path)
        return files
    if path.is_file():
        _reader_for(path)
        return [path]
    if _GLOB_CHARACTERS.intersection(str(item)):
        matches = sorted(Path(match) for match in glob.glob(str(item), recursive=True))
        files = [match for match in matches if match.is_file() and _is_supported(match)]
        if not files:
            what = f"only {len(matches)} paths that are not point cloud files" if matches else "nothing"
            raise DataError(f"glob pattern matches {what} (looked for {supported})", str(item))
        return files
    raise DataError("no such file or directory", path)


def _is_supported(path: Path) -> bool:
    return path.suffix.lower() in READERS
