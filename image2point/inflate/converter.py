"""2D ConvNet → sparse 3D ConvNet: the same module tree, every 2D kernel inflated by T.

Conversion has two plain steps:

1. :func:`build_3d_like` mirrors the 2D module tree with sparse 3D modules of the same names
   (``layer1.0.conv1`` stays ``layer1.0.conv1``): Conv2d → :class:`SparseConv3d`, BatchNorm2d →
   :class:`SparseBatchNorm`, ReLU, MaxPool2d, AdaptiveAvgPool2d, Sequential, the residual blocks of
   torchvision-style and CIFAR ResNets (option-A shortcuts included). Classifier layers (Linear,
   Dropout, Flatten) have no 3D counterpart and are left out.
2. :func:`transfer_2d_weights` maps a 2D state dict onto it **by name**: conv kernels are inflated
   (``inflate_weight(w2d, T)``), BatchNorm statistics and affine parameters carried over, and every
   shape checked. The :class:`ConversionReport` lists what was inflated, carried, dropped and
   newly initialised; every 2D key lands in exactly one of those lists.

With a learnable T, a 3×3 conv keeps its 2D kernel as the frozen buffer ``weight_2d`` and computes its
3D kernel as ``weight_2d · T`` on every forward; T is one :class:`FilterTransform` per kernel size
shared by all convs (``learnable_t="shared"``, tied like shared embeddings) or one per conv
(``"per_conv"``). 1×1 kernels inflate to themselves and stay plain convs.

Strided shortcuts (1×1 stride-2 convs, CIFAR option-A subsamples) read the finer level as
``settings.shortcut`` says (:mod:`image2point.inflate.shortcuts`): the child at ``2q`` only, or the sum
or mean of all children of ``q``.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable, Literal, Mapping

import torch
from torch import nn

from image2point.inflate.blocks import SparseBasicBlock, SparseBottleneck, SparseCifarBasicBlock
from image2point.inflate.learnable import LEARNABLE_INITS, FilterTransform
from image2point.inflate.shortcuts import DEFAULT_STRIDED_SHORTCUT, StridedShortcut
from image2point.inflate.transforms import TRANSFORM_NAMES, filter_transform, inflate_weight
from image2point.models2d.cifar_resnet import CifarBasicBlock, ShortcutA
from image2point.models2d.resnet import BasicBlock, Bottleneck
from image2point.sparse.functional import ChildrenReduce
from image2point.sparse.kernel_map import STRIDE_MODES
from image2point.sparse.modules import (
    SparseBatchNorm,
    SparseChildrenConv3d,
    SparseConv3d,
    SparseGlobalAvgPool,
    SparseMaxPool3d,
    SparseReLU,
    SparseSubsampleShortcut,
)

LearnableT = Literal["none", "shared", "per_conv"]
LEARNABLE_T_MODES = ("none", "shared", "per_conv")
# 2D layers that exist only to classify images; a 3D network brings its own head.
HEAD_ONLY_LAYERS = (nn.Linear, nn.Dropout, nn.Flatten)
# The sparse reduction behind each strided-shortcut setting (None: the child at 2q only).
CHILDREN_REDUCTION: dict[StridedShortcut, ChildrenReduce | None] = {
    StridedShortcut.CENTER: None,
    StridedShortcut.CHILDREN_SUM: ChildrenReduce.SUM,
    StridedShortcut.CHILDREN_MEAN: ChildrenReduce.MEAN,
}


class UnsupportedLayerError(TypeError):
    """The 2D model contains a layer the converter cannot map to 3D."""


@dataclass(frozen=True)
class InflationSettings:
    """How 2D kernels become 3D: the fixed or initial T, whether T is learned, how strided shortcuts
    read their children (a :class:`StridedShortcut` or its name)."""

    transform: str = "default"
    normalize: bool = False
    learnable_t: LearnableT = "none"
    t_init: str = "default"
    stride_mode: str = "floor"
    shortcut: StridedShortcut = DEFAULT_STRIDED_SHORTCUT

    def __post_init__(self) -> None:
        object.__setattr__(self, "shortcut", StridedShortcut.parse(self.shortcut))
        if self.learnable_t not in LEARNABLE_T_MODES:
            raise ValueError(f"learnable_t must be one of {LEARNABLE_T_MODES}, got {self.learnable_t!r}")
        if self.stride_mode not in STRIDE_MODES:
            raise ValueError(f"stride_mode must be one of {STRIDE_MODES}, got {self.stride_mode!r}")
        if self.transform not in TRANSFORM_NAMES:
            raise ValueError(f"transform must be one of {TRANSFORM_NAMES}, got {self.transform!r}")
        if self.t_init not in LEARNABLE_INITS:
            raise ValueError(f"t_init must be one of {LEARNABLE_INITS}, got {self.t_init!r}")


class InflatedSparseConv3d(SparseConv3d):
    """A sparse conv whose 3D kernel is ``T(weight_2d)``; ``weight_2d`` is a frozen buffer."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int,
                 transform: FilterTransform, bias: bool = False, stride_mode: str = "floor"):
        super().__init__(in_channels, out_channels, kernel_size, stride, bias, stride_mode)
        del self.weight
        self.register_buffer("weight_2d", torch.zeros(out_channels, in_channels, kernel_size, kernel_size))
        self.transform = transform

    def reset_parameters(self) -> None:
        # SparseConv3d.__init__ calls this before weight_2d exists (its 3D weight is then removed).
        if "weight_2d" in self._buffers:
            nn.init.kaiming_uniform_(self.weight_2d, a=math.sqrt(5))
        else:
            super().reset_parameters()

    def conv_weight(self) -> torch.Tensor:
        return self.transform(self.weight_2d)


