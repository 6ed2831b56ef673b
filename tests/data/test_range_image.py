"""Spherical range-image projection: pixel maps, nearest-point ownership, back-projection and kNN."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from image2point.data.range_image import (
    EMPTY_PIXEL,
    RangeProjectionConfig,
    back_project_labels,
    knn_refine,
    pixel_labels_from_points,
    project_to_range_image,
)
from image2point.data.sample import IGNORE_INDEX
from image2point.data.semantickitti import LabelMap, read_semantic_ids, read_velodyne_scan
from image2point.errors import ConfigError, DataError

SMALL = RangeProjectionConfig(height=16, width=64)
REAL_SCAN = "sequences/00/velodyne/000000.bin"
REAL_LABELS = "sequences/00/labels/000000.label"
REAL_CONFIG = "semantic-kitti.yaml"
MIN_OWNER_FRACTION = 0.5
MIN_LABEL_AGREEMENT = 0.9


def pixel_centre_points(config: RangeProjectionConfig, ranges: np.ndarray) -> np.ndarray:
    """One point per pixel, through the pixel's centre, at ``ranges[row, col]``; [H*W, 3] row-major."""
    rows, cols = np.meshgrid(np.arange(config.height), np.arange(config.width), indexing="ij")
    yaw = ((cols + 0.5) / config.width * 2.0 - 1.0) * math.pi
    azimuth = -yaw
    pitch = config.fov_down + (1.0 - (rows + 0.5) / config.height) * config.fov
    directions = np.stack([np.cos(pitch) * np.cos(azimuth), np.cos(pitch) * np.sin(azimuth), np.sin(pitch)], -1)
    return (directions * ranges[..., None]).reshape(-1, 3)


