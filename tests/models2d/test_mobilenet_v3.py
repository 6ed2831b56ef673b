"""MobileNetV3-Large/Small: torchvision's parameter counts, keys and shapes; fx tracing; layout."""

from __future__ import annotations

import pytest
import torch
from family_checks import assert_forward_fx_and_layout, assert_matches_torchvision, assert_sample_keys
from torch import nn

from image2point.models2d import create_model_2d, get_known_weights
from image2point.models2d.blocks import SqueezeExcitation
from image2point.models2d.mobilenet_v3 import LARGE_SETTING, mobilenet_v3_large, mobilenet_v3_small

# torchvision 0.28.0: MobileNet_V3_{Large,Small}_Weights.IMAGENET1K_V1.meta["num_params"], and the
# digests / sample keys of mobilenet_v3_{large,small}().state_dict() (family_checks.key_shape_digest).
TORCHVISION = {
    "mobilenet_v3_large": (5_483_032, 312, "a56c886e8c43a05bc5d890ac739760b29ec30518278f942ec60a27dfce99db8d"),
    "mobilenet_v3_small": (2_542_856, 244, "cb48f2feab283d8f4f5fafd08cd628c0b8530f7e4ea1bf9c1b0e15d137921d87"),
}
LARGE_SAMPLE = {
    "features.0.0.weight": [16, 3, 3, 3],
    "features.9.block.0.0.weight": [184, 80, 1, 1],
    "features.10.block.1.1.running_var": [184],
    "features.11.block.3.0.weight": [112, 480, 1, 1],
    "features.13.block.1.1.running_mean": [672],
    "features.13.block.2.fc1.bias": [168],
    "features.16.0.weight": [960, 160, 1, 1],
    "classifier.0.weight": [1280, 960],
    "classifier.3.bias": [1000],
}
SMALL_SAMPLE = {
    "features.1.block.1.fc1.weight": [8, 16, 1, 1],
    "features.4.block.2.fc2.weight": [96, 24, 1, 1],
    "features.7.block.1.0.weight": [120, 1, 5, 5],
    "features.11.block.3.1.num_batches_tracked": [],
    "features.12.0.weight": [576, 96, 1, 1],
    "classifier.0.weight": [1024, 576],
    "classifier.3.weight": [1000, 1024],
}


@pytest.mark.parametrize("name", sorted(TORCHVISION))
def test_parameters_and_keys_equal_torchvision(name):
    model = create_model_2d(name)
    assert_matches_torchvision(model, TORCHVISION[name])
    assert_sample_keys(model, LARGE_SAMPLE if name.endswith("large") else SMALL_SAMPLE)


@pytest.mark.parametrize("builder, width", [(mobilenet_v3_large, 960), (mobilenet_v3_small, 576)])
def test_forward_fx_and_layout(builder, width):
    assert_forward_fx_and_layout(builder(), (2, width, 2, 2))


def test_blocks_follow_the_table():
    model = mobilenet_v3_large()
    for config, block in zip(LARGE_SETTING, model.features[1:-1], strict=True):
        assert block.use_res_connect == (config.stride == 1 and config.in_channels == config.out_channels)
        has_se = any(isinstance(m, SqueezeExcitation) for m in block.modules())
        assert has_se == config.use_se
        assert any(isinstance(m, nn.Hardswish) for m in block.modules()) == config.hard_swish
    se = model.features[4].block[2]
    assert isinstance(se.scale_activation, nn.Hardsigmoid)
    assert model.features[0][1].eps == 1e-3 and model.features[0][1].momentum == 0.01


def test_width_mult_and_classes():
    model = create_model_2d("mobilenet_v3_small", num_classes=5, width_mult=0.75, in_channels=4).eval()
    assert model.features[0][0].in_channels == 4
    assert model(torch.randn(1, 4, 32, 32)).shape == (1, 5)


def test_torchvision_weights_descriptors():
    assert "mobilenet_v3_large-8738ca79.pth" in get_known_weights("mobilenet_v3_large_imagenet").source
    assert "mobilenet_v3_small-047dcff4.pth" in get_known_weights("mobilenet_v3_small_imagenet").source
