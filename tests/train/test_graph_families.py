"""The 2D families without a module-position spec (MobileNets, ESPNets, ...) through configs, training with a
finetuning scheme, prediction and export, like the ResNets: the shared ImageNet MobileNetV1 and Cityscapes
ESPNet-C checkpoints load into the backbone, scheme io keeps them exactly, and a trained checkpoint and its
export predict the same."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from image2point.data.procedural import ProceduralScenes, ProceduralShapes
from image2point.inference.export import export_checkpoint
from image2point.inflate.transforms import filter_transform, inflate_weight
from image2point.io import PointCloud
from image2point.models.graph_backbone import GraphBackbone
from image2point.models2d import read_state_dict
from image2point.inference.model import load_exported, load_trained
from image2point.inference.predict import predict_cloud
from image2point.checkpoint import load_checkpoint
from image2point.train.builders import build_model
from image2point.train.config import load_config
from image2point.train.loop import run_training

SHARED_WEIGHTS = Path(__file__).resolve().parents[2] / ".." / "shared" / "weights"
MOBILENET_V1 = SHARED_WEIGHTS / "mobilenetv1_x0.25_imagenet.pth.tar"
ESPNET_C = SHARED_WEIGHTS / "espnet_p2_q8_cityscapes_encoder.pth"
SHAPES_RUN = ["data.name=procedural_shapes", "data.train_samples=8", "data.eval_samples=4", "data.num_points=256",
              "data.batch_size=4", "data.num_workers=0", "train.epochs=1", "train.threads=1", "optim.lr=0.05"]
SCENES_RUN = ["data.name=procedural_scenes", "data.voxel_size=0.25", "data.train_samples=2", "data.eval_samples=1",
              "data.batch_size=2", "data.num_workers=0", "train.epochs=1", "train.threads=1", "model.head=unet"]


def needs(path: Path) -> Path:
    if not path.is_file():
        pytest.skip(f"shared checkpoint {path} is not available")
    return path


def test_config_builds_the_imagenet_mobilenet_v1_backbone_inflated_from_the_checkpoint():
    config = load_config(None, [*SHAPES_RUN, "model.backbone=mobilenet_v1_x0_25",
                                f"model.pretrained={needs(MOBILENET_V1)}"])
    built = build_model(config, 3, 10, "classification")
    assert isinstance(built.network.backbone, GraphBackbone)
    assert len(built.pretrained.loaded) == 164
    stored = {key.removeprefix("module."): value for key, value in read_state_dict(MOBILENET_V1).items()}
    state = built.network.state_dict()
    # A depthwise kernel inflated by the default T, and a BatchNorm statistic carried over.
    expected = inflate_weight(stored["stage2.3.0.weight"], filter_transform("default", 3))
    assert torch.equal(state["backbone.encoder.stage2.3.0.weight"], expected)
    assert torch.equal(state["backbone.encoder.stage3.1.4.running_var"], stored["stage3.1.4.running_var"])
    # The stem (replaced by the input layer) and the ImageNet classifier are left out.
    assert set(built.conversion.dropped) == {"stage1.0.0.weight", "stage1.0.1.weight", "stage1.0.1.bias",
                                             "stage1.0.1.running_mean", "stage1.0.1.running_var",
                                             "stage1.0.1.num_batches_tracked", "fc.weight", "fc.bias"}


def test_mobilenet_v1_trains_with_scheme_io_keeping_the_backbone_and_its_export_predicts_the_same(tmp_path):
    run_dir = tmp_path / "run"
    config = load_config(None, [*SHAPES_RUN, "model.backbone=mobilenet_v1_x0_25",
                                f"model.pretrained={needs(MOBILENET_V1)}", "finetune.scheme=io",
                                f"train.run_dir={run_dir}"])
    built = build_model(config, 3, 12, "classification")
    initial = {key: value.clone() for key, value in built.network.state_dict().items()
               if key.startswith("backbone.")}
    run_training(config, quiet=True)
    trained = load_checkpoint(run_dir / "last.pt")["model"]
    assert all(torch.equal(trained[key], value) for key, value in initial.items())
    original = load_trained(run_dir / "last.pt")
    exported = load_exported(export_checkpoint(run_dir / "last.pt", tmp_path / "model").weights)
    sample = ProceduralShapes(1, "test", seed=3, num_points=256)[0]
    cloud = PointCloud(sample.points, {})
    expected = predict_cloud(original, cloud, probabilities=True)
    actual = predict_cloud(exported, cloud, probabilities=True)
    np.testing.assert_array_equal(actual.probabilities, expected.probabilities)


def test_cityscapes_espnet_c_encoder_segments_scenes_with_scheme_io(tmp_path):
    run_dir = tmp_path / "run"
    config = load_config(None, [*SCENES_RUN, "model.backbone=espnet_c", "model.input_layer=linear",
                                f"model.pretrained={needs(ESPNET_C)}", "finetune.scheme=io",
                                f"train.run_dir={run_dir}"])
    run_training(config, quiet=True)
    trained = load_checkpoint(run_dir / "last.pt")["model"]
    stored = read_state_dict(ESPNET_C)
    assert torch.equal(trained["backbone.encoder.level3.7.bn.bn.running_mean"], stored["level3.7.bn.bn.running_mean"])
    assert torch.equal(trained["backbone.encoder.level3.7.bn.act.weight"], stored["level3.7.bn.act.weight"])
    assert "backbone.adapter.weight" in trained
    model = load_trained(run_dir / "last.pt")
    sample = ProceduralScenes(1, "test", seed=4)[0]
    prediction = predict_cloud(model, PointCloud(sample.points[:1500], {"rgb": sample.features[:1500]}))
    assert prediction.labels.shape == (1500,)
