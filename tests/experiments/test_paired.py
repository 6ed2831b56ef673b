"""Paired bootstrap differences against hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from image2point.experiments.paired import (
    Direction,
    Measure,
    PairedDifference,
    PairedFold,
    Verdict,
    metric_of,
    pair_units,
    paired_difference,
)


def accuracy_fold(correct_a, correct_b) -> PairedFold:
    """[seeds, units] booleans -> a fold of [correct, 1] unit outcomes."""
    def units(correct):
        correct = np.asarray(correct, dtype=float)
        return np.stack([correct, np.ones_like(correct)], axis=-1)
    return PairedFold(units(correct_a), units(correct_b))


def test_a_constant_difference_has_a_point_interval_and_holds():
    # A right on every shape, B on none, in every fold and seed: the difference is 100 points in every replicate.
    folds = [accuracy_fold([[1, 1, 1]] * 3, [[0, 0, 0]] * 3), accuracy_fold([[1, 1]] * 3, [[0, 0]] * 3)]
    result = paired_difference(folds, Measure.ACCURACY, replicates=200)
    assert result.difference == result.low == result.high == 100.0
    assert result.per_seed == (100.0, 100.0, 100.0) and result.units == 5
    assert result.verdict(Direction.A_ABOVE_B) == Verdict.HOLDS
    assert result.verdict(Direction.A_BELOW_B) == Verdict.REVERSED


def test_a_symmetric_difference_cannot_tell():
    # A right where B is wrong on half the shapes, the other way round on the other half: 0 on average, and
    # the resampled differences are symmetric about 0.
    a = [[1, 0] * 20]
    b = [[0, 1] * 20]
    result = paired_difference([accuracy_fold(a, b)], Measure.ACCURACY, replicates=4000, seed=1)
    assert result.difference == 0.0
    assert result.low < 0 < result.high and abs(result.low + result.high) < 5.0
    # Each replicate is (k - (40 - k)) / 40 with k ~ Binomial(40, 1/2): sd 100 * 2 * sqrt(40 / 4) / 40 = 15.8.
    assert result.high == pytest.approx(1.96 * 15.8, abs=4.0)
    assert result.verdict(Direction.A_ABOVE_B) == Verdict.CANNOT_TELL


def test_a_reversed_difference():
    a = [[0, 0, 0, 1] * 10]
    b = [[1, 1, 1, 1] * 10]
    result = paired_difference([accuracy_fold(a, b)], Measure.ACCURACY, replicates=1000)
    assert result.difference == -75.0 and result.high < 0
    assert result.verdict(Direction.A_ABOVE_B) == Verdict.REVERSED


def test_two_shapes_by_hand():
    # A right on shape 1 only, B on neither: resampled differences are 0, 50, 100 with probabilities
    # 1/4, 1/2, 1/4, so the 95 % percentile interval is [0, 100] and contains 0.
    result = paired_difference([accuracy_fold([[1, 0]], [[0, 0]])], Measure.ACCURACY, replicates=4000)
    assert (result.difference, result.low, result.high) == (50.0, 0.0, 100.0)
    assert result.verdict(Direction.A_ABOVE_B) == Verdict.CANNOT_TELL


def test_the_interval_is_reproducible_from_its_seed():
    pattern = np.random.default_rng(0).integers(0, 2, size=(2, 2, 60))
    a, b = pattern[0], pattern[1]
    runs = [paired_difference([accuracy_fold(a, b)], Measure.ACCURACY, replicates=300, seed=s) for s in (4, 4, 5)]
    assert runs[0] == runs[1] and runs[0] != runs[2]


def test_resampling_seeds_widens_an_interval_one_seed_decides():
    # Seed 0: A wins by 100 points; seeds 1 and 2: no difference.
    a = [[1] * 10, [0] * 10, [0] * 10]
    b = [[0] * 10, [0] * 10, [0] * 10]
    fixed = paired_difference([accuracy_fold(a, b)], Measure.ACCURACY, replicates=2000, resample_seeds=False)
    resampled = paired_difference([accuracy_fold(a, b)], Measure.ACCURACY, replicates=2000)
    assert fixed.low == fixed.high == pytest.approx(100 / 3)
    assert resampled.low == 0.0 and resampled.high == 100.0


def test_miou_of_a_confusion_by_hand():
    # Two classes; targets 0: 3 points (2 right), 1: 1 point (right). IoU 2/3 and 1/2, mean 7/12.
    confusion = np.array([[2.0, 1.0], [0.0, 1.0]])
    assert metric_of(confusion.reshape(4), Measure.MIOU) == pytest.approx(7 / 12)
    # A class absent from the targets does not count, even if predicted.
    absent = np.array([[3.0, 1.0], [0.0, 0.0]])
    assert metric_of(absent.reshape(4), Measure.MIOU) == pytest.approx(3 / 4)


def test_units_are_paired_by_key_with_missing_ones_as_zeros():
    fold = pair_units([{"x": np.array([1.0, 1.0])}], [{"x": np.array([0.0, 1.0]), "y": np.array([1.0, 1.0])}], 2)
    assert fold.a.tolist() == [[[1.0, 1.0], [0.0, 0.0]]]
    assert fold.b.tolist() == [[[0.0, 1.0], [1.0, 1.0]]]


def test_verdict_reads_only_the_interval():
    at_zero = PairedDifference(difference=1.0, low=0.0, high=2.0, per_seed=(1.0,), units=3, replicates=10)
    assert at_zero.verdict(Direction.A_ABOVE_B) == Verdict.CANNOT_TELL


def test_an_end_that_is_zero_up_to_float_rounding_touches_zero():
    # Measured: five seeds of claim (a) whose bootstrap's lower end is exactly 0 came out as 1.2e-15.
    rounded = PairedDifference(difference=6.1, low=1.2e-15, high=12.4, per_seed=(6.1,), units=127, replicates=10)
    assert rounded.verdict(Direction.A_ABOVE_B) == Verdict.CANNOT_TELL
    mirrored = PairedDifference(difference=-6.1, low=-12.4, high=-1.2e-15, per_seed=(-6.1,), units=127, replicates=10)
    assert mirrored.verdict(Direction.A_ABOVE_B) == Verdict.CANNOT_TELL
    clear = PairedDifference(difference=6.1, low=0.94, high=12.0, per_seed=(6.1,), units=127, replicates=10)
    assert clear.verdict(Direction.A_ABOVE_B) == Verdict.HOLDS
