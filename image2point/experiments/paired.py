"""Paired differences of two rows of a table, with a bootstrap interval and a verdict (pure numpy).

Both rows ran with the same seeds and the same folds, so they were tested on the same units: shapes for
accuracy; for mIoU, blocks of scans (or whole scans, see :mod:`image2point.train.outcomes`). A unit's
outcome is additive (accuracy: [correct, 1]; mIoU: its confusion counts), and a row's headline metric for
one seed is that of the units summed over every fold (each unit tested once).

The difference is row A minus row B in percentage points, averaged over seeds. Its 95 % interval is a
percentile bootstrap in two stages: each replicate resamples the units with replacement within each fold
(one draw shared by both rows and by every seed: the rows are paired on the same test units) and then
the seeds with replacement (a difference that one training seed makes should not pass for a property of
the rows). mIoU is resampled by blocks rather than points because points of one object or wall are far
from independent: resampling single points would give an interval too narrow to mean anything.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

PERCENT = 100.0
DEFAULT_REPLICATES = 2000
CONFIDENCE = 0.95
# Percentage points below which an interval's end is 0: a difference that is exactly 0 comes out of the float
# sums as up to ~1e-13, and no real difference of these metrics is anywhere near this small.
ZERO_TOLERANCE = 1e-9


class Verdict(enum.Enum):
    """What the interval says about a claim: it holds, it is reversed, or the interval contains 0."""

    HOLDS = "holds"
    REVERSED = "reversed"
    CANNOT_TELL = "cannot tell at this scale"


class Direction(enum.IntEnum):
    """The sign the claim expects of A - B."""

    A_ABOVE_B = 1
    A_BELOW_B = -1


class Measure(enum.Enum):
    """How a unit's additive outcome becomes the headline metric."""

    ACCURACY = "overall_accuracy"
    MIOU = "miou"


@dataclass(frozen=True, eq=False)
class PairedFold:
    """One fold's units for both rows and every seed: ``a`` and ``b`` float64 [seeds, units, D]."""

    a: np.ndarray
    b: np.ndarray

    def __post_init__(self) -> None:
        if self.a.shape != self.b.shape or self.a.ndim != 3:
            raise ValueError(f"rows must both be [seeds, units, D], got {self.a.shape} and {self.b.shape}")


@dataclass(frozen=True)
class PairedDifference:
    """A - B in percentage points (mean over seeds), its bootstrap interval, and per-seed values."""

    difference: float
    low: float
    high: float
    per_seed: tuple[float, ...]
    units: int
    replicates: int

    def verdict(self, direction: Direction) -> Verdict:
        """HOLDS when the interval lies on the claim's side of 0, REVERSED on the other, else CANNOT_TELL (an end
        within ZERO_TOLERANCE of 0 touches 0)."""
        low, high = (self.low, self.high) if direction == Direction.A_ABOVE_B else (-self.high, -self.low)
        if low > ZERO_TOLERANCE:
            return Verdict.HOLDS
        if high < -ZERO_TOLERANCE:
            return Verdict.REVERSED
        return Verdict.CANNOT_TELL


def metric_of(totals: np.ndarray, measure: Measure) -> np.ndarray:
    """The metric (fraction) of summed unit outcomes ``totals`` [..., D]: accuracy from [correct, count];
    mIoU from flattened K x K confusion counts (rows target), over the classes present in the targets."""
    if measure == Measure.ACCURACY:
        return totals[..., 0] / np.maximum(totals[..., 1], 1)
    classes = int(round(np.sqrt(totals.shape[-1])))
    confusion = totals.reshape(*totals.shape[:-1], classes, classes)
    true_positives = np.diagonal(confusion, axis1=-2, axis2=-1)
    targets, predicted = confusion.sum(axis=-1), confusion.sum(axis=-2)
    union = targets + predicted - true_positives
    present = targets > 0
    iou = np.where(present, true_positives / np.maximum(union, 1), 0.0)
    return iou.sum(axis=-1) / np.maximum(present.sum(axis=-1), 1)


def paired_difference(folds: Sequence[PairedFold], measure: Measure, replicates: int = DEFAULT_REPLICATES,
                      seed: int = 0, resample_seeds: bool = True) -> PairedDifference:
    """A - B of ``measure`` over ``folds`` (see the module docstring), with a 95 % percentile interval."""
    if not folds:
        raise ValueError("no folds to compare")
    seeds = folds[0].a.shape[0]
    if seeds < 1 or any(fold.a.shape[0] != seeds for fold in folds):
        raise ValueError("every fold needs the same seeds, at least one")
    rng = np.random.default_rng(seed)
    observed_a = sum(fold.a.sum(axis=1) for fold in folds)
    observed_b = sum(fold.b.sum(axis=1) for fold in folds)
    per_seed = (metric_of(observed_a, measure) - metric_of(observed_b, measure)) * PERCENT
    # Stage 1: units resampled within each fold, the same draw for both rows and every seed.
    boot_a = boot_b = 0.0
    for fold in folds:
        units = fold.a.shape[1]
        weights = rng.multinomial(units, np.full(units, 1.0 / units), size=replicates).astype(np.float64)
        boot_a = boot_a + np.einsum("ru,sud->rsd", weights, fold.a)
        boot_b = boot_b + np.einsum("ru,sud->rsd", weights, fold.b)
    differences = (metric_of(boot_a, measure) - metric_of(boot_b, measure)) * PERCENT  # [replicates, seeds]
    # Stage 2: seeds resampled with replacement.
    if resample_seeds and seeds > 1:
        chosen = rng.integers(0, seeds, size=(replicates, seeds))
        differences = np.take_along_axis(differences, chosen, axis=1)
    means = differences.mean(axis=1)
    tail = (1.0 - CONFIDENCE) / 2 * PERCENT
    low, high = np.percentile(means, [tail, PERCENT - tail])
    return PairedDifference(float(per_seed.mean()), float(low), float(high), tuple(float(v) for v in per_seed),
                            sum(fold.a.shape[1] for fold in folds), replicates)


def pair_units(a: Sequence[Mapping[object, np.ndarray]], b: Sequence[Mapping[object, np.ndarray]],
               width: int) -> PairedFold:
    """One fold's unit outcomes by seed (a[s], b[s]: unit key -> [D]) as aligned arrays; a unit one run did
    not see counts as zeros (a block that held no scored point)."""
    keys = sorted({key for runs in (a, b) for outcome in runs for key in outcome}, key=repr)
    index = {key: position for position, key in enumerate(keys)}

    def stack(runs: Sequence[Mapping[object, np.ndarray]]) -> np.ndarray:
        array = np.zeros((len(runs), len(keys), width))
        for seed, outcome in enumerate(runs):
            for key, value in outcome.items():
                array[seed, index[key]] = value
        return array

    return PairedFold(stack(a), stack(b))