# ---------------------------------------------------------------------------------------------------
# Step 1: the 3D module tree.


class _Builder:
    """Builds 3D modules for one conversion; owns the shared transforms when T is learned."""

    def __init__(self, settings: InflationSettings):
        self.settings = settings
        self.shared_transforms: dict[int, FilterTransform] = {}

    def transform_for(self, kernel_size: int) -> FilterTransform:
        settings = self.settings
        if settings.learnable_t == "per_conv":
            return FilterTransform(kernel_size, settings.t_init, normalize=self._normalize_init())
        if kernel_size not in self.shared_transforms:
            self.shared_transforms[kernel_size] = FilterTransform(
                kernel_size, settings.t_init, normalize=self._normalize_init())
        return self.shared_transforms[kernel_size]

    def _normalize_init(self) -> bool:
        return self.settings.normalize and self.settings.t_init != "random"

    def conv(self, name: str, conv: nn.Conv2d) -> SparseConv3d:
        kernel_size = _square(name, conv.kernel_size, "kernel_size")
        stride = _square(name, conv.stride, "stride")
        if conv.padding == "same" and kernel_size % 2 == 1:
            padding = (kernel_size - 1) // 2
        elif isinstance(conv.padding, str):
            raise UnsupportedLayerError(f"{name}: padding {conv.padding!r} does not keep the sites ('same' does)")
        else:
            padding = _square(name, conv.padding, "padding")
        if conv.groups != 1 or _square(name, conv.dilation, "dilation") != 1:
            raise UnsupportedLayerError(f"{name}: grouped or dilated convolutions are not supported")
        if padding != (kernel_size - 1) // 2:
            raise UnsupportedLayerError(
                f"{name}: padding {conv.padding} is not 'same' ((K - 1) // 2 = {(kernel_size - 1) // 2})")
        if stride not in (1, 2):
            raise UnsupportedLayerError(f"{name}: stride {stride} is not supported (1 or 2)")
        has_bias = conv.bias is not None
        mode = self.settings.stride_mode
        children = CHILDREN_REDUCTION[self.settings.shortcut]
        if kernel_size == 1 and stride == 2 and children is not None:
            return SparseChildrenConv3d(conv.in_channels, conv.out_channels, children, has_bias, mode)
        if self.settings.learnable_t != "none" and kernel_size > 1:
            return InflatedSparseConv3d(conv.in_channels, conv.out_channels, kernel_size, stride,
                                        self.transform_for(kernel_size), has_bias, mode)
        return SparseConv3d(conv.in_channels, conv.out_channels, kernel_size, stride, has_bias, mode)

    def build(self, name: str, module: nn.Module) -> nn.Module | None:
        """The 3D counterpart of ``module`` (None for layers that only classify images)."""
        mode = self.settings.stride_mode
        if isinstance(module, nn.Conv2d):
            return self.conv(name, module)
        if isinstance(module, nn.BatchNorm2d):
            return SparseBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                                   module.track_running_stats)
        if isinstance(module, nn.ReLU):
            return SparseReLU()
        if isinstance(module, nn.MaxPool2d):
            kernel_size = _square(name, module.kernel_size, "kernel_size")
            stride = _square(name, module.stride, "stride")
            padding = _square(name, module.padding, "padding")
            if padding != (kernel_size - 1) // 2 or module.ceil_mode or _square(name, module.dilation, "dilation") != 1:
                raise UnsupportedLayerError(
                    f"{name}: max pool with padding {module.padding}, ceil_mode={module.ceil_mode}, dilation "
                    f"{module.dilation} differs from the sparse pool's window (padding (K - 1) // 2)")
            if stride not in (1, 2):
                raise UnsupportedLayerError(f"{name}: max pool stride {stride} is not supported (1 or 2)")
            return SparseMaxPool3d(kernel_size, stride, mode)
        if isinstance(module, nn.AdaptiveAvgPool2d):
            if _square(name, module.output_size, "output_size") != 1:
                raise UnsupportedLayerError(f"{name}: only a global average pool (output 1×1) carries over")
            return SparseGlobalAvgPool()
        if isinstance(module, nn.Identity):
            return nn.Identity()
        if isinstance(module, ShortcutA):
            return SparseSubsampleShortcut(module.in_channels, module.out_channels, module.stride, mode,
                                           CHILDREN_REDUCTION[self.settings.shortcut])
        if isinstance(module, HEAD_ONLY_LAYERS):
            return None
        if isinstance(module, BasicBlock):
            return SparseBasicBlock(*self.children(name, module, "conv1", "bn1", "conv2", "bn2", "downsample"))
        if isinstance(module, Bottleneck):
            return SparseBottleneck(*self.children(
                name, module, "conv1", "bn1", "conv2", "bn2", "conv3", "bn3", "downsample"))
        if isinstance(module, CifarBasicBlock):
            return SparseCifarBasicBlock(*self.children(name, module, "conv1", "bn1", "conv2", "bn2", "shortcut"))
        if isinstance(module, nn.Sequential):
            converted = [(child_name, self.build(_join(name, child_name), child))
                         for child_name, child in module.named_children()]
            if converted and all(child is None for _, child in converted):
                return None
            # Same child names as in 2D (Identity where a head-only layer was), so keys still match.
            return nn.Sequential(OrderedDict(
                (child_name, nn.Identity() if child is None else child) for child_name, child in converted))
        if not name and len(list(module.children())) > 0:
            return self.container(name, module)
        raise UnsupportedLayerError(
            f"{name or 'model'}: no 3D counterpart for {type(module).__name__}; supported: Conv2d, BatchNorm2d, "
            "ReLU, MaxPool2d, AdaptiveAvgPool2d, Identity, Sequential, torchvision/CIFAR ResNet blocks")

    def children(self, name: str, module: nn.Module, *child_names: str) -> list[nn.Module | None]:
        children = []
        for child_name in child_names:
            child = getattr(module, child_name)
            children.append(None if child is None else self.build(_join(name, child_name), child))
        return children

    def container(self, name: str, module: nn.Module) -> nn.Module:
        """The model root: its named children converted; how they run is the 3D network's job.

        Only the root is taken apart this way; a nested module with its own forward must be a known
        block, or conversion fails, so no computation is silently lost.
        """
        converted = nn.Module()
        for child_name, child in module.named_children():
            child_3d = self.build(_join(name, child_name), child)
            if child_3d is not None:
                converted.add_module(child_name, child_3d)
        return converted


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _square(name: str, value, what: str) -> int:
    if isinstance(value, int):
        return value
    values = tuple(value)
    if len(set(values)) != 1:
        raise UnsupportedLayerError(f"{name}: non-square {what} {values} cannot be inflated to a cube")
    return int(values[0])


