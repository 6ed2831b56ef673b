"""ESPNetv2 (Mehta et al., CVPR 2019) in the layout of sacmehta/EdgeNets' ``EESPNet``.

Module names follow ``model/classification/espnetv2.py``, ``nn_layers/eesp.py`` and
``nn_layers/espnet_utils.py`` of sacmehta/EdgeNets at 2b232d3f, so its checkpoints load by name:
``level1`` (3x3/2 conv-BN-PReLU), the downsamplers ``level2_0`` ... ``level5_0``, the EESP units
``level3.i``, ``level4.i``, ``level5.i`` (``level5`` ends with a depthwise 3x3 and a grouped 1x1
conv-BN-PReLU) and ``classifier``. BatchNorms use PyTorch's default eps.

An EESP unit reduces with a grouped 1x1 conv (``proj_1x1``, K = 4 groups), applies K depthwise 3x3
convs (``spp_dw``) with dilations from the receptive-field limit of its level, sums them
hierarchically, concatenates, applies BN-PReLU (``br_after_cat``) and a grouped 1x1 conv-BN
(``conv_1x1_exp``), adds the input where shapes agree and ends with ``module_act`` (PReLU). A
downsampler concatenates a 3x3/2 average pool of its input with a strided EESP unit (which skips
the residual and ``module_act``), adds ``inp_reinf`` (conv-BN-PReLU 3x3 and conv-BN 1x1) of the RGB
image average-pooled to the same resolution, and applies ``act``.

Differences from the original, for ``torch.fx``: the original pools the image in a ``while`` loop
until its width equals the feature map's; here a downsampler at 1/2^L of the input pools it L times,
the same thing for every input larger than 2^L pixels a side. ``level5_0`` has ``inp_reinf`` weights
that the original never uses; so does this module.

``espnetv2_base`` is the encoder that EdgeNets' segmentation network keeps (``level1`` ...
``level4``, no ``level5``, no classifier); its Cityscapes checkpoint's ``base_net.*`` tensors all
load into it. The segmentation and classification networks of EdgeNets normalise RGB inputs with the
ImageNet mean and std.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from image2point.channels import RGB_CHANNELS
from image2point.models2d.registry import (
    IMAGENET_NUM_CLASSES,
    SHARED_WEIGHTS_DIR,
    ImageClassifier2D,
    PretrainedWeights,
    register_known_weights,
    register_model_2d,
)

# model/classification/espnetv2_config.py: widths per scale s, EESP units per level, receptive-field
# limits per level, branches per unit.
WIDTHS_BY_SCALE = {
    0.5: (16, 32, 64, 128, 256, 1024),
    1.0: (32, 64, 128, 256, 512, 1024),
    1.25: (32, 80, 160, 320, 640, 1024),
    1.5: (32, 96, 192, 384, 768, 1024),
    2.0: (32, 128, 256, 512, 1024, 1280),
}
UNITS_PER_LEVEL = {3: 3, 4: 7, 5: 3}
RECEPTIVE_LIMITS = (13, 11, 9, 7, 5)
BRANCHES = 4
DEFAULT_DROPOUT = 0.2
CITYSCAPES_CLASSES = 20
CITYSCAPES_INPUT_WIDTH = 1024


def _pad(kernel_size: int, dilation: int = 1) -> int:
    return (kernel_size - 1) // 2 * dilation


class CBR(nn.Module):
    """``conv`` (no bias), ``bn``, ``act`` (PReLU)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, groups: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, _pad(kernel_size),
                              bias=False, groups=groups)
        self.bn = nn.BatchNorm2d(out_channels)
        self.act = nn.PReLU(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class CB(nn.Module):
    """``conv`` (no bias), ``bn``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, groups: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, _pad(kernel_size),
                              bias=False, groups=groups)
        self.bn = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))


class BR(nn.Module):
    """``bn``, ``act`` (PReLU)."""

    def __init__(self, channels: int):
        super().__init__()
        self.bn = nn.BatchNorm2d(channels)
        self.act = nn.PReLU(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(x))


class DepthwiseDilated(nn.Module):
    """Depthwise 3x3 conv of dilation ``dilation`` under ``conv`` (the original ``CDilated``)."""

    def __init__(self, channels: int, stride: int, dilation: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride, _pad(3, dilation), dilation=dilation,
                              groups=channels, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def branch_dilations(branches: int, receptive_limit: int) -> list[int]:
    """Dilations of an EESP unit's depthwise branches: kernels 3, 5, 7, ... capped by the level's
    receptive-field limit (beyond it: 3), sorted, as dilations of a 3x3 kernel."""
    sizes = sorted(3 + 2 * i if 3 + 2 * i <= receptive_limit else 3 for i in range(branches))
    return [(size - 1) // 2 for size in sizes]


class EESP(nn.Module):
    """Extremely efficient spatial pyramid unit; ``in_downsampler`` units skip residual and activation."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, branches: int, receptive_limit: int,
                 in_downsampler: bool = False):
        super().__init__()
        width = out_channels // branches
        if width * branches != out_channels:
            raise ValueError(f"EESP needs out_channels divisible by {branches}, got {out_channels}")
        self.proj_1x1 = CBR(in_channels, width, 1, groups=branches)
        self.spp_dw = nn.ModuleList(
            DepthwiseDilated(width, stride, d) for d in branch_dilations(branches, receptive_limit)
        )
        self.conv_1x1_exp = CB(out_channels, out_channels, 1, groups=branches)
        self.br_after_cat = BR(out_channels)
        self.module_act = nn.PReLU(out_channels)
        self.in_downsampler = in_downsampler and stride == 2
        self.residual = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        reduced = self.proj_1x1(x)
        outputs = [self.spp_dw[0](reduced)]
        for branch in self.spp_dw[1:]:
            outputs.append(branch(reduced) + outputs[-1])
        expanded = self.conv_1x1_exp(self.br_after_cat(torch.cat(outputs, 1)))
        if self.in_downsampler:
            return expanded
        if self.residual:
            expanded = expanded + x
        return self.module_act(expanded)


