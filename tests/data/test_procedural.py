import numpy as np
import pytest

from image2point.data.procedural import (
    SCENE_CLASS_NAMES,
    SCENE_POINTS_RANGE,
    SCENE_SIDE_RANGE_M,
    SHAPE_CLASS_NAMES,
    ProceduralScenes,
    ProceduralShapes,
    box,
    sample_surfaces,
    sphere,
    torus,
)
from image2point.data.sample import IGNORE_INDEX, SceneSample, ShapeSample

MIN_SHAPE_CLASSES = 10
DESCRIPTOR_BINS = 16
LEARNABILITY_POINTS = 256
SCENE_HEIGHT_LIMIT_M = 3.5


def test_shapes_have_at_least_ten_balanced_classes():
    dataset = ProceduralShapes(num_samples=3 * len(SHAPE_CLASS_NAMES), split="train", seed=0, num_points=128)
    assert dataset.num_classes == len(SHAPE_CLASS_NAMES) >= MIN_SHAPE_CLASSES
    np.testing.assert_array_equal(np.bincount(dataset.labels), 3)
    labels = [dataset[index].label for index in range(len(dataset))]
    np.testing.assert_array_equal(labels, dataset.labels)


def test_shapes_are_normalised_like_modelnet():
    dataset = ProceduralShapes(num_samples=len(SHAPE_CLASS_NAMES), num_points=300)
    for index in range(len(dataset)):
        sample = dataset[index]
        assert isinstance(sample, ShapeSample) and sample.features is None
        assert sample.points.shape == (300, 3) and sample.points.dtype == np.float32
        np.testing.assert_allclose(sample.points.mean(axis=0), 0.0, atol=1e-5)
        assert np.linalg.norm(sample.points, axis=1).max() == pytest.approx(1.0, abs=1e-5)


def test_shapes_are_deterministic_from_the_seed():
    first = ProceduralShapes(num_samples=4, seed=3, num_points=64)
    second = ProceduralShapes(num_samples=4, seed=3, num_points=64)
    other_seed = ProceduralShapes(num_samples=4, seed=4, num_points=64)
    np.testing.assert_array_equal(first[2].points, second[2].points)
    assert not np.allclose(first[2].points, other_seed[2].points)


def test_shape_train_and_test_splits_share_no_sample():
    train = ProceduralShapes(num_samples=24, split="train", seed=0, num_points=64)
    test = ProceduralShapes(num_samples=24, split="test", seed=0, num_points=64)
    train_points = [train[index].points for index in range(len(train))]
    for index in range(len(test)):
        assert not any(np.allclose(test[index].points, points) for points in train_points)


def test_shapes_vary_within_a_class():
    dataset = ProceduralShapes(num_samples=2 * len(SHAPE_CLASS_NAMES), num_points=256)
    first, second = dataset[0], dataset[len(SHAPE_CLASS_NAMES)]
    assert first.label == second.label
    extents = [np.ptp(sample.points, axis=0) for sample in (first, second)]
    assert not np.allclose(extents[0], extents[1], atol=0.05)


def distance_histogram(points: np.ndarray) -> np.ndarray:
    """Histogram of pairwise distances (the D2 shape distribution): invariant to pose."""
    distances = np.linalg.norm(points[:, None, :] - points[None, :, :], axis=-1)
    histogram, _ = np.histogram(distances, bins=DESCRIPTOR_BINS, range=(0.0, 2.0))
    return histogram / histogram.sum()


def test_shape_classes_are_learnable_by_a_simple_classifier():
    train = ProceduralShapes(num_samples=10 * len(SHAPE_CLASS_NAMES), split="train", num_points=LEARNABILITY_POINTS)
    test = ProceduralShapes(num_samples=4 * len(SHAPE_CLASS_NAMES), split="test", num_points=LEARNABILITY_POINTS)
    train_descriptors = np.array([distance_histogram(train[index].points) for index in range(len(train))])
    centroids = np.array([train_descriptors[train.labels == label].mean(axis=0) for label in range(train.num_classes)])
    test_descriptors = np.array([distance_histogram(test[index].points) for index in range(len(test))])
    distances = np.linalg.norm(test_descriptors[:, None, :] - centroids[None], axis=-1)
    accuracy = (distances.argmin(axis=1) == test.labels).mean()
    chance = 1.0 / train.num_classes
    assert accuracy > 3 * chance


def test_scenes_are_metres_across_with_labelled_points():
    dataset = ProceduralScenes(num_samples=3, split="train", seed=0)
    assert dataset.class_names == SCENE_CLASS_NAMES
    for index in range(len(dataset)):
        sample = dataset[index]
        assert isinstance(sample, SceneSample)
        assert SCENE_POINTS_RANGE[0] <= sample.num_points <= SCENE_POINTS_RANGE[1]
        assert sample.features.shape == (sample.num_points, 3)
        assert 0.0 <= sample.features.min() and sample.features.max() <= 1.0
        extent = np.ptp(sample.points, axis=0)
        assert SCENE_SIDE_RANGE_M[0] * 0.9 <= extent[:2].min() and extent.max() <= SCENE_SIDE_RANGE_M[1] * 1.1
        assert sample.points[:, 2].max() < SCENE_HEIGHT_LIMIT_M
        labelled = sample.labels[sample.labels != IGNORE_INDEX]
        assert set(np.unique(labelled)) == set(range(len(SCENE_CLASS_NAMES)))
        assert 0 < (sample.labels == IGNORE_INDEX).sum() < 0.01 * sample.num_points


def test_scenes_are_deterministic_and_split_disjoint():
    first = ProceduralScenes(num_samples=2, split="train", seed=1)[1]
    again = ProceduralScenes(num_samples=2, split="train", seed=1)[1]
    test = ProceduralScenes(num_samples=2, split="test", seed=1)[1]
    np.testing.assert_array_equal(first.points, again.points)
    np.testing.assert_array_equal(first.labels, again.labels)
    assert first.num_points != test.num_points or not np.allclose(first.points, test.points)


def test_surfaces_are_sampled_in_proportion_to_area():
    rng = np.random.default_rng(0)
    big, small = box((2.0, 2.0, 2.0)), box((1.0, 1.0, 1.0))
    _, owners = sample_surfaces(rng, [big, small], 10_000)
    assert np.mean(owners == 0) == pytest.approx(0.8, abs=0.02)


def test_primitive_samplers_lie_on_their_surfaces():
    rng = np.random.default_rng(0)
    on_sphere = sphere(2.0, (1.0, 0.0, 0.0)).sample(rng, 500)
    np.testing.assert_allclose(np.linalg.norm(on_sphere - (1.0, 0.0, 0.0), axis=1), 2.0)
    on_torus = torus(1.0, 0.25).sample(rng, 500)
    ring_distance = np.hypot(np.linalg.norm(on_torus[:, :2], axis=1) - 1.0, on_torus[:, 2])
    np.testing.assert_allclose(ring_distance, 0.25)
    on_box = box((1.0, 2.0, 3.0)).sample(rng, 500)
    on_a_face = np.isclose(np.abs(on_box), (0.5, 1.0, 1.5)).any(axis=1)
    assert on_a_face.all()


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match="split"):
        ProceduralShapes(num_samples=4, split="val")
    with pytest.raises(ValueError, match="num_samples"):
        ProceduralScenes(num_samples=0)
