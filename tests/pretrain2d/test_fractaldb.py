import warnings

import numpy as np
import pytest
import torch

from image2point.errors import ConfigError, DataError
from image2point.pretrain2d.fractaldb import (
    IFS,
    FractalDB,
    FractalDBConfig,
    InstanceVariant,
    chaos_game,
    filling_rate,
    instance_variants,
    iter_candidates,
    points_to_pixels,
    render_ifs,
    render_instance,
    search_categories,
)

TINY = FractalDBConfig(num_categories=3, instances_per_category=6, image_size=32, search_size=128)
# The Sierpinski triangle with corners (0, 0), (1, 0), (0.5, 1).
SIERPINSKI_MAPS = np.array(
    [
        [[0.5, 0.0, 0.0], [0.0, 0.5, 0.0]],
        [[0.5, 0.0, 0.5], [0.0, 0.5, 0.0]],
        [[0.5, 0.0, 0.25], [0.0, 0.5, 0.5]],
    ]
)


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


@pytest.fixture(scope="module")
def tiny_db() -> FractalDB:
    return FractalDB(TINY, seed=0)


def test_ifs_probabilities_sum_to_one_and_follow_abs_determinants():
    maps = np.array([[[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]], [[0.0, 1.0, 0.3], [-3.0, 0.0, 0.1]]])
    ifs = IFS.from_maps(maps)
    # |det| = 2 and 3.
    np.testing.assert_allclose(ifs.probs, [0.4, 0.6])
    for category in search_categories(TINY, rng()):
        determinants = np.abs(np.linalg.det(category.maps[:, :, :2]))
        np.testing.assert_allclose(category.probs.sum(), 1.0)
        np.testing.assert_allclose(category.probs, determinants / determinants.sum())


def test_ifs_rejects_malformed_input():
    with pytest.raises(DataError, match="shape"):
        IFS(maps=np.zeros((2, 3, 3)), probs=np.full(2, 0.5))
    with pytest.raises(DataError, match="probs"):
        IFS(maps=np.zeros((2, 2, 3)), probs=np.array([0.3, 0.3]))
    with pytest.raises(DataError, match="singular"):
        IFS.from_maps(np.zeros((2, 2, 3)))


def test_ifs_is_immutable():
    ifs = IFS.from_maps(SIERPINSKI_MAPS)
    with pytest.raises(ValueError):
        ifs.maps[0, 0, 0] = 1.0


def test_weight_perturbation_scales_one_parameter_of_every_map_and_keeps_probabilities():
    ifs = IFS.from_maps(SIERPINSKI_MAPS)
    # Parameter 2 is e, the x translation.
    scaled = ifs.scaled(param_index=2, factor=1.2)
    expected = SIERPINSKI_MAPS.copy()
    expected[:, 0, 2] *= 1.2
    np.testing.assert_allclose(scaled.maps, expected)
    np.testing.assert_array_equal(scaled.probs, ifs.probs)


def test_search_keeps_exactly_the_candidates_reaching_the_filling_rate():
    config = FractalDBConfig(num_categories=5, search_size=64)
    categories = search_categories(config, rng(3))
    candidates = iter_candidates(config, rng(3))
    accepted = []
    rejected = 0
    while len(accepted) < config.num_categories:
        candidate = next(candidates)
        if candidate.filling_rate >= config.filling_rate_threshold:
            accepted.append(candidate.ifs)
        else:
            rejected += 1
    assert rejected > 0
    assert len(categories) == config.num_categories
    for found, expected in zip(categories, accepted, strict=True):
        np.testing.assert_array_equal(found.maps, expected.maps)
    assert all(config.min_maps <= category.num_maps <= config.max_maps for category in categories)


def test_search_fails_clearly_when_the_threshold_is_unreachable():
    # 0.38 points per pixel can never cover 90% of the pixels.
    config = FractalDBConfig(
        num_categories=2, search_size=32, filling_rate_threshold=0.9, max_attempts_per_category=5
    )
    with pytest.raises(ConfigError, match="filling_rate_threshold"):
        search_categories(config, rng())


def test_chaos_game_points_lie_on_the_attractor():
    points = chaos_game(IFS.from_maps(SIERPINSKI_MAPS), 5000, rng())
    x, y = points[:, 0], points[:, 1]
    tolerance = 1e-4
    assert points.shape == (5000, 2)
    # Inside the outer triangle.
    assert np.all(y >= -tolerance) and np.all(y <= 2 * x + tolerance) and np.all(y <= 2 * (1 - x) + tolerance)
    # Nothing strictly inside the removed middle triangle (0.25, 0.5), (0.75, 0.5), (0.5, 0).
    in_hole = (y < 0.5 - tolerance) & (y > 2 * (x - 0.5) + tolerance) & (y > 2 * (0.5 - x) + tolerance)
    assert not np.any(in_hole)


def test_points_map_to_pixels_with_y_up_inside_the_padding():
    points = np.array([[0.0, 0.0], [1.0, 1.0], [1.0, 0.0], [np.inf, 0.0], [np.nan, 1.0]])
    rows, cols = points_to_pixels(points, size=10, padding=2)
    np.testing.assert_array_equal(rows, [7, 2, 7])
    np.testing.assert_array_equal(cols, [2, 7, 7])


def test_rendering_is_deterministic_from_the_seed_and_not_empty():
    ifs = IFS.from_maps(SIERPINSKI_MAPS)
    first = render_ifs(ifs, 32, 1000, rng(7))
    again = render_ifs(ifs, 32, 1000, rng(7))
    other_seed = render_ifs(ifs, 32, 1000, rng(8))
    assert first.shape == (32, 32) and first.dtype == np.uint8
    np.testing.assert_array_equal(first, again)
    assert filling_rate(first) > 0
    assert not np.array_equal(first, other_seed)


