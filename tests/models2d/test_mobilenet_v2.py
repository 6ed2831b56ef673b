"""MobileNetV2: torchvision's parameter count, keys and shapes; fx tracing; backbone layout."""

from __future__ import annotations

import pytest
import torch
from family_checks import (
    assert_fx_traces,
    assert_layout_is_a_chain,
    assert_matches_torchvision,
    assert_sample_keys,
)

from image2point.models2d import create_model_2d, get_known_weights
from image2point.models2d.mobilenet_v2 import InvertedResidual, MobileNetV2, mobilenet_v2

# torchvision 0.28.0 MobileNet_V2_Weights.IMAGENET1K_V1.meta["num_params"]; the digest and sample
# keys come from torchvision's mobilenet_v2().state_dict() (see family_checks.key_shape_digest).
TORCHVISION = (3_504_872, 314, "a18c560d82f6d01d86ac3a49fdcaf1d06cc7979ce4e8c8c176d05b805eaf9ef9")
TORCHVISION_SAMPLE = {
    "features.0.0.weight": [32, 3, 3, 3],
    "features.1.conv.0.0.weight": [32, 1, 3, 3],
    "features.1.conv.1.weight": [16, 32, 1, 1],
    "features.2.conv.0.1.running_mean": [96],
    "features.8.conv.1.1.weight": [384],
    "features.12.conv.0.0.weight": [576, 96, 1, 1],
    "features.15.conv.1.1.running_var": [960],
    "features.18.0.weight": [1280, 320, 1, 1],
    "classifier.1.bias": [1000],
}


@pytest.fixture(scope="module")
def model() -> MobileNetV2:
    return mobilenet_v2().eval()


def test_parameters_and_keys_equal_torchvision(model):
    assert_matches_torchvision(model, TORCHVISION)
    assert_sample_keys(model, TORCHVISION_SAMPLE)


def test_forward_shapes_and_head_split(model):
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        features = model.forward_features(x)
        assert features.shape == (2, 1280, 2, 2)
        torch.testing.assert_close(model(x), model.forward_head(features))
    assert model(x).shape == (2, 1000)


def test_fx_trace_and_layout(model):
    x = torch.randn(1, 3, 64, 64)
    traced = assert_fx_traces(model, x)
    assert any(node.op == "call_module" and node.target == "features.17.conv.2" for node in traced.graph.nodes)
    assert_layout_is_a_chain(model, x)
    layout = model.backbone_layout()
    assert layout.stem == ("features.0",) and layout.stages[-1] == "features.18"


def test_residual_only_where_shapes_agree():
    assert InvertedResidual(16, 16, 1, 6).use_res_connect
    assert not InvertedResidual(16, 24, 1, 6).use_res_connect
    assert not InvertedResidual(16, 16, 2, 6).use_res_connect
    with pytest.raises(ValueError, match="stride"):
        InvertedResidual(16, 16, 3, 6)


def test_options_reach_the_model():
    model = create_model_2d("mobilenet_v2", num_classes=10, in_channels=1, width_mult=0.5, dropout=0.0)
    assert model.features[0][0].in_channels == 1
    assert model.features[0][0].out_channels == 16
    assert model.classifier[1].out_features == 10
    assert model.num_features == 1280  # the last width never shrinks below 1280
    assert model.eval()(torch.randn(1, 1, 32, 32)).shape == (1, 10)


def test_torchvision_weights_descriptor():
    weights = get_known_weights("mobilenet_v2_imagenet")
    assert weights.architecture == "mobilenet_v2" and weights.file is None
    assert "mobilenet_v2-b0353104.pth" in weights.source
