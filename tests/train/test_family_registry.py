"""The model-family registry: the built-in families, the checks every family gets, and a new family
registered from outside the package that trains through the command line like the built-in ones."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from image2point import cli
from image2point.data.batch import Batch
from image2point.data.collate import SceneBatch, ShapeBatch
from image2point.data.point_collate import PointBatch, PointCollator
from image2point.data.range_collate import RangeBatch
from image2point.errors import ConfigError
from image2point.models.base import TransferredNetwork
from image2point.tasks import Task
from image2point.train.builders import build_collate, build_dataset, build_model
from image2point.train.config import dataset_task, load_config
from image2point.train.families import MODEL_FAMILIES, BuiltModel, ModelFamily, get_family, register_family

TOY_FAMILY = "toy_point_mlp"
TOY_RUN = ("data.name=procedural_shapes", "data.train_samples=8", "data.eval_samples=4", "data.num_points=64",
           "data.batch_size=4", "data.num_workers=0", f"model.family={TOY_FAMILY}", "model.backbone=none",
           "optim.lr=0.01", "train.epochs=1")
SEGMENTATION_RUN = ("data.name=procedural_scenes", "data.train_samples=2", "data.eval_samples=1",
                    "data.batch_size=1", "data.num_workers=0", "model.backbone=cifar_resnet20")
HIDDEN = 16
# What the training loop asks of every batch (image2point.data.batch.Batch).
BATCH_MEMBERS = ("device", "to", "network_inputs", "loss_targets", "scored")


class PointMLP(TransferredNetwork):
    """A shared per-point MLP, max-pooled over the cloud, then a linear classifier."""

    def __init__(self, in_features: int, num_classes: int):
        super().__init__()
        self.input_layer = nn.Linear(in_features, HIDDEN)
        self.backbone = None
        self.head = nn.Linear(HIDDEN, num_classes)

    def forward(self, xyz: torch.Tensor, features: torch.Tensor | None) -> torch.Tensor:
        points = xyz if features is None else torch.cat([xyz, features], dim=-1)
        return self.head(torch.relu(self.input_layer(points)).amax(dim=1))


class PointMLPFamily(ModelFamily):
    description = "classifies point sets with a per-point MLP"
    tasks = frozenset({Task.CLASSIFICATION})
    backbones = ("none",)
    batch_types = (PointBatch,)

    def build(self, config, in_features, num_classes, task):
        return BuiltModel(PointMLP(in_features, num_classes), None, None)

    def load_pretrained(self, target, path):
        raise ConfigError(f"model.family={self.name} has no pretrained weights")

    def collate(self, config, settings):
        return PointCollator(config.data.num_points).shapes


@pytest.fixture
def toy_family(isolated_registries):
    register_family(TOY_FAMILY)(PointMLPFamily)
    return MODEL_FAMILIES[TOY_FAMILY]


def test_the_paper_families_are_registered_in_order():
    assert tuple(MODEL_FAMILIES)[:3] == ("voxel", "pointnet2", "range")
    assert all(MODEL_FAMILIES[name].name == name for name in MODEL_FAMILIES)


@pytest.mark.parametrize("family, batch_types", [("voxel", (ShapeBatch, SceneBatch)), ("pointnet2", (PointBatch,)),
                                                 ("range", (RangeBatch,))])
def test_every_family_collates_batches_of_the_declared_protocol(family, batch_types):
    assert get_family(family).batch_types == batch_types
    assert all(hasattr(batch_type, member) for batch_type in batch_types for member in BATCH_MEMBERS)


@pytest.mark.parametrize("dataset, family, batch_type", [
    ("procedural_shapes", "voxel", ShapeBatch), ("procedural_scenes", "voxel", SceneBatch),
    ("procedural_shapes", "pointnet2", PointBatch), ("procedural_scenes", "range", RangeBatch)])
def test_a_collated_batch_satisfies_the_protocol(dataset, family, batch_type):
    config = load_config(None, [f"data.name={dataset}", "data.eval_samples=2", "data.num_points=1024",
                                f"model.family={family}", "data.range_image.height=16",
                                "data.range_image.width=64"])
    data = build_dataset(config.data, "test", train=False)
    batch = build_collate(config, dataset_task(dataset), len(data.class_names), "torch")([data[0], data[1]])
    assert isinstance(batch, batch_type) and isinstance(batch, Batch)
    assert batch.to(torch.device("cpu")).loss_targets.dtype == torch.int64


def test_an_unknown_family_is_one_config_error_naming_the_choices():
    with pytest.raises(ConfigError, match=r"model.family must be one of voxel, pointnet2, range"):
        load_config(None, ["model.family=nonesuch"])
    with pytest.raises(ConfigError, match="unknown family 'nonesuch'"):
        get_family("nonesuch")


def test_a_family_name_registers_once(toy_family):
    with pytest.raises(ValueError, match="already registered"):
        register_family(TOY_FAMILY)(PointMLPFamily)


def test_every_family_refuses_a_task_it_does_not_take(toy_family):
    config = load_config(None, [*SEGMENTATION_RUN, f"model.family={TOY_FAMILY}", "model.backbone=none"])
    with pytest.raises(ConfigError, match=f"model.family={TOY_FAMILY} classifies point sets .*, not segmentation"):
        build_model(config, 3, 5, Task.SEGMENTATION)


def test_a_segmentation_network_refuses_an_mlp_head_in_one_line(tmp_path, capsys):
    config = load_config(None, [*SEGMENTATION_RUN, "model.head=mlp"])
    with pytest.raises(ConfigError, match="model.head=mlp is not a segmentation head"):
        build_model(config, 6, 5, Task.SEGMENTATION)
    code = cli.main(["train", *SEGMENTATION_RUN, "model.head=mlp", f"train.run_dir={tmp_path / 'run'}"])
    error = capsys.readouterr().err.strip()
    assert code == 2 and len(error.splitlines()) == 1 and "model.head=mlp is not a segmentation head" in error
    assert not (tmp_path / "run").exists()


def test_a_segmentation_network_defaults_to_the_unet_decoder():
    network = build_model(load_config(None, list(SEGMENTATION_RUN)), 6, 5, Task.SEGMENTATION).network
    assert type(network.head).__name__ == "UNetDecoder"


def test_a_new_family_trains_and_evaluates_through_the_cli(toy_family, tmp_path):
    run_dir = tmp_path / "run"
    assert cli.main(["train", *TOY_RUN, f"train.run_dir={run_dir}"]) == 0
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["family"] == TOY_FAMILY and metrics["task"] == "classification"
    assert 0.0 <= metrics["final"]["overall_accuracy"] <= 1.0
    out_dir = tmp_path / "eval"
    assert cli.main(["eval", str(run_dir / "config.yaml"), str(run_dir / "last.pt"), "--out-dir", str(out_dir)]) == 0
    evaluated = json.loads((out_dir / "metrics.json").read_text())["final"]
    assert evaluated["overall_accuracy"] == metrics["final"]["overall_accuracy"]