def build_3d_like(model_2d: nn.Module, settings: InflationSettings = InflationSettings()) -> nn.Module:
    """The sparse 3D module tree mirroring ``model_2d`` (weights not transferred yet)."""
    builder = _Builder(settings)
    model_3d = builder.build("", model_2d)
    if model_3d is None:
        raise UnsupportedLayerError("the 2D model has no convolutional part to convert")
    return model_3d


# ---------------------------------------------------------------------------------------------------
# Step 2: weights by name, with a report.


@dataclass(frozen=True)
class InflatedKernel:
    name: str
    shape_2d: tuple[int, ...]
    shape_3d: tuple[int, ...]


@dataclass
class ConversionReport:
    """Where every 2D tensor went, and which 3D tensors start from scratch."""

    transform: str
    learnable_t: str
    shortcut: StridedShortcut = DEFAULT_STRIDED_SHORTCUT
    inflated: list[InflatedKernel] = field(default_factory=list)
    carried: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    initialised: list[str] = field(default_factory=list)

    def accounted_2d_keys(self) -> set[str]:
        return {kernel.name for kernel in self.inflated} | set(self.carried) | set(self.dropped)

    def summary(self) -> str:
        lines = [
            f"2D → 3D conversion (T = {self.transform}, learnable T: {self.learnable_t}, "
            f"strided shortcuts: {self.shortcut.value})",
            f"  inflated conv kernels : {len(self.inflated)}",
            f"  carried over (BN etc.): {len(self.carried)}",
            f"  dropped               : {len(self.dropped)}" + (f" ({', '.join(self.dropped)})" if self.dropped else ""),
            f"  newly initialised     : {len(self.initialised)}",
        ]
        return "\n".join(lines)


