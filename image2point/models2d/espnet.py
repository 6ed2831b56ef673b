"""ESPNet-C (Mehta et al., ECCV 2018), the encoder of ESPNet, in the layout of its official checkpoints.

Module names follow ``ESPNet_Encoder`` of sacmehta/ESPNet (``train/Model.py`` at afe71c38), so
``pretrained/encoder/espnet_p_2_q_8.pth`` loads as it is:

* ``level1``: 3x3/2 conv-BN-PReLU (16 channels); ``sample1`` / ``sample2``: the RGB image average-pooled
  once / twice (3x3/2, padding 1), the "input reinforcement" concatenated to the features of that
  resolution (no parameters);
* ``b1``: BN-PReLU of ``cat(level1, sample1)`` (19 channels);
* ``level2_0``: strided ESP module to 64 channels, then ``level2``: ``p`` ESP modules with residual adds;
* ``b2``: BN-PReLU of ``cat(level2, level2_0, sample2)`` (131 channels);
* ``level3_0``: strided ESP module to 128 channels, ``level3``: ``q`` residual ESP modules;
* ``b3``: BN-PReLU of ``cat(level3_0, level3)`` (256 channels), ``classifier``: 1x1 conv to the classes.

An ESP module reduces with ``c1`` (1x1, or 3x3/2 in the strided ones), applies five parallel 3x3
convs of dilation 1, 2, 4, 8, 16 (``d1`` ... ``d16``, padding = dilation, so resolution is kept), sums
the dilated branches hierarchically (d2, d2+d4, d2+d4+d8, d2+d4+d8+d16, to avoid gridding) and
concatenates them after ``d1``. Every BatchNorm has eps 1e-3; no conv has a bias. The output is a
class map at 1/8 of the input resolution, ``[B, classes, ceil(H/8), ceil(W/8)]``.

Input: ESPNet was trained on OpenCV's BGR images standardised with the Cityscapes training-set mean
and std and then divided by 255 once more (``train/Transforms.py`` Normalize + ToTensor;
``test/VisualizeResults.py`` spells out the numbers); :func:`cityscapes_input` does this. The
checkpoint agrees: ``b1.bn``'s running variance over the pooled image channels is 1.7e-5, about
1/255^2.
"""

from __future__ import annotations

import torch
from torch import nn

from image2point.channels import RGB_CHANNELS
from image2point.models2d.registry import (
    SHARED_WEIGHTS_DIR,
    ImageClassifier2D,
    PretrainedWeights,
    register_known_weights,
    register_model_2d,
)

CITYSCAPES_CLASSES_WITH_IGNORE = 20
BN_EPS = 1e-3
LEVEL1_WIDTH = 16
LEVEL2_WIDTH = 64
LEVEL3_WIDTH = 128
ESP_DILATIONS = (1, 2, 4, 8, 16)
POOL_KERNEL, POOL_STRIDE, POOL_PADDING = 3, 2, 1
# ESPNet_Encoder's defaults are p=5, q=3; the released encoders were trained with p=2 and q=3 or 8.
DEFAULT_P, DEFAULT_Q = 2, 8
CITYSCAPES_INPUT_WIDTH = 1024
# Cityscapes training-set statistics in OpenCV's BGR order, on the 0-255 scale (test/VisualizeResults.py).
CITYSCAPES_MEAN_BGR = (72.3923111, 82.90893555, 73.15840149)
CITYSCAPES_STD_BGR = (45.3192215, 46.15289307, 44.91483307)
PIXEL_SCALE = 255.0


def cityscapes_input(rgb: torch.Tensor) -> torch.Tensor:
    """RGB images on the 0-255 scale, [B, 3, H, W], to the input ESPNet's Cityscapes weights expect:
    BGR, ``(x - mean) / std`` with the Cityscapes statistics, then divided by 255."""
    bgr = rgb.flip(1).float()
    mean = torch.tensor(CITYSCAPES_MEAN_BGR, dtype=bgr.dtype, device=bgr.device).view(1, 3, 1, 1)
    std = torch.tensor(CITYSCAPES_STD_BGR, dtype=bgr.dtype, device=bgr.device).view(1, 3, 1, 1)
    return (bgr - mean) / std / PIXEL_SCALE


