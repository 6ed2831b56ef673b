"""HRNetV2 (W18, W48) for semantic segmentation with the official checkpoints' module names.

HRNetV2 (Sun et al., CVPR 2019; Wang et al., TPAMI 2020) keeps a high-resolution branch through the
whole network and adds one lower-resolution branch per stage; after every multi-resolution module the
branches exchange information (each output branch sums every input branch, upsampled by a 1x1 conv
and bilinear interpolation or downsampled by strided 3x3 convs). The segmentation model concatenates
all four branches at 1/4 resolution and classifies them with ``last_layer``.

``state_dict()`` keys and shapes equal those of ``HighResolutionNet`` in
HRNet/HRNet-Semantic-Segmentation (``lib/models/seg_hrnet.py``): ``conv1``, ``bn1``, ``conv2``,
``bn2``, ``layer1.*``, ``transition{1,2,3}.*``, ``stage{2,3,4}.<module>.branches.*`` /
``.fuse_layers.*`` and ``last_layer.*``. Where the official code stores ``None`` (a transition or
fuse entry that passes its input through) this module stores a parameter-free ``nn.Identity``, which
adds no keys. Released segmentation checkpoints were saved from the training wrapper and prefix every
key with ``model.``; strip it when loading (``PretrainedWeights.key_prefix``, see
:data:`HRNET_W48_CITYSCAPES`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from image2point.channels import RGB_CHANNELS
from image2point.models2d.registry import ImageClassifier2D, PretrainedWeights, register_model_2d
from image2point.models2d.resize import bilinear_resize
from image2point.models2d.resnet import BasicBlock, Bottleneck, ResidualBlock, conv1x1, conv3x3

STEM_WIDTH = 64
LAYER1_BLOCKS = 4
LAYER1_WIDTH = 64
# Every stage of HRNetV2-W18/W48 runs four basic blocks per branch; each branch halves the
# resolution and doubles the width of the one before it.
BLOCKS_PER_BRANCH = 4
BRANCH_WIDTH_GROWTH = 2
# Multi-resolution modules per stage (STAGE2/3/4 NUM_MODULES of the official configs).
MODULES_PER_STAGE = (1, 4, 3)
CITYSCAPES_NUM_CLASSES = 19
OFFICIAL_CONV_INIT_STD = 0.001


@dataclass(frozen=True)
class HRNetStage:
    """One stage: ``num_modules`` multi-resolution modules over ``len(widths)`` branches."""

    num_modules: int
    num_blocks: tuple[int, ...]
    widths: tuple[int, ...]

    def __post_init__(self) -> None:
        if self.num_modules < 1:
            raise ValueError(f"a stage needs at least one module, got {self.num_modules}")
        if len(self.num_blocks) != len(self.widths) or not self.widths:
            raise ValueError(
                f"a stage needs one block count per branch, got {self.num_blocks} for widths {self.widths}"
            )

    @property
    def num_branches(self) -> int:
        return len(self.widths)


@dataclass(frozen=True)
class HRNetConfig:
    """The ``MODEL.EXTRA`` block of an official config: stage 1 is fixed (4 bottlenecks of 64)."""

    stage2: HRNetStage
    stage3: HRNetStage
    stage4: HRNetStage

    @property
    def stages(self) -> tuple[HRNetStage, HRNetStage, HRNetStage]:
        return (self.stage2, self.stage3, self.stage4)

    @property
    def num_features(self) -> int:
        """Channels of the concatenated final branches (270 for W18, 720 for W48)."""
        return sum(self.stage4.widths)


def hrnetv2_config(width: int) -> HRNetConfig:
    """HRNetV2-W``width``: branches of width w, 2w, 4w, 8w; 1, 4 and 3 modules in stages 2-4.

    Matches experiments/cityscapes/seg_hrnet_w48_*.yaml of HRNet-Semantic-Segmentation (w=48) and
    cls_hrnet_w18_*.yaml of HRNet-Image-Classification (w=18).
    """
    stages = []
    for num_branches, num_modules in enumerate(MODULES_PER_STAGE, start=2):
        widths = tuple(width * BRANCH_WIDTH_GROWTH**branch for branch in range(num_branches))
        stages.append(HRNetStage(num_modules, (BLOCKS_PER_BRANCH,) * num_branches, widths))
    return HRNetConfig(*stages)


def _conv_bn(in_channels: int, out_channels: int, kernel_size: int, stride: int) -> list[nn.Module]:
    conv = conv3x3(in_channels, out_channels, stride) if kernel_size == 3 else conv1x1(in_channels, out_channels)
    return [conv, nn.BatchNorm2d(out_channels)]


def _downsampler(in_channels: int, out_channels: int, steps: int) -> nn.Sequential:
    """``steps`` stride-2 conv3x3-BN units; all but the last keep ``in_channels`` and end in a ReLU."""
    units = []
    for step in range(steps):
        last = step == steps - 1
        layers = _conv_bn(in_channels, out_channels if last else in_channels, 3, 2)
        units.append(nn.Sequential(*layers) if last else nn.Sequential(*layers, nn.ReLU(inplace=True)))
    return nn.Sequential(*units)


class HighResolutionModule(nn.Module):
    """Parallel residual branches followed by the exchange unit that fuses every branch into every other.

    Output branch i sums, for every input branch j: the branch itself (j == i), a 1x1 conv-BN
    bilinearly upsampled to branch i's size (j > i), or i - j stride-2 conv3x3-BN units (j < i).
    """

    def __init__(self, in_widths: tuple[int, ...], stage: HRNetStage, align_corners: bool):
        super().__init__()
        if len(in_widths) != stage.num_branches:
            raise ValueError(f"{stage.num_branches} branches need {stage.num_branches} input widths, got {in_widths}")
        self.align_corners = align_corners
        self.branches = nn.ModuleList(
            _make_blocks(BasicBlock, in_width, width, depth)
            for in_width, width, depth in zip(in_widths, stage.widths, stage.num_blocks, strict=True)
        )
        widths = stage.widths
        self.fuse_layers = nn.ModuleList(
            nn.ModuleList(self._fuse_unit(widths, source, target) for source in range(len(widths)))
            for target in range(len(widths))
        )
        self.relu = nn.ReLU(inplace=True)
        self.out_widths = widths

    @staticmethod
    def _fuse_unit(widths: tuple[int, ...], source: int, target: int) -> nn.Module:
        if source == target:
            return nn.Identity()
        if source > target:
            return nn.Sequential(*_conv_bn(widths[source], widths[target], 1, 1))
        return _downsampler(widths[source], widths[target], target - source)

    def forward(self, inputs: list[torch.Tensor]) -> list[torch.Tensor]:
        branches = [branch(x) for branch, x in zip(self.branches, inputs, strict=True)]
        outputs = []
        for target, units in enumerate(self.fuse_layers):
            size = branches[target].shape[-2:]
            fused = None
            for source, (unit, x) in enumerate(zip(units, branches, strict=True)):
                y = unit(x)
                if source > target:
                    y = bilinear_resize(y, size, self.align_corners)
                fused = y if fused is None else fused + y
            outputs.append(self.relu(fused))
        return outputs


def _make_blocks(block: ResidualBlock, in_channels: int, channels: int, depth: int) -> nn.Sequential:
    out_channels = channels * block.expansion
    downsample = None
    if in_channels != out_channels:
        downsample = nn.Sequential(conv1x1(in_channels, out_channels), nn.BatchNorm2d(out_channels))
    blocks: list[nn.Module] = [block(in_channels, channels, 1, downsample)]
    blocks += [block(out_channels, channels) for _ in range(depth - 1)]
    return nn.Sequential(*blocks)


def _make_transition(previous: tuple[int, ...], current: tuple[int, ...]) -> nn.ModuleList:
    """Adapt the branches of the previous stage to the next: keep, re-width, or create by downsampling.

    A new branch i is made from the previous stage's lowest-resolution output by i + 1 - len(previous)
    stride-2 conv3x3-BN-ReLU units.
    """
    units: list[nn.Module] = []
    for branch, width in enumerate(current):
        if branch < len(previous):
            if previous[branch] == width:
                units.append(nn.Identity())
            else:
                units.append(nn.Sequential(*_conv_bn(previous[branch], width, 3, 1), nn.ReLU(inplace=True)))
            continue
        steps = branch + 1 - len(previous)
        chain = []
        for step in range(steps):
            out_width = width if step == steps - 1 else previous[-1]
            chain.append(nn.Sequential(*_conv_bn(previous[-1], out_width, 3, 2), nn.ReLU(inplace=True)))
        units.append(nn.Sequential(*chain))
    return nn.ModuleList(units)


class HRNet(ImageClassifier2D):
    """HRNetV2 segmentation network; ``forward`` gives logits at 1/4 of the input resolution.

    ``forward_features``: stem (two stride-2 conv3x3-BN-ReLU), ``layer1`` (four bottlenecks), stages
    2-4, then every branch bilinearly upsampled to the first branch's size and concatenated,
    ``[B, num_features, ceil(H/4), ceil(W/4)]``. ``forward_head``: ``last_layer`` (1x1 conv-BN-ReLU
    fusion, then the 1x1 classifier ``last_layer.3``), ``[B, num_classes, ceil(H/4), ceil(W/4)]``.
    Unlike the registry's image classifiers, the head is dense: it classifies every position.
    """

    classifier_name = "last_layer"
    # The stem's two stride-2 convs: every output is at 1/4 of the input (DenseFeatures2D).
    output_stride = 4

    def __init__(
        self,
        config: HRNetConfig,
        num_classes: int = CITYSCAPES_NUM_CLASSES,
        in_channels: int = RGB_CHANNELS,
        align_corners: bool = False,
    ):
        super().__init__()
        if num_classes < 0 or in_channels < 1:
            raise ValueError(f"HRNet needs num_classes >= 0 and in_channels >= 1, got {num_classes}, {in_channels}")
        self.config = config
        self.in_channels = in_channels
        self.align_corners = align_corners
        self.conv1 = conv3x3(in_channels, STEM_WIDTH, stride=2)
        self.bn1 = nn.BatchNorm2d(STEM_WIDTH)
        self.conv2 = conv3x3(STEM_WIDTH, STEM_WIDTH, stride=2)
        self.bn2 = nn.BatchNorm2d(STEM_WIDTH)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = _make_blocks(Bottleneck, STEM_WIDTH, LAYER1_WIDTH, LAYER1_BLOCKS)
        widths: tuple[int, ...] = (LAYER1_WIDTH * Bottleneck.expansion,)
        for index, stage in enumerate(config.stages, start=1):
            self.add_module(f"transition{index}", _make_transition(widths, stage.widths))
            modules = [HighResolutionModule(stage.widths, stage, align_corners) for _ in range(stage.num_modules)]
            self.add_module(f"stage{index + 1}", nn.Sequential(*modules))
            widths = stage.widths
        self.num_features = config.num_features
        self.num_classes = num_classes
        self.last_layer = self._make_last_layer(num_classes)
        _init_like_official(self)

    def _make_last_layer(self, num_classes: int) -> nn.Sequential:
        width = self.num_features
        fusion = [nn.Conv2d(width, width, kernel_size=1), nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
        if num_classes == 0:
            return nn.Sequential(*fusion)
        return nn.Sequential(*fusion, nn.Conv2d(width, num_classes, kernel_size=1))

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the classifier ``last_layer.3`` by a fresh one; 0 removes it.

        The pretrained fusion ``last_layer.0-2`` is kept, so with 0 classes ``forward`` returns the
        fused features ``[B, num_features, H/4, W/4]`` (a backbone for another head).
        """
        if num_classes < 0:
            raise ValueError(f"num_classes must be >= 0, got {num_classes}")
        fusion = list(self.last_layer.children())[:3]
        if num_classes:
            classifier = nn.Conv2d(self.num_features, num_classes, kernel_size=1)
            _init_like_official(classifier)
            fusion.append(classifier)
        self.last_layer = nn.Sequential(*fusion)
        self.num_classes = num_classes

    def forward_branches(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The four final branches, from 1/4 down to 1/32 resolution."""
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.relu(self.bn2(self.conv2(x)))
        branches = [self.layer1(x)]
        for index in range(1, len(self.config.stages) + 1):
            transition = getattr(self, f"transition{index}")
            # Existing branches pass through (or are re-widthed); new ones start from the lowest.
            inputs = [unit(branches[min(branch, len(branches) - 1)]) for branch, unit in enumerate(transition)]
            branches = getattr(self, f"stage{index + 1}")(inputs)
        return branches

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        branches = self.forward_branches(x)
        size = branches[0].shape[-2:]
        upsampled = [branches[0]] + [
            bilinear_resize(branch, size, self.align_corners)
            for branch in branches[1:]
        ]
        return torch.cat(upsampled, dim=1)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.last_layer(features)


def _init_like_official(model: nn.Module) -> None:
    """``init_weights`` of seg_hrnet.py: conv weights N(0, 0.001), BatchNorm 1 and 0."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.normal_(module.weight, std=OFFICIAL_CONV_INIT_STD)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)


@register_model_2d
def hrnet_w18(
    num_classes: int = CITYSCAPES_NUM_CLASSES, in_channels: int = RGB_CHANNELS, align_corners: bool = False
) -> HRNet:
    """HRNetV2-W18 segmentation network (9,641,119 parameters with 19 classes)."""
    return HRNet(hrnetv2_config(18), num_classes, in_channels, align_corners)


@register_model_2d
def hrnet_w48(
    num_classes: int = CITYSCAPES_NUM_CLASSES, in_channels: int = RGB_CHANNELS, align_corners: bool = False
) -> HRNet:
    """HRNetV2-W48 segmentation network (65,859,379 parameters with 19 classes; the official README gives 65.9M)."""
    return HRNet(hrnetv2_config(48), num_classes, in_channels, align_corners)


CITYSCAPES_INPUT_SIZE = 1024  # the shorter side of the 1024x2048 evaluation images

HRNET_W48_CITYSCAPES = PretrainedWeights(
    name="hrnet_w48_cityscapes",
    architecture="hrnet_w48",
    file=None,
    source=(
        "HRNet/HRNet-Semantic-Segmentation README, HRNetV2-W48 trained on the Cityscapes train set "
        "(80.9 mIoU on val), https://github.com/hsfzxjy/models.storage/releases/download/HRNet-OCR/"
        "hrnet_cs_8090_torch11.pth"
    ),
    key_prefix="model.",
    state_dict_key=None,
    num_classes=CITYSCAPES_NUM_CLASSES,
    input_size=CITYSCAPES_INPUT_SIZE,
    top1_accuracy=None,
    notes=(
        "Dense 19-class Cityscapes segmentation weights, trained with align_corners=True upsampling "
        "(the README says so; build the model with align_corners=True to reproduce its numbers). "
        "Download the file yourself and pass its path; the training wrapper's 'model.' prefix is "
        "stripped."
    ),
)
