import math

import numpy as np
import pytest

from image2point.data.procedural import ProceduralScenes, ProceduralShapes
from image2point.data.sample import SceneSample, ShapeSample
from image2point.data.transforms import (
    COLOR_CENTER,
    MODELNET_JITTER_CLIP,
    MODELNET_SCALE_RANGE,
    MODELNET_TRANSLATION,
    ChromaticAutoContrast,
    ChromaticJitter,
    ChromaticTranslation,
    Compose,
    NormalizeColor,
    RandomAnisotropicScale,
    RandomHorizontalFlip,
    RandomJitter,
    RandomScale,
    RandomTranslate,
    RandomZRotation,
    default_transforms,
)
from image2point.errors import ConfigError, DataError

NUM_POINTS = 200


def shape() -> ShapeSample:
    points = np.random.default_rng(0).uniform(-1.0, 1.0, (NUM_POINTS, 3)).astype(np.float32)
    return ShapeSample(points=points, features=None, label=2, source="test-shape")


def scene() -> SceneSample:
    rng = np.random.default_rng(1)
    points = rng.uniform(0.0, 5.0, (NUM_POINTS, 3)).astype(np.float32)
    colors = rng.uniform(0.2, 0.8, (NUM_POINTS, 3)).astype(np.float32)
    labels = rng.integers(0, 4, NUM_POINTS).astype(np.int64)
    return SceneSample(points=points, features=colors, labels=labels, source="test-scene")


GEOMETRIC = [RandomAnisotropicScale(), RandomScale(), RandomTranslate(), RandomJitter(), RandomZRotation()]
# Probability 1 so that each colour step always acts.
COLOR = [ChromaticAutoContrast(p=1.0), ChromaticTranslation(p=1.0), ChromaticJitter(p=1.0), NormalizeColor()]
ALL_TRANSFORMS = [*GEOMETRIC, RandomHorizontalFlip(p=1.0), *COLOR]


@pytest.mark.parametrize("transform", ALL_TRANSFORMS, ids=lambda transform: type(transform).__name__)
def test_transform_keeps_shapes_and_dtypes_and_leaves_the_input_alone(transform):
    original = scene()
    points_before, features_before = original.points.copy(), original.features.copy()
    result = transform(original, np.random.default_rng(7))
    assert type(result) is SceneSample
    assert result.points.shape == original.points.shape and result.points.dtype == np.float32
    assert result.features.shape == original.features.shape and result.features.dtype == np.float32
    assert result.labels is original.labels
    np.testing.assert_array_equal(original.points, points_before)
    np.testing.assert_array_equal(original.features, features_before)
    changed = not np.array_equal(result.points, original.points) or not np.array_equal(
        result.features, original.features
    )
    assert changed


@pytest.mark.parametrize("transform", ALL_TRANSFORMS, ids=lambda transform: type(transform).__name__)
def test_transform_is_reproducible_from_the_generator_seed(transform):
    first = transform(scene(), np.random.default_rng(11))
    second = transform(scene(), np.random.default_rng(11))
    np.testing.assert_array_equal(first.points, second.points)
    np.testing.assert_array_equal(first.features, second.features)


@pytest.mark.parametrize("transform", GEOMETRIC, ids=lambda transform: type(transform).__name__)
def test_geometric_transforms_work_on_shapes_without_features(transform):
    result = transform(shape(), np.random.default_rng(0))
    assert result.features is None and result.label == 2 and result.points.dtype == np.float32


def test_anisotropic_scale_factors_stay_in_the_paper_range():
    original = shape()
    for seed in range(20):
        factors = RandomAnisotropicScale()(original, np.random.default_rng(seed)).points / original.points
        np.testing.assert_allclose(
            factors, np.broadcast_to(factors[0], factors.shape), rtol=1e-5
        )  # one factor per axis
        assert MODELNET_SCALE_RANGE[0] <= factors[0].min() and factors[0].max() <= MODELNET_SCALE_RANGE[1]


def test_translation_and_jitter_are_bounded():
    original = shape()
    for seed in range(20):
        offset = RandomTranslate()(original, np.random.default_rng(seed)).points - original.points
        np.testing.assert_allclose(offset, np.broadcast_to(offset[0], offset.shape), atol=1e-6)
        assert np.abs(offset).max() <= MODELNET_TRANSLATION + 1e-6
        noise = RandomJitter()(original, np.random.default_rng(seed)).points - original.points
        assert np.abs(noise).max() <= MODELNET_JITTER_CLIP + 1e-6


