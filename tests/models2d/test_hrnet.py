"""HRNetV2-W18/W48: the official checkpoints' key names and shapes, parameter counts, exchange units."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from image2point.models2d import create_model_2d, list_models_2d, load_pretrained_2d
from image2point.models2d.hrnet import (
    HRNET_W48_CITYSCAPES,
    HighResolutionModule,
    HRNetStage,
    hrnet_w18,
    hrnet_w48,
    hrnetv2_config,
)

CITYSCAPES_CLASSES = 19
BN_SUFFIXES = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")

# Keys and shapes of HighResolutionNet (HRNet-Semantic-Segmentation, lib/models/seg_hrnet.py) built
# from experiments/cityscapes/seg_hrnet_w48_train_512x1024_sgd_lr1e-2_wd5e-4_bs_12_epoch484.yaml:
# branches of 48, 96, 192, 384 channels; 1, 4, 3 modules in stages 2, 3, 4; 19 classes.
OFFICIAL_W48_SAMPLE = {
    "conv1.weight": [64, 3, 3, 3],
    "bn1.running_var": [64],
    "conv2.weight": [64, 64, 3, 3],
    "bn2.weight": [64],
    "layer1.0.conv1.weight": [64, 64, 1, 1],
    "layer1.0.conv3.weight": [256, 64, 1, 1],
    "layer1.0.downsample.0.weight": [256, 64, 1, 1],
    "layer1.0.downsample.1.running_mean": [256],
    "layer1.3.conv2.weight": [64, 64, 3, 3],
    "transition1.0.0.weight": [48, 256, 3, 3],
    "transition1.0.1.bias": [48],
    "transition1.1.0.0.weight": [96, 256, 3, 3],
    "transition1.1.0.1.running_var": [96],
    "stage2.0.branches.0.0.conv1.weight": [48, 48, 3, 3],
    "stage2.0.branches.1.3.bn2.bias": [96],
    "stage2.0.fuse_layers.0.1.0.weight": [48, 96, 1, 1],
    "stage2.0.fuse_layers.0.1.1.weight": [48],
    "stage2.0.fuse_layers.1.0.0.0.weight": [96, 48, 3, 3],
    "transition2.2.0.0.weight": [192, 96, 3, 3],
    "stage3.3.branches.2.3.conv2.weight": [192, 192, 3, 3],
    "stage3.3.fuse_layers.0.2.0.weight": [48, 192, 1, 1],
    "stage3.3.fuse_layers.2.0.0.0.weight": [48, 48, 3, 3],
    "stage3.3.fuse_layers.2.0.1.0.weight": [192, 48, 3, 3],
    "stage3.3.fuse_layers.2.1.0.0.weight": [192, 96, 3, 3],
    "transition3.3.0.0.weight": [384, 192, 3, 3],
    "stage4.2.branches.3.3.bn2.running_mean": [384],
    "stage4.2.fuse_layers.0.3.0.weight": [48, 384, 1, 1],
    "stage4.2.fuse_layers.3.0.0.0.weight": [48, 48, 3, 3],
    "stage4.2.fuse_layers.3.0.1.1.weight": [48],
    "stage4.2.fuse_layers.3.0.2.0.weight": [384, 48, 3, 3],
    "stage4.2.fuse_layers.3.2.0.0.weight": [384, 192, 3, 3],
    "last_layer.0.weight": [720, 720, 1, 1],
    "last_layer.0.bias": [720],
    "last_layer.1.running_mean": [720],
    "last_layer.3.weight": [19, 720, 1, 1],
    "last_layer.3.bias": [19],
}
# Official entries that are None (pass-through) or parameter-free, hence not in the state dict.
ABSENT_PREFIXES = (
    "transition2.0.",
    "transition2.1.",
    "transition3.2.",
    "stage2.0.fuse_layers.0.0.",
    "stage4.2.fuse_layers.3.3.",
    "last_layer.2.",
    "stage3.4.",
    "stage4.3.",
)
TOP_LEVEL_MODULES = {
    "conv1", "bn1", "conv2", "bn2", "layer1", "transition1", "stage2",
    "transition2", "stage3", "transition3", "stage4", "last_layer",
}
# The HRNet-Semantic-Segmentation README lists HRNetV2-W48 (Cityscapes) with 65.9M parameters.
README_W48_MILLIONS = 65.9
EXACT_PARAMETERS = {"hrnet_w18": 9_641_119, "hrnet_w48": 65_859_379}


def _conv(cin: int, cout: int, kernel: int) -> int:
    return cin * cout * kernel * kernel


def _bn(channels: int) -> int:
    return 2 * channels


def _basic(channels: int) -> int:
    return 2 * (_conv(channels, channels, 3) + _bn(channels))


def _bottleneck(cin: int, width: int) -> int:
    out = 4 * width
    shortcut = _conv(cin, out, 1) + _bn(out) if cin != out else 0
    return (_conv(cin, width, 1) + _bn(width) + _conv(width, width, 3) + _bn(width)
            + _conv(width, out, 1) + _bn(out) + shortcut)


def hand_count(width: int, num_classes: int) -> int:
    """HRNetV2-W<width> parameters counted from the paper's description, layer by layer."""
    widths = [width, 2 * width, 4 * width, 8 * width]
    total = _conv(3, 64, 3) + _bn(64) + _conv(64, 64, 3) + _bn(64)
    total += _bottleneck(64, 64) + 3 * _bottleneck(256, 64)
    previous = [256]
    for branches, modules in ((2, 1), (3, 4), (4, 3)):
        current = widths[:branches]
        # transition: re-width the first branch after layer1, add one downsampled branch
        if previous[0] != current[0]:
            total += _conv(previous[0], current[0], 3) + _bn(current[0])
        total += _conv(previous[-1], current[-1], 3) + _bn(current[-1])
        blocks = sum(4 * _basic(c) for c in current)
        fuse = 0
        for target in range(branches):
            for source in range(branches):
                if source > target:
                    fuse += _conv(current[source], current[target], 1) + _bn(current[target])
                elif source < target:
                    steps = target - source
                    fuse += (steps - 1) * (_conv(current[source], current[source], 3) + _bn(current[source]))
                    fuse += _conv(current[source], current[target], 3) + _bn(current[target])
        total += modules * (blocks + fuse)
        previous = current
    features = sum(widths)
    total += features * features + features + _bn(features)
    return total + features * num_classes + num_classes


