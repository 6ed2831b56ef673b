"""Checkpoints record the strided-shortcut setting and T; one made before the setting existed (its stored
config has no model.shortcut) loads with that version's behaviour ("center"), and where its weights no
longer fit the current network it is refused with one line saying it comes from an older image2point."""

from __future__ import annotations

import copy

import pytest
import torch

from image2point.checkpoint import load_checkpoint, save_checkpoint
from image2point.cli import main
from image2point.errors import CheckpointError
from image2point.inflate.shortcuts import DEFAULT_STRIDED_SHORTCUT, StridedShortcut
from image2point.inference.model import load_trained
from image2point.sparse.modules import SparseSubsampleShortcut
from image2point.train import loop
from image2point.train.config import load_config, save_config
from image2point.train.stored import LEGACY_MODEL_DEFAULTS, is_legacy_config, upgrade_stored_config

# cifar_resnet20: option-A shortcuts in layer2.0 and layer3.0.
TINY = ["data.name=procedural_shapes", "data.train_samples=8", "data.eval_samples=4", "data.num_points=128",
        "data.batch_size=4", "data.num_workers=0", "model.backbone=cifar_resnet20", "train.epochs=1",
        "train.max_steps_per_epoch=1", "train.seed=0"]
# A tensor of the current classification head that an older head layout would not have.
NEWER_HEAD_TENSOR = "head.classifier.1.weight"


def tiny_config(run_dir, *extra):
    return load_config(None, [*TINY, f"train.run_dir={run_dir}", *extra])


@pytest.fixture(scope="module")
def center_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("center")
    # The mlp head as wide as an older image2point made it.
    loop.run_training(tiny_config(run_dir, "model.shortcut=center", "model.head_hidden=256"), quiet=True)
    return run_dir


def legacy_copy(run_dir, tmp_path, drop_weights=()):
    """The run's checkpoint as an older image2point wrote it: no model.shortcut (nor the other keys it did
    not know) in its stored config."""
    state = load_checkpoint(run_dir / loop.LAST_CHECKPOINT)
    state = copy.copy(state)
    state["config"] = copy.deepcopy(state["config"])
    for key in LEGACY_MODEL_DEFAULTS:
        del state["config"]["model"][key]
    state["model"] = {key: value for key, value in state["model"].items() if key not in drop_weights}
    path = tmp_path / "legacy.pt"
    save_checkpoint(path, state)
    return path


def shortcut_reductions(network):
    return {m.reduce for m in network.modules() if isinstance(m, SparseSubsampleShortcut) and m.stride == 2}


def test_checkpoints_record_the_shortcut_setting_and_t(tmp_path):
    loop.run_training(tiny_config(tmp_path, "model.transform=copy_z", "model.normalize_t=true"), quiet=True)
    state = load_checkpoint(tmp_path / loop.LAST_CHECKPOINT)
    model = state["config"]["model"]
    assert model["shortcut"] == DEFAULT_STRIDED_SHORTCUT.value
    assert (model["transform"], model["normalize_t"]) == ("copy_z", True)
    assert state["config"]["finetune"]["learnable_t"] == "none"
    assert not is_legacy_config(state["config"])
    assert f"strided shortcuts: {DEFAULT_STRIDED_SHORTCUT.value}" in (tmp_path / "conversion.txt").read_text()


def test_legacy_config_reads_as_center_and_current_configs_are_left_alone():
    legacy = {"model": {"backbone": "resnet18"}}
    assert is_legacy_config(legacy)
    assert upgrade_stored_config(legacy)["model"] == {"backbone": "resnet18", "shortcut": "center",
                                                      "head_hidden": 256, "linear_width": 64}
    assert legacy == {"model": {"backbone": "resnet18"}}
    current = {"model": {"backbone": "resnet18", "shortcut": "children_sum"}}
    assert upgrade_stored_config(current) == current


def test_legacy_checkpoint_loads_with_center_shortcuts(center_run, tmp_path):
    path = legacy_copy(center_run, tmp_path)
    model = load_trained(path)
    assert model.config.model.shortcut is StridedShortcut.CENTER
    assert shortcut_reductions(model.network) == {None}
    assert model.network.head.classifier[0].out_features == 256
    reference = load_trained(center_run / loop.LAST_CHECKPOINT).network
    for (name, value), (_, expected) in zip(model.network.state_dict().items(), reference.state_dict().items()):
        assert torch.equal(value, expected), name


def test_eval_rebuilds_the_shortcut_setting_the_checkpoint_was_trained_with(center_run, tmp_path, monkeypatch):
    built_with = []
    real_build = loop.build_model

    def recording_build(config, *args, **kwargs):
        built_with.append(config.model.shortcut)
        return real_build(config, *args, **kwargs)

    monkeypatch.setattr(loop, "build_model", recording_build)
    config = tiny_config(tmp_path / "eval")
    assert config.model.shortcut is DEFAULT_STRIDED_SHORTCUT
    legacy = loop.evaluate_checkpoint(config, legacy_copy(center_run, tmp_path))
    current = loop.evaluate_checkpoint(config, center_run / loop.LAST_CHECKPOINT)
    assert built_with == [StridedShortcut.CENTER, StridedShortcut.CENTER]
    assert legacy.as_dict() == current.as_dict()


def test_resuming_a_legacy_run_compares_with_center(center_run, tmp_path):
    run_dir = tmp_path / "resume"
    run_dir.mkdir()
    legacy_copy(center_run, tmp_path).rename(run_dir / loop.LAST_CHECKPOINT)
    with pytest.raises(CheckpointError, match="'shortcut': 'center'"):
        loop.run_training(tiny_config(run_dir, "train.epochs=2", "model.shortcut=children_sum"), resume=True,
                          quiet=True)
    result = loop.run_training(tiny_config(run_dir, "train.epochs=2", "model.shortcut=center",
                                           "model.head_hidden=256", "model.linear_width=64"), resume=True, quiet=True)
    assert len(result.epoch_losses) == 2


def test_legacy_checkpoint_with_an_older_head_layout_is_refused_in_one_line(center_run, tmp_path, capsys):
    path = legacy_copy(center_run, tmp_path, drop_weights=(NEWER_HEAD_TENSOR,))
    expected = rf"made by an older image2point .*{NEWER_HEAD_TENSOR}.*cannot load"
    with pytest.raises(CheckpointError, match=expected):
        load_trained(path)
    with pytest.raises(CheckpointError, match=expected):
        loop.evaluate_checkpoint(tiny_config(tmp_path / "eval"), path)
    config_path = tmp_path / "eval.yaml"
    save_config(tiny_config(tmp_path / "eval"), config_path)
    assert main(["eval", str(config_path), str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "older image2point" in err and "Traceback" not in err


def test_current_checkpoint_that_does_not_fit_is_not_called_older(center_run, tmp_path):
    state = load_checkpoint(center_run / loop.LAST_CHECKPOINT)
    state["model"] = {key: value for key, value in state["model"].items() if key != NEWER_HEAD_TENSOR}
    save_checkpoint(tmp_path / "damaged.pt", state)
    with pytest.raises(CheckpointError, match="weights do not fit the network its config builds") as error:
        load_trained(tmp_path / "damaged.pt")
    assert "older" not in str(error.value)