class DownSampler(nn.Module):
    """Halve the resolution: ``cat(avg(x), eesp(x)) + inp_reinf(image pooled image_pools times)``, ``act``."""

    def __init__(self, in_channels: int, out_channels: int, receptive_limit: int, image_pools: int,
                 image_channels: int):
        super().__init__()
        self.eesp = EESP(in_channels, out_channels - in_channels, 2, BRANCHES, receptive_limit, in_downsampler=True)
        self.avg = nn.AvgPool2d(kernel_size=3, padding=1, stride=2)
        self.inp_reinf = nn.Sequential(
            CBR(image_channels, image_channels, 3, 1), CB(image_channels, out_channels, 1, 1)
        )
        self.act = nn.PReLU(out_channels)
        self.image_pools = image_pools

    def forward(self, x: torch.Tensor, image: torch.Tensor | None = None) -> torch.Tensor:
        output = torch.cat([self.avg(x), self.eesp(x)], 1)
        if image is not None:
            for _ in range(self.image_pools):
                image = F.avg_pool2d(image, kernel_size=3, padding=1, stride=2)
            output = output + self.inp_reinf(image)
        return self.act(output)


class ESPNetV2(ImageClassifier2D):
    """ESPNetv2 at width scale ``s``; with ``include_level5=False`` the segmentation encoder (1/16)."""

    classifier_name = "classifier"

    def __init__(
        self,
        s: float = 2.0,
        num_classes: int = IMAGENET_NUM_CLASSES,
        in_channels: int = RGB_CHANNELS,
        include_level5: bool = True,
        dropout: float = DEFAULT_DROPOUT,
    ):
        super().__init__()
        widths = WIDTHS_BY_SCALE.get(s)
        if widths is None:
            raise ValueError(f"ESPNetv2 scale s must be one of {sorted(WIDTHS_BY_SCALE)}, got {s}")
        self.num_classes = num_classes
        self.level1 = CBR(in_channels, widths[0], 3, 2)
        self.level2_0 = DownSampler(widths[0], widths[1], RECEPTIVE_LIMITS[0], 2, in_channels)
        self.level3_0 = DownSampler(widths[1], widths[2], RECEPTIVE_LIMITS[1], 3, in_channels)
        self.level3 = nn.Sequential(*(EESP(widths[2], widths[2], 1, BRANCHES, RECEPTIVE_LIMITS[2])
                                      for _ in range(UNITS_PER_LEVEL[3])))
        self.level4_0 = DownSampler(widths[2], widths[3], RECEPTIVE_LIMITS[2], 4, in_channels)
        self.level4 = nn.Sequential(*(EESP(widths[3], widths[3], 1, BRANCHES, RECEPTIVE_LIMITS[3])
                                      for _ in range(UNITS_PER_LEVEL[4])))
        self.num_features = widths[3]
        self.level5_0: DownSampler | None = None
        self.level5: nn.Sequential | None = None
        if include_level5:
            self.level5_0 = DownSampler(widths[3], widths[4], RECEPTIVE_LIMITS[3], 5, in_channels)
            units: list[nn.Module] = [EESP(widths[4], widths[4], 1, BRANCHES, RECEPTIVE_LIMITS[4])
                                      for _ in range(UNITS_PER_LEVEL[5])]
            units += [
                CBR(widths[4], widths[4], 3, 1, groups=widths[4]),
                CBR(widths[4], widths[5], 1, 1, groups=BRANCHES),
            ]
            self.level5 = nn.Sequential(*units)
            self.num_features = widths[5]
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(self.num_features, num_classes) if num_classes > 0 else None
        _init_like_edgenets(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        out = self.level2_0(self.level1(x), x)
        out = self.level3(self.level3_0(out, x))
        out = self.level4(self.level4_0(out, x))
        if self.level5_0 is not None and self.level5 is not None:
            # As in EdgeNets, the image does not reinforce level 5.
            out = self.level5(self.level5_0(out))
        return out

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """Logits, or the pooled features [B, num_features] when built without a classifier."""
        pooled = torch.flatten(self.dropout(self.avgpool(features)), 1)
        return pooled if self.classifier is None else self.classifier(pooled)


def _init_like_edgenets(model: nn.Module) -> None:
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out")
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=0.001)
            nn.init.zeros_(module.bias)


