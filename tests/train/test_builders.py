"""The wiring from a config to transforms, datasets, collation, the optimizer and the networks' output layers."""

import numpy as np
import pytest
import torch

from image2point.data.sample import SceneSample
from image2point.data.transforms import CenterPoints, NormalizeColor, RandomVoxelSubset
from image2point.errors import ConfigError
from image2point.train.builders import (
    build_collate,
    build_dataset,
    build_model,
    build_optimizer,
    build_transform,
    step_batch_warning,
    xyz_feature_scale,
)
from image2point.train.config import load_config

NUM_S3DIS_CLASSES = 13
NUM_CLASSES = 5


def _write_room(root, area, room, objects):
    annotations = root / f"Area_{area}" / room / "Annotations"
    annotations.mkdir(parents=True)
    for name, points in objects.items():
        (annotations / f"{name}.txt").write_text("\n".join(f"{x:.3f} {y:.3f} {z:.3f} 100 150 200"
                                                           for x, y, z in points) + "\n")


def test_s3dis_rooms_are_cropped_centred_and_read_in_voxel_units(tmp_path):
    # A 20 m corridor at an area's real offset: the authors' loader keeps 8 m around its centre.
    xs = np.linspace(30.0, 50.0, 201)
    corridor = np.stack([xs, np.full_like(xs, 12.0), np.full_like(xs, 1.5)], axis=1)
    _write_room(tmp_path, 5, "hallway_1", {"wall_1": corridor})
    config = load_config(None, ["data.name=s3dis", f"data.root={tmp_path}", "data.voxel_size=0.05"])
    sample = build_dataset(config.data, "test", train=False)[0]
    assert sample.num_points == 80
    np.testing.assert_allclose(sample.points.mean(axis=0), 0.0, atol=1e-5)
    assert np.ptp(sample.points[:, 0]) == pytest.approx(7.9, abs=1e-4)
    np.testing.assert_allclose(sample.features, np.broadcast_to(np.array([100, 150, 200]) / 255 - 0.5, (80, 3)),
                               rtol=1e-6)
    # The xyz input features count voxels: a voxel's x feature is its points' mean x divided by 0.05.
    batch = build_collate(config, "segmentation", NUM_S3DIS_CLASSES, "torch")([sample])
    features = batch.voxels.tensor.features
    assert features[:, 0].abs().max().item() == pytest.approx(3.95 / 0.05, rel=1e-4)
    np.testing.assert_allclose(features[:, 3:].numpy(), np.broadcast_to(sample.features[0], (len(features), 3)),
                               rtol=1e-5)


def test_s3dis_normalisation_can_be_switched_off(tmp_path):
    config = load_config(None, ["data.name=s3dis", "data.s3dis.clip_bound=null", "data.s3dis.center=false",
                                "data.s3dis.xyz_in_voxels=false"])
    assert build_transform(config.data, train=False).transforms == (NormalizeColor(),)
    assert xyz_feature_scale(config.data) == 1.0
    default = load_config(None, ["data.name=s3dis"])
    assert build_transform(default.data, train=False).transforms == (NormalizeColor(), CenterPoints())


def test_semantickitti_training_caps_voxels_at_the_configured_voxel_size():
    config = load_config(None, ["data.name=semantickitti", "data.voxel_size=0.1", "data.augment=false",
                                "data.semantickitti.max_train_voxels=1000"])
    assert build_transform(config.data, train=True).transforms == (RandomVoxelSubset(0.1, 1000),)
    assert build_transform(config.data, train=False).transforms == ()


def test_voxel_features_stay_in_metres_for_other_datasets():
    config = load_config(None, ["data.name=procedural_scenes", "data.voxel_size=0.5"])
    points = np.array([[1.0, 2.0, 3.0]], dtype=np.float32)
    sample = SceneSample(points, np.full((1, 3), 0.1, np.float32), np.zeros(1, np.int64), "one point")
    batch = build_collate(config, "segmentation", 4, "torch")([sample])
    np.testing.assert_allclose(batch.voxels.tensor.features[0, :3].numpy(), [1.0, 2.0, 3.0])


def test_nesterov_reaches_the_sgd_optimizer():
    parameters = [torch.nn.Parameter(torch.zeros(2))]
    optimizer = build_optimizer(load_config(None, ["optim.nesterov=true"]), parameters)
    assert optimizer.param_groups[0]["nesterov"] is True
    assert build_optimizer(load_config(None, []), parameters).param_groups[0]["nesterov"] is False


@pytest.mark.parametrize("override,message", [
    ("optim.name=adam", "nesterov must be false unless name is sgd"),
    ("optim.momentum=0", "nesterov must be false when momentum is 0"),
])
def test_nesterov_needs_sgd_with_momentum(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, ["optim.nesterov=true", override])


def test_step_batch_warning_compares_world_size_times_batch_with_the_recipe():
    recipe = load_config(None, ["data.batch_size=3", "data.effective_batch_size=6"]).data
    assert step_batch_warning(recipe, world_size=2) is None
    message = step_batch_warning(recipe, world_size=1)
    assert "1 process(es) x data.batch_size 3 = 3" in message and "effective_batch_size is 6" in message
    assert step_batch_warning(load_config(None, ["data.batch_size=3"]).data, world_size=1) is None


def test_head_hidden_reaches_the_mlp_head():
    config = load_config(None, ["model.backbone=cifar_resnet20", "model.head_hidden=48"])
    head = build_model(config, 3, NUM_CLASSES, "classification").network.head
    assert head.classifier[0].out_features == head.classifier[3].in_features == 48


def test_linear_width_reaches_the_backbone_free_network():
    config = load_config(None, ["model.backbone=none", "model.input_layer=linear", "model.head=linear",
                                "model.linear_width=24"])
    network = build_model(config, 4, NUM_CLASSES, "segmentation").network
    assert network.input_layer.full_resolution[0].out_channels == 24
    assert network.head.classifier.in_features == 24
