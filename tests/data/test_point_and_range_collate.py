"""Batches of the point-based and projection-based families: fixed-size point sets and range images."""

import numpy as np
import pytest
import torch

from image2point.data.point_collate import PointCollator, draw_points
from image2point.data.range_collate import RangeCollator
from image2point.data.range_image import RangeProjectionConfig, pixel_labels_from_points, project_to_range_image
from image2point.data.sample import IGNORE_INDEX, SceneSample, ShapeSample
from image2point.errors import ConfigError


def shape(num_points: int, label: int, features: int = 0, seed: int = 0) -> ShapeSample:
    rng = np.random.default_rng(seed)
    extra = rng.random((num_points, features), dtype=np.float32) if features else None
    return ShapeSample(rng.standard_normal((num_points, 3)).astype(np.float32), extra, label, f"shape {seed}")


def lidar_scene(num_points: int = 3000, seed: int = 0, num_classes: int = 4) -> SceneSample:
    """Points on rings around a sensor at the origin, as a spinning LiDAR sees them."""
    rng = np.random.default_rng(seed)
    azimuth = rng.uniform(-np.pi, np.pi, num_points)
    elevation = np.deg2rad(rng.uniform(-24.0, 2.0, num_points))
    distance = rng.uniform(3.0, 40.0, num_points)
    points = np.stack([distance * np.cos(elevation) * np.cos(azimuth), distance * np.cos(elevation) * np.sin(azimuth),
                       distance * np.sin(elevation)], axis=1).astype(np.float32)
    intensity = rng.random((num_points, 1), dtype=np.float32)
    labels = rng.integers(0, num_classes, num_points)
    labels[:10] = IGNORE_INDEX
    return SceneSample(points, intensity, labels, f"scene {seed}")


def test_draw_points_keeps_distinct_points_when_there_are_enough():
    np.random.seed(0)
    drawn = draw_points(100, 40)
    assert len(drawn) == 40 and len(set(drawn.tolist())) == 40 and drawn.max() < 100


def test_draw_points_keeps_a_cloud_of_the_right_size_as_it_is():
    assert draw_points(64, 64).tolist() == list(range(64))


def test_draw_points_keeps_every_point_and_repeats_some_when_there_are_too_few():
    np.random.seed(0)
    drawn = draw_points(30, 50)
    assert len(drawn) == 50 and set(drawn.tolist()) == set(range(30))


def test_point_collator_stacks_shapes_with_their_features_and_labels():
    np.random.seed(0)
    samples = [shape(300, 2, features=2, seed=0), shape(90, 5, features=2, seed=1)]
    batch = PointCollator(128).shapes(samples)
    assert batch.xyz.shape == (2, 128, 3) and batch.features.shape == (2, 128, 2)
    assert batch.labels.tolist() == [2, 5]
    # Every drawn point is a point of its cloud, with its own features.
    for index, sample in enumerate(samples):
        rows = {tuple(row) for row in np.concatenate([sample.points, sample.features], axis=1).tolist()}
        drawn = torch.cat([batch.xyz[index], batch.features[index]], dim=1).tolist()
        assert all(tuple(row) in rows for row in drawn)
    assert batch.network_inputs()[0] is batch.xyz and batch.loss_targets is batch.labels


def test_point_collator_draws_scene_labels_with_their_points():
    np.random.seed(1)
    scene = lidar_scene(500)
    batch = PointCollator(200).scenes([scene])
    lookup = {tuple(point): label for point, label in zip(scene.points.tolist(), scene.labels.tolist())}
    assert batch.labels.shape == (1, 200)
    assert [lookup[tuple(point)] for point in batch.xyz[0].tolist()] == batch.labels[0].tolist()
    logits = torch.nn.functional.one_hot(batch.labels.clamp(min=0), 4).permute(0, 2, 1).float()
    predicted, target = batch.scored(logits)
    assert predicted.shape == target.shape == (1, 200)


def test_point_collator_refuses_zero_points():
    with pytest.raises(ConfigError, match="num_points"):
        PointCollator(0)


def test_range_collator_projects_scans_and_labels_their_pixels():
    projection = RangeProjectionConfig(height=32, width=256)
    scenes = [lidar_scene(seed=0), lidar_scene(2500, seed=1)]
    batch = RangeCollator(projection).scenes(scenes)
    assert batch.images.shape == (2, 5, 32, 256)
    assert batch.pixel_labels.shape == (2, 32, 256)
    assert batch.point_labels.shape == (5500,)
    for index, scene in enumerate(scenes):
        reference = project_to_range_image(scene.points, scene.features[:, 0], projection)
        assert torch.equal(batch.images[index], reference.image)
        assert torch.equal(batch.pixel_labels[index], pixel_labels_from_points(scene.labels, reference))
    assert batch.pixel_labels[~torch.stack([p.mask for p in batch.projections])].eq(IGNORE_INDEX).all()


@pytest.mark.parametrize("knn", [False, True])
def test_range_batch_scores_every_point_of_every_scan(knn):
    projection = RangeProjectionConfig(height=32, width=256)
    scenes = [lidar_scene(seed=0), lidar_scene(2500, seed=1)]
    batch = RangeCollator(projection, knn=knn).scenes(scenes)
    # Logits that put each pixel's own label first: every point that owns its pixel gets its label back.
    logits = torch.nn.functional.one_hot(batch.pixel_labels.clamp(min=0), 4).permute(0, 3, 1, 2).float()
    predicted, target = batch.scored(logits)
    assert predicted.shape == target.shape == (5500,)
    owners = torch.cat([p.owns_pixel() for p in batch.projections])
    labelled = target != IGNORE_INDEX
    if not knn:
        assert torch.equal(predicted[owners & labelled], target[owners & labelled])
    assert predicted.min() >= 0 and predicted.max() < 4

