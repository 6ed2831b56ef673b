"""Cross-validation folds as data selection: which samples a run trains on and which it evaluates.

With ``data.folds = k`` a dataset's official splits are pooled (ModelNet40: the train and test lists
together; SemanticKITTI: the training and evaluation scans) and cut into k folds; run ``data.fold = f``
trains on the other k - 1 folds and evaluates fold f, so over f = 0 .. k-1 every sample is tested exactly
once. ``data.folds = null`` keeps the official splits.

- Shapes (samples with a class label) are stratified: the classes are put in an order drawn from
  ``data.fold_seed``, each class's members are shuffled with that seed, and the concatenation is dealt to
  the folds in turn. Fold sizes differ by at most one, and a class with m members lands in min(m, k) folds.
- Scans (no per-sample label) are cut into k contiguous blocks in their listed order, so neighbouring scans
  of a sequence, which see the same street, stay on one side; ``fold_seed`` does not move them. With k
  equal to the number of scans this is leave-one-scan-out, fold f evaluating the f-th scan.

Folds depend on the pool and the seed alone, never on the process rank or the epoch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from torch.utils.data import ConcatDataset, Dataset

from image2point.data.subsets import DatasetSubset
from image2point.errors import ConfigError

# Keeps the fold stream apart from the subset and augmentation streams of the same seed.
FOLD_STREAM = 0xF01D


class FoldSettings(Protocol):
    """The ``data`` keys that choose a fold (:class:`image2point.train.config.DataConfig`)."""

    folds: int | None
    fold: int
    fold_seed: int


@dataclass(frozen=True)
class FoldChoice:
    """Fold ``fold`` of ``folds``, drawn with ``seed``."""

    folds: int
    fold: int
    seed: int = 0

    def __post_init__(self) -> None:
        if self.folds < 2:
            raise ConfigError(f"data.folds must be at least 2 or null, got {self.folds}")
        if not 0 <= self.fold < self.folds:
            raise ConfigError(f"data.fold must be in 0..{self.folds - 1} for data.folds={self.folds}, got {self.fold}")
        if self.seed < 0:
            raise ConfigError(f"data.fold_seed must be >= 0, got {self.seed}")


def fold_choice(data: FoldSettings) -> FoldChoice | None:
    """The fold the data settings ask for; None for the official splits."""
    folds = getattr(data, "folds", None)
    return None if folds is None else FoldChoice(folds, data.fold, data.fold_seed)


def stratified_folds(labels: np.ndarray | Sequence[int], folds: int, seed: int = 0) -> np.ndarray:
    """int64 [N]: the fold (0 .. folds-1) of every sample, stratified by ``labels`` (see the module docstring)."""
    labels = np.asarray(labels)
    _check_pool(len(labels), folds)
    classes = np.unique(labels)
    class_order = np.random.default_rng([FOLD_STREAM, seed]).permutation(len(classes))
    dealt = []
    for position in class_order:
        label = classes[position]
        members = np.flatnonzero(labels == label)
        # One stream per class, so a class's order does not depend on the other classes.
        dealt.append(members[np.random.default_rng([FOLD_STREAM, seed, int(label)]).permutation(len(members))])
    order = np.concatenate(dealt)
    assignment = np.empty(len(labels), dtype=np.int64)
    assignment[order] = np.arange(len(labels)) % folds
    return assignment


def block_folds(count: int, folds: int) -> np.ndarray:
    """int64 [count]: contiguous, near-equal blocks in listed order (leave-one-out when folds == count)."""
    _check_pool(count, folds)
    assignment = np.empty(count, dtype=np.int64)
    for fold, block in enumerate(np.array_split(np.arange(count), folds)):
        assignment[block] = fold
    return assignment


def _check_pool(count: int, folds: int) -> None:
    if folds > count:
        raise ConfigError(f"data.folds={folds} needs at least {folds} samples; the pooled splits have {count}")


def fold_indices(assignment: np.ndarray, fold: int, train: bool) -> np.ndarray:
    """Sorted indices of the samples a run trains on (every fold but ``fold``) or evaluates (``fold``)."""
    chosen = assignment != fold if train else assignment == fold
    return np.flatnonzero(chosen).astype(np.int64)


def fold_assignment(dataset: Dataset, folds: int, seed: int) -> np.ndarray:
    """Stratified folds for a dataset with per-sample ``labels``, contiguous blocks for one without."""
    labels = getattr(dataset, "labels", None)
    if labels is not None:
        return stratified_folds(labels, folds, seed)
    return block_folds(len(dataset), folds)


class PooledDataset(ConcatDataset):
    """Several splits of one dataset as one: their samples in order, labels and sample ids concatenated.

    Each part augments its own samples (its generator is seeded by the index within the part).
    """

    def __init__(self, parts: Sequence[Dataset], split: str) -> None:
        super().__init__(list(parts))
        self.split = split
        self.class_names = tuple(parts[0].class_names)
        if any(tuple(part.class_names) != self.class_names for part in parts):
            raise ConfigError("data.folds: the pooled splits name different classes")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def labels(self) -> np.ndarray | None:
        parts = [getattr(part, "labels", None) for part in self.datasets]
        return None if any(part is None for part in parts) else np.concatenate(parts)

    @property
    def sample_ids(self) -> tuple[str, ...]:
        return tuple(name for part in self.datasets for name in sample_ids_of(part))

    def set_epoch(self, epoch: int) -> None:
        for part in self.datasets:
            part.set_epoch(epoch)


def fold_dataset(pool: Dataset, choice: FoldChoice, train: bool) -> DatasetSubset:
    """The training part (train) or the evaluated fold of ``pool``."""
    assignment = fold_assignment(pool, choice.folds, choice.seed)
    return DatasetSubset(pool, fold_indices(assignment, choice.fold, train))


def open_fold(open_split: Callable[[str], Dataset], splits: Sequence[str], choice: FoldChoice, train: bool,
              split_label: str) -> DatasetSubset:
    """Open every split of ``splits``, pool them and keep the fold's training part or its evaluated fold."""
    return fold_dataset(PooledDataset([open_split(split) for split in splits], split_label), choice, train)


def sample_ids_of(dataset: Dataset) -> tuple[str, ...]:
    """A name per sample, stable across runs of the same data: shape ids, scan ids, else the index."""
    for attribute in ("sample_ids", "shape_ids", "scans"):
        names = getattr(dataset, attribute, None)
        if names is not None:
            return tuple(str(name) for name in names)
    if isinstance(dataset, DatasetSubset):
        inner = sample_ids_of(dataset.dataset)
        return tuple(inner[int(index)] for index in dataset.indices)
    return tuple(str(index) for index in range(len(dataset)))
