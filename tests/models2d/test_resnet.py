"""ImageNet ResNets: torchvision's exact state-dict layout, parameter counts, init and numerics."""

from __future__ import annotations

from functools import partial

import pytest
import torch
import torch.nn.functional as F
from family_checks import state_batch_norm

from image2point.models2d import create_model_2d
from image2point.models2d.resnet import BasicBlock, ResNet, resnet18, resnet50

BN_SUFFIXES = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def _bn(prefix: str, channels: int) -> list[tuple[str, list[int]]]:
    return [
        (f"{prefix}.{suffix}", [] if suffix == "num_batches_tracked" else [channels])
        for suffix in BN_SUFFIXES
    ]


def _basic_block(prefix: str, in_ch: int, out_ch: int, downsample: bool = False):
    keys = [(f"{prefix}.conv1.weight", [out_ch, in_ch, 3, 3]), *_bn(f"{prefix}.bn1", out_ch)]
    keys += [(f"{prefix}.conv2.weight", [out_ch, out_ch, 3, 3]), *_bn(f"{prefix}.bn2", out_ch)]
    if downsample:
        keys += [(f"{prefix}.downsample.0.weight", [out_ch, in_ch, 1, 1])]
        keys += _bn(f"{prefix}.downsample.1", out_ch)
    return keys


# torchvision.models.resnet18().state_dict(), in order, written out from torchvision's layout.
TORCHVISION_RESNET18 = [
    ("conv1.weight", [64, 3, 7, 7]),
    *_bn("bn1", 64),
    *_basic_block("layer1.0", 64, 64),
    *_basic_block("layer1.1", 64, 64),
    *_basic_block("layer2.0", 64, 128, downsample=True),
    *_basic_block("layer2.1", 128, 128),
    *_basic_block("layer3.0", 128, 256, downsample=True),
    *_basic_block("layer3.1", 256, 256),
    *_basic_block("layer4.0", 256, 512, downsample=True),
    *_basic_block("layer4.1", 512, 512),
    ("fc.weight", [1000, 512]),
    ("fc.bias", [1000]),
]

# torchvision's published parameter counts (1000 classes).
TORCHVISION_PARAMETER_COUNTS = {
    "resnet18": 11_689_512,
    "resnet34": 21_797_672,
    "resnet50": 25_557_032,
    "resnet101": 44_549_160,
    "resnet152": 60_192_808,
}
# torchvision's state-dict sizes, counting BatchNorm's num_batches_tracked.
TORCHVISION_STATE_DICT_LENGTHS = {"resnet18": 122, "resnet50": 320}


