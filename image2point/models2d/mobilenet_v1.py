"""MobileNetV1 (Howard et al. 2017) in the layout of RetinaFace's ImageNet-pretrained backbone.

Module names follow ``MobileNetV1`` of biubug6/Pytorch_Retinaface (``models/mobilev1.py`` at
3c31dcd0; ``models/net.py`` holds the same blocks), so its ``mobilenetV1X0.25_pretrain.tar``
checkpoint loads once the DataParallel ``module.`` prefix is stripped: ``stage1`` (the 3x3/2 stem
conv-BN-act ``stage1.0``, then five depthwise-separable blocks), ``stage2`` (six blocks) and ``stage3``
(two blocks), a global average pool ``avg`` and the classifier ``fc``. A depthwise-separable block is
one ``nn.Sequential``: 3x3 depthwise conv (``groups`` = channels), BN, activation, 1x1 conv, BN,
activation (keys ``.0``, ``.1``, ``.3``, ``.4``).

The activation is a constructor option: ``leaky_slope=0`` gives ReLU (``models/mobilev1.py``),
``leaky_slope=0.1`` the LeakyReLU(0.1) of ``models/net.py``. The shared checkpoint was trained with
ReLU, so that is the default. The proof is in its BatchNorm statistics: 9 channels of five depthwise
BatchNorms have running variance ~0 (5.6e-45), i.e. their input was identically zero in training,
which a ReLU gives behind a channel that never fires and a LeakyReLU cannot; on real images the input
of these channels is exactly 0 with ReLU and not with LeakyReLU(0.1). Accuracy barely separates the
two: on all 10,000 Tiny-ImageNet validation images upsampled to 224 (``pretrain2d.imagenet_check``)
ReLU scores 12.45 % top-1 (1000-way), 32.13 % among the 200 classes, mean NLL 4.95; LeakyReLU(0.1)
12.95 %, 30.78 %, NLL 5.60. RetinaFace only starts its face-detector training from these weights
(``models/retinaface.py`` loads them when ``cfg['pretrain']`` is set), with either activation.
"""

from __future__ import annotations

import torch
from torch import nn

from image2point.channels import RGB_CHANNELS
from image2point.models2d.registry import (
    DATA_PARALLEL_PREFIX,
    IMAGENET_INPUT_SIZE,
    IMAGENET_NUM_CLASSES,
    SHARED_WEIGHTS_DIR,
    BackboneLayout,
    ImageClassifier2D,
    PretrainedWeights,
    register_known_weights,
    register_model_2d,
)

STEM_STRIDE = 2
# Output widths and strides of the depthwise-separable blocks of MobileNetV1 at width 1.0 (Table 1
# of the paper); RetinaFace groups them into stages of 5, 6 and 2 blocks.
STAGE_BLOCKS: tuple[tuple[tuple[int, int], ...], ...] = (
    ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1)),
    ((512, 2), (512, 1), (512, 1), (512, 1), (512, 1), (512, 1)),
    ((1024, 2), (1024, 1)),
)
STEM_WIDTH = 32
RETINAFACE_WIDTH_MULT = 0.25
DEPTHWISE_KERNEL = 3


def _activation(leaky_slope: float) -> nn.Module:
    # A plain ReLU where the slope is zero keeps the graph free of a no-op LeakyReLU.
    return nn.ReLU(inplace=True) if leaky_slope == 0.0 else nn.LeakyReLU(leaky_slope, inplace=True)


def conv_bn_act(in_channels: int, out_channels: int, stride: int, leaky_slope: float) -> nn.Sequential:
    """3x3 conv (padding 1, no bias), BN, activation: RetinaFace's ``conv_bn``."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False),
        nn.BatchNorm2d(out_channels),
        _activation(leaky_slope),
    )


def depthwise_separable(
    in_channels: int, out_channels: int, stride: int, leaky_slope: float
) -> nn.Sequential:
    """3x3 depthwise conv-BN-act then 1x1 pointwise conv-BN-act: RetinaFace's ``conv_dw``."""
    return nn.Sequential(
        nn.Conv2d(in_channels, in_channels, DEPTHWISE_KERNEL, stride, 1, groups=in_channels, bias=False),
        nn.BatchNorm2d(in_channels),
        _activation(leaky_slope),
        nn.Conv2d(in_channels, out_channels, 1, 1, 0, bias=False),
        nn.BatchNorm2d(out_channels),
        _activation(leaky_slope),
    )


