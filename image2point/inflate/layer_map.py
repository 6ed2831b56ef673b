"""Which 2D layer becomes which sparse 3D layer: a registry from 2D module types to converters.

A converter gets the 2D module and a :class:`LeafContext` (its module path, the layout of the sparse map it
runs on, the inflation settings and the transform bank) and returns the 3D module, or raises
:class:`UnsupportedLayerError` naming the path and what does not carry over. The layout matters for the
per-site layers of channels-last code (ConvNeXt permutes to [B, H, W, C] for its LayerNorm and MLP): there
``nn.LayerNorm`` and ``nn.Linear`` act on each site's channels; on a channels-first map they would act on
the image width and are refused.

Geometry rules, in the sparse engine's terms (:mod:`image2point.sparse.kernel_map`): a conv of odd kernel K
keeps the sites at stride 1 and halves them at stride 2 when its padding is ``dilation · (K - 1) // 2``
("same"); an even kernel equal to its stride with no padding is a non-overlapping patch conv (K = 2: one
strided conv; K = 4, 8, ...: :class:`~image2point.inflate.sparse_layers.SparsePatchConv3d`). Average pools
divide by the kernel area K² where 2D counts the padding (``count_include_pad=True``, torch's default: a
surface crossing a K³ window holds about K² sites, and on a one-site-thick plane this is exactly 2D), and by
the number of present sites where it does not.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Callable

from torch import nn

from image2point.inflate.inflated_conv import InflatedSparseConv3d, InflatedSparsePatchConv3d
from image2point.inflate.settings import CHILDREN_REDUCTION, InflationSettings, TransformBank, UnsupportedLayerError
from image2point.inflate.sparse_layers import (
    SparseDropout,
    SparseGlobalAvgPool2d,
    SparseGlobalMaxPool2d,
    SparseLinear,
    SparsePatchConv3d,
    SparseStochasticDepth,
)
from image2point.models2d.blocks import LayerNorm2d, StochasticDepth
from image2point.models2d.cifar_resnet import ShortcutA
from image2point.sparse import modules as SM


class Layout(Enum):
    """How a sparse map's 2D counterpart holds its channels: [B, C, H, W] or, after a permute, [B, H, W, C]."""

    CHANNELS_FIRST = "channels_first"
    CHANNELS_LAST = "channels_last"


BOTH_LAYOUTS = (Layout.CHANNELS_FIRST, Layout.CHANNELS_LAST)


@dataclass(frozen=True)
class LeafContext:
    path: str
    layout: Layout
    settings: InflationSettings
    transforms: TransformBank


LeafConverter = Callable[[nn.Module, LeafContext], nn.Module]


@dataclass(frozen=True)
class LeafRule:
    convert: LeafConverter
    layouts: tuple[Layout, ...]
    # The 3D module returns a dense tensor (global pools), not a sparse map.
    to_dense: bool = False


LEAF_RULES: dict[type, LeafRule] = {}


def register_leaf(*types: type, layouts: tuple[Layout, ...] = (Layout.CHANNELS_FIRST,), to_dense: bool = False):
    """Decorator: ``fn(module_2d, context) -> module_3d`` converts modules of ``types`` on sparse maps of
    ``layouts``. Registered types are leaves of the graph converter's trace (not traced into)."""

    def decorator(fn: LeafConverter) -> LeafConverter:
        for module_type in types:
            if module_type in LEAF_RULES:
                raise ValueError(f"{module_type.__name__} has a leaf converter already")
            LEAF_RULES[module_type] = LeafRule(fn, layouts, to_dense)
        return fn

    return decorator


def leaf_rule(module: nn.Module) -> LeafRule | None:
    """The rule of ``module``'s own type, else of its nearest registered base class (LayerNorm2d before
    LayerNorm: the most derived registered class wins)."""
    for cls in type(module).__mro__:
        if cls in LEAF_RULES:
            return LEAF_RULES[cls]
    return None