class ConvBNPReLU(nn.Module):
    """``conv`` (square kernel, "same" padding, no bias), ``bn``, ``act`` (the original ``CBR``)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1):
        super().__init__()
        padding = (kernel_size - 1) // 2
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, bias=False)
        self.bn = nn.BatchNorm2d(out_channels, eps=BN_EPS)
        self.act = nn.PReLU(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class BNPReLU(nn.Module):
    """``bn`` then ``act`` (the original ``BR``)."""

    def __init__(self, channels: int):
        super().__init__()
        self.bn = nn.BatchNorm2d(channels, eps=BN_EPS)
        self.act = nn.PReLU(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(x))


class Conv(nn.Module):
    """A lone bias-free conv under the attribute ``conv`` (the original ``C`` / ``CDilated``)."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, dilation: int = 1
    ):
        super().__init__()
        padding = (kernel_size - 1) // 2 * dilation
        self.conv = nn.Conv2d(
            in_channels, out_channels, kernel_size, stride, padding, dilation=dilation, bias=False
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class ESPBranches(nn.Module):
    """Reduce with ``c1``, five dilated 3x3 branches, hierarchical sums, concatenation.

    ``out_channels`` is split as ``n = out // 5`` per dilated branch and ``out - 4n`` for ``d1``.
    """

    def __init__(self, in_channels: int, out_channels: int, reduce_kernel: int, reduce_stride: int):
        super().__init__()
        branch = out_channels // len(ESP_DILATIONS)
        first = out_channels - (len(ESP_DILATIONS) - 1) * branch
        self.c1 = Conv(in_channels, branch, reduce_kernel, reduce_stride)
        self.d1 = Conv(branch, first, 3, dilation=ESP_DILATIONS[0])
        self.d2 = Conv(branch, branch, 3, dilation=ESP_DILATIONS[1])
        self.d4 = Conv(branch, branch, 3, dilation=ESP_DILATIONS[2])
        self.d8 = Conv(branch, branch, 3, dilation=ESP_DILATIONS[3])
        self.d16 = Conv(branch, branch, 3, dilation=ESP_DILATIONS[4])

    def merged(self, x: torch.Tensor) -> torch.Tensor:
        reduced = self.c1(x)
        add1 = self.d2(reduced)
        add2 = add1 + self.d4(reduced)
        add3 = add2 + self.d8(reduced)
        add4 = add3 + self.d16(reduced)
        return torch.cat([self.d1(reduced), add1, add2, add3, add4], 1)


class ESPDownsampler(ESPBranches):
    """Strided ESP module (``DownSamplerB``): 3x3/2 reduction, no residual, then ``bn`` and ``act``."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(in_channels, out_channels, reduce_kernel=3, reduce_stride=2)
        self.bn = nn.BatchNorm2d(out_channels, eps=BN_EPS)
        self.act = nn.PReLU(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.merged(x)))


class ESPResidual(ESPBranches):
    """Residual ESP module (``DilatedParllelResidualBlockB`` with ``add=True``), BN-PReLU ``bn`` after."""

    def __init__(self, channels: int):
        super().__init__(channels, channels, reduce_kernel=1, reduce_stride=1)
        self.bn = BNPReLU(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(x + self.merged(x))


class InputReinforcement(nn.Module):
    """The image average-pooled ``times`` times by 3x3/2 pools (``InputProjectionA``), under ``pool``."""

    def __init__(self, times: int):
        super().__init__()
        self.pool = nn.ModuleList(
            nn.AvgPool2d(POOL_KERNEL, stride=POOL_STRIDE, padding=POOL_PADDING) for _ in range(times)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for pool in self.pool:
            x = pool(x)
        return x


class ESPNetC(ImageClassifier2D):
    """ESPNet-C with ``p`` ESP modules at 1/4 and ``q`` at 1/8 of the input resolution.

    ``forward_features`` gives the 256-channel map ``b3`` at 1/8 resolution and ``forward_head`` the
    1x1 ``classifier`` logits per pixel; ESPNet-C has no global pool. ``in_channels`` other than 3
    changes ``level1`` and the widths of ``b1`` / ``level2_0`` / ``b2`` / ``level3_0``, which take the
    pooled input, so RGB checkpoints then fit only from ``level2`` on.
    """

    classifier_name = "classifier"
    # Three stride-2 levels; no bilinear resizing inside (the DenseFeatures2D interface).
    output_stride = 8
    align_corners = False

    def __init__(
        self,
        num_classes: int = CITYSCAPES_CLASSES_WITH_IGNORE,
        p: int = DEFAULT_P,
        q: int = DEFAULT_Q,
        in_channels: int = RGB_CHANNELS,
    ):
        super().__init__()
        if p < 1 or q < 1:
            raise ValueError(f"ESPNet-C needs p >= 1 and q >= 1, got p={p}, q={q}")
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.level1 = ConvBNPReLU(in_channels, LEVEL1_WIDTH, 3, stride=2)
        self.sample1 = InputReinforcement(1)
        self.sample2 = InputReinforcement(2)
        self.b1 = BNPReLU(LEVEL1_WIDTH + in_channels)
        self.level2_0 = ESPDownsampler(LEVEL1_WIDTH + in_channels, LEVEL2_WIDTH)
        self.level2 = nn.Sequential(*(ESPResidual(LEVEL2_WIDTH) for _ in range(p)))
        level2_out = 2 * LEVEL2_WIDTH + in_channels
        self.b2 = BNPReLU(level2_out)
        self.level3_0 = ESPDownsampler(level2_out, LEVEL3_WIDTH)
        self.level3 = nn.Sequential(*(ESPResidual(LEVEL3_WIDTH) for _ in range(q)))
        self.num_features = 2 * LEVEL3_WIDTH
        self.b3 = BNPReLU(self.num_features)
        self.classifier: nn.Module = Conv(self.num_features, num_classes, 1)

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the 1x1 ``classifier`` by a fresh one; 0 removes it (no keys), so ``forward`` returns
        the ``b3`` features ``[B, num_features, ceil(H/8), ceil(W/8)]`` (a backbone for another head)."""
        if num_classes < 0:
            raise ValueError(f"num_classes must be >= 0, got {num_classes}")
        self.classifier = Conv(self.num_features, num_classes, 1) if num_classes else nn.Identity()
        self.num_classes = num_classes

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        at_half = self.b1(torch.cat([self.level1(x), self.sample1(x)], 1))
        down2 = self.level2_0(at_half)
        at_quarter = self.b2(torch.cat([self.level2(down2), down2, self.sample2(x)], 1))
        down3 = self.level3_0(at_quarter)
        return self.b3(torch.cat([down3, self.level3(down3)], 1))

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.classifier(features)


@register_model_2d
def espnet_c(
    num_classes: int = CITYSCAPES_CLASSES_WITH_IGNORE,
    in_channels: int = RGB_CHANNELS,
    p: int = DEFAULT_P,
    q: int = DEFAULT_Q,
) -> ESPNetC:
    """ESPNet-C encoder (p=2, q=8: 349,449 parameters with 20 classes)."""
    return ESPNetC(num_classes, p, q, in_channels)


ESPNET_C_P2_Q8_CITYSCAPES = register_known_weights(
    PretrainedWeights(
        name="espnet_c_p2_q8_cityscapes",
        architecture="espnet_c",
        file=str(SHARED_WEIGHTS_DIR / "espnet_p2_q8_cityscapes_encoder.pth"),
        source="sacmehta/ESPNet @ afe71c38, pretrained/encoder/espnet_p_2_q_8.pth (MIT)",
        key_prefix="",
        state_dict_key=None,
        num_classes=CITYSCAPES_CLASSES_WITH_IGNORE,
        input_size=CITYSCAPES_INPUT_WIDTH,
        top1_accuracy=None,
        notes=(
            "Cityscapes segmentation encoder (19 classes plus the ignore class, at 1/8 resolution), "
            "trained on 1024x512 images with p=2, q=8 (the builder's defaults); feed it "
            "cityscapes_input(rgb) (BGR, Cityscapes mean/std, then /255). The file predates "
            "BatchNorm's batch counters, so num_batches_tracked keeps its initial value."
        ),
    )
)
