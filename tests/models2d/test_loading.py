"""Checked weight loading, the model registry and the pretrained-weight descriptors."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from torch import nn

from image2point.errors import CheckpointError, ConfigError
from image2point.models2d import (
    KNOWN_WEIGHTS,
    LoadReport,
    build_pretrained_2d,
    create_model_2d,
    get_known_weights,
    list_models_2d,
    load_pretrained_2d,
    match_state_dict,
    register_known_weights,
    register_model_2d,
)
from image2point.models2d.cifar_resnet import cifar_resnet
from image2point.models2d.resnet import resnet18

SHARED_WEIGHTS = Path(__file__).resolve().parents[2] / ".." / "shared" / "weights"
CIFAR_CHECKPOINTS = {
    20: ("resnet20-12fca82f.th", 91.78),
    32: ("resnet32-d509ac18.th", 92.78),
    44: ("resnet44-014dd654.th", 93.14),
    56: ("resnet56-4bfd9763.th", 93.62),
}
CIFAR_INPUT = (2, 3, 32, 32)


def _shared_checkpoint(depth: int) -> Path:
    path = SHARED_WEIGHTS / CIFAR_CHECKPOINTS[depth][0]
    if not path.is_file():
        pytest.skip(f"shared CIFAR-10 checkpoint {path} is not available")
    return path


def _tiny_net() -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(2, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4, 3))


def _tiny_state(**overrides: torch.Tensor) -> dict[str, torch.Tensor]:
    torch.manual_seed(7)
    state = {k: torch.randn_like(v.float()) for k, v in _tiny_net().state_dict().items()}
    state["1.running_var"] = state["1.running_var"].abs() + 0.5
    state.pop("1.num_batches_tracked")
    state.update(overrides)
    return state


# ---------------------------------------------------------------- shared CIFAR-10 checkpoints


@pytest.mark.parametrize("depth", sorted(CIFAR_CHECKPOINTS))
def test_shared_checkpoint_loads_exactly(depth):
    path = _shared_checkpoint(depth)
    model = cifar_resnet(depth)
    report = load_pretrained_2d(model, path)
    assert report.missing == [] and report.unexpected == [] and report.shape_mismatched == []
    assert report.source == str(path)
    assert all(key.endswith("num_batches_tracked") for key in report.defaulted)

    stored = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
    model_state = model.state_dict()
    assert len(report.loaded) == len(stored)
    for key, tensor in stored.items():
        assert torch.equal(model_state[key.removeprefix("module.")], tensor), key


@pytest.mark.parametrize("depth", sorted(CIFAR_CHECKPOINTS))
def test_shared_checkpoint_gives_a_trained_network(depth):
    _shared_checkpoint(depth)
    model, report = build_pretrained_2d(f"cifar_resnet{depth}_cifar10")
    assert report.missing == [] and report.unexpected == []
    # Trained BatchNorm statistics are far from their initial zeros and ones.
    assert model.bn1.running_mean.abs().max() > 0.1
    assert (model.layer3[-1].bn2.running_var - 1).abs().max() > 0.1
    model.eval()
    images = torch.randn(*CIFAR_INPUT, generator=torch.Generator().manual_seed(depth))
    with torch.no_grad():
        logits = model(images)
    assert logits.shape == (2, 10) and torch.isfinite(logits).all()
    assert logits.std(dim=1).min() > 1e-3
    assert not torch.allclose(logits[0], logits[1])


def test_checkpoint_of_another_depth_is_refused_with_the_file_named():
    path = _shared_checkpoint(20)
    with pytest.raises(CheckpointError, match="missing from the checkpoint") as err:
        load_pretrained_2d(cifar_resnet(56), path)
    assert str(path) in str(err.value) and "layer1.3" in str(err.value)

    with pytest.raises(CheckpointError, match="not in the model"):
        load_pretrained_2d(cifar_resnet(20), _shared_checkpoint(56))


def test_refused_load_leaves_the_model_untouched():
    path = _shared_checkpoint(20)
    model = cifar_resnet(56)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointError):
        load_pretrained_2d(model, path)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_cifar_descriptors_point_at_the_shared_files_with_their_accuracy():
    for depth, (file_name, top1) in CIFAR_CHECKPOINTS.items():
        weights = get_known_weights(f"cifar_resnet{depth}_cifar10")
        assert Path(weights.file).name == file_name
        assert weights.top1_accuracy == pytest.approx(top1, abs=0.01)
        assert (weights.architecture, weights.num_classes, weights.input_size) == (
            f"cifar_resnet{depth}",
            10,
            32,
        )


# ---------------------------------------------------------------- unreadable or malformed files


def test_missing_file_is_a_checkpoint_error(tmp_path):
    path = tmp_path / "absent.pth"
    with pytest.raises(CheckpointError, match="no such checkpoint file") as err:
        load_pretrained_2d(_tiny_net(), path)
    assert str(path) in str(err.value)


def test_truncated_file_is_a_checkpoint_error(tmp_path):
    whole = tmp_path / "whole.pth"
    torch.save(_tiny_state(), whole)
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(CheckpointError, match=r"unreadable \(truncated or corrupt\)") as err:
        load_pretrained_2d(_tiny_net(), truncated)
    assert str(truncated) in str(err.value)


def test_text_file_is_a_checkpoint_error(tmp_path):
    path = tmp_path / "notes.pth"
    path.write_text("these are not weights\n")
    with pytest.raises(CheckpointError, match=str(path)):
        load_pretrained_2d(_tiny_net(), path)


def test_pickled_module_is_refused_under_weights_only(tmp_path):
    path = tmp_path / "whole_model.pth"
    torch.save(_tiny_net(), path)
    with pytest.raises(CheckpointError, match="weights_only=True"):
        load_pretrained_2d(_tiny_net(), path)


def test_non_dict_checkpoint_is_refused(tmp_path):
    path = tmp_path / "list.pth"
    torch.save([torch.zeros(2)], path)
    with pytest.raises(CheckpointError, match="holds a list, not a dict"):
        load_pretrained_2d(_tiny_net(), path)


def test_dict_of_non_tensors_is_refused():
    with pytest.raises(CheckpointError, match="not tensors: epoch"):
        load_pretrained_2d(_tiny_net(), {"epoch": 3, "0.weight": torch.zeros(4, 2, 3, 3)})


def test_nothing_matching_is_refused():
    state = {f"backbone.{k}": v for k, v in _tiny_state().items()}
    with pytest.raises(CheckpointError, match="no checkpoint key matches"):
        load_pretrained_2d(_tiny_net(), state)


# ---------------------------------------------------------------- unwrapping, prefixes, key maps


def test_nested_data_parallel_checkpoint_is_unwrapped_and_stripped(tmp_path):
    state = _tiny_state()
    path = tmp_path / "trainer.pth"
    torch.save({"epoch": 9, "model": {f"module.{k}": v for k, v in state.items()}}, path)
    model = _tiny_net()
    report = load_pretrained_2d(model, path)
    assert sorted(report.loaded) == sorted(state)
    assert report.defaulted == ["1.num_batches_tracked"]
    for key, tensor in state.items():
        assert torch.equal(model.state_dict()[key], tensor)


def test_descriptor_names_the_nesting_key_and_prefix():
    state = _tiny_state()
    weights = dataclasses.replace(
        get_known_weights("cifar_resnet20_cifar10"), key_prefix="net.", state_dict_key="weights"
    )
    checkpoint = {"weights": {f"net.{k}": v for k, v in state.items()}, "best_prec1": 1.0}
    report = load_pretrained_2d(_tiny_net(), checkpoint, weights)
    assert sorted(report.loaded) == sorted(state)

    with pytest.raises(CheckpointError, match="no 'weights' entry"):
        load_pretrained_2d(_tiny_net(), {"state_dict": state}, weights)


def test_key_map_renames_and_drops():
    state = {f"backbone.{k}": v for k, v in _tiny_state().items()}
    state["aux_head.weight"] = torch.zeros(5)

    def key_map(key: str) -> str | None:
        return None if key.startswith("aux_head.") else key.removeprefix("backbone.")

    report = load_pretrained_2d(_tiny_net(), state, key_map=key_map)
    assert report.dropped == ["aux_head.weight"]
    assert report.unexpected == [] and report.missing == []
    assert len(report.loaded) == len(state) - 1


def test_key_map_collisions_are_refused():
    with pytest.raises(CheckpointError, match="key map sends both"):
        load_pretrained_2d(_tiny_net(), _tiny_state(), key_map=lambda key: "0.weight")


def test_half_precision_tensors_are_cast_to_the_model_dtype():
    state = {k: v.half() for k, v in _tiny_state().items()}
    model = _tiny_net()
    load_pretrained_2d(model, state)
    assert model[0].weight.dtype == torch.float32
    torch.testing.assert_close(model[0].weight, state["0.weight"].float())


# ---------------------------------------------------------------- mismatches and allowances


def test_classifier_shape_mismatch_is_refused_unless_allowed():
    torch.manual_seed(0)
    imagenet_state = resnet18().state_dict()
    checkpoint = {"state_dict": {f"module.{k}": v for k, v in imagenet_state.items()}}
    model = resnet18(num_classes=10)
    expected = r"fc.weight: checkpoint \[1000, 512\] vs model \[10, 512\]"
    with pytest.raises(CheckpointError, match=expected):
        load_pretrained_2d(model, checkpoint)

    fresh_fc = model.fc.weight.detach().clone()
    report = load_pretrained_2d(model, checkpoint, allow_shape_mismatch=("fc",))
    assert [m.key for m in report.shape_mismatched] == ["fc.weight", "fc.bias"]
    assert report.shape_mismatched[0].checkpoint_shape == (1000, 512)
    assert torch.equal(model.fc.weight, fresh_fc)
    assert torch.equal(model.layer4[1].conv2.weight, imagenet_state["layer4.1.conv2.weight"])
    assert "shape mismatch (2)" in report.summary()


def test_allowances_cover_whole_modules_but_not_lookalike_names():
    state = _tiny_state()
    del state["3.weight"], state["3.bias"]
    state["30.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointError, match="2 model keys missing"):
        load_pretrained_2d(_tiny_net(), state, allow_unexpected=("30",))
    with pytest.raises(CheckpointError, match="1 checkpoint keys not in the model"):
        load_pretrained_2d(_tiny_net(), state, allow_missing=("3",), allow_unexpected=("3",))
    report = load_pretrained_2d(_tiny_net(), state, allow_missing=("3",), allow_unexpected=("30",))
    assert report.missing == ["3.weight", "3.bias"] and report.unexpected == ["30.weight"]
    assert "not in checkpoint (2): 3.weight, 3.bias" in report.summary()


def test_match_state_dict_sorts_every_key():
    model_state = {
        "a.weight": torch.zeros(2, 3),
        "b.weight": torch.zeros(4),
        "c.weight": torch.zeros(1),
        "bn.num_batches_tracked": torch.zeros((), dtype=torch.long),
    }
    checkpoint = {
        "a.weight": torch.ones(2, 3),
        "b.weight": torch.ones(5),
        "d.weight": torch.ones(1),
    }
    report = match_state_dict(model_state, checkpoint, source="ckpt.pth")
    assert report == LoadReport(
        source="ckpt.pth",
        loaded=["a.weight"],
        missing=["c.weight"],
        unexpected=["d.weight"],
        shape_mismatched=report.shape_mismatched,
        defaulted=["bn.num_batches_tracked"],
    )
    assert [(m.key, m.checkpoint_shape, m.model_shape) for m in report.shape_mismatched] == [
        ("b.weight", (5,), (4,))
    ]


def test_weights_without_a_local_file_need_a_path():
    with pytest.raises(CheckpointError, match="download.pytorch.org"):
        build_pretrained_2d("resnet18_imagenet")
    with pytest.raises(CheckpointError, match="no checkpoint given"):
        load_pretrained_2d(_tiny_net())


def test_build_pretrained_with_other_class_count_keeps_a_fresh_classifier(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "resnet18.pth"
    torch.save(resnet18().state_dict(), path)
    model, report = build_pretrained_2d("resnet18_imagenet", path, num_classes=40)
    assert model.fc.out_features == 40
    assert {m.key for m in report.shape_mismatched} == {"fc.weight", "fc.bias"}
    assert report.missing == [] and report.unexpected == []


# ---------------------------------------------------------------- registry and descriptors


def test_registry_lists_and_builds_models():
    names = list_models_2d()
    assert names == sorted(names)
    assert {"resnet18", "resnet50", "cifar_resnet20", "vgg_small", "vgg11_bn"} <= set(names)
    model = create_model_2d("cifar_resnet20", num_classes=3)
    assert model.linear.out_features == 3


def test_unknown_model_lists_the_available_names():
    with pytest.raises(ConfigError, match="unknown 2D model 'resnet19'.*resnet18"):
        create_model_2d("resnet19")


def test_unknown_model_argument_is_a_config_error():
    with pytest.raises(ConfigError, match="'resnet18'.*num_clases"):
        create_model_2d("resnet18", num_clases=10)


def test_registering_a_name_twice_is_refused():
    def resnet18() -> nn.Module:
        return nn.Identity()

    with pytest.raises(ValueError, match="registered twice"):
        register_model_2d(resnet18)


def test_unknown_weights_list_the_known_ones():
    with pytest.raises(ConfigError, match="known:.*cifar_resnet20_cifar10"):
        get_known_weights("resnet18_laion")


def test_every_descriptor_names_a_registered_architecture():
    assert {"resnet18_imagenet", "resnet50_imagenet", "resnet50_fractaldb1k"} <= set(KNOWN_WEIGHTS)
    for name, weights in KNOWN_WEIGHTS.items():
        assert weights.name == name
        assert weights.architecture in list_models_2d()
        assert weights.source
        with torch.device("meta"):
            model = create_model_2d(weights.architecture, num_classes=weights.num_classes)
        assert model.num_classes == weights.num_classes


def test_registering_weights_twice_is_refused():
    with pytest.raises(ValueError, match="registered twice"):
        register_known_weights(get_known_weights("resnet18_imagenet"))


def test_descriptor_key_map_renames_unless_the_caller_passes_one():
    model = cifar_resnet(20)
    renamed = {f"old_{key}": value.clone() for key, value in model.state_dict().items()}
    weights = dataclasses.replace(
        get_known_weights("cifar_resnet20_cifar10"),
        key_prefix="",
        state_dict_key=None,
        key_map=lambda key: key.removeprefix("old_"),
    )
    report = load_pretrained_2d(cifar_resnet(20), renamed, weights)
    assert report.missing == [] and report.unexpected == []
    with pytest.raises(CheckpointError, match="no checkpoint key matches"):
        load_pretrained_2d(cifar_resnet(20), renamed, weights, key_map=lambda key: key)
