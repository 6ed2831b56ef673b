"""predict_files: every input read once, checked before anything is written, one result type per task."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from image2point.data.procedural import ProceduralScenes, ProceduralShapes
from image2point.errors import DataError
from image2point.inference import files as inference_files
from image2point.inference.files import predict_files
from image2point.inference.model import assemble_model
from image2point.inference.predict import ScenePrediction, ShapePrediction, predict_cloud
from image2point.io import PointCloud, write_ply
from image2point.train.builders import build_model, task_of
from image2point.train.config import load_config

QUICK = ["model.backbone=none", "model.linear_width=32"]
SCENE_POINTS = 800


def untrained_model(overrides: list[str], in_features: int, num_classes: int):
    """A freshly initialised network of the config, loaded as a trained one (no training needed here)."""
    config = load_config(None, [*QUICK, *overrides])
    torch.manual_seed(0)
    network = build_model(config, in_features, num_classes, task_of(config.data)).network
    return assemble_model(config, network.state_dict(), "untrained.pt")


@pytest.fixture(scope="module")
def scene_model():
    return untrained_model(["data.name=procedural_scenes", "data.voxel_size=0.25", "model.head=unet"], 6, 5)


@pytest.fixture(scope="module")
def shape_model():
    return untrained_model(["data.name=procedural_shapes", "data.voxel_size=0.2", "model.head=linear"], 3, 12)


def write_scene(path, seed):
    sample = ProceduralScenes(1, "test", seed=seed)[0]
    keep = np.random.default_rng(seed).choice(sample.num_points, SCENE_POINTS, replace=False)
    write_ply(path, sample.points[keep], {"rgb": np.round(sample.features[keep] * 255).astype(np.uint8),
                                          "labels": sample.labels[keep].astype(np.int32)})


def test_each_input_is_read_once(scene_model, tmp_path, monkeypatch):
    for seed, name in enumerate(("a", "b", "c")):
        write_scene(tmp_path / f"{name}.ply", seed)
    reads = []
    real_read = inference_files.read_point_cloud
    monkeypatch.setattr(inference_files, "read_point_cloud", lambda path, fields: reads.append(path) or
                        real_read(path, fields))
    run = predict_files(scene_model, [tmp_path / "a.ply", tmp_path / "b.ply", tmp_path / "c.ply"], tmp_path / "out")
    assert [path.name for path in reads] == ["a.ply", "b.ply", "c.ply"]
    assert len(run.files) == 3 and run.metrics is not None
    assert all(result.metrics is not None and result.top_k == () for result in run.files)


def test_a_bad_last_input_leaves_nothing_behind(scene_model, tmp_path):
    write_scene(tmp_path / "good.ply", 0)
    (tmp_path / "bad.ply").write_bytes(b"")
    with pytest.raises(DataError, match="empty file"):
        predict_files(scene_model, [tmp_path / "good.ply", tmp_path / "bad.ply"], tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_scene_prediction_has_per_point_probabilities(scene_model):
    sample = ProceduralScenes(1, "test", seed=1)[0]
    cloud = PointCloud(sample.points.astype(np.float64), {"rgb": sample.features})
    prediction = predict_cloud(scene_model, cloud, probabilities=True)
    assert isinstance(prediction, ScenePrediction)
    assert prediction.probabilities.shape == (sample.num_points, 5)
    np.testing.assert_array_equal(prediction.probabilities.argmax(1), prediction.labels)
    assert predict_cloud(scene_model, cloud).probabilities is None


def test_a_shape_prediction_has_the_shapes_probabilities_and_ranking(shape_model):
    sample = ProceduralShapes(1, "test", seed=0, num_points=256)[0]
    prediction = predict_cloud(shape_model, PointCloud(sample.points.astype(np.float64), {}), top_k=3)
    assert isinstance(prediction, ShapePrediction)
    assert prediction.probabilities.shape == (12,)
    assert len(prediction.top_k) == 3 and prediction.best == int(prediction.probabilities.argmax())
    assert (prediction.labels == prediction.best).all() and len(prediction.labels) == 256