@register_model_2d
def espnetv2(
    num_classes: int = IMAGENET_NUM_CLASSES,
    in_channels: int = RGB_CHANNELS,
    s: float = 2.0,
    dropout: float = DEFAULT_DROPOUT,
) -> ESPNetV2:
    """EdgeNets' ESPNetv2 classification network (s=2.0: 3,498,136 parameters with 1000 classes)."""
    return ESPNetV2(s, num_classes, in_channels, include_level5=True, dropout=dropout)


@register_model_2d
def espnetv2_base(num_classes: int = 0, in_channels: int = RGB_CHANNELS, s: float = 2.0) -> ESPNetV2:
    """The ESPNetv2 encoder of EdgeNets' segmentation network, levels 1-4 (output stride 16); with
    ``num_classes=0`` (default) it has no classifier and ``forward`` returns pooled features."""
    return ESPNetV2(s, num_classes, in_channels, include_level5=False)


def segmentation_base_net_key(key: str) -> str | None:
    """Key map for EdgeNets' segmentation checkpoints: keep ``base_net.*`` (prefix removed), drop the decoder."""
    return key.removeprefix("base_net.") if key.startswith("base_net.") else None


ESPNETV2_S2_CITYSCAPES = register_known_weights(
    PretrainedWeights(
        name="espnetv2_s2_0_cityscapes",
        architecture="espnetv2_base",
        file=str(SHARED_WEIGHTS_DIR / "espnetv2_s2.0_cityscapes.pth"),
        source=(
            "sacmehta/EdgeNets @ 2b232d3f, model/segmentation/model_zoo/espnetv2/"
            "espnetv2_s_2.0_city_1024x512.pth (MIT)"
        ),
        key_prefix="",
        state_dict_key=None,
        num_classes=0,
        input_size=CITYSCAPES_INPUT_WIDTH,
        top1_accuracy=None,
        notes=(
            "The encoder (base_net, started from ImageNet weights) of a Cityscapes segmentation "
            "network; the decoder's tensors are dropped by the key map. Inputs: RGB normalised "
            "with the ImageNet mean and std."
        ),
        key_map=segmentation_base_net_key,
    )
)