def transfer_2d_weights(
    state_2d: Mapping[str, torch.Tensor],
    model_3d: nn.Module,
    settings: InflationSettings = InflationSettings(),
    rename: Callable[[str], str] | None = None,
) -> ConversionReport:
    """Copy a 2D state dict into a 3D model built by :func:`build_3d_like`, by name.

    A 4D conv kernel goes to ``<name>.weight`` inflated by the fixed T of ``settings.transform`` (or, for
    a learnable-T conv, to ``<name>.weight_2d`` as is); every other tensor is carried over when a 3D
    tensor of that name and shape exists. 2D tensors without a 3D home are reported as dropped; 3D
    tensors that received nothing are reported as initialised. Any shape disagreement raises.
    """
    rename = rename or (lambda key: key)
    targets = model_3d.state_dict(keep_vars=True)
    report = ConversionReport(settings.transform, settings.learnable_t, settings.shortcut)
    received: set[str] = set()
    transforms: dict[int, torch.Tensor] = {}
    with torch.no_grad():
        for key_2d, value in state_2d.items():
            key = rename(key_2d)
            module_name, _, leaf = key.rpartition(".")
            learnable_home = _join(module_name, "weight_2d")
            if value.dim() == 4 and leaf == "weight" and learnable_home in targets:
                _copy_checked(targets[learnable_home], value, key_2d, learnable_home)
                report.inflated.append(InflatedKernel(key_2d, tuple(value.shape), tuple(value.shape) + value.shape[-1:]))
                received.add(learnable_home)
            elif value.dim() == 4 and leaf == "weight" and key in targets:
                kernel_size = value.shape[-1]
                if kernel_size not in transforms:
                    transforms[kernel_size] = filter_transform(settings.transform, kernel_size, settings.normalize)
                inflated = inflate_weight(value.float(), transforms[kernel_size])
                _copy_checked(targets[key], inflated, key_2d, key)
                report.inflated.append(InflatedKernel(key_2d, tuple(value.shape), tuple(inflated.shape)))
                received.add(key)
            elif key in targets:
                _copy_checked(targets[key], value, key_2d, key)
                report.carried.append(key_2d)
                received.add(key)
            else:
                report.dropped.append(key_2d)
    # A tied tensor (a shared T) appears under every user's name; report it once.
    unique = {name for name, _ in model_3d.named_parameters()} | {name for name, _ in model_3d.named_buffers()}
    report.initialised = [key for key in targets if key not in received and key in unique]
    return report


def _copy_checked(target: torch.Tensor, value: torch.Tensor, key_2d: str, key_3d: str) -> None:
    if tuple(target.shape) != tuple(value.shape):
        raise ValueError(f"shape mismatch: 2D {key_2d} {tuple(value.shape)} → 3D {key_3d} {tuple(target.shape)}")
    target.copy_(value.to(target.dtype))


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
) -> Converted:
    """The sparse 3D counterpart of ``model_2d`` with its weights inflated, and the conversion report.

    Example::

        converted = convert_2d_to_3d(resnet18())
        print(converted.report.summary())
        features = converted.model.layer1(sparse_tensor)
    """
    settings = InflationSettings(transform, normalize, learnable_t, t_init, stride_mode, shortcut)
    model_3d = build_3d_like(model_2d, settings)
    report = transfer_2d_weights(model_2d.state_dict(), model_3d, settings)
    return Converted(model_3d, report)
