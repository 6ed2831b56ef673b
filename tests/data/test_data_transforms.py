import numpy as np
import pytest

from image2point.data.procedural import ProceduralScenes, ProceduralShapes
from image2point.data.sample import SceneSample, ShapeSample
from image2point.data.registry import default_transforms
from image2point.data.transforms import (
    COLOR_CENTER,
    CenterPoints,
    ChromaticAutoContrast,
    ChromaticJitter,
    ChromaticTranslation,
    Compose,
    NormalizeColor,
    RandomHorizontalFlip,
    RandomJitter,
    RandomScale,
    RandomTranslate,
    RandomVoxelSubset,
    RandomZRotation,
)
from image2point.errors import DataError
from image2point.voxelize import voxelize

NUM_POINTS = 200
# Seeds per probability estimate: the binomial standard deviation is at most 0.5 / sqrt(2000) ~ 0.011.
TRIALS = 2000
PROBABILITY_TOLERANCE = 0.04


def shape() -> ShapeSample:
    points = np.random.default_rng(0).uniform(-1.0, 1.0, (NUM_POINTS, 3)).astype(np.float32)
    return ShapeSample(points=points, features=None, label=2, source="test-shape")


def scene(num_points: int = NUM_POINTS) -> SceneSample:
    rng = np.random.default_rng(1)
    points = rng.uniform(0.0, 5.0, (num_points, 3)).astype(np.float32)
    colors = rng.uniform(0.2, 0.8, (num_points, 3)).astype(np.float32)
    labels = rng.integers(0, 4, num_points).astype(np.int64)
    return SceneSample(points=points, features=colors, labels=labels, source="test-scene")


GEOMETRIC = [RandomScale(per_axis=True), RandomScale(), RandomTranslate(), RandomJitter(), RandomZRotation(),
             CenterPoints()]
# Probability 1 so that each colour step always acts.
COLOR = [ChromaticJitter(p=1.0), ChromaticTranslation(p=1.0), ChromaticAutoContrast(p=1.0), NormalizeColor()]
ALL_TRANSFORMS = [*GEOMETRIC, RandomHorizontalFlip(p=1.0, axis_p=1.0), *COLOR]
RANDOM_STEPS = [RandomScale(p=0.3), RandomTranslate(p=0.3), RandomJitter(p=0.3), RandomZRotation(p=0.3),
                RandomHorizontalFlip(p=0.3, axis_p=1.0), ChromaticJitter(p=0.3), ChromaticTranslation(p=0.3),
                ChromaticAutoContrast(p=0.3)]


def _name(transform) -> str:
    return type(transform).__name__


@pytest.mark.parametrize("transform", ALL_TRANSFORMS, ids=_name)
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


@pytest.mark.parametrize("transform", ALL_TRANSFORMS, ids=_name)
def test_transform_is_reproducible_from_the_generator_seed(transform):
    first = transform(scene(), np.random.default_rng(11))
    second = transform(scene(), np.random.default_rng(11))
    np.testing.assert_array_equal(first.points, second.points)
    np.testing.assert_array_equal(first.features, second.features)


@pytest.mark.parametrize("transform", GEOMETRIC, ids=_name)
def test_geometric_transforms_work_on_shapes_without_features(transform):
    result = transform(shape(), np.random.default_rng(0))
    assert result.features is None and result.label == 2 and result.points.dtype == np.float32


def _acts(transform, sample, seed: int) -> bool:
    result = transform(sample, np.random.default_rng(seed))
    return result is not sample


@pytest.mark.parametrize("transform", RANDOM_STEPS, ids=_name)
def test_each_random_step_acts_with_its_probability(transform):
    sample = scene()
    rate = np.mean([_acts(transform, sample, seed) for seed in range(TRIALS)])
    assert rate == pytest.approx(0.3, abs=PROBABILITY_TOLERANCE)


@pytest.mark.parametrize("transform", RANDOM_STEPS, ids=_name)
def test_probability_zero_never_acts_and_one_always_does(transform):
    sample = scene()
    never = type(transform)(**{**transform.__dict__, "p": 0.0})
    always = type(transform)(**{**transform.__dict__, "p": 1.0})
    assert not any(_acts(never, sample, seed) for seed in range(50))
    assert all(_acts(always, sample, seed) for seed in range(50))


def test_per_axis_scale_factors_stay_in_their_range_and_differ_by_axis():
    original = shape()
    factors = []
    for seed in range(200):
        scaled = RandomScale(0.9, 1.1, p=1.0, per_axis=True)(original, np.random.default_rng(seed)).points
        ratio = scaled / original.points
        np.testing.assert_allclose(ratio, np.broadcast_to(ratio[0], ratio.shape), rtol=1e-5)  # one factor per axis
        factors.append(ratio[0])
    factors = np.array(factors)
    assert 0.9 - 1e-6 <= factors.min() and factors.max() <= 1.1 + 1e-6
    assert factors.min() < 0.91 and factors.max() > 1.09  # the whole range is used
    assert not np.allclose(factors[:, 0], factors[:, 1])


