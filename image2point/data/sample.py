"""Typed samples, the dataset base class they come from, and the validated text-table reader.

Samples stay numpy at this level; voxelization and conversion to torch happen at collation.
"""

from __future__ import annotations

import dataclasses
import io
import math
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
from torch.utils.data import Dataset

from image2point.errors import DataError

IGNORE_INDEX = -100
"""Label of points that carry no class; losses and metrics skip them (PyTorch's default ignore_index)."""

POINT_DIMENSIONS = 3
FLOAT32_MAX = float(np.finfo(np.float32).max)

# Keeps the augmentation streams apart from any other stream derived from the same user seed
# (procedural generation, subsets), so changing one never shifts another.
AUGMENTATION_STREAM = 0xA06


@dataclass(frozen=True, eq=False)
class ShapeSample:
    """One labelled shape for classification.

    points: float32 [N, 3]; features: float32 [N, C] or None (xyz only); label: class index >= 0;
    source: where the sample came from (a file path or a generator description), used in errors.
    """

    points: np.ndarray
    features: np.ndarray | None
    label: int
    source: str

    def __post_init__(self) -> None:
        _check_points(self.points, self.source)
        _check_features(self.features, len(self.points), self.source)
        object.__setattr__(self, "label", _checked_class_index(self.label, self.source))

    @property
    def num_points(self) -> int:
        return len(self.points)


@dataclass(frozen=True, eq=False)
class SceneSample:
    """One scene for semantic segmentation.

    points: float32 [N, 3]; features: float32 [N, C] or None; labels: int64 [N], a class index
    or IGNORE_INDEX for unlabelled points; source: where the scene came from, used in errors.
    """

    points: np.ndarray
    features: np.ndarray | None
    labels: np.ndarray
    source: str

    def __post_init__(self) -> None:
        _check_points(self.points, self.source)
        _check_features(self.features, len(self.points), self.source)
        _check_point_labels(self.labels, len(self.points), self.source)

    @property
    def num_points(self) -> int:
        return len(self.points)


def _check_points(points: object, source: str) -> None:
    if not isinstance(points, np.ndarray) or points.dtype != np.float32:
        raise DataError(f"points must be a float32 array, got {_describe(points)}", source)
    if points.ndim != 2 or points.shape[1] != POINT_DIMENSIONS or len(points) == 0:
        raise DataError(f"points must have shape [N>0, 3], got {list(points.shape)}", source)
    if not np.isfinite(points).all():
        raise DataError("points contain NaN or infinite coordinates", source)


def _check_features(features: object, num_points: int, source: str) -> None:
    if features is None:
        return
    if not isinstance(features, np.ndarray) or features.dtype != np.float32:
        raise DataError(f"features must be a float32 array or None, got {_describe(features)}", source)
    if features.ndim != 2 or len(features) != num_points:
        raise DataError(f"features must have shape [{num_points}, C], got {list(features.shape)}", source)
    if not np.isfinite(features).all():
        raise DataError("features contain NaN or infinite values", source)


def _checked_class_index(label: object, source: str) -> int:
    if isinstance(label, bool) or not isinstance(label, (int, np.integer)):
        raise DataError(f"label must be an integer class index, got {label!r}", source)
    if label < 0:
        raise DataError(f"label must be >= 0, got {label}", source)
    return int(label)


def _check_point_labels(labels: object, num_points: int, source: str) -> None:
    if not isinstance(labels, np.ndarray) or labels.dtype != np.int64:
        raise DataError(f"labels must be an int64 array, got {_describe(labels)}", source)
    if labels.shape != (num_points,):
        raise DataError(f"labels must have shape [{num_points}], got {list(labels.shape)}", source)
    invalid = (labels < 0) & (labels != IGNORE_INDEX)
    if invalid.any():
        raise DataError(
            f"labels must be class indices >= 0 or IGNORE_INDEX ({IGNORE_INDEX}), found {int(labels[invalid][0])}",
            source,
        )


def _describe(value: object) -> str:
    if isinstance(value, np.ndarray):
        return f"{value.dtype} array"
    return type(value).__name__


def normalize_to_unit_sphere(points: np.ndarray, source: str | Path) -> np.ndarray:
    """float32 points centred on their mean and divided by the largest distance to it (PointNet++'s
    pc_normalize), the normalisation of ModelNet40 shapes."""
    centred = points - points.mean(axis=0)
    radius = float(np.sqrt((centred**2).sum(axis=1)).max())
    if radius == 0.0:
        raise DataError("all points coincide; the shape cannot be scaled to the unit sphere", source)
    return (centred / radius).astype(np.float32)


SampleT = TypeVar("SampleT", ShapeSample, SceneSample)
Transform = Callable[[SampleT, np.random.Generator], SampleT]
"""A pure function of a sample and a random generator; all randomness must come from the generator."""


