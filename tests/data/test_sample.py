from pathlib import Path

import numpy as np
import pytest

from image2point.data.sample import (
    IGNORE_INDEX,
    PointCloudDataset,
    SceneSample,
    ShapeSample,
    normalize_to_unit_sphere,
)
from image2point.errors import DataError


def points(count: int = 4) -> np.ndarray:
    return np.arange(count * 3, dtype=np.float32).reshape(count, 3)


class CountingDataset(PointCloudDataset[ShapeSample]):
    """Three shapes whose only content is their index; enough to exercise the base class."""

    def __init__(self, transform=None, seed: int = 0) -> None:
        super().__init__("train", ("a", "b"), transform, seed)

    def __len__(self) -> int:
        return 3

    def load(self, index: int) -> ShapeSample:
        return ShapeSample(points=points() + index, features=None, label=index % 2, source=f"counting/{index}")


def test_shape_sample_accepts_valid_arrays_and_normalises_label_type():
    sample = ShapeSample(points(), np.ones((4, 2), np.float32), np.int64(3), "here")
    assert sample.label == 3 and type(sample.label) is int
    assert sample.num_points == 4


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [
        ({"points": points().astype(np.float64)}, "float32"),
        ({"points": np.zeros((4, 2), np.float32)}, "shape"),
        ({"points": np.zeros((0, 3), np.float32)}, "shape"),
        ({"points": np.array([[0, np.nan, 0]], np.float32)}, "NaN"),
        ({"features": np.ones((3, 1), np.float32)}, "features"),
        ({"features": np.full((4, 1), np.inf, np.float32)}, "infinite"),
        ({"label": -1}, ">= 0"),
        ({"label": True}, "integer"),
    ],
)
def test_shape_sample_rejects_bad_input_naming_the_source(kwargs, problem):
    arguments = {"points": points(), "features": None, "label": 0, "source": "shape.txt"} | kwargs
    with pytest.raises(DataError, match=problem) as error:
        ShapeSample(**arguments)
    assert error.value.path == Path("shape.txt")


def test_scene_sample_accepts_ignore_index_and_rejects_other_negative_labels():
    labels = np.array([0, IGNORE_INDEX, 2, 1], np.int64)
    assert SceneSample(points(), None, labels, "scene").num_points == 4
    with pytest.raises(DataError, match="found -5"):
        SceneSample(points(), None, np.array([0, -5, 2, 1], np.int64), "scene")
    with pytest.raises(DataError, match="int64"):
        SceneSample(points(), None, labels.astype(np.int32), "scene")
    with pytest.raises(DataError, match=r"shape \[4\]"):
        SceneSample(points(), None, labels[:3], "scene")


def test_normalize_to_unit_sphere_centres_and_scales():
    normalised = normalize_to_unit_sphere(points(5) * 7 + 3, "x")
    assert normalised.dtype == np.float32
    np.testing.assert_allclose(normalised.mean(axis=0), 0.0, atol=1e-6)
    assert np.linalg.norm(normalised, axis=1).max() == pytest.approx(1.0)
    with pytest.raises(DataError, match="coincide"):
        normalize_to_unit_sphere(np.ones((3, 3), np.float32), "x")


def test_augmentation_rng_depends_only_on_seed_epoch_and_index():
    first, second = CountingDataset(seed=5), CountingDataset(seed=5)
    assert first.augmentation_rng(2).random() == second.augmentation_rng(2).random()
    assert first.augmentation_rng(1).random() != first.augmentation_rng(2).random()
    before = first.augmentation_rng(2).random()
    first.set_epoch(1)
    assert first.augmentation_rng(2).random() != before
    assert CountingDataset(seed=6).augmentation_rng(2).random() != second.augmentation_rng(2).random()


def test_getitem_applies_transform_and_supports_negative_indices():
    def shift_by_random(sample: ShapeSample, rng: np.random.Generator) -> ShapeSample:
        return ShapeSample(sample.points + np.float32(rng.random()), None, sample.label, sample.source)

    dataset = CountingDataset(transform=shift_by_random)
    expected = points() + 2 + np.float32(dataset.augmentation_rng(2).random())
    np.testing.assert_array_equal(dataset[-1].points, expected)
    with pytest.raises(IndexError):
        dataset[3]


def test_getitem_rejects_a_transform_that_changes_the_sample_type():
    def to_scene(sample: ShapeSample, rng: np.random.Generator) -> SceneSample:
        return SceneSample(sample.points, None, np.zeros(sample.num_points, np.int64), sample.source)

    with pytest.raises(TypeError, match="SceneSample"):
        CountingDataset(transform=to_scene)[0]
