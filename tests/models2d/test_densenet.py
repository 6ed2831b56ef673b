"""DenseNet-121/169: torchvision's parameter counts, keys and shapes; legacy file keys; fx; layout."""

from __future__ import annotations

import pytest
import torch
from family_checks import assert_forward_fx_and_layout, assert_matches_torchvision, assert_sample_keys

from image2point.models2d import build_pretrained_2d, create_model_2d
from image2point.models2d.densenet import densenet121, legacy_densenet_key

# torchvision 0.28.0: DenseNet{121,169}_Weights.IMAGENET1K_V1.meta["num_params"], and the digests /
# sample keys of densenet{121,169}().state_dict() (family_checks.key_shape_digest).
TORCHVISION = {
    "densenet121": (7_978_856, 727, "08ed4bd1085586388dbe9237983ccd0d9ff5f52042e2c5c96d818eacd7071861"),
    "densenet169": (14_149_480, 1015, "aea1d65b180f4dd8b259fb02169239379ce9916e637bb75fcddc8b95dd44b85c"),
}
SAMPLE_121 = {
    "features.conv0.weight": [64, 3, 7, 7],
    "features.denseblock1.denselayer1.conv1.weight": [128, 64, 1, 1],
    "features.denseblock2.denselayer11.norm2.weight": [128],
    "features.transition2.conv.weight": [256, 512, 1, 1],
    "features.denseblock3.denselayer22.norm1.running_var": [928],
    "features.denseblock4.denselayer4.norm1.running_mean": [608],
    "features.denseblock4.denselayer16.conv2.weight": [32, 128, 3, 3],
    "features.norm5.weight": [1024],
    "classifier.bias": [1000],
}


@pytest.fixture(scope="module")
def model():
    return densenet121().eval()


@pytest.mark.parametrize("name", sorted(TORCHVISION))
def test_parameters_and_keys_equal_torchvision(name):
    with torch.device("meta"):
        assert_matches_torchvision(create_model_2d(name), TORCHVISION[name])


def test_sample_keys_forward_fx_and_layout(model):
    assert_sample_keys(model, SAMPLE_121)
    features = assert_forward_fx_and_layout(model, (2, 1024, 2, 2))
    assert features.min() >= 0  # the ReLU after norm5 is part of the features
    layout = model.backbone_layout()
    assert layout.stages[0] == "features.denseblock1" and layout.stages[-2:] == ("features.norm5", "final_relu")


def test_dense_block_concatenates_every_layer(model):
    block = model.features.denseblock1
    x = torch.randn(1, 64, 8, 8)
    with torch.no_grad():
        out = block(x)
    assert out.shape == (1, 64 + 6 * 32, 8, 8)
    torch.testing.assert_close(out[:, :64], x)


def test_legacy_file_keys_load_through_the_descriptor(model):
    # The released files spell "norm.1" for "norm1" and predate BatchNorm's batch counters.
    legacy = {}
    for key, value in model.state_dict().items():
        if key.endswith("num_batches_tracked"):
            continue
        old = key
        for name in ("norm", "relu", "conv"):
            for index in ("1", "2"):
                old = old.replace(f".{name}{index}.", f".{name}.{index}.")
        legacy[old] = value.clone()
    assert "features.denseblock1.denselayer1.norm.1.weight" in legacy
    assert legacy_densenet_key("features.denseblock1.denselayer1.norm.1.weight") == (
        "features.denseblock1.denselayer1.norm1.weight")
    assert legacy_densenet_key("features.transition1.norm.weight") == "features.transition1.norm.weight"
    loaded, report = build_pretrained_2d("densenet121_imagenet", legacy)
    assert report.missing == [] and report.unexpected == []
    assert len(report.loaded) == 727 - 121 and len(report.defaulted) == 121
    torch.testing.assert_close(loaded.state_dict(), model.state_dict())
