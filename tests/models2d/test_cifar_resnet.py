"""CIFAR ResNets: option-A shortcut, the shared checkpoints' layout, and the reference forward."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from family_checks import state_batch_norm

from image2point.models2d import CifarResNet, ShortcutA, create_model_2d
from image2point.models2d.cifar_resnet import (
    CifarBasicBlock,
    blocks_per_stage_for_depth,
    cifar_resnet,
)

SHARED_WEIGHTS = Path(__file__).resolve().parents[2] / ".." / "shared" / "weights"
CHECKPOINTS = {
    20: "resnet20-12fca82f.th",
    32: "resnet32-d509ac18.th",
    44: "resnet44-014dd654.th",
    56: "resnet56-4bfd9763.th",
}


def _shared_state_dict(depth: int) -> dict[str, torch.Tensor]:
    path = SHARED_WEIGHTS / CHECKPOINTS[depth]
    if not path.is_file():
        pytest.skip(f"shared CIFAR-10 checkpoint {path} is not available")
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    return {k.removeprefix("module."): v for k, v in checkpoint["state_dict"].items()}


def _reference_cifar_forward(state: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """akamaster/pytorch_resnet_cifar10's eval forward, in functional ops on a state dict."""

    bn = partial(state_batch_norm, state)

    out = F.relu(bn("bn1", F.conv2d(x, state["conv1.weight"], padding=1)))
    for stage in (1, 2, 3):
        index = 0
        while f"layer{stage}.{index}.conv1.weight" in state:
            prefix = f"layer{stage}.{index}"
            weight1 = state[f"{prefix}.conv1.weight"]
            stride = 2 if stage > 1 and index == 0 else 1
            shortcut = out
            if stride != 1 or weight1.shape[0] != weight1.shape[1]:
                planes = weight1.shape[0]
                # The original lambda: F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, planes//4, planes//4)).
                shortcut = F.pad(out[:, :, ::2, ::2], (0, 0, 0, 0, planes // 4, planes // 4))
            branch = F.relu(bn(f"{prefix}.bn1", F.conv2d(out, weight1, stride=stride, padding=1)))
            weight2 = state[f"{prefix}.conv2.weight"]
            branch = bn(f"{prefix}.bn2", F.conv2d(branch, weight2, padding=1))
            out = F.relu(branch + shortcut)
            index += 1
    out = F.avg_pool2d(out, out.shape[3]).flatten(1)
    return F.linear(out, state["linear.weight"], state["linear.bias"])


def test_shortcut_a_subsamples_and_zero_pads_channels():
    shortcut = ShortcutA(stride=2, in_channels=16, out_channels=32)
    x = torch.randn(2, 16, 8, 8)
    out = shortcut(x)
    assert out.shape == (2, 32, 4, 4)
    torch.testing.assert_close(out[:, 8:24], x[:, :, ::2, ::2])
    assert torch.all(out[:, :8] == 0) and torch.all(out[:, 24:] == 0)
    assert list(shortcut.parameters()) == [] and shortcut.state_dict() == {}


def test_shortcut_a_pads_odd_channel_differences_and_rejects_shrinking():
    out = ShortcutA(stride=1, in_channels=3, out_channels=8)(torch.ones(1, 3, 5, 5))
    assert out.shape == (1, 8, 5, 5)
    assert out.sum(dim=(0, 2, 3)).tolist() == [0, 0, 25, 25, 25, 0, 0, 0]
    with pytest.raises(ValueError, match="only add channels"):
        ShortcutA(stride=1, in_channels=8, out_channels=4)


def test_blocks_get_a_shortcut_only_where_the_shape_changes():
    model = cifar_resnet(20)
    shortcuts = {
        name: block.shortcut
        for name, block in model.named_modules()
        if isinstance(block, CifarBasicBlock)
    }
    with_shortcut = sorted(name for name, s in shortcuts.items() if s is not None)
    assert with_shortcut == ["layer2.0", "layer3.0"]
    assert isinstance(shortcuts["layer2.0"], ShortcutA)
    assert (shortcuts["layer3.0"].in_channels, shortcuts["layer3.0"].out_channels) == (32, 64)


@pytest.mark.parametrize("depth,blocks", [(20, 3), (32, 5), (44, 7), (56, 9), (110, 18)])
def test_depth_to_blocks_per_stage(depth, blocks):
    assert blocks_per_stage_for_depth(depth) == blocks


@pytest.mark.parametrize("depth", [21, 2, 0])
def test_depth_must_be_six_n_plus_two(depth):
    with pytest.raises(ValueError, match="6n \\+ 2"):
        blocks_per_stage_for_depth(depth)


@pytest.mark.parametrize("depth", sorted(CHECKPOINTS))
def test_model_keys_and_shapes_equal_the_shared_checkpoint(depth):
    state = _shared_state_dict(depth)
    model = create_model_2d(f"cifar_resnet{depth}")
    model_shapes = {
        k: tuple(v.shape)
        for k, v in model.state_dict().items()
        if not k.endswith("num_batches_tracked")
    }
    assert model_shapes == {k: tuple(v.shape) for k, v in state.items()}
    # Same parameter count as the checkpoint: every weight/bias there is a parameter here.
    checkpoint_params = sum(v.numel() for k, v in state.items() if k.endswith(("weight", "bias")))
    assert sum(p.numel() for p in model.parameters()) == checkpoint_params


def test_forward_equals_reference_implementation_on_shared_weights():
    state = _shared_state_dict(20)
    model = cifar_resnet(20)
    model.load_state_dict(state, strict=True)
    model.eval()
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = _reference_cifar_forward(state, x)
        torch.testing.assert_close(model(x), expected, rtol=1e-4, atol=1e-5)


def test_forward_shapes_and_head_split():
    model = CifarResNet(blocks_per_stage=1, num_classes=5, in_channels=4).eval()
    x = torch.randn(2, 4, 32, 32)
    with torch.no_grad():
        features = model.forward_features(x)
        logits = model(x)
    assert features.shape == (2, 64, 8, 8)
    assert model.num_features == 64
    assert logits.shape == (2, 5)
    torch.testing.assert_close(model.forward_head(features), logits)
    assert model.classifier_name == "linear"