def random_scan(seed: int, count: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    points = rng.uniform(-30.0, 30.0, (count, 3)).astype(np.float32)
    points[:, 2] = rng.uniform(-3.0, 1.0, count)
    return points, rng.uniform(0.0, 1.0, count).astype(np.float32)


def test_defaults_are_rangenet_semantickitti():
    config = RangeProjectionConfig()
    assert (config.height, config.width, config.fov_up_deg, config.fov_down_deg) == (64, 2048, 3.0, -25.0)
    assert config.fov == pytest.approx(math.radians(28.0))


@pytest.mark.parametrize(
    "kwargs",
    [{"height": 0}, {"width": 2.5}, {"fov_up_deg": -30.0}, {"fov_down_deg": -95.0}, {"fov_up_deg": math.nan}],
)
def test_bad_config_is_rejected(kwargs):
    with pytest.raises(ConfigError):
        RangeProjectionConfig(**kwargs)


def test_pixel_centres_project_to_their_own_pixels():
    ranges = np.random.default_rng(0).uniform(2.0, 50.0, (SMALL.height, SMALL.width))
    points = pixel_centre_points(SMALL, ranges)
    image = project_to_range_image(points, None, SMALL)
    rows, cols = np.meshgrid(np.arange(SMALL.height), np.arange(SMALL.width), indexing="ij")
    assert np.array_equal(image.pixel_of_point.numpy(), np.stack([rows.ravel(), cols.ravel()], 1))
    assert torch.equal(image.point_of_pixel.reshape(-1), torch.arange(len(points)))
    assert image.mask.all() and image.owns_pixel().all()
    torch.testing.assert_close(image.image[4].double(), torch.from_numpy(ranges), rtol=1e-6, atol=0)


def test_round_trip_every_point_has_exactly_one_pixel():
    points, intensity = random_scan(1, 3000)
    image = project_to_range_image(points, intensity, SMALL)
    rows, cols = image.pixel_of_point.unbind(1)
    assert image.pixel_of_point.shape == (3000, 2) and image.pixel_of_point.dtype == torch.int64
    assert rows.min() >= 0 and rows.max() < SMALL.height and cols.min() >= 0 and cols.max() < SMALL.width
    assert image.mask[rows, cols].all()
    occupied = image.point_of_pixel[image.mask]
    assert len(torch.unique(image.flat_pixel_of_point)) == len(occupied) == int(image.mask.sum())
    assert torch.all(image.point_of_pixel[~image.mask] == EMPTY_PIXEL)
    # the point a pixel shows lies in that pixel
    owner_pixels = image.pixel_of_point[occupied]
    pixel_rows, pixel_cols = torch.nonzero(image.mask, as_tuple=True)
    assert torch.equal(owner_pixels, torch.stack([pixel_rows, pixel_cols], 1))
    owners = torch.nonzero(image.owns_pixel()).squeeze(1)
    assert torch.equal(torch.sort(owners).values, torch.sort(occupied).values)
    expected = np.concatenate([points, intensity[:, None], np.linalg.norm(points, axis=1, keepdims=True)], 1)
    stored = image.image[:, rows[owners], cols[owners]].T
    torch.testing.assert_close(stored, torch.from_numpy(expected[owners.numpy()]), rtol=1e-6, atol=1e-6)
    assert torch.all(image.image[:, ~image.mask] == 0)


def test_closest_point_wins_a_shared_pixel():
    direction = np.array([0.8, 0.5, -0.1])
    direction /= np.linalg.norm(direction)
    ranges = np.array([10.0, 3.0, 7.0, 3.0, 12.0])
    points = direction[None] * ranges[:, None]
    image = project_to_range_image(points, np.arange(5.0), SMALL)
    assert len(torch.unique(image.flat_pixel_of_point)) == 1
    row, col = image.pixel_of_point[0]
    assert image.point_of_pixel[row, col] == 1  # 3 m; the tie with point 3 goes to the lower index
    assert image.image[3, row, col] == 1.0 and image.image[4, row, col] == pytest.approx(3.0)
    assert image.owns_pixel().tolist() == [False, True, False, False, False]


def test_azimuth_and_elevation_conventions():
    config = RangeProjectionConfig(height=28, width=360, fov_up_deg=3.0, fov_down_deg=-25.0)
    forward, left = [10.0, 0.0, 0.0], [0.0, 10.0, 0.0]
    almost_behind = [-10.0, 0.01, 0.0]
    above, below = [5.0, 0.0, 5.0], [1.0, 0.0, -10.0]
    image = project_to_range_image(np.array([forward, left, almost_behind, above, below, [0.0, 0.0, 0.0]]),
                                   None, config)
    rows, cols = image.pixel_of_point.unbind(1)
    assert cols[:3].tolist() == [180, 90, 0]  # +x at the centre, +y a quarter to the left
    assert rows[0] == rows[1] == 3  # elevation 0 is 3 degrees below the top of a 1-degree-per-row image
    assert rows[3] == 0 and rows[4] == config.height - 1  # out of the field of view: clamped
    assert rows[5] == 3  # the sensor origin counts as elevation 0


def test_missing_intensity_gives_a_zero_channel():
    points, _ = random_scan(2, 100)
    image = project_to_range_image(points, None, SMALL)
    assert torch.all(image.image[3] == 0) and image.image[4][image.mask].min() > 0


@pytest.mark.parametrize(
    "points,intensity,match",
    [
        (np.zeros((0, 3)), None, "empty"),
        (np.zeros((5, 4)), None, r"\[N, 3\]"),
        (np.zeros(3), None, r"\[N, 3\]"),
        (np.array([[1.0, 2.0, 3.0], [np.nan, 0.0, 0.0]]), None, "entry 1"),
        (np.array([[1.0, 2.0, np.inf]]), None, "entry 0"),
        (np.ones((3, 3)), np.ones(2), r"intensity must have shape \[3\]"),
        (np.ones((3, 3)), np.array([0.0, np.nan, 1.0]), "intensity: entry 1"),
        (np.array([["a", "b", "c"]]), None, "not a numeric array"),
    ],
)
def test_bad_input_raises_data_error(points, intensity, match):
    with pytest.raises(DataError, match=match):
        project_to_range_image(points, intensity, SMALL)


def test_labels_survive_projection_and_back_projection_where_pixels_are_not_shared():
    ranges = np.random.default_rng(3).uniform(2.0, 50.0, (SMALL.height, SMALL.width))
    points = pixel_centre_points(SMALL, ranges)
    labels = torch.from_numpy(np.random.default_rng(4).integers(0, 19, len(points)))
    image = project_to_range_image(points, None, SMALL)
    pixel_labels = pixel_labels_from_points(labels, image)
    assert torch.equal(back_project_labels(pixel_labels, image), labels)


def test_hidden_points_take_the_label_of_the_point_in_front():
    points, _ = random_scan(5, 4000)
    labels = torch.arange(4000)
    image = project_to_range_image(points, None, SMALL)
    pixel_labels = pixel_labels_from_points(labels, image)
    assert torch.all(pixel_labels[~image.mask] == IGNORE_INDEX)
    back = back_project_labels(pixel_labels, image)
    owns = image.owns_pixel()
    assert torch.equal(back[owns], labels[owns])
    front = image.point_of_pixel.reshape(-1)[image.flat_pixel_of_point[~owns]]
    assert not owns.all() and torch.equal(back[~owns], front)


def test_label_maps_are_checked():
    points, _ = random_scan(6, 50)
    image = project_to_range_image(points, None, SMALL)
    with pytest.raises(DataError, match="shape"):
        back_project_labels(torch.zeros(SMALL.width, SMALL.height, dtype=torch.long), image)
    with pytest.raises(DataError, match="integer"):
        back_project_labels(torch.zeros(SMALL.height, SMALL.width), image)
    with pytest.raises(DataError, match="shape"):
        pixel_labels_from_points(torch.zeros(49, dtype=torch.long), image)


def block_scene(config: RangeProjectionConfig) -> tuple[np.ndarray, torch.Tensor]:
    """One point per pixel; 8-column blocks of one label each, 10 m apart in range."""
    cols = np.arange(config.width)[None].repeat(config.height, 0)
    block = cols // 8
    ranges = 5.0 + 10.0 * (block % 3)
    return pixel_centre_points(config, ranges), torch.from_numpy(block.ravel() % 3)


def test_knn_keeps_the_labels_of_a_consistent_scan():
    points, labels = block_scene(SMALL)
    image = project_to_range_image(points, None, SMALL)
    refined = knn_refine(image, pixel_labels_from_points(labels, image))
    assert torch.equal(refined, labels)


def test_knn_outvotes_an_isolated_wrong_pixel():
    points, labels = block_scene(SMALL)
    image = project_to_range_image(points, None, SMALL)
    pixel_labels = pixel_labels_from_points(labels, image)
    pixel_labels[8, 12] = 0  # inside block 1, which is labelled 1
    refined = knn_refine(image, pixel_labels)
    assert torch.equal(refined, labels)
    assert not torch.equal(back_project_labels(pixel_labels, image), labels)


def test_knn_labels_an_occluded_point_by_its_own_surface_and_the_cutoff_protects_the_occluder():
    config = SMALL
    wall = pixel_centre_points(config, np.full((config.height, config.width), 10.0))
    occluder = wall[8 * config.width + 30] * 0.3  # 3 m in front of pixel (8, 30)
    points = np.concatenate([wall, occluder[None]])
    labels = torch.cat([torch.ones(len(wall), dtype=torch.long), torch.tensor([2])])
    image = project_to_range_image(points, None, config)
    hidden = 8 * config.width + 30
    assert image.point_of_pixel[8, 30] == len(wall)
    pixel_labels = pixel_labels_from_points(labels, image)
    assert back_project_labels(pixel_labels, image)[hidden] == 2
    refined = knn_refine(image, pixel_labels)
    assert torch.equal(refined, labels)
    without_cutoff = knn_refine(image, pixel_labels, cutoff=None)
    assert without_cutoff[-1] == 1  # the wall outvotes the occluder once distance no longer matters


def test_knn_window_wraps_around_in_azimuth():
    config = RangeProjectionConfig(height=1, width=16)
    ranges = np.full((1, 16), 20.0)
    ranges[0, [0, 14, 15]] = 10.0
    image = project_to_range_image(pixel_centre_points(config, ranges), None, config)
    pixel_labels = torch.full((1, 16), 2)
    pixel_labels[0, [14, 15]] = 1
    pixel_labels[0, 0] = 0
    refined = knn_refine(image, pixel_labels)
    assert refined[0] == 1  # its neighbours at 10 m are columns 14 and 15, across the seam


def test_knn_on_logits_equals_knn_on_their_argmax():
    points, _ = random_scan(7, 2000)
    image = project_to_range_image(points, None, SMALL)
    logits = torch.randn(5, SMALL.height, SMALL.width, generator=torch.Generator().manual_seed(0))
    assert torch.equal(knn_refine(image, logits), knn_refine(image, logits.argmax(0)))


def test_knn_ignores_ignored_pixels():
    points, _ = block_scene(SMALL)
    image = project_to_range_image(points, None, SMALL)
    pixel_labels = torch.full((SMALL.height, SMALL.width), IGNORE_INDEX)
    assert torch.all(knn_refine(image, pixel_labels) == IGNORE_INDEX)


@pytest.mark.parametrize("kwargs", [{"search": 4}, {"k": 0}, {"k": 26}, {"sigma": 0.0}, {"cutoff": -1.0}])
def test_knn_parameters_are_checked(kwargs):
    points, labels = block_scene(SMALL)
    image = project_to_range_image(points, None, SMALL)
    with pytest.raises(ValueError):
        knn_refine(image, pixel_labels_from_points(labels, image), **kwargs)


@pytest.fixture
def real_scan(shared_semantickitti_root):
    scan = read_velodyne_scan(shared_semantickitti_root / REAL_SCAN)
    label_path = shared_semantickitti_root / REAL_LABELS
    raw = read_semantic_ids(label_path, len(scan))
    labels = torch.from_numpy(LabelMap.from_yaml(shared_semantickitti_root / REAL_CONFIG).map(raw, label_path))
    return scan, labels, project_to_range_image(scan[:, :3], scan[:, 3])


def test_real_scan_most_points_own_their_pixel(real_scan):
    scan, _, image = real_scan
    fraction = image.owns_pixel().float().mean().item()
    print(f"SemanticKITTI 00/000000: {fraction:.3f} of {len(scan)} points own their pixel at 64x2048")
    assert fraction > MIN_OWNER_FRACTION
    assert image.image.shape == (5, 64, 2048)


def test_real_scan_ground_truth_survives_projection(real_scan):
    _, labels, image = real_scan
    pixel_labels = pixel_labels_from_points(labels, image)
    back = back_project_labels(pixel_labels, image)
    agreement = (back == labels).float().mean().item()
    refined_agreement = (knn_refine(image, pixel_labels) == labels).float().mean().item()
    print(f"labels back-projected: {agreement:.4f} agree; after kNN: {refined_agreement:.4f}")
    assert agreement > MIN_LABEL_AGREEMENT
    assert refined_agreement > agreement  # kNN recovers hidden points
