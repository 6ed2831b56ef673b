"""ESPNetv2 in EdgeNets' layout: EESP units, downsamplers, and the shared Cityscapes encoder."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from family_checks import SHARED_WEIGHTS, TINY_IMAGENET, assert_fx_traces, num_parameters

from image2point.models2d import build_pretrained_2d, create_model_2d, read_state_dict
from image2point.models2d.espnetv2 import (
    EESP,
    ESPNETV2_S2_CITYSCAPES,
    DownSampler,
    branch_dilations,
    segmentation_base_net_key,
)

CHECKPOINT = SHARED_WEIGHTS / "espnetv2_s2.0_cityscapes.pth"
CHECKPOINT_TENSORS = 526
ENCODER_TENSORS = 361


def test_branch_dilations_follow_the_receptive_field_limits():
    # Kernels 3, 5, 7, 9 capped at the level's limit (13, 11, 9, 7, 5), as 3x3 dilations.
    assert branch_dilations(4, 13) == [1, 2, 3, 4]
    assert branch_dilations(4, 9) == [1, 2, 3, 4]
    assert branch_dilations(4, 7) == [1, 1, 2, 3]
    assert branch_dilations(4, 5) == [1, 1, 1, 2]


def test_eesp_unit_layout_and_residual():
    unit = EESP(64, 64, stride=1, branches=4, receptive_limit=7)
    assert list(unit.proj_1x1.conv.weight.shape) == [16, 16, 1, 1]  # grouped: 4 groups of 16 -> 4
    assert [b.conv.dilation[0] for b in unit.spp_dw] == [1, 1, 2, 3]
    assert unit.residual and not unit.in_downsampler
    with pytest.raises(ValueError, match="divisible"):
        EESP(64, 66, stride=1, branches=4, receptive_limit=7)


@pytest.mark.parametrize("size", [64, 100, 37])
def test_downsampler_pools_the_image_to_the_feature_resolution(size):
    down = DownSampler(32, 128, receptive_limit=13, image_pools=2, image_channels=3).eval()
    image = torch.randn(1, 3, size, size)
    features = torch.randn(1, 32, -(-size // 2), -(-size // 2))
    # EdgeNets pools the image until its width equals the feature map's after the 3x3/2 average pool.
    target = F.avg_pool2d(features, 3, 2, 1).shape[-1]
    pooled, pools = image, 0
    while pooled.shape[-1] != target:
        pooled, pools = F.avg_pool2d(pooled, 3, 2, 1), pools + 1
    assert pools == down.image_pools
    with torch.no_grad():
        assert down(features, image).shape == (1, 128, target, target)


def test_classification_network_shapes_and_fx():
    model = create_model_2d("espnetv2").eval()
    assert num_parameters(model) == 3_498_136
    assert list(model.state_dict()["level5.4.conv.weight"].shape) == [1280, 256, 1, 1]
    assert "level5_0.inp_reinf.1.conv.weight" in model.state_dict()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert model.forward_features(x).shape == (1, 1280, 2, 2)
        assert model(x).shape == (1, 1000)
    assert_fx_traces(model, x)


def test_base_without_classifier_returns_pooled_features():
    model = create_model_2d("espnetv2_base").eval()
    assert model.classifier is None and model.level5 is None
    assert not any(key.startswith(("level5", "classifier")) for key in model.state_dict())
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        assert model.forward_features(x).shape == (2, 512, 4, 6)
        assert model(x).shape == (2, 512)
    assert_fx_traces(model, x)
    assert create_model_2d("espnetv2_base", num_classes=20).classifier.out_features == 20
    with pytest.raises(ValueError, match="scale s"):
        create_model_2d("espnetv2", s=3.0)


def test_key_map_keeps_only_the_encoder():
    assert segmentation_base_net_key("base_net.level4.6.module_act.weight") == "level4.6.module_act.weight"
    assert segmentation_base_net_key("bu_dec_l1.merge_layer.0.bn.weight") is None


def test_shared_cityscapes_encoder_loads_every_base_net_tensor():
    if not CHECKPOINT.is_file():
        pytest.skip(f"shared ESPNetv2 checkpoint {CHECKPOINT} is not available")
    state = read_state_dict(CHECKPOINT)
    assert len(state) == CHECKPOINT_TENSORS
    assert sum(key.startswith("base_net.") for key in state) == ENCODER_TENSORS
    model, report = build_pretrained_2d(ESPNETV2_S2_CITYSCAPES)
    assert len(report.loaded) == ENCODER_TENSORS
    assert report.missing == [] and report.unexpected == [] and report.shape_mismatched == []
    assert len(report.dropped) == CHECKPOINT_TENSORS - ENCODER_TENSORS
    torch.testing.assert_close(model.state_dict()["level4.6.module_act.weight"],
                               state["base_net.level4.6.module_act.weight"])
    image_path = TINY_IMAGENET / "val" / "images" / "val_1.JPEG"
    if image_path.is_file():
        from image2point.pretrain2d.image_folders import decode_image, to_model_input

        x = to_model_input(torch.from_numpy(decode_image(image_path, image_size=128)))[None]
        with torch.no_grad():
            features = model.eval().forward_features(x)
        assert features.shape == (1, 512, 8, 8) and torch.isfinite(features).all()
