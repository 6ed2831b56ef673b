"""MobileNetV1 in RetinaFace's layout: the shared ImageNet checkpoint loads, classifies real images,
and was trained with ReLU."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from family_checks import (
    SHARED_WEIGHTS,
    TINY_IMAGENET,
    assert_fx_traces,
    assert_layout_is_a_chain,
    num_parameters,
)
from torch import nn

from image2point.models2d import build_pretrained_2d, create_model_2d, read_state_dict
from image2point.models2d.mobilenet_v1 import MOBILENET_V1_X0_25_IMAGENET, mobilenet_v1_x0_25

CHECKPOINT = SHARED_WEIGHTS / "mobilenetv1_x0.25_imagenet.pth.tar"
CHECKPOINT_TENSORS = 164
# 470,072 parameters plus the BatchNorm statistics: the 475,571 tensor elements of the file.
PARAMETERS = 470_072
STATE_ELEMENTS = 475_571
NUM_IMAGES = 256
SLOW_NUM_IMAGES = 1000


def _reference_forward(state: dict[str, torch.Tensor], x: torch.Tensor, slope: float) -> torch.Tensor:
    """RetinaFace's MobileNetV1.forward (models/mobilev1.py, models/net.py) on a state dict."""

    def bn_act(prefix: str, t: torch.Tensor) -> torch.Tensor:
        t = F.batch_norm(t, state[f"{prefix}.running_mean"], state[f"{prefix}.running_var"],
                         state[f"{prefix}.weight"], state[f"{prefix}.bias"], False, 0.0, 1e-5)
        return F.leaky_relu(t, slope)

    out = bn_act("stage1.0.1", F.conv2d(x, state["stage1.0.0.weight"], stride=2, padding=1))
    strides = {"stage1": (1, 2, 1, 2, 1), "stage2": (2, 1, 1, 1, 1, 1), "stage3": (2, 1)}
    for stage, stage_strides in strides.items():
        first = 1 if stage == "stage1" else 0
        for index, stride in enumerate(stage_strides, start=first):
            depthwise = state[f"{stage}.{index}.0.weight"]
            out = bn_act(f"{stage}.{index}.1",
                         F.conv2d(out, depthwise, stride=stride, padding=1, groups=depthwise.shape[0]))
            out = bn_act(f"{stage}.{index}.4", F.conv2d(out, state[f"{stage}.{index}.3.weight"]))
    return F.linear(out.mean((2, 3)), state["fc.weight"], state["fc.bias"])


def _shared_state() -> dict[str, torch.Tensor]:
    if not CHECKPOINT.is_file():
        pytest.skip(f"shared MobileNetV1 checkpoint {CHECKPOINT} is not available")
    return {key.removeprefix("module."): value for key, value in read_state_dict(CHECKPOINT).items()}


def test_layout_sizes_and_activation_option():
    model = mobilenet_v1_x0_25()
    assert num_parameters(model) == PARAMETERS
    assert sum(v.numel() for v in model.state_dict().values()) == STATE_ELEMENTS
    assert list(model.stage1[1][0].weight.shape) == [8, 1, 3, 3]
    assert list(model.stage3[1][3].weight.shape) == [256, 256, 1, 1]
    assert list(model.fc.weight.shape) == [1000, 256]
    assert all(not isinstance(m, nn.LeakyReLU) for m in model.modules())
    leaky = create_model_2d("mobilenet_v1_x0_25", leaky_slope=0.1)
    slopes = {m.negative_slope for m in leaky.modules() if isinstance(m, nn.LeakyReLU)}
    assert slopes == {0.1}
    assert num_parameters(create_model_2d("mobilenet_v1")) == 4_231_976
    with pytest.raises(ValueError, match="leaky_slope"):
        create_model_2d("mobilenet_v1_x0_25", leaky_slope=-1.0)


@pytest.mark.parametrize("slope", [0.0, 0.1])
def test_forward_equals_the_reference_fx_and_layout(slope):
    torch.manual_seed(0)
    model = create_model_2d("mobilenet_v1_x0_25", num_classes=10, leaky_slope=slope).eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 1.5)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), _reference_forward(model.state_dict(), x, slope))
        assert model.forward_features(x).shape == (2, 256, 2, 2)
    assert_fx_traces(model, x)
    assert_layout_is_a_chain(model, x)
    layout = model.backbone_layout()
    assert layout.stem == ("stage1.0",) and len(layout.stages) == 13 and layout.head == ("avg", "fc")


