"""Any traceable 2D family as the inflated backbone of the paper's network (input layer → stages → head).

The ResNets, CIFAR ResNets and VGGs plug in by module position (:class:`~image2point.models.networks.
InflatedBackbone`); every other family plugs in here, through its traced forward
(:mod:`image2point.inflate.graph_convert`). Where its forward is tapped is an :class:`EncoderTaps`:

- ``entry``: the value the network's input layer replaces (the stem's output: for a family with a
  :class:`~image2point.models2d.BackboneLayout`, the last stem module). The stem is cut away; the input layer
  then produces the stem's channels, as the paper's networks do for ResNets.
- ``entry=None``: the family reads the image itself beyond its stem (ESPNet-C and ESPNetv2 concatenate or add
  the pooled image at every level), so the whole forward is kept. The input layer keeps its own width and a
  new 1×1×1 conv (``adapter``, trained in every finetuning scheme like the input layer) maps it to the image
  channels the first 2D conv expects: a learned pseudo-image.
- ``stages``: the values handed to the head or decoder (module paths or node names), in forward order.

Register taps for a family type with :func:`register_encoder_taps`; families with ``backbone_layout()``
need none. Channels and strides of the stages are read off one 2D forward of a probe image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.fx as fx
from torch import nn

from image2point.inflate.fx_graph import trace_for_conversion
from image2point.inflate.graph_convert import build_from_graph, resolve_output, set_outputs, transfer_with_report
from image2point.inflate.settings import InflationSettings, UnsupportedLayerError
from image2point.inflate.transfer import ConversionReport
from image2point.models.stages import StageInfo
from image2point.models2d.espnet import ESPNetC
from image2point.models2d.espnetv2 import ESPNetV2
from image2point.sparse.kernel_map import DOWNSAMPLE_FACTOR
from image2point.sparse.modules import SparseConv3d
from image2point.sparse.tensor import SparseTensor

# Side of the probe image whose 2D forward gives the stages' channels and strides: a multiple of every
# family's output stride (32), so that every downsampling is exact.
PROBE_SIZE = 64
# Input-layer width of a backbone that reads the image itself: at least this, or its first stage's width.
MIN_IMAGE_INPUT_WIDTH = 32
ADAPTER_NAME = "adapter"


@dataclass(frozen=True)
class EncoderTaps:
    """Where a 2D forward is entered (None: at the image) and tapped (one value per stage)."""

    entry: str | None
    stages: tuple[str, ...]


ENCODER_TAPS: dict[type, Callable[[nn.Module], EncoderTaps]] = {}


def register_encoder_taps(model_type: type):
    """Decorator: ``fn(model_2d) -> EncoderTaps`` says where models of ``model_type`` are tapped."""

    def decorator(fn: Callable[[nn.Module], EncoderTaps]):
        ENCODER_TAPS[model_type] = fn
        return fn

    return decorator


@register_encoder_taps(ESPNetC)
def _espnet_c_taps(model: nn.Module) -> EncoderTaps:
    # b1, b2, b3: the BN-PReLU outputs at 1/2, 1/4, 1/8 (the classifier is dropped).
    return EncoderTaps(None, ("b1", "b2", "b3"))


@register_encoder_taps(ESPNetV2)
def _espnetv2_taps(model: nn.Module) -> EncoderTaps:
    stages = ("level1", "level2_0", "level3", "level4")
    return EncoderTaps(None, stages + (("level5",) if model.level5 is not None else ()))


def encoder_taps(model_2d: nn.Module) -> EncoderTaps:
    """The registered taps of ``model_2d``'s type, else those its ``backbone_layout()`` implies."""
    for model_type in type(model_2d).__mro__:
        if model_type in ENCODER_TAPS:
            return ENCODER_TAPS[model_type](model_2d)
    layout = getattr(model_2d, "backbone_layout", None)
    if layout is None:
        raise UnsupportedLayerError(
            f"model: {type(model_2d).__name__} has neither backbone_layout() nor registered encoder taps "
            "(image2point.models.graph_backbone.register_encoder_taps)")
    layout = layout()
    return EncoderTaps(layout.stem[-1] if layout.stem else None, tuple(layout.stages))


# ---------------------------------------------------------------------------------------------------
# The 2D graph, entered and tapped.


def _ancestors(node: fx.Node) -> set[fx.Node]:
    seen, todo = set(), [node]
    while todo:
        current = todo.pop()
        for parent in current.all_input_nodes:
            if parent not in seen:
                seen.add(parent)
                todo.append(parent)
    return seen


def tapped_graph(model_2d: nn.Module, taps: EncoderTaps) -> fx.Graph:
    """``model_2d``'s forward returning the list of stage values, its input fed in at ``taps.entry``."""
    graph = trace_for_conversion(model_2d)
    stages = [resolve_output(graph, name) for name in taps.stages]
    if taps.entry is not None:
        entry = resolve_output(graph, taps.entry)
        image = next(node for node in graph.nodes if node.op == "placeholder")
        stem = _ancestors(entry)
        later = [user.name for user in image.users if user not in stem and user is not entry]
        if later:
            raise UnsupportedLayerError(
                f"{taps.entry}: the forward reads the image after this entry too (node {later[0]!r}); tap it "
                "with entry=None")
        entry.replace_all_uses_with(image)
    set_outputs(graph, stages)
    return graph


