"""Whole converted networks, their forward included, against their 2D originals on a one-site-thick plane.

``convert_2d_to_3d(model_2d).model`` called on a plane of real images (MNIST or Tiny-ImageNet from
``../shared``) returns the 2D network's logits: relative error under 1e-4 and the same top-1, for every
family of :mod:`image2point.models2d` the converter covers, with the real checkpoints of MobileNetV1
(ImageNet), the ESPNet-C encoder and the ESPNetv2 encoder (Cityscapes), and the CIFAR-10 ResNet-20. Random
models get trained-looking BatchNorm statistics. A network written here, which the converter has never
seen, mixes depthwise, dilated and grouped convs, squeeze-and-excitation, concatenation, channels-last
LayerNorm and non-ReLU activations in functional and module form.

Strided shortcuts read the child at 2q ("center"), which is what 2D reads; input sizes keep every
downsampling exact in 2D (even sizes where a family has even kernels).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from plane_checks import assert_same_output, image_on_plane, plane_as_image, randomize_batchnorm, real_images
from torch import nn

from image2point.inflate.converter import convert_2d_to_3d
from image2point.models2d import build_pretrained_2d, create_model_2d, get_known_weights
from image2point.sparse.backends import spconv_available

SEED = 0
IMAGES = 2
SHORTCUT = "center"


@dataclass(frozen=True)
class Case:
    """One family: its registered architecture, the images it sees and, for real checkpoints, their name."""

    arch: str
    source: str
    size: int | None = None
    weights: str | None = None

    @property
    def id(self) -> str:
        return f"{self.arch}-{self.weights or 'random'}-{self.source}"


CASES = [
    Case("mobilenet_v1_x0_25", "tiny_imagenet", weights="mobilenet_v1_x0_25_imagenet"),
    Case("espnetv2_base", "tiny_imagenet", weights="espnetv2_s2_0_cityscapes"),
    Case("cifar_resnet20", "tiny_imagenet", 32, weights="cifar_resnet20_cifar10"),
    Case("mobilenet_v2", "mnist"),
    Case("mobilenet_v3_small", "mnist"),
    Case("mobilenet_v3_large", "tiny_imagenet", 32),
    Case("efficientnet_b0", "mnist"),
    Case("regnet_x_400mf", "mnist"),
    Case("regnet_y_400mf", "tiny_imagenet", 32),
    Case("densenet121", "tiny_imagenet", 32),
    Case("convnext_tiny", "tiny_imagenet", 32),
    Case("espnetv2", "tiny_imagenet", 32),
    Case("resnet18", "mnist"),
    Case("vgg_small", "tiny_imagenet", 32),
]


def model_for(case: Case) -> nn.Module:
    if case.weights is not None:
        weights = get_known_weights(case.weights)
        if weights.file is not None and not Path(weights.file).is_file():
            pytest.skip(f"shared checkpoint {weights.file} is not available")
        return build_pretrained_2d(weights)[0].eval()
    with torch.random.fork_rng():
        torch.manual_seed(SEED)
        model = create_model_2d(case.arch)
    return randomize_batchnorm(model, SEED).eval()


@pytest.mark.parametrize("case", [pytest.param(case, id=case.id) for case in CASES])
def test_converted_network_returns_the_2d_logits_on_a_plane_of_real_images(case):
    model_2d = model_for(case)
    converted = convert_2d_to_3d(model_2d, shortcut=SHORTCUT)
    images = real_images(case.source, IMAGES, case.size)
    with torch.no_grad():
        expected = model_2d(images)
        out = converted.model.eval()(image_on_plane(images))
    assert isinstance(out, torch.Tensor)
    assert_same_output(out, expected)
    # Everything after the global pool is the 2D classifier, carried over and reported as such.
    classifier = getattr(model_2d, "classifier_name", None)
    if classifier is not None and getattr(model_2d, classifier, None) is not None:
        assert {key.partition(".")[0] for key in converted.report.classifier} >= {classifier.partition(".")[0]}
    assert converted.report.initialised == []


def espnet_c_input(count: int) -> torch.Tensor:
    rgb = real_images("tiny_imagenet", count, None, normalize=False) * 255.0
    from image2point.models2d.espnet import cityscapes_input

    return cityscapes_input(rgb)


def test_cityscapes_espnet_c_encoder_gives_the_2d_segmentation_map():
    """ESPNet-C has no global pool: its output is a 20-class map at 1/8 resolution, a sparse map in 3D."""
    case = Case("espnet_c", "tiny_imagenet", weights="espnet_c_p2_q8_cityscapes")
    model_2d = model_for(case)
    converted = convert_2d_to_3d(model_2d, shortcut=SHORTCUT)
    images = espnet_c_input(IMAGES)
    with torch.no_grad():
        expected = model_2d(images)
        out = converted.model.eval()(image_on_plane(images))
    assert out.stride == 8 and out.num_channels == expected.shape[1]
    assert_same_output(plane_as_image(out, *expected.shape[2:]), expected)
    assert converted.report.classifier == [] and converted.report.dropped == []
    assert len(converted.report.inflated) == sum(1 for v in model_2d.state_dict().values() if v.dim() == 4)


@pytest.mark.skipif(not spconv_available(), reason="spconv is not installed")
def test_imagenet_mobilenet_v1_on_spconv_tensors_falls_back_for_depthwise_convs_and_matches():
    model_2d = model_for(CASES[0])
    model_3d = convert_2d_to_3d(model_2d, shortcut=SHORTCUT).model.eval()
    images = real_images("tiny_imagenet", IMAGES)
    with torch.no_grad():
        assert_same_output(model_3d(image_on_plane(images, backend="spconv")), model_2d(images))


# ---------------------------------------------------------------------------------------------------
# A network the converter has never seen.


class SqueezeExcite(nn.Module):
    def __init__(self, channels: int, reduced: int):
        super().__init__()
        self.reduce = nn.Conv2d(channels, reduced, 1)
        self.expand = nn.Conv2d(reduced, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = x.mean((2, 3), keepdim=True)
        gate = torch.sigmoid(self.expand(F.silu(self.reduce(gate))))
        return x * gate


class ChannelsLastMlp(nn.Module):
    """ConvNeXt-style: permute to [B, H, W, C], LayerNorm and Linear per pixel, scale, permute back."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = nn.LayerNorm(channels)
        self.fc = nn.Linear(channels, channels)
        self.scale = nn.Parameter(torch.linspace(0.5, 1.5, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x.permute(0, 2, 3, 1)
        y = self.scale * F.gelu(self.fc(self.norm(y)))
        return x + y.permute(0, 3, 1, 2)


class UnseenNet(nn.Module):
    def __init__(self, num_classes: int = 7):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(16),
                                  nn.Hardswish())
        self.depthwise = nn.Conv2d(16, 16, 5, padding=2, groups=16, bias=False)
        self.dilated = nn.Conv2d(16, 16, 3, padding=2, dilation=2)
        self.grouped = nn.Conv2d(32, 48, 3, stride=2, padding=1, groups=4)
        self.norm = nn.GroupNorm(4, 48)
        self.act = nn.PReLU(48)
        self.se = SqueezeExcite(48, 12)
        self.mlp = ChannelsLastMlp(48)
        self.pool = nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(0.2), nn.Linear(48, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = torch.cat([F.leaky_relu(self.depthwise(x), 0.1), F.elu(self.dilated(x))], dim=1)
        x = self.act(self.norm(self.grouped(x)))
        x = self.mlp(x + self.se(x))
        x = F.relu6(self.pool(x) * 2.0 - 0.1)
        return self.head(F.adaptive_avg_pool2d(x, 1))


def test_a_network_never_seen_converts_and_returns_its_2d_logits():
    with torch.random.fork_rng():
        torch.manual_seed(SEED)
        model_2d = randomize_batchnorm(UnseenNet(), SEED).eval()
        with torch.no_grad():
            model_2d.act.weight.uniform_(0.05, 0.4)
            model_2d.norm.weight.uniform_(0.5, 1.5)
    converted = convert_2d_to_3d(model_2d, shortcut=SHORTCUT)
    report = converted.report
    assert report.accounted_2d_keys() == set(model_2d.state_dict())
    assert report.dropped == [] and report.initialised == []
    assert sorted(report.classifier) == ["head.2.bias", "head.2.weight"]
    # The squeeze-and-excitation convs run on pooled (dense) values: carried over as 2D convs, not inflated.
    assert {kernel.name for kernel in report.inflated} == {
        "stem.0.weight", "depthwise.weight", "dilated.weight", "grouped.weight"}
    for source in ("mnist", "tiny_imagenet"):
        images = real_images(source, IMAGES, 32)
        with torch.no_grad():
            expected = model_2d(images)
            out = converted.model.eval()(image_on_plane(images))
        assert_same_output(out, expected)
