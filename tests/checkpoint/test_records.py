"""Typed checkpoints: training and inflated-backbone records, versioned, checked field by field when read."""

from __future__ import annotations

import pytest
import torch

from image2point.checkpoint import (
    InflatedCheckpoint,
    TrainingCheckpoint,
    TrainingProgress,
    load_inflated_checkpoint,
    load_training_checkpoint,
    save_checkpoint,
    save_inflated_checkpoint,
    save_training_checkpoint,
)
from image2point.checkpoint.records import INFLATED_FORMAT_VERSION, TRAINING_FORMAT_VERSION, UNVERSIONED
from image2point.errors import CheckpointError

WEIGHTS = {"layer.weight": torch.arange(6.0).reshape(2, 3), "layer.bias": torch.zeros(2)}


def progress() -> TrainingProgress:
    return TrainingProgress(optimizer={"state": {}, "param_groups": []}, scheduler={"last_epoch": 3}, scaler={},
                            epoch=3, best_score=0.5, best_epoch=2, epoch_losses=[1.0, 0.8, 0.7, 0.6],
                            history=[{"epoch": 3}], rng={"torch_cpu": torch.get_rng_state()})


def plain_training_dict() -> dict:
    """A checkpoint as image2point wrote them before format versions: a flat dict."""
    value = progress()
    return {"model": WEIGHTS, "config": {"data": {"name": "procedural_scenes"}}, "class_names": ["a", "b"],
            "in_features": 6, **{key: getattr(value, key) for key in TrainingProgress.__dataclass_fields__}}


def one_line_error(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


def test_a_training_checkpoint_round_trips_with_its_version(tmp_path):
    path = tmp_path / "last.pt"
    save_training_checkpoint(path, TrainingCheckpoint(WEIGHTS, {"seed": 1}, ("a", "b"), 6, progress()))
    assert torch.load(path, weights_only=True)["format_version"] == TRAINING_FORMAT_VERSION
    loaded = load_training_checkpoint(path)
    assert loaded.format_version == TRAINING_FORMAT_VERSION
    assert loaded.class_names == ("a", "b") and loaded.in_features == 6 and loaded.config == {"seed": 1}
    torch.testing.assert_close(dict(loaded.model), WEIGHTS)
    resumed = loaded.resumable(path)
    assert (resumed.epoch, resumed.best_epoch, resumed.best_score) == (3, 2, 0.5)
    torch.testing.assert_close(resumed.rng["torch_cpu"], progress().rng["torch_cpu"])


def test_an_unversioned_checkpoint_reads_as_version_1(tmp_path):
    path = tmp_path / "old.pt"
    save_checkpoint(path, plain_training_dict())
    loaded = load_training_checkpoint(path)
    assert loaded.format_version == UNVERSIONED and loaded.resumable(path).epoch == 3


def test_weights_only_checkpoints_load_but_cannot_resume(tmp_path):
    path = tmp_path / "weights.pt"
    save_checkpoint(path, {"model": WEIGHTS})
    loaded = load_training_checkpoint(path)
    assert loaded.progress is None and loaded.config is None
    with pytest.raises(CheckpointError, match="holds weights only") as error:
        loaded.resumable(path)
    assert str(path) in one_line_error(error)


@pytest.mark.parametrize("change,expected", [
    (lambda state: state.pop("scheduler"), "training checkpoint has no 'scheduler' entry"),
    (lambda state: state.pop("model"), "not a training checkpoint (no 'model' entry)"),
    (lambda state: state.update(epochs=3), "training checkpoint has an unknown entry 'epochs' (known: model, "),
    (lambda state: state.update(epoch="3"), "its 'epoch' entry is of type str, expected int"),
    (lambda state: state.update(epoch=True), "its 'epoch' entry is of type bool, expected int"),
    (lambda state: state.update(class_names="ab"), "its 'class_names' entry is not a list of names"),
    (lambda state: state.update(model=[1, 2]), "its 'model' entry is a list, not a mapping of tensors"),
    (lambda state: state.update(format_version=TRAINING_FORMAT_VERSION + 1),
     f"training checkpoint format version {TRAINING_FORMAT_VERSION + 1} comes from a newer image2point"),
    (lambda state: state.update(format_version="2"), "'format_version' entry '2' is not a format version"),
])
def test_a_bad_training_checkpoint_names_the_file_and_the_entry_in_one_line(change, expected, tmp_path):
    state = plain_training_dict()
    change(state)
    path = tmp_path / "bad.pt"
    save_checkpoint(path, state)
    with pytest.raises(CheckpointError) as error:
        load_training_checkpoint(path)
    message = one_line_error(error)
    assert expected in message and str(path) in message


def inflated() -> InflatedCheckpoint:
    return InflatedCheckpoint(state_dict=WEIGHTS, architecture="cifar_resnet20", transform="default",
                              learnable_t="none", stride_mode="floor", normalize=False, shortcut="children_sum")


def test_an_inflated_checkpoint_round_trips(tmp_path):
    path = tmp_path / "r20_3d.pt"
    save_inflated_checkpoint(path, inflated())
    loaded = load_inflated_checkpoint(path)
    assert loaded.format_version == INFLATED_FORMAT_VERSION and loaded.torch_version == str(torch.__version__)
    assert (loaded.architecture, loaded.shortcut, loaded.normalize) == ("cifar_resnet20", "children_sum", False)
    torch.testing.assert_close(dict(loaded.state_dict), WEIGHTS)


@pytest.mark.parametrize("change,expected", [
    (lambda state: state.pop("shortcut"), "inflated checkpoint has no 'shortcut' entry"),
    (lambda state: state.update(normalize="yes"), "its 'normalize' entry is of type str, expected bool"),
    (lambda state: state.update(colour=1), "inflated checkpoint has an unknown entry 'colour'"),
])
def test_a_bad_inflated_checkpoint_is_refused_in_one_line(change, expected, tmp_path):
    state = inflated().to_dict()
    change(state)
    path = tmp_path / "bad.pt"
    save_checkpoint(path, state)
    with pytest.raises(CheckpointError) as error:
        load_inflated_checkpoint(path)
    assert expected in one_line_error(error)