def convert_leaf(module: nn.Module, context: LeafContext) -> nn.Module:
    """The sparse counterpart of ``module`` on a map of ``context.layout``; refuses naming the path."""
    rule = leaf_rule(module)
    if rule is None:
        raise UnsupportedLayerError(
            f"{context.path or 'model'}: no sparse counterpart for {type(module).__name__} on a spatial map; "
            f"supported: {', '.join(sorted(t.__name__ for t in LEAF_RULES))}")
    if context.layout not in rule.layouts:
        raise UnsupportedLayerError(
            f"{context.path}: {type(module).__name__} runs on a {context.layout.value} map here, but its sparse "
            f"counterpart needs {' or '.join(layout.value for layout in rule.layouts)}")
    return rule.convert(module, context)


def square(path: str, value, what: str) -> int:
    """A square size (int or equal pair) as one int; refuses non-square ones naming the path."""
    if isinstance(value, int):
        return value
    values = tuple(value)
    if len(set(values)) != 1:
        raise UnsupportedLayerError(f"{path}: non-square {what} {values} cannot be inflated to a cube")
    return int(values[0])


# ---------------------------------------------------------------------------------------------------
# Convolutions.


@dataclass(frozen=True)
class ConvGeometry:
    kernel_size: int
    stride: int
    dilation: int
    patch: bool


def conv_geometry(path: str, kernel, stride, padding, dilation) -> ConvGeometry:
    """Kernel, stride and dilation of a 2D conv whose sites the sparse engine reproduces; refuses others."""
    kernel_size = square(path, kernel, "kernel_size")
    stride = square(path, stride, "stride")
    dilation = square(path, dilation, "dilation")
    half = dilation * (kernel_size - 1) // 2
    if padding == "same" and kernel_size % 2 == 1 and stride == 1:
        padding = half
    elif isinstance(padding, str):
        raise UnsupportedLayerError(f"{path}: padding {padding!r} does not keep the sites ('same' does)")
    padding = square(path, padding, "padding")
    if kernel_size % 2 == 0:
        if stride != kernel_size or padding != 0 or dilation != 1:
            raise UnsupportedLayerError(
                f"{path}: an even kernel ({kernel_size}) carries over only as a patch conv (stride = kernel, "
                f"padding 0, no dilation), got stride {stride}, padding {padding}, dilation {dilation}")
        return ConvGeometry(kernel_size, stride, dilation, patch=kernel_size > 2)
    if padding != half:
        raise UnsupportedLayerError(
            f"{path}: padding {padding} is not 'same' (dilation · (K - 1) // 2 = {half})")
    if stride not in (1, 2):
        raise UnsupportedLayerError(f"{path}: stride {stride} is not supported (1 or 2)")
    return ConvGeometry(kernel_size, stride, dilation, patch=False)


@register_leaf(nn.Conv2d)
def _conv(conv: nn.Conv2d, context: LeafContext) -> nn.Module:
    path, settings = context.path, context.settings
    geometry = conv_geometry(path, conv.kernel_size, conv.stride, conv.padding, conv.dilation)
    k, stride, has_bias, mode = geometry.kernel_size, geometry.stride, conv.bias is not None, settings.stride_mode
    if conv.padding_mode != "zeros":
        raise UnsupportedLayerError(f"{path}: padding_mode {conv.padding_mode!r} has no sparse counterpart")
    children = CHILDREN_REDUCTION[settings.shortcut]
    if k == 1 and stride == 2 and children is not None:
        if conv.groups != 1:
            raise UnsupportedLayerError(f"{path}: a grouped strided 1×1 conv cannot read children "
                                        f"(strided shortcut setting {settings.shortcut.value!r}); use 'center'")
        return SM.SparseChildrenConv3d(conv.in_channels, conv.out_channels, children, has_bias, mode)
    learnable = settings.learnable_t != "none" and k > 1
    if geometry.patch:
        if conv.groups != 1:
            raise UnsupportedLayerError(f"{path}: grouped patch convs are not supported")
        if learnable:
            return InflatedSparsePatchConv3d(conv.in_channels, conv.out_channels, k,
                                             context.transforms.transform_for(k), has_bias)
        return SparsePatchConv3d(conv.in_channels, conv.out_channels, k, has_bias)
    if learnable:
        return InflatedSparseConv3d(conv.in_channels, conv.out_channels, k, stride, context.transforms.transform_for(k),
                                    has_bias, mode, geometry.dilation, conv.groups)
    return SM.SparseConv3d(conv.in_channels, conv.out_channels, k, stride, has_bias, mode, geometry.dilation,
                           conv.groups)


