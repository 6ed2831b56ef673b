"""VGG nets: torchvision's features.N / classifier.N layout, counts, and the small variant."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from image2point.models2d import VGG, VGGConfig, create_model_2d
from image2point.models2d.vgg import vgg11_bn, vgg_small

# torchvision's published parameter counts (1000 classes).
TORCHVISION_PARAMETER_COUNTS = {
    "vgg11_bn": 132_868_840,
    "vgg13_bn": 133_053_736,
    "vgg16_bn": 138_365_992,
    "vgg19_bn": 143_678_248,
}
# torchvision vgg11_bn: conv-BN-ReLU triples, "M" pools after stages of 1, 1, 2, 2, 2 convs.
VGG11_CONV_INDICES_AND_SHAPES = {
    0: [64, 3, 3, 3],
    4: [128, 64, 3, 3],
    8: [256, 128, 3, 3],
    11: [256, 256, 3, 3],
    15: [512, 256, 3, 3],
    18: [512, 512, 3, 3],
    22: [512, 512, 3, 3],
    25: [512, 512, 3, 3],
}
VGG11_POOL_INDICES = [3, 7, 14, 21, 28]
VGG11_CLASSIFIER_SHAPES = {0: [4096, 25088], 3: [4096, 4096], 6: [1000, 4096]}


def test_vgg11_bn_has_torchvision_layout():
    with torch.device("meta"):
        model = vgg11_bn()
    features = model.features
    assert len(features) == 29
    for index, shape in VGG11_CONV_INDICES_AND_SHAPES.items():
        assert isinstance(features[index], nn.Conv2d)
        assert list(features[index].weight.shape) == shape
        assert features[index].bias is not None
        assert isinstance(features[index + 1], nn.BatchNorm2d)
        assert isinstance(features[index + 2], nn.ReLU)
    assert [i for i, m in enumerate(features) if isinstance(m, nn.MaxPool2d)] == VGG11_POOL_INDICES
    state = model.state_dict()
    for index, shape in VGG11_CLASSIFIER_SHAPES.items():
        assert list(state[f"classifier.{index}.weight"].shape) == shape
    assert "features.26.running_var" in state
    assert {k.split(".")[0] for k in state} == {"features", "classifier"}


@pytest.mark.parametrize("name", sorted(TORCHVISION_PARAMETER_COUNTS))
def test_parameter_counts_equal_torchvision(name):
    with torch.device("meta"):
        model = create_model_2d(name)
    assert sum(p.numel() for p in model.parameters()) == TORCHVISION_PARAMETER_COUNTS[name]


def test_vgg_small_forward_and_head_split():
    torch.manual_seed(0)
    model = vgg_small(num_classes=10).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        features = model.forward_features(x)
        logits = model(x)
    # Three pools between four stages: 32 -> 4.
    assert features.shape == (2, 256, 4, 4)
    assert model.num_features == 256
    assert logits.shape == (2, 10)
    torch.testing.assert_close(model.forward_head(features), logits)
    torch.testing.assert_close(logits, model.classifier[0](features.mean(dim=(2, 3))))


def test_vgg_small_convs_have_no_bias_before_batch_norm():
    convs = [m for m in vgg_small().modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 8
    assert all(conv.bias is None for conv in convs)


def test_custom_config_builds_the_requested_stages():
    config = VGGConfig(
        stage_widths=((8,), (16, 16)),
        pool_after_last_stage=False,
        conv_bias=False,
        pooled_size=2,
        hidden_features=None,
        dropout=0.0,
    )
    model = VGG(config, num_classes=3, in_channels=1).eval()
    kinds = [type(m).__name__ for m in model.features]
    assert kinds == [
        "Conv2d",
        "BatchNorm2d",
        "ReLU",
        "MaxPool2d",
        "Conv2d",
        "BatchNorm2d",
        "ReLU",
        "Conv2d",
        "BatchNorm2d",
        "ReLU",
    ]
    assert list(model.classifier[0].weight.shape) == [3, 16 * 2 * 2]
    with torch.no_grad():
        assert model(torch.randn(1, 1, 12, 12)).shape == (1, 3)


def test_empty_stage_is_rejected():
    config = VGGConfig(((8,), ()), False, False, 1, None, 0.0)
    with pytest.raises(ValueError, match="at least one conv"):
        VGG(config)


def test_torchvision_initialisation():
    torch.manual_seed(1)
    model = vgg_small()
    for module in model.modules():
        if isinstance(module, nn.Linear):
            assert module.weight.std().item() == pytest.approx(0.01, rel=0.1)
            assert torch.all(module.bias == 0)
        elif isinstance(module, nn.BatchNorm2d):
            assert torch.all(module.weight == 1) and torch.all(module.bias == 0)