def _randomise_bn_statistics(model: torch.nn.Module, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            n = module.num_features
            module.running_mean.copy_(torch.randn(n, generator=generator) * 0.1)
            module.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
            module.weight.data.copy_(torch.rand(n, generator=generator) + 0.5)
            module.bias.data.copy_(torch.randn(n, generator=generator) * 0.1)


def _reference_resnet_forward(state: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """torchvision's ResNet forward in eval mode, written with functional ops on a state dict."""

    bn = partial(state_batch_norm, state)

    def block(prefix: str, t: torch.Tensor, stride: int) -> torch.Tensor:
        bottleneck = f"{prefix}.conv3.weight" in state
        identity = t
        if f"{prefix}.downsample.0.weight" in state:
            identity = bn(
                f"{prefix}.downsample.1",
                F.conv2d(t, state[f"{prefix}.downsample.0.weight"], stride=stride),
            )
        if bottleneck:
            out = F.relu(bn(f"{prefix}.bn1", F.conv2d(t, state[f"{prefix}.conv1.weight"])))
            out = F.relu(
                bn(
                    f"{prefix}.bn2",
                    F.conv2d(out, state[f"{prefix}.conv2.weight"], stride=stride, padding=1),
                )
            )
            out = bn(f"{prefix}.bn3", F.conv2d(out, state[f"{prefix}.conv3.weight"]))
        else:
            out = F.relu(
                bn(
                    f"{prefix}.bn1",
                    F.conv2d(t, state[f"{prefix}.conv1.weight"], stride=stride, padding=1),
                )
            )
            out = bn(f"{prefix}.bn2", F.conv2d(out, state[f"{prefix}.conv2.weight"], padding=1))
        return F.relu(out + identity)

    t = F.relu(bn("bn1", F.conv2d(x, state["conv1.weight"], stride=2, padding=3)))
    t = F.max_pool2d(t, kernel_size=3, stride=2, padding=1)
    for stage in range(1, 5):
        index = 0
        while f"layer{stage}.{index}.conv1.weight" in state:
            stride = 2 if stage > 1 and index == 0 else 1
            t = block(f"layer{stage}.{index}", t, stride)
            index += 1
    return F.linear(t.mean(dim=(2, 3)), state["fc.weight"], state["fc.bias"])


def test_resnet18_state_dict_equals_torchvision_layout():
    state = resnet18().state_dict()
    assert len(TORCHVISION_RESNET18) == TORCHVISION_STATE_DICT_LENGTHS["resnet18"]
    assert [(k, list(v.shape)) for k, v in state.items()] == TORCHVISION_RESNET18
    assert list(state["layer4.1.conv2.weight"].shape) == [512, 512, 3, 3]
    assert list(state["layer2.0.downsample.0.weight"].shape) == [128, 64, 1, 1]
    assert list(state["fc.weight"].shape) == [1000, 512]


def test_resnet50_bottleneck_layout_matches_torchvision():
    with torch.device("meta"):
        state = resnet50().state_dict()
    assert len(state) == TORCHVISION_STATE_DICT_LENGTHS["resnet50"]
    # V1.5: the stride sits on the 3x3 conv; the 1x1 convs reduce to 64 and expand to 256.
    assert list(state["layer1.0.conv1.weight"].shape) == [64, 64, 1, 1]
    assert list(state["layer1.0.conv3.weight"].shape) == [256, 64, 1, 1]
    assert list(state["layer1.0.downsample.0.weight"].shape) == [256, 64, 1, 1]
    assert list(state["layer3.5.bn3.running_var"].shape) == [1024]
    assert list(state["layer4.2.conv2.weight"].shape) == [512, 512, 3, 3]
    assert list(state["fc.weight"].shape) == [1000, 2048]
    assert "layer3.6.conv1.weight" not in state


@pytest.mark.parametrize("name", sorted(TORCHVISION_PARAMETER_COUNTS))
def test_parameter_counts_equal_torchvision(name):
    with torch.device("meta"):
        model = create_model_2d(name)
    assert sum(p.numel() for p in model.parameters()) == TORCHVISION_PARAMETER_COUNTS[name]


def test_forward_shapes_and_head_split():
    torch.manual_seed(0)
    model = resnet18(num_classes=10).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        features = model.forward_features(x)
        logits = model(x)
    assert features.shape == (2, 512, 2, 2)
    assert model.num_features == 512
    assert logits.shape == (2, 10)
    torch.testing.assert_close(model.forward_head(features), logits)


def test_resnet50_forward_shape():
    model = resnet50().eval()
    with torch.no_grad():
        features = model.forward_features(torch.randn(1, 3, 64, 64))
    assert features.shape == (1, 2048, 2, 2)
    assert model.forward_head(features).shape == (1, 1000)


@pytest.mark.parametrize("builder", [resnet18, resnet50])
def test_eval_forward_matches_functional_reference(builder):
    torch.manual_seed(1)
    model = builder(num_classes=7)
    _randomise_bn_statistics(model, seed=2)
    model.eval()
    x = torch.randn(2, 3, 48, 48)
    with torch.no_grad():
        expected = _reference_resnet_forward(model.state_dict(), x)
        torch.testing.assert_close(model(x), expected, rtol=1e-4, atol=1e-5)


def test_in_channels_changes_only_the_stem():
    model = resnet18(in_channels=1, num_classes=4).eval()
    assert list(model.conv1.weight.shape) == [64, 1, 7, 7]
    assert list(model.layer1[0].conv1.weight.shape) == [64, 64, 3, 3]
    with torch.no_grad():
        assert model(torch.randn(1, 1, 32, 32)).shape == (1, 4)


def test_torchvision_initialisation():
    torch.manual_seed(3)
    model = resnet18()
    weight = model.layer4[1].conv2.weight
    fan_out = weight.shape[0] * weight.shape[2] * weight.shape[3]
    assert weight.std().item() == pytest.approx((2.0 / fan_out) ** 0.5, rel=0.05)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            assert torch.all(module.weight == 1) and torch.all(module.bias == 0)


def test_zero_init_residual_makes_plain_blocks_identity():
    model = resnet18(zero_init_residual=True).eval()
    block = model.layer2[1]
    assert isinstance(block, BasicBlock) and block.downsample is None
    x = torch.rand(1, 128, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(block(x.clone()), x)


def test_wrong_number_of_stages_is_rejected():
    with pytest.raises(ValueError, match="4 stage depths"):
        ResNet(BasicBlock, (2, 2, 2))
