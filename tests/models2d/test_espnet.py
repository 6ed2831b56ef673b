"""ESPNet-C: the official checkpoint's layout, a functional reference of the original forward, fx
tracing, and the shared Cityscapes encoder on a real image.

Without Cityscapes the segmentation quality cannot be checked here; what is checked is that every
tensor of the checkpoint loads, that the forward equals the original ``ESPNet_Encoder`` (written out
below in functional ops), that the output is a 20-class map at 1/8 resolution, and that the input
preprocessing agrees with the BatchNorm statistics stored in the checkpoint.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from family_checks import SHARED_WEIGHTS, TINY_IMAGENET, assert_fx_traces, num_parameters

from image2point.models2d import (
    DenseFeatures2D,
    build_pretrained_2d,
    create_model_2d,
    get_known_weights,
    read_state_dict,
)
from image2point.models2d.espnet import ESPNET_C_P2_Q8_CITYSCAPES, ESPNetC, cityscapes_input

CHECKPOINT = SHARED_WEIGHTS / "espnet_p2_q8_cityscapes_encoder.pth"
CHECKPOINT_TENSORS = 154
BN_EPS = 1e-3
DILATIONS = (1, 2, 4, 8, 16)


def _shared_state() -> dict[str, torch.Tensor]:
    if not CHECKPOINT.is_file():
        pytest.skip(f"shared ESPNet checkpoint {CHECKPOINT} is not available")
    return read_state_dict(CHECKPOINT)


def _reference_forward(state: dict[str, torch.Tensor], x: torch.Tensor, p: int, q: int) -> torch.Tensor:
    """``ESPNet_Encoder.forward`` of sacmehta/ESPNet train/Model.py, on a state dict."""

    def br(prefix: str, t: torch.Tensor) -> torch.Tensor:
        t = F.batch_norm(t, state[f"{prefix}.bn.running_mean"], state[f"{prefix}.bn.running_var"],
                         state[f"{prefix}.bn.weight"], state[f"{prefix}.bn.bias"], False, 0.0, BN_EPS)
        return F.prelu(t, state[f"{prefix}.act.weight"])

    def esp(prefix: str, t: torch.Tensor, stride: int) -> torch.Tensor:
        weight = state[f"{prefix}.c1.conv.weight"]
        reduced = F.conv2d(t, weight, stride=stride, padding=weight.shape[-1] // 2)
        outs = [F.conv2d(reduced, state[f"{prefix}.d{d}.conv.weight"], padding=d, dilation=d) for d in DILATIONS]
        sums = [outs[1]]
        for branch in outs[2:]:
            sums.append(sums[-1] + branch)
        return torch.cat([outs[0], *sums], 1)

    def pool(t: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(t, 3, stride=2, padding=1)

    level1 = br("level1", F.conv2d(x, state["level1.conv.weight"], stride=2, padding=1))
    cat1 = br("b1", torch.cat([level1, pool(x)], 1))
    down2 = br("level2_0", esp("level2_0", cat1, 2))
    out = down2
    for i in range(p):
        out = br(f"level2.{i}.bn", out + esp(f"level2.{i}", out, 1))
    cat2 = br("b2", torch.cat([out, down2, pool(pool(x))], 1))
    down3 = br("level3_0", esp("level3_0", cat2, 2))
    out = down3
    for i in range(q):
        out = br(f"level3.{i}.bn", out + esp(f"level3.{i}", out, 1))
    cat3 = br("b3", torch.cat([down3, out], 1))
    return F.conv2d(cat3, state["classifier.conv.weight"])


def test_layout_of_the_official_checkpoint():
    state = create_model_2d("espnet_c").state_dict()
    assert len([k for k in state if not k.endswith("num_batches_tracked")]) == CHECKPOINT_TENSORS
    assert list(state["level2_0.c1.conv.weight"].shape) == [12, 19, 3, 3]
    assert list(state["level2_0.d1.conv.weight"].shape) == [16, 12, 3, 3]
    assert list(state["level2.1.bn.act.weight"].shape) == [64]
    assert list(state["b2.bn.weight"].shape) == [131]
    assert list(state["level3_0.c1.conv.weight"].shape) == [25, 131, 3, 3]
    assert list(state["level3.7.d16.conv.weight"].shape) == [25, 25, 3, 3]
    assert list(state["classifier.conv.weight"].shape) == [20, 256, 1, 1]
    model = create_model_2d("espnet_c")
    assert num_parameters(model) == 349_449
    assert model.level3_0.d16.conv.dilation == (16, 16) and model.level3_0.d16.conv.padding == (16, 16)


@pytest.mark.parametrize("p, q, size", [(2, 8, (64, 96)), (1, 3, (45, 71))])
def test_forward_equals_the_original_and_traces(p, q, size):
    torch.manual_seed(0)
    model = ESPNetC(num_classes=5, p=p, q=q).eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 1.5)
            if isinstance(module, torch.nn.PReLU):
                module.weight.uniform_(0.0, 0.5)
    x = torch.randn(2, 3, *size)
    with torch.no_grad():
        out = model(x)
        expected = _reference_forward(model.state_dict(), x, p, q)
    assert out.shape == (2, 5, -(-size[0] // 8), -(-size[1] // 8))
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    traced = assert_fx_traces(model, x)
    dilated_16 = [n for n in traced.graph.nodes if n.op == "call_module" and n.target.endswith("d16.conv")]
    assert len(dilated_16) == 2 + p + q


def test_invalid_depths_are_rejected():
    with pytest.raises(ValueError, match="p >= 1"):
        ESPNetC(p=0)


def test_reset_classifier_leaves_the_b3_features_as_the_output():
    model = ESPNetC().eval()
    image = torch.randn(1, 3, 37, 61)
    with torch.no_grad():
        features = model.forward_features(image)
        model.reset_classifier(5)
        assert model(image).shape == (1, 5, 5, 8) and model.num_classes == 5
        model.reset_classifier(0)
        assert torch.equal(model(image), features) and features.shape == (1, model.num_features, 5, 8)
    assert not any(key.startswith("classifier") for key in model.state_dict())
    with pytest.raises(ValueError):
        model.reset_classifier(-1)


def test_dense_feature_interface_is_met_by_the_segmentation_networks_only():
    espnet = create_model_2d("espnet_c", in_channels=4)
    assert isinstance(espnet, DenseFeatures2D)
    assert (espnet.in_channels, espnet.num_features, espnet.output_stride) == (4, 256, 8)
    assert isinstance(create_model_2d("hrnet_w18"), DenseFeatures2D)
    assert not isinstance(create_model_2d("cifar_resnet20"), DenseFeatures2D)
    assert not isinstance(create_model_2d("espnetv2_base"), DenseFeatures2D)


def test_shared_checkpoint_loads_every_tensor():
    state = _shared_state()
    assert len(state) == CHECKPOINT_TENSORS
    model, report = build_pretrained_2d(ESPNET_C_P2_Q8_CITYSCAPES, CHECKPOINT)
    assert len(report.loaded) == CHECKPOINT_TENSORS
    assert report.missing == [] and report.unexpected == [] and report.shape_mismatched == []
    assert len(report.defaulted) == 16  # the file predates BatchNorm's batch counters
    assert get_known_weights("espnet_c_p2_q8_cityscapes") is ESPNET_C_P2_Q8_CITYSCAPES


def test_shared_encoder_on_a_real_image():
    _shared_state()
    image_path = TINY_IMAGENET / "val" / "images" / "val_0.JPEG"
    if not image_path.is_file():
        pytest.skip(f"Tiny-ImageNet image {image_path} is not available")
    from image2point.pretrain2d.image_folders import decode_image

    rgb = torch.from_numpy(decode_image(image_path, image_size=128)).permute(2, 0, 1)[None]
    model, _ = build_pretrained_2d("espnet_c_p2_q8_cityscapes")
    model.eval()
    seen = {}
    model.b1.register_forward_pre_hook(lambda module, args: seen.setdefault("b1", args[0]))
    x = cityscapes_input(rgb)
    with torch.no_grad():
        out = model(x)
    assert out.shape == (1, 20, 16, 16)
    assert torch.isfinite(out).all()
    # The pooled-image channels of b1's input match the checkpoint's BatchNorm statistics only with
    # ESPNet's preprocessing: their running variance is ~1/255^2, an ImageNet-normalised image has ~1.
    image_channels = seen["b1"][0, -3:]
    running_var = model.b1.bn.running_var[-3:]
    ratio = image_channels.var(dim=(1, 2)) / running_var
    assert torch.all((ratio > 0.1) & (ratio < 10)), ratio
    assert torch.all(running_var < 1e-4)
