"""2D ConvNet → sparse 3D ConvNet: the same modules under the same names, every 2D kernel inflated by T, and
the 2D forward carried over.

:func:`convert_2d_to_3d` converts a whole model, its forward included:

1. the forward is traced with ``torch.fx`` (eval mode) and rewritten to run on a :class:`SparseTensor`
   (:mod:`image2point.inflate.fx_graph`): convs (grouped, depthwise, dilated; K = 1, 3, 5, 7, patch convs),
   norms (BatchNorm, LayerNorm over channels, GroupNorm), activations and pools become their sparse
   counterparts (:mod:`image2point.inflate.layer_map`); residual adds, channel concatenation, per-sample
   scaling (squeeze-and-excitation), permutes to channels-last and back, global pooling and everything
   after it (flatten, the classifier) work as the 2D code says. What cannot be mapped is refused with
   :class:`UnsupportedLayerError`, naming the module path and the node;
2. the 3D module tree of the modules the forward calls is built under their 2D names
   (:mod:`image2point.inflate.mirror`); modules that run on dense values (squeeze-and-excitation convs,
   the classifier) stay 2D modules;
3. :func:`transfer_2d_weights` maps the 2D state dict onto it **by name**: conv kernels inflated
   (``inflate_weight(w2d, T)``), everything else carried over, every shape checked. The
   :class:`ConversionReport` lists what was inflated, carried, carried as the classifier, dropped and
   newly initialised; every 2D key lands in exactly one of inflated / carried / classifier / dropped.

Called on a batch, the result returns what the 2D model returns: logits for a classifier, sparse maps for a
feature extractor. ``outputs`` cuts the forward at named values (``forward_features``-style backbones).

:func:`build_3d_like` is the module tree alone, without a forward: the ResNets, CIFAR ResNets and VGGs, their
classifiers left out (what the paper's networks are built from).

With a learnable T, a conv of kernel K > 1 keeps its 2D kernel as the frozen buffer ``weight_2d`` and
computes its 3D kernel as ``weight_2d · T`` on every forward; T is one :class:`FilterTransform` per kernel
size shared by all convs (``learnable_t="shared"``, tied like shared embeddings) or one per conv
(``"per_conv"``). 1×1 kernels inflate to themselves and stay plain convs.

Strided shortcuts (1×1 stride-2 convs, CIFAR option-A subsamples) read the finer level as
``settings.shortcut`` says (:mod:`image2point.inflate.shortcuts`): the child at ``2q`` only, or the sum
or mean of all children of ``q``.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from image2point.inflate.graph_convert import Outputs, convert_graph
from image2point.inflate.inflated_conv import InflatedSparseConv3d
from image2point.inflate.mirror import HEAD_ONLY_LAYERS, ModuleMirror
from image2point.inflate.settings import (
    CHILDREN_REDUCTION,
    LEARNABLE_T_MODES,
    InflationSettings,
    LearnableT,
    UnsupportedLayerError,
)
from image2point.inflate.shortcuts import DEFAULT_STRIDED_SHORTCUT, StridedShortcut
from image2point.inflate.transfer import ConversionReport, InflatedKernel, transfer_2d_weights


def build_3d_like(model_2d: nn.Module, settings: InflationSettings = InflationSettings()) -> nn.Module:
    """The sparse 3D module tree mirroring ``model_2d`` (weights not transferred yet, no forward of its own;
    classifier layers left out)."""
    model_3d = ModuleMirror(settings).build("", model_2d)
    if model_3d is None:
        raise UnsupportedLayerError("the 2D model has no convolutional part to convert")
    return model_3d


@dataclass
class Converted:
    """A converted network and how its weights were obtained."""

    model: nn.Module
    report: ConversionReport


def convert_2d_to_3d(
    model_2d: nn.Module,
    transform: str = "default",
    *,
    normalize: bool = False,
    learnable_t: LearnableT = "none",
    t_init: str = "default",
    stride_mode: str = "floor",
    shortcut: StridedShortcut | str = DEFAULT_STRIDED_SHORTCUT,
    outputs: Outputs = None,
) -> Converted:
    """The sparse 3D counterpart of ``model_2d``, its forward included, with its weights inflated, and the
    conversion report.

    ``outputs``: None for the whole forward; a node name of the traced graph or a module path (the value
    that module's call returns) to stop there; several names to return a list of those values.

    Example::

        converted = convert_2d_to_3d(mobilenet_v2())
        print(converted.report.summary())
        logits = converted.model(sparse_tensor)          # [batch_size, 1000]
        features = converted.model.features[3](x)        # one block, as in 2D
        backbone = convert_2d_to_3d(espnet_c(), outputs=["b1", "b2", "b3"]).model  # three levels
    """
    settings = InflationSettings(transform, normalize, learnable_t, t_init, stride_mode, shortcut)
    model_3d, report = convert_graph(model_2d, settings, outputs)
    return Converted(model_3d, report)


__all__ = [
    "CHILDREN_REDUCTION",
    "HEAD_ONLY_LAYERS",
    "LEARNABLE_T_MODES",
    "ConversionReport",
    "Converted",
    "InflatedKernel",
    "InflatedSparseConv3d",
    "InflationSettings",
    "LearnableT",
    "UnsupportedLayerError",
    "build_3d_like",
    "convert_2d_to_3d",
    "transfer_2d_weights",
]
