"""RegNetX/Y: the paper's width rule, torchvision's parameter counts, keys and shapes; fx; layout."""

from __future__ import annotations

import pytest
import torch
from family_checks import assert_forward_fx_and_layout, assert_matches_torchvision, assert_sample_keys

from image2point.models2d import create_model_2d, get_known_weights
from image2point.models2d.regnet import REGNET_X_400MF, REGNET_Y_400MF, RegNetParams, regnet_y_400mf

# torchvision 0.28.0: RegNet_*_Weights.IMAGENET1K_V1.meta["num_params"], and the digests / sample keys
# of regnet_*().state_dict() (family_checks.key_shape_digest).
TORCHVISION = {
    "regnet_y_400mf": (4_344_144, 384, "872a203a03e8d754715c689710dd5b6c0c2aea536cb9bfc4eebfe8db087d2294"),
    "regnet_x_400mf": (5_495_976, 428, "94627f7ea87b1457842122bfb27567eca8b047677b000dc009749b89c48b0aff"),
    "regnet_y_800mf": (6_432_512, 340, "dd56722b309decbd77582b1b49cc40159ceba39199d0f7d563ec3c2e064dc3ac"),
    "regnet_x_800mf": (7_259_656, 320, "6d7ab9ab03911dbf7d567c3a5b20f60b10ed359ce56247aef88fe53dde887624"),
}
Y400_SAMPLE = {
    "stem.0.weight": [32, 3, 3, 3],
    "trunk_output.block1.block1-0.proj.0.weight": [48, 32, 1, 1],
    "trunk_output.block1.block1-0.f.b.0.weight": [48, 8, 3, 3],
    "trunk_output.block2.block2-0.proj.1.running_var": [104],
    "trunk_output.block3.block3-2.f.se.fc2.weight": [208, 52, 1, 1],
    "trunk_output.block3.block3-5.f.c.1.running_var": [208],
    "trunk_output.block4.block4-4.f.se.fc1.bias": [110],
    "trunk_output.block4.block4-5.f.se.fc2.weight": [440, 110, 1, 1],
    "fc.weight": [1000, 440],
}
X400_SAMPLE = {
    "trunk_output.block2.block2-0.f.c.1.running_var": [64],
    "trunk_output.block3.block3-4.f.c.0.weight": [160, 160, 1, 1],
    "trunk_output.block4.block4-0.f.c.1.weight": [400],
    "trunk_output.block4.block4-4.f.a.1.num_batches_tracked": [],
    "fc.bias": [1000],
}


@pytest.mark.parametrize("name", sorted(TORCHVISION))
def test_parameters_and_keys_equal_torchvision(name):
    assert_matches_torchvision(create_model_2d(name), TORCHVISION[name])


def test_sample_keys():
    assert_sample_keys(create_model_2d("regnet_y_400mf"), Y400_SAMPLE)
    assert_sample_keys(create_model_2d("regnet_x_400mf"), X400_SAMPLE)


def test_stage_widths_follow_the_quantised_linear_rule():
    # torchvision's BlockParams.from_init_params gives these widths / depths / group widths.
    y400 = REGNET_Y_400MF.stages()
    assert [s.width for s in y400] == [48, 104, 208, 440]
    assert [s.depth for s in y400] == [1, 3, 6, 6]
    assert {s.group_width for s in y400} == {8}
    x400 = REGNET_X_400MF.stages()
    assert [s.width for s in x400] == [32, 64, 160, 400]
    assert [s.depth for s in x400] == [1, 2, 7, 12]
    with pytest.raises(ValueError, match="invalid RegNet"):
        RegNetParams(depth=4, w_0=20, w_a=1.0, w_m=2.0, group_width=8).stages()


def test_forward_fx_and_layout():
    model = regnet_y_400mf()
    assert_forward_fx_and_layout(model, (2, 440, 2, 2))
    layout = model.backbone_layout()
    assert layout.stem == ("stem",)
    assert layout.stages == tuple(f"trunk_output.block{i}" for i in range(1, 5))


def test_options_and_descriptors():
    model = create_model_2d("regnet_x_400mf", num_classes=4, in_channels=1).eval()
    assert model(torch.randn(1, 1, 32, 32)).shape == (1, 4)
    assert "regnet_y_400mf-c65dace8.pth" in get_known_weights("regnet_y_400mf_imagenet").source
    assert "regnet_x_400mf-adf1edd5.pth" in get_known_weights("regnet_x_400mf_imagenet").source
