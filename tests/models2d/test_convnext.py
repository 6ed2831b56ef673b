"""ConvNeXt-T/S: torchvision's parameter counts, keys and shapes; layer scale; fx tracing; layout."""

from __future__ import annotations

import pytest
import torch
from family_checks import assert_forward_fx_and_layout, assert_matches_torchvision, assert_sample_keys

from image2point.models2d import create_model_2d, get_known_weights
from image2point.models2d.blocks import LayerNorm2d
from image2point.models2d.convnext import CNBlock, convnext_tiny

# torchvision 0.28.0: ConvNeXt_{Tiny,Small}_Weights.IMAGENET1K_V1.meta["num_params"], and the digests /
# sample keys of convnext_{tiny,small}().state_dict() (family_checks.key_shape_digest).
TORCHVISION = {
    "convnext_tiny": (28_589_128, 182, "923f285139243a723d89fef0d7192642bcb388fcdfecbac54824c3c8a51e8fc5"),
    "convnext_small": (50_223_688, 344, "5f3bc2c6bb725d842f2906a2b76cc6a9980fdcaf8688e7566790da749106d461"),
}
TINY_SAMPLE = {
    "features.0.0.weight": [96, 3, 4, 4],
    "features.0.1.bias": [96],
    "features.1.0.layer_scale": [96, 1, 1],
    "features.1.2.block.2.bias": [96],
    "features.2.1.weight": [192, 96, 2, 2],
    "features.3.0.block.2.weight": [192],
    "features.5.1.block.3.weight": [1536, 384],
    "features.5.7.block.5.bias": [384],
    "features.7.0.block.0.weight": [768, 1, 7, 7],
    "classifier.0.weight": [768],
    "classifier.2.bias": [1000],
}


@pytest.fixture(scope="module")
def model():
    return convnext_tiny().eval()


@pytest.mark.parametrize("name", sorted(TORCHVISION))
def test_parameters_and_keys_equal_torchvision(name):
    with torch.device("meta"):
        assert_matches_torchvision(create_model_2d(name), TORCHVISION[name])


def test_sample_keys_forward_fx_and_layout(model):
    assert_sample_keys(model, TINY_SAMPLE)
    assert_forward_fx_and_layout(model, (2, 768, 2, 2))
    assert len(model.backbone_layout().stages) == 7


def test_layer_scale_and_stochastic_depth_schedule(model):
    blocks = [m for m in model.modules() if isinstance(m, CNBlock)]
    assert len(blocks) == 18
    assert all(torch.all(b.layer_scale == 1e-6) for b in blocks)
    # torchvision: 0.1 * block_index / (18 - 1), so the last block drops with p = 0.1.
    assert [b.stochastic_depth.p for b in blocks] == [0.1 * i / 17.0 for i in range(18)]


def test_layer_norm_2d_normalises_channels():
    norm = LayerNorm2d(8, eps=1e-6)
    x = torch.randn(2, 8, 3, 5) * 4 + 2
    out = norm(x)
    torch.testing.assert_close(out.mean(1), torch.zeros(2, 3, 5), atol=1e-5, rtol=0)
    reference = torch.nn.functional.layer_norm(x.permute(0, 2, 3, 1), (8,), eps=1e-6).permute(0, 3, 1, 2)
    torch.testing.assert_close(out, reference)


def test_options_and_descriptor():
    model = create_model_2d("convnext_tiny", num_classes=3, in_channels=1, stochastic_depth_prob=0.0).eval()
    assert model(torch.randn(1, 1, 32, 32)).shape == (1, 3)
    assert "convnext_tiny-983f1562.pth" in get_known_weights("convnext_tiny_imagenet").source
