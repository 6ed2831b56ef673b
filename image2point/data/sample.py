"""Typed samples and the dataset base class they come from.

Samples stay numpy at this level; voxelization and conversion to torch happen at collation.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
from torch.utils.data import Dataset

from image2point.channels import XYZ_CHANNELS
from image2point.errors import DataError
from image2point.tasks import IGNORE_INDEX

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
    if points.ndim != 2 or points.shape[1] != XYZ_CHANNELS or len(points) == 0:
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
