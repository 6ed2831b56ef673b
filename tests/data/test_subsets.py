import numpy as np
import pytest

from image2point.data.procedural import ProceduralShapes
from image2point.data.subsets import DatasetSubset, subset_indices
from image2point.errors import ConfigError, DataError

# 100 of class 0, 10 of class 1, 3 of class 2, none of class 3, 1 of class 4.
CLASS_SIZES = {0: 100, 1: 10, 2: 3, 4: 1}


def labels() -> np.ndarray:
    ordered = np.concatenate([np.full(size, label) for label, size in CLASS_SIZES.items()])
    return np.random.default_rng(0).permutation(ordered)


def per_class_counts(indices: np.ndarray) -> dict[int, int]:
    chosen = labels()[indices]
    return {label: int((chosen == label).sum()) for label in CLASS_SIZES}


def test_fraction_is_stratified_with_at_least_one_per_class():
    indices = subset_indices(labels(), fraction=0.1, seed=0)
    assert per_class_counts(indices) == {0: 10, 1: 1, 2: 1, 4: 1}
    assert indices.dtype == np.int64 and np.all(np.diff(indices) > 0)


def test_per_class_takes_at_most_the_class_size():
    indices = subset_indices(labels(), per_class=5, seed=0)
    assert per_class_counts(indices) == {0: 5, 1: 5, 2: 3, 4: 1}


def test_full_fraction_keeps_everything():
    np.testing.assert_array_equal(subset_indices(labels(), fraction=1.0), np.arange(len(labels())))


def test_subsets_depend_on_the_seed_only():
    first = subset_indices(labels(), fraction=0.2, seed=4)
    np.testing.assert_array_equal(first, subset_indices(labels().tolist(), fraction=0.2, seed=4))
    assert not np.array_equal(first, subset_indices(labels(), fraction=0.2, seed=5))


def test_smaller_subsets_are_contained_in_larger_ones():
    small = subset_indices(labels(), fraction=0.05, seed=1)
    large = subset_indices(labels(), fraction=0.5, seed=1)
    assert set(small) <= set(large)
    assert set(subset_indices(labels(), per_class=2, seed=1)) <= set(subset_indices(labels(), per_class=6, seed=1))


def test_scene_subsets_take_a_fraction_of_the_scenes():
    indices = subset_indices(40, fraction=0.25, seed=2)
    assert len(indices) == 10 and len(set(indices)) == 10 and indices.max() < 40
    np.testing.assert_array_equal(indices, subset_indices(40, fraction=0.25, seed=2))
    assert len(subset_indices(3, fraction=0.01)) == 1


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [
        ({}, "exactly one"),
        ({"fraction": 0.5, "per_class": 2}, "exactly one"),
        ({"fraction": 0.0}, r"\(0, 1\]"),
        ({"fraction": 1.5}, r"\(0, 1\]"),
        ({"per_class": 0}, ">= 1"),
        ({"fraction": 0.5, "seed": -1}, "seed"),
    ],
)
def test_bad_requests_are_config_errors(kwargs, problem):
    with pytest.raises(ConfigError, match=problem):
        subset_indices(labels(), **kwargs)


def test_bad_labels_and_counts_are_data_errors():
    with pytest.raises(ConfigError, match="per_class needs class labels"):
        subset_indices(10, per_class=2)
    with pytest.raises(DataError, match="cannot take a subset of 0"):
        subset_indices(0, fraction=0.5)
    with pytest.raises(DataError, match="integers"):
        subset_indices(np.array([0.5, 1.0]), fraction=0.5)
    with pytest.raises(DataError, match=">= 0"):
        subset_indices(np.array([0, -1]), fraction=0.5)


def test_dataset_subset_keeps_labels_and_original_augmentation():
    dataset = ProceduralShapes(num_samples=24, num_points=32)
    indices = subset_indices(dataset.labels, per_class=1, seed=0)
    subset = DatasetSubset(dataset, indices)
    assert len(subset) == dataset.num_classes
    np.testing.assert_array_equal(subset.labels, dataset.labels[indices])
    assert subset.class_names == dataset.class_names and subset.split == "train"
    np.testing.assert_array_equal(subset[1].points, dataset[int(indices[1])].points)
    subset.set_epoch(3)
    assert dataset.epoch == 3
    with pytest.raises(IndexError):
        DatasetSubset(dataset, [0, 24])