def test_shared_checkpoint_loads_all_164_tensors():
    state = _shared_state()
    assert len(state) == CHECKPOINT_TENSORS
    model, report = build_pretrained_2d(MOBILENET_V1_X0_25_IMAGENET)
    # The file's keys carry DataParallel's "module." prefix, which the descriptor strips.
    assert len(report.loaded) == CHECKPOINT_TENSORS
    assert report.missing == [] and report.unexpected == [] and report.shape_mismatched == []
    assert report.defaulted == []
    torch.testing.assert_close(model.state_dict()["stage3.1.3.weight"], state["stage3.1.3.weight"])


@pytest.fixture(scope="module")
def tiny_imagenet_val():
    if not (TINY_IMAGENET / "wnids.txt").is_file():
        pytest.skip(f"Tiny-ImageNet {TINY_IMAGENET} is not available")
    from image2point.pretrain2d.imagenet_check import load_tiny_imagenet_val

    return load_tiny_imagenet_val(TINY_IMAGENET, NUM_IMAGES, image_size=224)


def _score(slope: float, images: torch.Tensor, targets: torch.Tensor):
    from image2point.pretrain2d.imagenet_check import score_imagenet_classifier

    model, _ = build_pretrained_2d(MOBILENET_V1_X0_25_IMAGENET, leaky_slope=slope)
    return score_imagenet_classifier(model, images, targets)


def test_shared_checkpoint_classifies_real_images_and_was_trained_with_relu(tiny_imagenet_val):
    _shared_state()
    images, targets = tiny_imagenet_val
    relu = _score(0.0, images, targets)
    leaky = _score(0.1, images, targets)
    # Chance is 0.1 % (1000-way) and 0.5 % (among the 200 classes); the first 256 images give
    # 14.1 % / 35.9 % with ReLU and 14.5 % / 33.2 % with LeakyReLU(0.1).
    assert relu.top1 > 8.0 and relu.top1_among_200 > 25.0
    # Top-1 barely tells the activations apart (LeakyReLU is even 0.5 points ahead on all 10,000
    # images); the likelihood of the true class does (5.06 vs 5.59 here, 4.95 vs 5.60 on all).
    assert relu.mean_nll < leaky.mean_nll - 0.25
    assert relu.top1_among_200 > leaky.top1_among_200


def test_batchnorm_statistics_show_the_checkpoint_was_trained_with_relu(tiny_imagenet_val):
    """Channels whose BatchNorm saw only zeros in training (running variance ~0) exist behind a ReLU
    that never fires; a LeakyReLU would have passed a non-zero input to them."""
    _shared_state()
    images = tiny_imagenet_val[0][:32]
    inputs_of_dead_channels = {}
    for slope in (0.0, 0.1):
        model, _ = build_pretrained_2d(MOBILENET_V1_X0_25_IMAGENET, leaky_slope=slope)
        largest = []

        def record(module, args):
            dead = module.running_var < 1e-30
            if dead.any():
                largest.append(args[0][:, dead].abs().max())

        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.register_forward_pre_hook(record)
        with torch.no_grad():
            model.eval()(images)
        inputs_of_dead_channels[slope] = torch.stack(largest)
    dead = sum(int((m.running_var < 1e-30).sum()) for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    assert dead == 9 and len(inputs_of_dead_channels[0.0]) == 5
    assert torch.all(inputs_of_dead_channels[0.0] == 0)
    assert torch.all(inputs_of_dead_channels[0.1] > 0)


@pytest.mark.slow
def test_relu_versus_leaky_relu_on_1000_images():
    _shared_state()
    if not (TINY_IMAGENET / "wnids.txt").is_file():
        pytest.skip(f"Tiny-ImageNet {TINY_IMAGENET} is not available")
    from image2point.pretrain2d.imagenet_check import load_tiny_imagenet_val

    images, targets = load_tiny_imagenet_val(TINY_IMAGENET, SLOW_NUM_IMAGES, image_size=224)
    relu = _score(0.0, images, targets)
    leaky = _score(0.1, images, targets)
    assert relu.top1 > 10.0
    assert relu.mean_nll < leaky.mean_nll - 0.3
    assert relu.top1_among_200 > leaky.top1_among_200