@pytest.fixture(scope="module")
def w48():
    return hrnet_w48()


@pytest.fixture(scope="module")
def w18():
    return hrnet_w18().eval()


def test_official_config_widths():
    w48_config = hrnetv2_config(48)
    assert [stage.widths for stage in w48_config.stages] == [(48, 96), (48, 96, 192), (48, 96, 192, 384)]
    assert [stage.num_modules for stage in w48_config.stages] == [1, 4, 3]
    assert all(set(stage.num_blocks) == {4} for stage in w48_config.stages)
    assert hrnetv2_config(18).stage4.widths == (18, 36, 72, 144)
    assert hrnetv2_config(18).num_features == 270 and w48_config.num_features == 720


def test_w48_keys_and_shapes_equal_the_official_checkpoint(w48):
    state = w48.state_dict()
    for key, shape in OFFICIAL_W48_SAMPLE.items():
        assert key in state, key
        assert list(state[key].shape) == shape, key
    assert {key.split(".", 1)[0] for key in state} == TOP_LEVEL_MODULES
    for prefix in ABSENT_PREFIXES:
        assert not any(key.startswith(prefix) for key in state), prefix
    # Every BatchNorm has exactly the five entries a torch>=0.4.1 checkpoint stores.
    bn_prefixes = {key.rsplit(".", 1)[0] for key in state if key.endswith("running_mean")}
    for prefix in bn_prefixes:
        assert all(f"{prefix}.{suffix}" in state for suffix in BN_SUFFIXES)


def test_w18_keys_mirror_w48_with_its_widths(w18, w48):
    assert list(w18.state_dict()) == list(w48.state_dict())
    state = w18.state_dict()
    assert list(state["transition1.1.0.0.weight"].shape) == [36, 256, 3, 3]
    assert list(state["stage4.2.fuse_layers.3.0.2.0.weight"].shape) == [144, 18, 3, 3]
    assert list(state["last_layer.0.weight"].shape) == [270, 270, 1, 1]


@pytest.mark.parametrize("name,width", [("hrnet_w18", 18), ("hrnet_w48", 48)])
def test_parameter_counts(name, width, w18, w48):
    model = {"hrnet_w18": w18, "hrnet_w48": w48}[name]
    count = sum(p.numel() for p in model.parameters())
    assert count == hand_count(width, CITYSCAPES_CLASSES) == EXACT_PARAMETERS[name]
    if name == "hrnet_w48":
        assert round(count / 1e6, 1) == README_W48_MILLIONS


