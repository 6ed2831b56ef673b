"""Building blocks shared by the torchvision-layout families (MobileNet, EfficientNet, ConvNeXt, RegNet).

Each block reproduces the module tree of its torchvision counterpart (``torchvision/ops/misc.py``,
``torchvision/ops/stochastic_depth.py``, ``torchvision/models/_utils.py``), so a model built from them
has torchvision's ``state_dict()`` keys. Forwards are free of data-dependent Python control flow, so
``torch.fx.symbolic_trace`` sees every operation.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from image2point.models2d.registry import BackboneLayout, ImageClassifier2D

ModuleFactory = Callable[..., nn.Module]
# _make_divisible never rounds a width down by more than this fraction.
MAX_ROUND_DOWN = 0.9
# torchvision's mobile families (MobileNetV2/V3, EfficientNet) round their widths to multiples of this.
WIDTH_DIVISOR = 8
# Their squeeze-excitation squeezes to a quarter of the channels (EfficientNet: of the block's input,
# MobileNetV3: of the expanded width).
SE_REDUCTION = 4


def make_divisible(value: float, divisor: int, min_value: int | None = None) -> int:
    """``value`` rounded to the nearest multiple of ``divisor`` (at least ``min_value``, default
    ``divisor``), bumped up one ``divisor`` where rounding would lose more than 10 % (torchvision's
    ``_make_divisible``, from the TensorFlow MobileNet code)."""
    floor = divisor if min_value is None else min_value
    rounded = max(floor, int(value + divisor / 2) // divisor * divisor)
    if rounded < MAX_ROUND_DOWN * value:
        rounded += divisor
    return rounded


class ConvNormActivation(nn.Sequential):
    """Conv2d, then a norm layer (if any), then an activation (if any): keys ``0.*``, ``1.*``.

    As torchvision's ``Conv2dNormActivation``: padding defaults to ``(kernel_size - 1) // 2 * dilation``
    ("same" for odd kernels at stride 1), and the conv has a bias only when there is no norm layer.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        padding: int | None = None,
        groups: int = 1,
        norm_layer: ModuleFactory | None = nn.BatchNorm2d,
        activation_layer: ModuleFactory | None = nn.ReLU,
        dilation: int = 1,
        bias: bool | None = None,
    ):
        if padding is None:
            padding = (kernel_size - 1) // 2 * dilation
        if bias is None:
            bias = norm_layer is None
        layers: list[nn.Module] = [
            nn.Conv2d(
                in_channels,
                out_channels,
                kernel_size,
                stride,
                padding,
                dilation=dilation,
                groups=groups,
                bias=bias,
            )
        ]
        if norm_layer is not None:
            layers.append(norm_layer(out_channels))
        if activation_layer is not None:
            layers.append(activation_layer(inplace=True))
        super().__init__(*layers)
        self.out_channels = out_channels


class SqueezeExcitation(nn.Module):
    """Squeeze-and-excitation: global pool, 1x1 ``fc1``, activation, 1x1 ``fc2``, gate, rescale."""

    def __init__(
        self,
        input_channels: int,
        squeeze_channels: int,
        activation: ModuleFactory = nn.ReLU,
        scale_activation: ModuleFactory = nn.Sigmoid,
    ):
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(input_channels, squeeze_channels, 1)
        self.fc2 = nn.Conv2d(squeeze_channels, input_channels, 1)
        self.activation = activation()
        self.scale_activation = scale_activation()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.fc2(self.activation(self.fc1(self.avgpool(x))))
        return self.scale_activation(scale) * x


class StochasticDepth(nn.Module):
    """Drop a residual branch for whole samples ("row" mode of torchvision's ``StochasticDepth``).

    In training each sample's branch is zeroed with probability ``p`` and the survivors scaled by
    ``1 / (1 - p)``; in eval mode (or with ``p == 0``) it is the identity, as in torchvision.
    ``torch.fx`` reads ``self.training`` when it traces through this module, so a traced graph keeps
    the mode it was traced in unless the tracer treats this class as a leaf (as it does nn.Dropout).
    """

    def __init__(self, p: float):
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"drop probability must be in [0, 1], got {p}")
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        survival_rate = 1.0 - self.p
        noise = torch.empty([x.shape[0]] + [1] * (x.ndim - 1), dtype=x.dtype, device=x.device)
        noise = noise.bernoulli_(survival_rate)
        if survival_rate > 0.0:
            noise = noise.div_(survival_rate)
        return x * noise

    def extra_repr(self) -> str:
        return f"p={self.p}, mode=row"


class Permute(nn.Module):
    """``x.permute(*dims)`` as a module (ConvNeXt switches between channels-first and -last)."""

    def __init__(self, dims: Sequence[int]):
        super().__init__()
        self.dims = tuple(dims)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.permute(x, self.dims)

    def extra_repr(self) -> str:
        return f"dims={list(self.dims)}"


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of a channels-first map [B, C, H, W] (ConvNeXt's)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


def inverted_residual_layers(
    in_channels: int,
    expanded: int,
    out_channels: int,
    kernel: int,
    stride: int,
    activation: ModuleFactory,
    norm_layer: ModuleFactory = nn.BatchNorm2d,
    squeeze_excitation: nn.Module | None = None,
) -> list[nn.Module]:
    """MobileNetV3's / EfficientNet's inverted residual body, in torchvision's ``block.*`` order: a 1x1
    expansion (only where ``expanded`` differs from ``in_channels``), the kxk depthwise conv, the
    squeeze-excitation (if any), then the linear 1x1 projection."""
    if stride not in (1, 2):
        raise ValueError(f"stride must be 1 or 2, got {stride}")
    layers: list[nn.Module] = []
    if expanded != in_channels:
        layers.append(ConvNormActivation(in_channels, expanded, kernel_size=1,
                                         norm_layer=norm_layer, activation_layer=activation))
    layers.append(ConvNormActivation(expanded, expanded, kernel_size=kernel, stride=stride,
                                     groups=expanded, norm_layer=norm_layer, activation_layer=activation))
    if squeeze_excitation is not None:
        layers.append(squeeze_excitation)
    layers.append(ConvNormActivation(expanded, out_channels, kernel_size=1,
                                     norm_layer=norm_layer, activation_layer=None))
    return layers


class FeatureStackClassifier2D(ImageClassifier2D):
    """A classifier laid out as torchvision's mobile families: ``features`` (the stem at index 0, then
    one entry per stage), a global ``avgpool``, then ``classifier`` on the flattened pool."""

    classifier_name = "classifier"
    features: nn.Sequential
    avgpool: nn.Module
    classifier: nn.Module

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(features), 1))

    def backbone_layout(self) -> BackboneLayout:
        """Stem ``features.0``; stages ``features.1`` ... to the end of ``features``."""
        stages = tuple(f"features.{i}" for i in range(1, len(self.features)))
        return BackboneLayout(("features.0",), stages, ("avgpool", "classifier"))


def init_like_torchvision_mobile(model: nn.Module) -> None:
    """MobileNetV2/V3's initialisation: Kaiming-normal (fan-out) convs, unit norms, N(0, 0.01) linears."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, 0.0, 0.01)
            nn.init.zeros_(module.bias)