def first_conv_input_channels(model_2d: nn.Module, graph: fx.Graph) -> int:
    for node in graph.nodes:
        if node.op == "call_module" and isinstance(model_2d.get_submodule(node.target), nn.Conv2d):
            return model_2d.get_submodule(node.target).in_channels
    raise UnsupportedLayerError(f"model: the forward of {type(model_2d).__name__} calls no Conv2d")


def probe_stages(model_2d: nn.Module, taps: EncoderTaps, image_channels: int) -> tuple[int, list[StageInfo]]:
    """The entry's channels and each stage's channels and downsamplings, from a 2D forward of a probe image."""
    graph = trace_for_conversion(model_2d)
    names = ([taps.entry] if taps.entry is not None else []) + list(taps.stages)
    set_outputs(graph, [resolve_output(graph, name) for name in names])
    probe = fx.GraphModule(model_2d, graph)
    training = model_2d.training
    try:
        with torch.no_grad():
            outputs = probe.eval()(torch.zeros(1, image_channels, PROBE_SIZE, PROBE_SIZE))
    finally:
        model_2d.train(training)
    channels, size = image_channels, PROBE_SIZE
    if taps.entry is not None:
        entry, *outputs = outputs
        channels, size = entry.shape[1], entry.shape[-1]
    entry_channels, stages = channels, []
    for name, out in zip(taps.stages, outputs):
        halvings = math.log(size / out.shape[-1], DOWNSAMPLE_FACTOR)
        if out.dim() != 4 or halvings != round(halvings) or halvings < 0:
            raise UnsupportedLayerError(f"{name}: a stage must return a feature map at a power-of-2 stride, got "
                                        f"{tuple(out.shape)} from a {size}-pixel input")
        stages.append(StageInfo(name, channels, out.shape[1], round(halvings)))
        channels, size = out.shape[1], out.shape[-1]
    return entry_channels, stages


# ---------------------------------------------------------------------------------------------------
# The backbone.


class GraphBackbone(nn.Module):
    """The converted 2D forward from ``taps.entry`` to its stages (``encoder``), behind an ``adapter`` when
    it reads the image itself; the interface of :class:`~image2point.models.networks.InflatedBackbone`."""

    def __init__(self, encoder: nn.Module, stages: list[StageInfo], input_width: int,
                 image_channels: int | None = None, stride_mode: str = "floor"):
        super().__init__()
        self.adapter = None
        if image_channels is not None:
            self.adapter = SparseConv3d(input_width, image_channels, 1, bias=True, stride_mode=stride_mode)
        self.encoder = encoder
        self.stages = stages
        self.stage_names = tuple(stage.name for stage in stages)
        self.input_width = input_width

    @property
    def in_channels(self) -> int:
        """The channels the input layer must produce."""
        return self.input_width

    @property
    def new_parameter_names(self) -> tuple[str, ...]:
        """Parameters without a 2D source (the adapter): they train in every finetuning scheme."""
        if self.adapter is None:
            return ()
        return tuple(f"{ADAPTER_NAME}.{name}" for name, _ in self.adapter.named_parameters())

    def forward_stages(self, x: SparseTensor) -> list[SparseTensor]:
        if self.adapter is not None:
            x = self.adapter(x)
        return list(self.encoder(x))

    def forward(self, x: SparseTensor) -> SparseTensor:
        return self.forward_stages(x)[-1]


def inflate_graph_backbone(model_2d: nn.Module, settings: InflationSettings = InflationSettings(),
                           taps: EncoderTaps | None = None) -> tuple[GraphBackbone, ConversionReport]:
    """``model_2d`` as a backbone: its forward from ``taps.entry`` to ``taps.stages`` (default:
    :func:`encoder_taps`) converted, its weights inflated; stem and classifier are reported as dropped."""
    taps = taps or encoder_taps(model_2d)
    if not taps.stages:
        raise UnsupportedLayerError("model: encoder taps name no stage")
    image_channels = first_conv_input_channels(model_2d, trace_for_conversion(model_2d))
    graph = tapped_graph(model_2d, taps)
    entry_channels, stages = probe_stages(model_2d, taps, image_channels)
    encoder, plan = build_from_graph(model_2d, graph, settings)
    report = transfer_with_report(model_2d, encoder, plan, settings)
    if taps.entry is None:
        width = max(MIN_IMAGE_INPUT_WIDTH, stages[0].out_channels)
        backbone = GraphBackbone(encoder, stages, width, image_channels, settings.stride_mode)
    else:
        backbone = GraphBackbone(encoder, stages, entry_channels)
    # The report names 3D tensors relative to the backbone (networks prefix them with "backbone.").
    report.initialised = [f"encoder.{key}" for key in report.initialised] + list(backbone.new_parameter_names)
    backbone.train(model_2d.training)
    return backbone, report
