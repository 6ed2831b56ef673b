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
from image2point.models.decoder import SEGMENTATION_HEADS, EncoderLevel, SkipDecoder
from image2point.models.heads import HEAD_HIDDEN_CHANNELS, ClassificationHead
from image2point.models.layers import InputLayer

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
        """The decoder's skips: the input layer's full-resolution output ``x_i``, then the last output of
        each coarser stride (Listings 4 and 6: ``x_i, x1, x2, …``). With the linear input layer ``x1``
        shares ``x_i``'s stride; :func:`encoder_levels` describes the same list."""
        x = self.input_layer.full_resolution(x)
        skips = [x]
        if self.input_layer.downsample is not None:
            x = self.input_layer.downsample(x)
            skips.append(x)
        for out in self.backbone.forward_stages(x) if self.backbone is not None else []:
            _keep_last_of_stride(skips, out)
        return skips


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
                 head: SkipDecoder):
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


def _keep_last_of_stride(skips: list, entry) -> None:
    """Append ``entry`` to ``skips``, replacing the last entry of the same stride unless that is ``x_i``."""
    if len(skips) > 1 and skips[-1].stride == entry.stride:
        skips[-1] = entry
    else:
        skips.append(entry)


# ---------------------------------------------------------------------------------------------------
# Builders.

# Listing 1's backbone-free network is as wide as ResNet-18's deepest stage (``layer4_Odim``).
LINEAR_NETWORK_WIDTH = 512


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
    # Channels of the network without a backbone (Listing 1).
    linear_width: int = LINEAR_NETWORK_WIDTH
    # Hidden width of the ``mlp`` classification head (Listing 3).
    head_hidden: int = HEAD_HIDDEN_CHANNELS


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
    else:
        width = config.linear_width
    input_layer = InputLayer(config.in_features, width, config.input_layer, mode)
    if config.task == "classification":
        deepest = backbone.stages[-1].out_channels if backbone is not None else width
        head = ClassificationHead(deepest, config.num_classes, config.head, config.head_hidden)
        network: TransferredNetwork = SparseClassifier(input_layer, backbone, head)
    elif config.task == "segmentation":
        network = SparseSegmenter(input_layer, backbone, _segmentation_head(config, input_layer, backbone, width))
    else:
        raise ValueError(f"task must be 'classification' or 'segmentation', got {config.task!r}")
    if report is not None:
        report.initialised = [f"backbone.{key}" for key in report.initialised]
        report.initialised += [name for name, _ in network.named_parameters() if not name.startswith("backbone.")]
    return BuiltNetwork(network, report)


def _segmentation_head(config: NetworkConfig, input_layer: InputLayer, backbone: InflatedBackbone | None,
                       width: int) -> SkipDecoder:
    if config.head not in SEGMENTATION_HEADS:
        raise ValueError(f"segmentation head must be one of {sorted(SEGMENTATION_HEADS)}, got {config.head!r}")
    levels = encoder_levels(input_layer, backbone, width)
    return SEGMENTATION_HEADS[config.head](levels, config.num_classes, config.inflation.stride_mode)


def encoder_levels(input_layer: InputLayer, backbone: InflatedBackbone | None, width: int) -> list[EncoderLevel]:
    """Channels and strides of :meth:`TransferredNetwork.encode`'s outputs (``x_i`` first)."""
    levels = [EncoderLevel(width, 1)]
    if input_layer.downsample is not None:
        levels.append(EncoderLevel(width, input_layer.out_stride))
    for stage in backbone.stages if backbone is not None else ():
        if stage.num_downsamples > 1:
            raise ValueError(
                f"stage {stage.name!r} downsamples {stage.num_downsamples} times, but a decoder needs one "
                "resolution level per stage (use this backbone for classification)")
        _keep_last_of_stride(levels, EncoderLevel(stage.out_channels, levels[-1].stride * 2 ** stage.num_downsamples))
    return levels