def test_z_rotation_keeps_heights_and_horizontal_distances():
    original = shape()
    rotated = RandomZRotation()(original, np.random.default_rng(3)).points
    np.testing.assert_allclose(rotated[:, 2], original.points[:, 2])
    np.testing.assert_allclose(np.hypot(rotated[:, 0], rotated[:, 1]), np.hypot(*original.points[:, :2].T), rtol=1e-5)


def test_horizontal_flip_mirrors_inside_the_bounding_box():
    original = scene()
    flipped = RandomHorizontalFlip(p=1.0)(original, np.random.default_rng(0)).points
    np.testing.assert_allclose(flipped.min(axis=0), original.points.min(axis=0), atol=1e-5)
    np.testing.assert_allclose(flipped.max(axis=0), original.points.max(axis=0), atol=1e-5)
    np.testing.assert_array_equal(flipped[:, 2], original.points[:, 2])
    low, high = original.points[:, 0].min(), original.points[:, 0].max()
    np.testing.assert_allclose(flipped[:, 0], low + high - original.points[:, 0], atol=1e-5)


def test_colour_steps_keep_colours_in_range_and_normalise_centres_them():
    rng = np.random.default_rng(0)
    colored = Compose(tuple(COLOR[:-1]))(scene(), rng)
    assert 0.0 <= colored.features.min() and colored.features.max() <= 1.0
    normalised = NormalizeColor()(colored, rng)
    np.testing.assert_allclose(normalised.features, colored.features - COLOR_CENTER)


def test_auto_contrast_stretches_towards_the_full_range():
    stretched = ChromaticAutoContrast(p=1.0)(scene(), np.random.default_rng(0)).features
    original = scene().features
    assert np.ptp(stretched, axis=0).min() >= np.ptp(original, axis=0).min()


def test_probability_zero_colour_steps_do_nothing():
    original = scene()
    for transform in (ChromaticAutoContrast(p=0.0), ChromaticTranslation(p=0.0), ChromaticJitter(p=0.0)):
        assert transform(original, np.random.default_rng(0)) is original


def test_colour_transforms_need_colour_features():
    with pytest.raises(DataError, match="RGB") as error:
        ChromaticJitter(p=1.0)(shape(), np.random.default_rng(0))
    assert str(error.value.path) == "test-shape"


def test_default_transforms_follow_the_paper():
    modelnet = default_transforms("modelnet40", train=True).transforms
    assert [type(transform) for transform in modelnet] == [RandomAnisotropicScale, RandomTranslate, RandomJitter]
    s3dis = [type(transform) for transform in default_transforms("s3dis", train=True).transforms]
    assert s3dis == [RandomHorizontalFlip, ChromaticAutoContrast, ChromaticTranslation, ChromaticJitter, NormalizeColor]
    kitti = default_transforms("semantickitti", train=True).transforms
    assert [type(transform) for transform in kitti] == [RandomScale, RandomZRotation]
    assert kitti[1].max_angle == pytest.approx(math.pi)
    assert default_transforms("modelnet40", train=False).transforms == ()
    assert [type(transform) for transform in default_transforms("s3dis", train=False).transforms] == [NormalizeColor]
    with pytest.raises(ConfigError, match="known"):
        default_transforms("shapenet", train=True)


def test_datasets_augment_reproducibly_per_epoch():
    transform = default_transforms("procedural_shapes", train=True)
    first = ProceduralShapes(num_samples=4, num_points=64, transform=transform, seed=2)
    second = ProceduralShapes(num_samples=4, num_points=64, transform=transform, seed=2)
    np.testing.assert_array_equal(first[1].points, second[1].points)
    epoch_zero = first[1].points
    first.set_epoch(1)
    assert not np.allclose(first[1].points, epoch_zero)
    second.set_epoch(1)
    np.testing.assert_array_equal(first[1].points, second[1].points)


def test_scene_dataset_with_default_training_transforms():
    dataset = ProceduralScenes(num_samples=1, transform=default_transforms("procedural_scenes", train=True))
    sample = dataset[0]
    assert -COLOR_CENTER <= sample.features.min() and sample.features.max() <= 1.0 - COLOR_CENTER