# ---------------------------------------------------------------------------------------------------
# Pools.


def pool_geometry(path: str, kind: str, kernel, stride, padding, ceil_mode: bool, dilation=1) -> tuple[int, int]:
    """Kernel and stride of a 2D pool whose windows the sparse pools reproduce; refuses others."""
    kernel_size = square(path, kernel, "kernel_size")
    stride = kernel_size if stride is None or stride == [] else square(path, stride, "stride")
    padding = square(path, padding, "padding")
    if padding != (kernel_size - 1) // 2 or ceil_mode or square(path, dilation, "dilation") != 1:
        raise UnsupportedLayerError(
            f"{path}: {kind} pool with padding {padding}, ceil_mode={ceil_mode}, dilation {dilation} differs from "
            "the sparse pool's window (padding (K - 1) // 2)")
    if stride not in (1, 2) or (kernel_size % 2 == 0 and stride != kernel_size):
        raise UnsupportedLayerError(
            f"{path}: {kind} pool stride {stride} is not supported (1 or 2, and equal to an even kernel)")
    return kernel_size, stride


def avg_pool_divisor(kernel_size: int, count_include_pad: bool, divisor_override: int | None) -> int | None:
    """The sparse pool's divisor for a 2D average pool (None: the number of present sites)."""
    if divisor_override is not None:
        return divisor_override
    return kernel_size * kernel_size if count_include_pad else None


@register_leaf(nn.MaxPool2d)
def _max_pool(pool: nn.MaxPool2d, context: LeafContext) -> nn.Module:
    kernel_size, stride = pool_geometry(context.path, "max", pool.kernel_size, pool.stride, pool.padding,
                                        pool.ceil_mode, pool.dilation)
    return SM.SparseMaxPool3d(kernel_size, stride, context.settings.stride_mode)


@register_leaf(nn.AvgPool2d)
def _avg_pool(pool: nn.AvgPool2d, context: LeafContext) -> nn.Module:
    kernel_size, stride = pool_geometry(context.path, "average", pool.kernel_size, pool.stride, pool.padding,
                                        pool.ceil_mode)
    divisor = avg_pool_divisor(kernel_size, pool.count_include_pad, pool.divisor_override)
    return SM.SparseAvgPool3d(kernel_size, stride, context.settings.stride_mode, divisor)


def _global_pool(pool: nn.Module, context: LeafContext) -> int:
    if square(context.path, pool.output_size, "output_size") != 1:
        raise UnsupportedLayerError(f"{context.path}: only a global average pool (output 1×1) carries over")
    return 1


@register_leaf(nn.AdaptiveAvgPool2d, to_dense=True)
def _global_avg_pool(pool: nn.AdaptiveAvgPool2d, context: LeafContext) -> nn.Module:
    _global_pool(pool, context)
    return SparseGlobalAvgPool2d()


@register_leaf(nn.AdaptiveMaxPool2d, to_dense=True)
def _global_max_pool(pool: nn.AdaptiveMaxPool2d, context: LeafContext) -> nn.Module:
    _global_pool(pool, context)
    return SparseGlobalMaxPool2d()


# ---------------------------------------------------------------------------------------------------
# Normalisation.


