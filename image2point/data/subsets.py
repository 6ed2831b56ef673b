"""Data-efficiency subsets: a fraction of the training data, or a few samples per class.

Subsets depend on the seed alone (never on the process rank), so every rank trains on the same
samples. For one seed, a smaller subset is contained in a larger one: each class (or the scene
list) is shuffled once and its first k members are kept.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from torch.utils.data import Dataset

from image2point.data.sample import PointCloudDataset, SampleT
from image2point.errors import ConfigError, DataError

# Keeps subset streams apart from augmentation and generation streams of the same seed.
SUBSET_STREAM = 0x5B5


def subset_indices(
    labels_or_count: np.ndarray | Sequence[int] | int,
    fraction: float | None = None,
    per_class: int | None = None,
    seed: int = 0,
) -> np.ndarray:
    """Sorted int64 indices of a subset.

    labels_or_count: the class label of every sample (classification, stratified per class) or the
    number of samples (scenes, no classes). Give exactly one of fraction, in (0, 1], or per_class,
    >= 1 (classification only). Each class present keeps round(fraction * size) samples, at least
    one, or min(per_class, size); scenes keep round(fraction * count), at least one.
    """
    _check_request(fraction, per_class, seed)
    if isinstance(labels_or_count, (int, np.integer)) and not isinstance(labels_or_count, bool):
        return _scene_subset(int(labels_or_count), fraction, per_class, seed)
    return _stratified_subset(_checked_labels(labels_or_count), fraction, per_class, seed)


def _check_request(fraction: float | None, per_class: int | None, seed: int) -> None:
    if (fraction is None) == (per_class is None):
        raise ConfigError("give exactly one of fraction and per_class for a subset")
    if fraction is not None and not 0.0 < fraction <= 1.0:
        raise ConfigError(f"subset fraction must be in (0, 1], got {fraction}")
    if per_class is not None and per_class < 1:
        raise ConfigError(f"subset per_class must be >= 1, got {per_class}")
    if seed < 0:
        raise ConfigError(f"subset seed must be >= 0, got {seed}")


def _scene_subset(count: int, fraction: float | None, per_class: int | None, seed: int) -> np.ndarray:
    if per_class is not None:
        raise ConfigError("per_class needs class labels; scene datasets take a fraction")
    if count < 1:
        raise DataError(f"cannot take a subset of {count} samples")
    order = np.random.default_rng([SUBSET_STREAM, seed]).permutation(count)
    return np.sort(order[: _kept_count(count, fraction)]).astype(np.int64)


def _stratified_subset(labels: np.ndarray, fraction: float | None, per_class: int | None, seed: int) -> np.ndarray:
    chosen = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        keep = min(per_class, len(members)) if per_class is not None else _kept_count(len(members), fraction)
        # One stream per class, so a class's choice does not depend on the other classes.
        order = np.random.default_rng([SUBSET_STREAM, seed, int(label)]).permutation(len(members))
        chosen.append(members[order[:keep]])
    return np.sort(np.concatenate(chosen)).astype(np.int64)


def _kept_count(size: int, fraction: float | None) -> int:
    # Round half up; a class (or scene list) that is present keeps at least one sample.
    return max(1, int(np.floor(fraction * size + 0.5)))


def _checked_labels(labels: np.ndarray | Sequence[int]) -> np.ndarray:
    array = np.asarray(labels)
    if array.ndim != 1 or len(array) == 0:
        raise DataError(f"subset labels must be a non-empty 1-D array, got shape {list(array.shape)}")
    if not np.issubdtype(array.dtype, np.integer):
        raise DataError(f"subset labels must be integers, got {array.dtype}")
    if (array < 0).any():
        raise DataError("subset labels must be >= 0")
    return array


class DatasetSubset(Dataset[SampleT]):
    """Some samples of a dataset, keeping its class names, labels and set_epoch.

    A sample is augmented exactly as in the full dataset (its generator is seeded by its original
    index), so a subset sees the same augmentations as the full dataset would for those samples.
    """

    def __init__(self, dataset: PointCloudDataset[SampleT], indices: np.ndarray | Sequence[int]) -> None:
        self.dataset = dataset
        self.indices = np.asarray(indices, dtype=np.int64)
        if self.indices.ndim != 1 or len(self.indices) == 0:
            raise ValueError("a subset needs a non-empty 1-D list of indices")
        if self.indices.min() < 0 or self.indices.max() >= len(dataset):
            raise IndexError(f"subset indices must be in 0..{len(dataset) - 1}")

    @property
    def split(self) -> str:
        return self.dataset.split

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.dataset.class_names

    @property
    def num_classes(self) -> int:
        return self.dataset.num_classes

    @property
    def labels(self) -> np.ndarray:
        """Labels of the kept samples (classification datasets only)."""
        return self.dataset.labels[self.indices]

    def set_epoch(self, epoch: int) -> None:
        self.dataset.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> SampleT:
        return self.dataset[int(self.indices[index])]
