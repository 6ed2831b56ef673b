"""Transferred networks: input layer → inflated 2D backbone stages → classification or segmentation head.

Paper Appendix 6.4. The 2D stem (conv1/bn1/maxpool, made for RGB pixels) is replaced by the input layer,
the 2D classifier by the output layer; the stages in between are the 2D stages inflated to 3D. Any 2D
model whose layout a :class:`BackboneSpec` describes plugs in (``register_backbone_spec``).

Every network has the uniform interface ``forward_features`` / ``forward_head`` / ``forward``, and the
attributes ``input_layer``, ``backbone`` and ``head`` that the finetuning schemes act on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from image2point.inflate.converter import ConversionReport, InflationSettings, build_3d_like, transfer_2d_weights
from image2point.models2d.cifar_resnet import CifarResNet
from image2point.models2d.registry import create_model_2d
from image2point.models2d.resnet import ResNet
from image2point.models2d.vgg import VGG
from image2point.sparse.kernel_map import DOWNSAMPLE_FACTOR
from image2point.sparse.modules import SparseBatchNorm, SparseConv3d
from image2point.sparse.tensor import SparseTensor
from image2point.models.layers import (
    ClassificationHead,
    InputLayer,
    NearestUpsampleHead,
    UNetDecoder,
)

# ---------------------------------------------------------------------------------------------------
# Which parts of a 2D model are stem, stages and classifier.


@dataclass(frozen=True)
class BackboneSpec:
    stem: tuple[str, ...]
    stages: tuple[str, ...]
    head: tuple[str, ...]


BACKBONE_SPECS: dict[type, Callable[[nn.Module], BackboneSpec]] = {}


def register_backbone_spec(model_type: type):
    """Decorator: ``fn(model_2d) -> BackboneSpec`` describes models of ``model_type`` (and subclasses)."""

    def decorator(fn: Callable[[nn.Module], BackboneSpec]):
        BACKBONE_SPECS[model_type] = fn
        return fn

    return decorator


@register_backbone_spec(ResNet)
def _resnet_spec(model: nn.Module) -> BackboneSpec:
    return BackboneSpec(("conv1", "bn1", "relu", "maxpool"), ("layer1", "layer2", "layer3", "layer4"),
                        ("avgpool", "fc"))


@register_backbone_spec(CifarResNet)
def _cifar_resnet_spec(model: nn.Module) -> BackboneSpec:
    return BackboneSpec(("conv1", "bn1", "relu"), ("layer1", "layer2", "layer3"), ("avgpool", "linear"))


@register_backbone_spec(VGG)
def _vgg_spec(model: nn.Module) -> BackboneSpec:
    # VGG's convs form one Sequential; it is one stage whose first conv reads the input layer's output.
    return BackboneSpec((), ("features",), ("avgpool", "classifier"))


def backbone_spec(model_2d: nn.Module) -> BackboneSpec:
    for model_type, spec in BACKBONE_SPECS.items():
        if isinstance(model_2d, model_type):
            return spec(model_2d)
    known = ", ".join(t.__name__ for t in BACKBONE_SPECS)
    raise TypeError(f"no backbone spec for {type(model_2d).__name__}; known: {known} (see register_backbone_spec)")


# ---------------------------------------------------------------------------------------------------
# The inflated backbone: the 2D stages in 3D.


@dataclass(frozen=True)
class StageInfo:
    name: str
    in_channels: int
    out_channels: int
    num_downsamples: int


def _downsamples(module: nn.Module) -> bool:
    return any(getattr(m, "stride", 1) == DOWNSAMPLE_FACTOR for m in module.modules())


def _stage_info(name: str, stage: nn.Module) -> StageInfo:
    convs = [m for m in stage.modules() if isinstance(m, SparseConv3d)]
    norms = [m for m in stage.modules() if isinstance(m, SparseBatchNorm)]
    if not convs:
        raise TypeError(f"stage {name} has no convolution")
    # A stage's children run in sequence (blocks, or single layers in VGG); each may halve resolution once.
    num_downsamples = sum(_downsamples(child) for child in stage.children())
    return StageInfo(name, convs[0].in_channels, norms[-1].num_features if norms else convs[-1].out_channels,
                     num_downsamples)


class InflatedBackbone(nn.Module):
    """The converted stages of a 2D model, under their 2D names (``layer1`` … or ``features``)."""

    def __init__(self, converted: nn.Module, spec: BackboneSpec):
        super().__init__()
        for name in spec.stages:
            self.add_module(name, getattr(converted, name))
        self.stage_names = spec.stages
        self.stages = [_stage_info(name, getattr(self, name)) for name in spec.stages]

    @property
    def in_channels(self) -> int:
        return self.stages[0].in_channels

    def forward_stages(self, x: SparseTensor) -> list[SparseTensor]:
        outputs = []
        for name in self.stage_names:
            x = getattr(self, name)(x)
            outputs.append(x)
        return outputs

    def forward(self, x: SparseTensor) -> SparseTensor:
        return self.forward_stages(x)[-1]


def inflate_backbone(
    model_2d: nn.Module, settings: InflationSettings = InflationSettings()
) -> tuple[InflatedBackbone, ConversionReport]:
    """Convert ``model_2d`` and keep its stages; the report lists stem and classifier as dropped."""
    spec = backbone_spec(model_2d)
    converted = build_3d_like(model_2d, settings)
    backbone = InflatedBackbone(converted, spec)
    state_2d = {key: value for key, value in model_2d.state_dict().items()
                if key.split(".", 1)[0] in spec.stages}
    report = transfer_2d_weights(state_2d, backbone, settings)
    report.dropped.extend(key for key in model_2d.state_dict() if key.split(".", 1)[0] not in spec.stages)
    return backbone, report


# ---------------------------------------------------------------------------------------------------
# Networks.


class TransferredNetwork(nn.Module):
    """Common parts: finetuning may freeze the backbone's BatchNorm statistics (eval mode even in train)."""

    input_layer: InputLayer
    backbone: InflatedBackbone | None
    head: nn.Module
    freeze_backbone_bn_stats: bool = False

    def train(self, mode: bool = True):
        super().train(mode)
        if mode and self.freeze_backbone_bn_stats and self.backbone is not None:
            for module in self.backbone.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()
        return self

    def encode(self, x: SparseTensor) -> list[SparseTensor]:
        """Encoder outputs, the last one of each stride, ordered by stride 1, 2, 4, …"""
        by_stride: dict[int, SparseTensor] = {}
        x = self.input_layer.full_resolution(x)
        by_stride[x.stride] = x
        if self.input_layer.downsample is not None:
            x = self.input_layer.downsample(x)
            by_stride[x.stride] = x
        if self.backbone is not None:
            for out in self.backbone.forward_stages(x):
                by_stride[out.stride] = out
        return [by_stride[stride] for stride in sorted(by_stride)]