class MobileNetV1(ImageClassifier2D):
    """MobileNetV1 with every width scaled by ``width_mult``; ``leaky_slope`` picks the activation."""

    classifier_name = "fc"

    def __init__(
        self,
        width_mult: float = 1.0,
        num_classes: int = IMAGENET_NUM_CLASSES,
        in_channels: int = RGB_CHANNELS,
        leaky_slope: float = 0.0,
    ):
        super().__init__()
        if width_mult <= 0:
            raise ValueError(f"width_mult must be positive, got {width_mult}")
        if leaky_slope < 0:
            raise ValueError(f"leaky_slope must be >= 0 (0 is ReLU), got {leaky_slope}")
        self.num_classes = num_classes
        self.leaky_slope = leaky_slope
        width = _scaled(STEM_WIDTH, width_mult)
        stages = []
        for index, blocks in enumerate(STAGE_BLOCKS):
            layers: list[nn.Module] = []
            if index == 0:
                layers.append(conv_bn_act(in_channels, width, STEM_STRIDE, leaky_slope))
            for base_width, stride in blocks:
                out_width = _scaled(base_width, width_mult)
                layers.append(depthwise_separable(width, out_width, stride, leaky_slope))
                width = out_width
            stages.append(nn.Sequential(*layers))
        self.stage1, self.stage2, self.stage3 = stages
        self.num_features = width
        self.avg = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(width, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.stage3(self.stage2(self.stage1(x)))

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.avg(features), 1))

    def backbone_layout(self) -> BackboneLayout:
        """Stem ``stage1.0``; every depthwise-separable block is a stage; head ``avg``, ``fc``."""
        blocks = [f"stage1.{i}" for i in range(1, len(self.stage1))]
        blocks += [f"stage2.{i}" for i in range(len(self.stage2))]
        blocks += [f"stage3.{i}" for i in range(len(self.stage3))]
        return BackboneLayout(("stage1.0",), tuple(blocks), ("avg", "fc"))


def _scaled(width: int, width_mult: float) -> int:
    return max(1, int(width * width_mult))


@register_model_2d
def mobilenet_v1(
    num_classes: int = IMAGENET_NUM_CLASSES,
    in_channels: int = RGB_CHANNELS,
    width_mult: float = 1.0,
    leaky_slope: float = 0.0,
) -> MobileNetV1:
    """MobileNetV1 at any width (4,231,976 parameters at width 1.0 with 1000 classes)."""
    return MobileNetV1(width_mult, num_classes, in_channels, leaky_slope)


@register_model_2d
def mobilenet_v1_x0_25(
    num_classes: int = IMAGENET_NUM_CLASSES,
    in_channels: int = RGB_CHANNELS,
    leaky_slope: float = 0.0,
) -> MobileNetV1:
    """MobileNetV1 x0.25, RetinaFace's backbone (470,072 parameters with 1000 classes; 475,571
    tensor elements with the BatchNorm statistics)."""
    return MobileNetV1(RETINAFACE_WIDTH_MULT, num_classes, in_channels, leaky_slope)


MOBILENET_V1_X0_25_IMAGENET = register_known_weights(PretrainedWeights(
    name="mobilenet_v1_x0_25_imagenet",
    architecture="mobilenet_v1_x0_25",
    file=str(SHARED_WEIGHTS_DIR / "mobilenetv1_x0.25_imagenet.pth.tar"),
    source=(
        "biubug6/Pytorch_Retinaface @ 3c31dcd0, model_best.pth.tar, distributed as "
        "mobilenetV1X0.25_pretrain.tar (MIT)"
    ),
    key_prefix=DATA_PARALLEL_PREFIX,
    state_dict_key="state_dict",
    num_classes=IMAGENET_NUM_CLASSES,
    input_size=IMAGENET_INPUT_SIZE,
    top1_accuracy=46.75,
    notes=(
        "ImageNet-1k top-1 as the README of the shared weights gives it (the checkpoint's best_acc1). "
        "Trained with ReLU (leaky_slope=0, the default; see the module docstring for the evidence); "
        "RetinaFace's later code starts training from it with LeakyReLU(0.1)."
    ),
))