def test_registered_with_the_2d_registry():
    assert {"hrnet_w18", "hrnet_w48"} <= set(list_models_2d())
    model = create_model_2d("hrnet_w18", num_classes=5, in_channels=4)
    assert model.conv1.in_channels == 4 and model.last_layer[3].out_channels == 5


@pytest.mark.parametrize("size,expected", [((32, 64), (8, 16)), ((30, 50), (8, 13))])
def test_w18_output_shapes_are_a_quarter_of_the_input(w18, size, expected):
    x = torch.randn(2, 3, *size)
    with torch.no_grad():
        features = w18.forward_features(x)
        logits = w18(x)
    assert features.shape == (2, 270, *expected)
    assert logits.shape == (2, CITYSCAPES_CLASSES, *expected)
    assert torch.equal(logits, w18.forward_head(features))


def test_w48_output_shapes(w48):
    w48.eval()
    with torch.no_grad():
        features = w48.forward_features(torch.randn(1, 3, 32, 32))
    assert features.shape == (1, 720, 8, 8)
    assert w48.forward_head(features).shape == (1, CITYSCAPES_CLASSES, 8, 8)


def test_branches_halve_the_resolution(w18):
    with torch.no_grad():
        branches = w18.forward_branches(torch.randn(1, 3, 64, 128))
    assert [tuple(b.shape[1:]) for b in branches] == [(18, 16, 32), (36, 8, 16), (72, 4, 8), (144, 2, 4)]


def test_exchange_unit_sums_every_branch_into_every_other():
    torch.manual_seed(0)
    module = HighResolutionModule((4, 8), HRNetStage(1, (1, 1), (4, 8)), align_corners=False).eval()
    for parameter in module.parameters():
        parameter.data.normal_()
    high, low = torch.randn(1, 4, 8, 8), torch.randn(1, 8, 4, 4)
    with torch.no_grad():
        out_high, out_low = module([high, low])
        b_high, b_low = module.branches[0](high), module.branches[1](low)
        up = F.interpolate(module.fuse_layers[0][1](b_low), size=(8, 8), mode="bilinear", align_corners=False)
        expected_high = torch.relu(b_high + up)
        expected_low = torch.relu(module.fuse_layers[1][0](b_high) + b_low)
    torch.testing.assert_close(out_high, expected_high)
    torch.testing.assert_close(out_low, expected_low)


def test_official_initialisation():
    fresh = hrnet_w18()
    conv = fresh.stage3[0].branches[2][0].conv1.weight
    assert conv.std().item() == pytest.approx(0.001, rel=0.05)
    assert torch.all(fresh.last_layer[1].weight == 1) and torch.all(fresh.last_layer[0].bias == 0)


def test_reset_classifier_keeps_the_pretrained_fusion():
    model = hrnet_w18()
    fusion = model.last_layer[0].weight.clone()
    model.reset_classifier(7)
    assert model.last_layer[3].weight.shape == (7, 270, 1, 1) and model.num_classes == 7
    assert torch.equal(model.last_layer[0].weight, fusion)
    model.reset_classifier(0)
    assert not any(key.startswith("last_layer.3") for key in model.state_dict())
    with torch.no_grad():
        assert model.eval()(torch.randn(1, 3, 32, 32)).shape == (1, 270, 8, 8)
    with pytest.raises(ValueError):
        model.reset_classifier(-1)


def test_stage_config_is_validated():
    with pytest.raises(ValueError):
        HRNetStage(1, (4,), (18, 36))
    with pytest.raises(ValueError):
        HRNetStage(0, (4,), (18,))


def test_cityscapes_checkpoint_layout_loads_with_its_prefix(w48):
    assert HRNET_W48_CITYSCAPES.architecture == "hrnet_w48"
    source = {f"{HRNET_W48_CITYSCAPES.key_prefix}{key}": value + 1 if value.is_floating_point() else value
              for key, value in w48.state_dict().items()}
    target = hrnet_w48()
    report = load_pretrained_2d(target, source, HRNET_W48_CITYSCAPES)
    assert not report.missing and not report.unexpected and not report.shape_mismatched
    assert torch.equal(target.stage4[2].fuse_layers[3][0][0][0].weight,
                       w48.stage4[2].fuse_layers[3][0][0][0].weight + 1)
