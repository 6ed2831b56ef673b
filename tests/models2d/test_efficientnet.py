"""EfficientNet-B0/B1: torchvision's parameter counts, keys and shapes; stochastic depth; fx; layout."""

from __future__ import annotations

import pytest
import torch
from family_checks import assert_forward_fx_and_layout, assert_matches_torchvision, assert_sample_keys

from image2point.models2d import create_model_2d, get_known_weights
from image2point.models2d.efficientnet import MBConv, efficientnet_b0

# torchvision 0.28.0: EfficientNet_B{0,1}_Weights.IMAGENET1K_V1.meta["num_params"], and the digests /
# sample keys of efficientnet_b{0,1}().state_dict() (family_checks.key_shape_digest).
TORCHVISION = {
    "efficientnet_b0": (5_288_548, 360, "9da4cc5e2bca07908a7e2983542c49c6fae67a46450d6b3687b03bb6887ee86f"),
    "efficientnet_b1": (7_794_184, 508, "d037a7897a24735ca7aa9c23c8363864098a27784782129746e14b4fb9a42dd0"),
}
B0_SAMPLE = {
    "features.0.0.weight": [32, 3, 3, 3],
    "features.1.0.block.1.fc1.weight": [8, 32, 1, 1],
    "features.2.1.block.0.1.num_batches_tracked": [],
    "features.3.0.block.1.0.weight": [144, 1, 5, 5],
    "features.4.0.block.3.1.running_mean": [80],
    "features.4.1.block.2.fc1.bias": [20],
    "features.6.3.block.1.1.running_mean": [1152],
    "features.8.0.weight": [1280, 320, 1, 1],
    "classifier.1.bias": [1000],
}


@pytest.fixture(scope="module")
def model():
    return efficientnet_b0().eval()


@pytest.mark.parametrize("name", sorted(TORCHVISION))
def test_parameters_and_keys_equal_torchvision(name):
    assert_matches_torchvision(create_model_2d(name), TORCHVISION[name])


def test_sample_keys_forward_fx_and_layout(model):
    assert_sample_keys(model, B0_SAMPLE)
    assert_forward_fx_and_layout(model, (2, 1280, 2, 2))
    assert model.backbone_layout().stages == tuple(f"features.{i}" for i in range(1, 9))


def test_stochastic_depth_rises_linearly_to_the_last_block(model):
    probs = [m.stochastic_depth.p for m in model.modules() if isinstance(m, MBConv)]
    assert len(probs) == 16
    # torchvision: 0.2 * block_index / 16.
    assert probs == [0.2 * i / 16 for i in range(16)]


def test_eval_is_deterministic_and_training_drops_branches(model):
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x), model(x), rtol=0, atol=0)
    block = model.features[6][3]
    block.train()
    torch.manual_seed(0)
    with torch.no_grad():
        inputs = torch.randn(64, 192, 2, 2)
        branch_dropped = [torch.equal(out, inp) for out, inp in zip(block(inputs), inputs, strict=True)]
    block.eval()
    # p = 0.2 * 15 / 16 for this block: a few of 64 samples keep only the identity.
    assert 0 < sum(branch_dropped) < 64


def test_options_and_descriptor():
    model = create_model_2d("efficientnet_b0", num_classes=7, in_channels=2, dropout=0.0,
                            stochastic_depth_prob=0.0).eval()
    assert model(torch.randn(1, 2, 32, 32)).shape == (1, 7)
    assert "efficientnet_b0_rwightman-7f5810bc.pth" in get_known_weights("efficientnet_b0_imagenet").source
    assert get_known_weights("efficientnet_b1_imagenet").input_size == 240