@register_leaf(nn.BatchNorm2d)
def _batch_norm(bn: nn.BatchNorm2d, context: LeafContext) -> nn.Module:
    return SM.SparseBatchNorm(bn.num_features, bn.eps, bn.momentum, bn.affine, bn.track_running_stats)


def _layer_norm(norm: nn.LayerNorm, context: LeafContext) -> nn.Module:
    if len(norm.normalized_shape) != 1:
        raise UnsupportedLayerError(f"{context.path}: LayerNorm over {norm.normalized_shape} normalises more than "
                                    "the channels of a site")
    return SM.SparseLayerNorm(norm.normalized_shape[0], norm.eps, norm.elementwise_affine, norm.bias is not None)


register_leaf(LayerNorm2d)(_layer_norm)
register_leaf(nn.LayerNorm, layouts=(Layout.CHANNELS_LAST,))(_layer_norm)


@register_leaf(nn.GroupNorm)
def _group_norm(norm: nn.GroupNorm, context: LeafContext) -> nn.Module:
    return SM.SparseGroupNorm(norm.num_groups, norm.num_channels, norm.eps, norm.affine)


# ---------------------------------------------------------------------------------------------------
# Per-site layers (either layout: they act on each site's channel vector).


@register_leaf(nn.Linear, layouts=(Layout.CHANNELS_LAST,))
def _linear(linear: nn.Linear, context: LeafContext) -> nn.Module:
    return SparseLinear(linear.in_features, linear.out_features, linear.bias is not None)


@register_leaf(nn.Dropout, layouts=BOTH_LAYOUTS)
def _dropout(dropout: nn.Dropout, context: LeafContext) -> nn.Module:
    return SparseDropout(dropout.p)


@register_leaf(StochasticDepth, layouts=BOTH_LAYOUTS)
def _stochastic_depth(module: StochasticDepth, context: LeafContext) -> nn.Module:
    return SparseStochasticDepth(module.p)


@register_leaf(nn.Identity, layouts=BOTH_LAYOUTS)
def _identity(module: nn.Identity, context: LeafContext) -> nn.Module:
    return nn.Identity()


@register_leaf(nn.ReLU, layouts=BOTH_LAYOUTS)
def _relu(module: nn.ReLU, context: LeafContext) -> nn.Module:
    return SM.SparseReLU()


@register_leaf(nn.PReLU, layouts=BOTH_LAYOUTS)
def _prelu(module: nn.PReLU, context: LeafContext) -> nn.Module:
    # The weight (its init value included) is carried over by name with the other tensors.
    return SM.SparsePReLU(module.num_parameters)


@register_leaf(nn.LeakyReLU, layouts=BOTH_LAYOUTS)
def _leaky_relu(module: nn.LeakyReLU, context: LeafContext) -> nn.Module:
    return SM.SparseLeakyReLU(module.negative_slope)


@register_leaf(nn.GELU, layouts=BOTH_LAYOUTS)
def _gelu(module: nn.GELU, context: LeafContext) -> nn.Module:
    return SM.SparseGELU(module.approximate)


def _plain(sparse_type: type) -> LeafConverter:
    return lambda module, context: sparse_type()


for _dense_type, _sparse_type in ((nn.ReLU6, SM.SparseReLU6), (nn.SiLU, SM.SparseSiLU), (nn.Hardswish, SM.SparseHardswish),
                                  (nn.Hardsigmoid, SM.SparseHardsigmoid), (nn.Sigmoid, SM.SparseSigmoid),
                                  (nn.Tanh, SM.SparseTanh)):
    register_leaf(_dense_type, layouts=BOTH_LAYOUTS)(_plain(_sparse_type))


@register_leaf(ShortcutA)
def _shortcut_a(module: ShortcutA, context: LeafContext) -> nn.Module:
    return SM.SparseSubsampleShortcut(module.in_channels, module.out_channels, module.stride,
                                      context.settings.stride_mode, CHILDREN_REDUCTION[context.settings.shortcut])