def select_points(sample: SampleT, keep: np.ndarray) -> SampleT:
    """The sample restricted to the points where ``keep`` is true (labels too, for scenes)."""
    changes: dict[str, np.ndarray] = {"points": sample.points[keep]}
    if sample.features is not None:
        changes["features"] = sample.features[keep]
    if hasattr(sample, "labels"):
        changes["labels"] = sample.labels[keep]
    return dataclasses.replace(sample, **changes)


class PointCloudDataset(Dataset[SampleT], ABC):
    """Base of every dataset: a split, class names, and reproducible per-sample augmentation.

    The augmentation generator of a sample depends only on (seed, epoch, index), so results do not
    depend on the number of data-loader workers or on the process rank. Call set_epoch before each
    epoch's iterator is created (workers copy the dataset when they start).
    """

    def __init__(
        self,
        split: str,
        class_names: Sequence[str],
        transform: Transform | None,
        seed: int,
    ) -> None:
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        self.split = split
        self.class_names: tuple[str, ...] = tuple(class_names)
        self.transform = transform
        self.seed = seed
        self.epoch = 0

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def set_epoch(self, epoch: int) -> None:
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        self.epoch = epoch

    def augmentation_rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng([AUGMENTATION_STREAM, self.seed, self.epoch, index])

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def load(self, index: int) -> SampleT:
        """The sample at a valid, non-negative index, before any transform."""

    def __getitem__(self, index: int) -> SampleT:
        index = self._checked_index(index)
        sample = self.load(index)
        if self.transform is None:
            return sample
        transformed = self.transform(sample, self.augmentation_rng(index))
        if not isinstance(transformed, type(sample)):
            raise TypeError(f"transform returned {type(transformed).__name__}, expected {type(sample).__name__}")
        return transformed

    def _checked_index(self, index: int) -> int:
        length = len(self)
        if not -length <= index < length:
            raise IndexError(f"index {index} out of range for a dataset of {length} samples")
        return index % length


def read_numeric_table(
    path: Path,
    num_columns: int,
    delimiter: str | None,
    text: str | None = None,
) -> np.ndarray:
    """Reads a text table of finite numbers into float32 [rows, num_columns].

    delimiter None means runs of whitespace. Empty lines are skipped. The fast path is numpy's C
    parser; when it rejects the file, a line-by-line pass either parses the file under the same
    rules or raises a DataError naming the first bad line. text, when given, is parsed instead of
    the file's content (for callers that repair a known defect first); path is still used in errors.
    """
    try:
        source = io.StringIO(text) if text is not None else path
        with warnings.catch_warnings():
            # An empty file is reported below as a DataError, not as numpy's warning.
            warnings.filterwarnings("ignore", message="loadtxt: input contained no data", category=UserWarning)
            table = np.loadtxt(source, dtype=np.float32, delimiter=delimiter, comments=None, ndmin=2)
        if table.shape[1] == num_columns and len(table) > 0 and np.isfinite(table).all():
            return table
    except (ValueError, UnicodeDecodeError):
        pass
    except OSError as error:
        raise DataError(f"cannot read file: {error.strerror or error}", path) from error
    if text is None:
        text = _read_text(path)
    return _parse_table_by_line(text, num_columns, delimiter, path)


def _read_text(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8")
    except OSError as error:
        raise DataError(f"cannot read file: {error.strerror or error}", path) from error
    except UnicodeDecodeError as error:
        line_number = path.read_bytes()[: error.start].count(b"\n") + 1
        raise DataError(f"line {line_number}: not UTF-8 text", path) from error


def _parse_table_by_line(text: str, num_columns: int, delimiter: str | None, path: Path) -> np.ndarray:
    rows: list[list[float]] = []
    for line_number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            rows.append(_parse_row(line, num_columns, delimiter, line_number, path))
    if not rows:
        raise DataError("file is empty (no data lines)", path)
    return np.asarray(rows, dtype=np.float32)


def _parse_row(line: str, num_columns: int, delimiter: str | None, line_number: int, path: Path) -> list[float]:
    fields = line.split(delimiter)
    if len(fields) != num_columns:
        separator = "whitespace" if delimiter is None else repr(delimiter)
        raise DataError(
            f"line {line_number}: expected {num_columns} {separator}-separated values, found {len(fields)}",
            path,
        )
    values = []
    for field in fields:
        try:
            value = float(field)
        except ValueError:
            raise DataError(f"line {line_number}: {field.strip()!r} is not a number", path) from None
        if not math.isfinite(value) or abs(value) > FLOAT32_MAX:
            raise DataError(f"line {line_number}: {field.strip()!r} is not a finite float32 value", path)
        values.append(value)
    return values