def test_isotropic_scale_uses_one_factor_in_its_range():
    original = shape()
    for seed in range(50):
        ratio = RandomScale(0.95, 1.05)(original, np.random.default_rng(seed)).points / original.points
        np.testing.assert_allclose(ratio, ratio[0, 0], rtol=1e-5)
        assert 0.95 - 1e-6 <= ratio[0, 0] <= 1.05 + 1e-6


def test_translation_is_one_bounded_offset():
    original = shape()
    offsets = []
    for seed in range(200):
        offset = RandomTranslate(0.2)(original, np.random.default_rng(seed)).points - original.points
        np.testing.assert_allclose(offset, np.broadcast_to(offset[0], offset.shape), atol=1e-6)
        offsets.append(offset[0])
    assert np.abs(offsets).max() <= 0.2 + 1e-6 and np.abs(offsets).max() > 0.19


def test_jitter_is_uniform_within_its_half_width():
    original = shape()
    noise = (RandomJitter(0.0125, 0.05)(original, np.random.default_rng(3)).points - original.points).ravel()
    assert np.abs(noise).max() <= 0.0125 + 1e-6
    # Uniform on [-h, h]: standard deviation h / sqrt(3), and values reach close to both ends.
    assert noise.std() == pytest.approx(0.0125 / np.sqrt(3), rel=0.1)
    assert noise.min() < -0.012 and noise.max() > 0.012


def test_jitter_clip_binds_when_below_the_half_width():
    original = shape()
    noise = RandomJitter(half_width=0.1, clip=0.02)(original, np.random.default_rng(0)).points - original.points
    assert np.abs(noise).max() == pytest.approx(0.02, abs=1e-6)


def test_z_rotation_keeps_heights_and_horizontal_distances():
    original = shape()
    rotated = RandomZRotation()(original, np.random.default_rng(3)).points
    np.testing.assert_allclose(rotated[:, 2], original.points[:, 2])
    np.testing.assert_allclose(np.hypot(rotated[:, 0], rotated[:, 1]), np.hypot(*original.points[:, :2].T), rtol=1e-5)


def test_horizontal_flip_mirrors_inside_the_bounding_box():
    original = scene()
    flipped = RandomHorizontalFlip(p=1.0, axis_p=1.0)(original, np.random.default_rng(0)).points
    np.testing.assert_allclose(flipped.min(axis=0), original.points.min(axis=0), atol=1e-5)
    np.testing.assert_allclose(flipped.max(axis=0), original.points.max(axis=0), atol=1e-5)
    np.testing.assert_array_equal(flipped[:, 2], original.points[:, 2])
    for axis in (0, 1):
        low, high = original.points[:, axis].min(), original.points[:, axis].max()
        np.testing.assert_allclose(flipped[:, axis], low + high - original.points[:, axis], atol=1e-5)


def test_horizontal_flip_gates_then_flips_each_axis_independently():
    original = scene()
    flip = RandomHorizontalFlip(p=0.95, axis_p=0.5)
    flipped = np.array([[not np.array_equal(result.points[:, axis], original.points[:, axis]) for axis in (0, 1)]
                        for result in (flip(original, np.random.default_rng(seed)) for seed in range(TRIALS))])
    assert flipped.mean(axis=0) == pytest.approx([0.95 * 0.5] * 2, abs=PROBABILITY_TOLERANCE)
    assert np.mean(flipped.all(axis=1)) == pytest.approx(0.95 * 0.25, abs=PROBABILITY_TOLERANCE)


def test_colour_jitter_has_its_standard_deviation():
    original = scene(5000)
    noise = ChromaticJitter(std=0.005, p=1.0)(original, np.random.default_rng(0)).features - original.features
    assert noise.std() == pytest.approx(0.005, rel=0.05) and abs(noise.mean()) < 5e-4


def test_colour_translation_is_one_offset_per_channel_within_the_ratio():
    original = scene()
    offsets = []
    for seed in range(200):
        shifted = ChromaticTranslation(ratio=0.05, p=1.0)(original, np.random.default_rng(seed)).features
        offset = shifted - original.features
        np.testing.assert_allclose(offset, np.broadcast_to(offset[0], offset.shape), atol=1e-6)
        offsets.append(offset[0])
    assert np.abs(offsets).max() <= 0.05 + 1e-6 and np.abs(offsets).max() > 0.048