class SparseClassifier(TransferredNetwork):
    """Classification: logits ``[batch_size, num_classes]`` for a batch of shapes."""

    def __init__(self, input_layer: InputLayer, backbone: InflatedBackbone | None, head: ClassificationHead):
        super().__init__()
        self.input_layer = input_layer
        self.backbone = backbone
        self.head = head

    def forward_features(self, x: SparseTensor) -> SparseTensor:
        x = self.input_layer(x)
        return x if self.backbone is None else self.backbone(x)

    def forward_head(self, features: SparseTensor) -> torch.Tensor:
        return self.head(features)

    def forward(self, x: SparseTensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


class SparseSegmenter(TransferredNetwork):
    """Segmentation: logits ``[num_sites, num_classes]`` for every site of the input tensor."""

    def __init__(self, input_layer: InputLayer, backbone: InflatedBackbone | None,
                 head: UNetDecoder | NearestUpsampleHead):
        super().__init__()
        self.input_layer = input_layer
        self.backbone = backbone
        self.head = head

    def forward_features(self, x: SparseTensor) -> list[SparseTensor]:
        return self.encode(x)

    def forward_head(self, features: list[SparseTensor]) -> torch.Tensor:
        return self.head(features)

    def forward(self, x: SparseTensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


# ---------------------------------------------------------------------------------------------------
# Builders.


@dataclass(frozen=True)
class NetworkConfig:
    """What to build. ``backbone`` is a registered 2D model name, or ``"none"`` (Listing 1)."""

    task: str = "classification"
    backbone: str = "resnet18"
    in_features: int = 3
    num_classes: int = 40
    input_layer: str = "conv3"
    head: str = "mlp"
    inflation: InflationSettings = InflationSettings()
    linear_width: int = 64


@dataclass
class BuiltNetwork:
    network: TransferredNetwork
    report: ConversionReport | None


def build_network(config: NetworkConfig, model_2d: nn.Module | None = None) -> BuiltNetwork:
    """Assemble a network around ``model_2d`` (created from ``config.backbone`` when not given).

    Pass a 2D model with pretrained weights already loaded; this function inflates them. The report
    lists the input layer's and head's parameters as initialised.
    """
    mode = config.inflation.stride_mode
    backbone, report = None, None
    if config.backbone != "none":
        model_2d = model_2d if model_2d is not None else create_model_2d(config.backbone)
        backbone, report = inflate_backbone(model_2d, config.inflation)
        width = backbone.in_channels
        level_channels = _level_channels(config, backbone) if config.task == "segmentation" else []
        deepest = backbone.stages[-1].out_channels
    else:
        width = deepest = config.linear_width
        level_channels = [width] if config.input_layer == "linear" else [width, width]
    input_layer = InputLayer(config.in_features, width, config.input_layer, mode)
    if config.task == "classification":
        network: TransferredNetwork = SparseClassifier(
            input_layer, backbone, ClassificationHead(deepest, config.num_classes, config.head))
    elif config.task == "segmentation":
        if config.head == "unet":
            head: nn.Module = UNetDecoder(level_channels, config.num_classes, mode)
        elif config.head == "linear":
            head = NearestUpsampleHead(deepest, config.num_classes)
        else:
            raise ValueError(f"segmentation head must be 'unet' or 'linear', got {config.head!r}")
        network = SparseSegmenter(input_layer, backbone, head)
    else:
        raise ValueError(f"task must be 'classification' or 'segmentation', got {config.task!r}")
    if report is not None:
        report.initialised = [f"backbone.{key}" for key in report.initialised]
        report.initialised += [name for name, _ in network.named_parameters() if not name.startswith("backbone.")]
    return BuiltNetwork(network, report)


def _level_channels(config: NetworkConfig, backbone: InflatedBackbone) -> list[int]:
    """Channels of the encoder output at strides 1, 2, 4, … (input layer, then each stage)."""
    by_level = [backbone.in_channels]
    if config.input_layer == "conv3":
        by_level.append(backbone.in_channels)
    for stage in backbone.stages:
        if stage.num_downsamples > 1:
            raise ValueError(
                f"segmentation needs one resolution level per stage, but stage {stage.name!r} of "
                f"{config.backbone} downsamples {stage.num_downsamples} times (use it for classification)")
        if stage.num_downsamples:
            by_level.append(stage.out_channels)
        else:
            by_level[-1] = stage.out_channels
    return by_level
