"""What a training checkpoint is written from and resumed into (RunState), and how a stored config of an
older image2point, whose segmentation runs stored ``model.head: mlp`` for the U-Net they built, reads now."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from image2point.checkpoint import TrainingCheckpoint
from image2point.errors import CheckpointError
from image2point.train.config import config_from_mapping, config_to_dict, load_config, upgrade_stored_head
from image2point.train.run_state import RunState, check_compatible

SCENES = ["data.name=procedural_scenes", "model.backbone=cifar_resnet20"]


def run_state(seed: int) -> RunState:
    torch.manual_seed(seed)
    network = nn.Linear(3, 2)
    optimizer = torch.optim.SGD(network.parameters(), lr=0.1, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, 1)
    return RunState(network, optimizer, scheduler, torch.amp.GradScaler("cpu", enabled=False))


def test_a_checkpoint_resumes_into_an_equal_state():
    state = run_state(0)
    state.network(torch.ones(4, 3)).sum().backward()
    state.optimizer.step()
    state.scheduler.step()
    state.epoch, state.best_score, state.best_epoch = 3, 0.75, 2
    state.losses, state.history = [1.0, 0.5, 0.4, 0.3], [{"epoch": epoch} for epoch in range(4)]
    checkpoint = state.checkpoint(load_config(None, []), ["a", "b"], 3)
    assert (checkpoint.progress.epoch, checkpoint.class_names, checkpoint.in_features) == (3, ("a", "b"), 3)
    # What resume reads is what was written, through the typed record's own dict form.
    checkpoint = TrainingCheckpoint.from_mapping(checkpoint.to_dict(), "last.pt")
    resumed = run_state(1)
    assert (resumed.epoch, resumed.next_epoch, resumed.best_score) == (-1, 0, -math.inf)
    resumed.restore(checkpoint, "last.pt")
    assert resumed.next_epoch == 4 and resumed.improves(0.8) and not resumed.improves(0.75)
    assert (resumed.losses, resumed.history, resumed.best_epoch) == (state.losses, state.history, 2)
    for key, value in state.network.state_dict().items():
        assert torch.equal(resumed.network.state_dict()[key], value)
    assert resumed.optimizer.state_dict()["state"][0]["momentum_buffer"].equal(
        state.optimizer.state_dict()["state"][0]["momentum_buffer"])
    assert resumed.scheduler.last_epoch == 1


def test_a_weights_only_checkpoint_does_not_resume():
    checkpoint = TrainingCheckpoint(run_state(0).network.state_dict())
    with pytest.raises(CheckpointError, match="weights only"):
        run_state(1).restore(checkpoint, "best.pt")


def test_a_stored_segmentation_mlp_head_reads_as_the_default_and_a_classification_one_stays():
    stored = config_to_dict(load_config(None, SCENES))
    stored["model"]["head"] = "mlp"
    assert upgrade_stored_head(stored)["model"]["head"] is None
    assert stored["model"]["head"] == "mlp"
    assert config_from_mapping(stored, "old.pt").model.head is None
    shapes = config_to_dict(load_config(None, ["model.head=mlp"]))
    assert upgrade_stored_head(shapes) is shapes


def test_an_older_segmentation_run_resumes_and_another_model_is_refused():
    current = load_config(None, SCENES)
    stored = config_to_dict(current)
    stored["model"]["head"] = "mlp"
    check_compatible(TrainingCheckpoint({}, stored), current, "last.pt")
    with pytest.raises(CheckpointError, match="last.pt: was trained with model settings"):
        check_compatible(TrainingCheckpoint({}, stored), load_config(None, [*SCENES, "model.head=linear"]), "last.pt")