def test_auto_contrast_blends_the_stretched_colours_by_the_fixed_factor():
    original = scene()
    colours = original.features
    low, high = colours.min(axis=0), colours.max(axis=0)
    expected = 0.75 * colours + 0.25 * (colours - low) / (high - low)
    result = ChromaticAutoContrast(p=1.0, blend=0.25)(original, np.random.default_rng(0)).features
    np.testing.assert_allclose(result, expected, rtol=1e-5)


def test_colour_steps_keep_colours_in_range_and_normalise_centres_them():
    rng = np.random.default_rng(0)
    colored = Compose(tuple(COLOR[:-1]))(scene(), rng)
    assert 0.0 <= colored.features.min() and colored.features.max() <= 1.0
    normalised = NormalizeColor()(colored, rng)
    np.testing.assert_allclose(normalised.features, colored.features - COLOR_CENTER)


def test_colour_transforms_need_colour_features():
    with pytest.raises(DataError, match="RGB") as error:
        ChromaticJitter(p=1.0)(shape(), np.random.default_rng(0))
    assert str(error.value.path) == "test-shape"


def test_center_points_moves_the_mean_to_the_origin():
    centred = CenterPoints()(scene(), np.random.default_rng(0)).points
    np.testing.assert_allclose(centred.mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(np.ptp(centred, axis=0), np.ptp(scene().points, axis=0), rtol=1e-6)


def test_voxel_subset_keeps_whole_voxels_up_to_the_cap():
    original = scene(3000)
    voxel_size = 0.5
    before = voxelize(original.points, voxel_size)
    assert before.num_voxels > 100
    subset = RandomVoxelSubset(voxel_size, 100)(original, np.random.default_rng(0))
    assert voxelize(subset.points, voxel_size).num_voxels == 100
    # Every kept voxel keeps all of its points, with their colours and labels.
    subset_rows = {tuple(row) for row in subset.points.tolist()}
    in_subset = np.array([tuple(row) in subset_rows for row in original.points.tolist()])
    kept_voxels = np.unique(before.inverse.numpy()[in_subset])
    assert len(kept_voxels) == 100
    kept = np.isin(before.inverse.numpy(), kept_voxels)
    np.testing.assert_array_equal(subset.points, original.points[kept])
    np.testing.assert_array_equal(subset.features, original.features[kept])
    np.testing.assert_array_equal(subset.labels, original.labels[kept])
    other = RandomVoxelSubset(voxel_size, 100)(original, np.random.default_rng(1))
    assert not np.array_equal(other.points, subset.points)


def test_voxel_subset_leaves_clouds_under_the_cap_alone():
    original = scene()
    assert RandomVoxelSubset(0.05, 10_000)(original, np.random.default_rng(0)) is original


@pytest.mark.parametrize("make,message", [
    (lambda: RandomScale(1.1, 0.9), "low <= high"),
    (lambda: RandomScale(p=1.5), "p must be in"),
    (lambda: RandomTranslate(-0.1), "max_shift must be at least 0"),
    (lambda: RandomJitter(clip=-1.0), "clip must be at least 0"),
    (lambda: RandomHorizontalFlip(axis_p=2.0), "axis_p must be in"),
    (lambda: RandomHorizontalFlip(axes=(3,)), "axes must be among"),
    (lambda: ChromaticJitter(std=-0.1), "std must be at least 0"),
    (lambda: ChromaticAutoContrast(blend=1.5), "blend must be in"),
    (lambda: RandomVoxelSubset(0.05, 0), "max_voxels must be at least 1"),
    (lambda: RandomVoxelSubset(0.0, 10), "voxel_size must be positive"),
])
def test_invalid_settings_are_refused(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_datasets_augment_reproducibly_per_epoch():
    transform = default_transforms("procedural_shapes", train=True)
    first = ProceduralShapes(num_samples=4, num_points=64, transform=transform, seed=2)
    second = ProceduralShapes(num_samples=4, num_points=64, transform=transform, seed=2)
    np.testing.assert_array_equal(first[1].points, second[1].points)
    epoch_zero = first[1].points
    changed = False
    for epoch in range(1, 4):  # each step acts with p < 1, so one epoch alone may repeat the points
        first.set_epoch(epoch)
        changed |= not np.allclose(first[1].points, epoch_zero)
    assert changed
    second.set_epoch(3)
    np.testing.assert_array_equal(first[1].points, second[1].points)


def test_scene_dataset_with_default_training_transforms():
    dataset = ProceduralScenes(num_samples=1, transform=default_transforms("procedural_scenes", train=True))
    sample = dataset[0]
    assert -COLOR_CENTER <= sample.features.min() and sample.features.max() <= 1.0 - COLOR_CENTER