def test_color_and_patch_rendering():
    ifs = IFS.from_maps(SIERPINSKI_MAPS)
    color = render_ifs(ifs, 32, 300, rng(), color=True)
    assert color.shape == (32, 32, 3) and color.dtype == np.uint8
    drawn = color[np.any(color != 0, axis=-1)]
    assert len(np.unique(drawn, axis=0)) > 1
    points_only = render_ifs(ifs, 32, 300, rng())
    patches = render_ifs(ifs, 32, 300, rng(), patch_size=3)
    assert filling_rate(patches) > filling_rate(points_only)
    # Patches are centred on the points, so every point pixel is drawn too.
    assert np.all(patches[points_only != 0] != 0)


def test_diverging_systems_render_without_warnings():
    expanding = IFS.from_maps(
        np.array([[[3.0, 0.0, 1.0], [0.0, 3.0, 1.0]], [[-3.0, 1.0, 0.0], [0.0, 3.0, 0.0]]])
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        image = render_ifs(expanding, 16, 2000, rng())
    assert image.shape == (16, 16)


def intersection_over_union(first: np.ndarray, second: np.ndarray) -> float:
    return float((first & second).sum() / (first | second).sum())


def test_different_categories_render_different_images():
    categories = search_categories(TINY, rng(1))
    # Dense enough that a drawing approaches the attractor's support, not a random subset of it.
    dense_points = 20_000
    drawings = [render_ifs(category, 32, dense_points, rng(0)) != 0 for category in categories]
    redrawings = [render_ifs(category, 32, dense_points, rng(1)) != 0 for category in categories]
    for index, (drawing, redrawing) in enumerate(zip(drawings, redrawings, strict=True)):
        others = [other for other_index, other in enumerate(drawings) if other_index != index]
        closest_other = max(intersection_over_union(drawing, other) for other in others)
        assert intersection_over_union(drawing, redrawing) > closest_other


def test_instance_variants_enumerate_perturbations_and_flips():
    assert len(instance_variants(FractalDBConfig())) == (1 + 6 * 4) * 4
    assert len(instance_variants(FractalDBConfig(flips=False, weight_factors=(0.9,)))) == 1 + 6


def test_flipped_instance_is_the_flipped_image():
    category = IFS.from_maps(SIERPINSKI_MAPS)
    plain = render_instance(category, InstanceVariant(), TINY, rng(5))
    flipped = render_instance(
        category, InstanceVariant(flip_up_down=True, flip_left_right=True), TINY, rng(5)
    )
    np.testing.assert_array_equal(flipped, plain[::-1, ::-1])


def test_dataset_items_are_normalised_images_with_balanced_labels(tiny_db):
    assert len(tiny_db) == 3 * 6
    assert tiny_db.num_classes == 3
    assert tiny_db.images.shape == (18, 32, 32) and tiny_db.images.dtype == np.uint8
    np.testing.assert_array_equal(np.bincount(tiny_db.labels), [6, 6, 6])
    image, label = tiny_db[7]
    assert image.shape == (3, 32, 32) and image.dtype == torch.float32
    assert label == 1
    mean = torch.tensor(TINY.normalize_mean).view(3, 1, 1)
    std = torch.tensor(TINY.normalize_std).view(3, 1, 1)
    unnormalised = (image * std + mean) * 255
    expected = torch.from_numpy(tiny_db.images[7]).float().expand(3, -1, -1)
    torch.testing.assert_close(unnormalised, expected, atol=1e-3, rtol=0)


def test_dataset_is_deterministic_from_its_seed(tiny_db):
    np.testing.assert_array_equal(FractalDB(TINY, seed=0).images, tiny_db.images)
    assert not np.array_equal(FractalDB(TINY, seed=1).images, tiny_db.images)


def test_color_dataset_has_rgb_images():
    config = FractalDBConfig(
        num_categories=2, instances_per_category=2, image_size=16, search_size=64, color=True
    )
    db = FractalDB(config, seed=0)
    assert db.images.shape == (4, 16, 16, 3)
    assert db[3][0].shape == (3, 16, 16)


def test_save_png_tree_writes_one_file_per_image(tiny_db, tmp_path):
    image_module = pytest.importorskip("PIL.Image")
    written = tiny_db.save_png_tree(tmp_path)
    assert len(written) == len(tiny_db)
    assert sorted(path.relative_to(tmp_path).as_posix() for path in written)[:2] == ["0/0.png", "0/1.png"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["0", "1", "2"]
    with image_module.open(tmp_path / "1" / "2.png") as reloaded:
        np.testing.assert_array_equal(np.asarray(reloaded), tiny_db.images[6 + 2])


@pytest.mark.parametrize(
    "overrides",
    [
        {"num_categories": 0},
        {"min_maps": 4, "max_maps": 3},
        {"filling_rate_threshold": 1.5},
        {"padding_fraction": 0.5},
        {"weight_factors": (1.0,)},
        {"normalize_std": (0.2, 0.0, 0.2)},
        {"patch_size": 0},
    ],
)
def test_config_rejects_invalid_values(overrides):
    with pytest.raises(ConfigError):
        FractalDBConfig(**overrides)


def test_small_preset_is_small():
    small = FractalDBConfig.small()
    assert small.num_categories * small.instances_per_category <= 1000
    assert small.image_size <= 64
