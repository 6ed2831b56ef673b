"""A 2D model's traced forward, rewritten to run on sparse maps.

:func:`trace_for_conversion` traces the forward with ``torch.fx`` in eval mode; every layer with a sparse
counterpart (:mod:`image2point.inflate.layer_map`: convs, norms, activations, pools, stochastic depth, ...) is
a leaf of the trace, everything else is traced through. :func:`plan_sparse_graph` then follows every value
from the input image: a value is a *sparse map* (channels first, or channels last after a permute) or
*dense* (global pools and everything computed from them, parameters, numbers). It

- records for each called module whether it runs on a sparse map (of which layout) or on dense values
  (then it stays the 2D module, e.g. squeeze-and-excitation convs and the classifier);
- rewrites each function or method call that touches a sparse map into its sparse counterpart
  (:mod:`image2point.inflate.fx_ops`): residual adds, channel concatenation, per-sample scaling by a dense
  gate, permutes (which only relabel the layout), global means, functional pools and activations;
- refuses anything else (flatten, reshape, slicing, padding, interpolation of a spatial map, a module
  without sparse counterpart on a spatial map) with :class:`UnsupportedLayerError`, naming the module path,
  the node and the operation.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from enum import Enum
from typing import Callable

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from image2point.inflate import fx_ops
from image2point.inflate.layer_map import (
    LEAF_RULES,
    Layout,
    avg_pool_divisor,
    leaf_rule,
    pool_geometry,
)
from image2point.inflate.mirror import DENSE_USE
from image2point.inflate.settings import InflationSettings, UnsupportedLayerError


class Kind(Enum):
    SPARSE_CF = Layout.CHANNELS_FIRST
    SPARSE_CL = Layout.CHANNELS_LAST
    DENSE = None


SPARSE_KINDS = (Kind.SPARSE_CF, Kind.SPARSE_CL)
PERMUTES = {(Kind.SPARSE_CF, (0, 2, 3, 1)): Kind.SPARSE_CL, (Kind.SPARSE_CL, (0, 3, 1, 2)): Kind.SPARSE_CF}
CHANNEL_DIM = {Kind.SPARSE_CF: 1, Kind.SPARSE_CL: 3}
SPATIAL_DIMS = {Kind.SPARSE_CF: {2, 3}, Kind.SPARSE_CL: {1, 2}}
MAP_DIMS = 4


class ConversionTracer(fx.Tracer):
    """Leaves: torch's own layers, and every type with a sparse counterpart (StochasticDepth, LayerNorm2d)."""

    def is_leaf_module(self, module: nn.Module, qualified_name: str) -> bool:
        return leaf_rule(module) is not None or super().is_leaf_module(module, qualified_name)


def trace_for_conversion(module: nn.Module) -> fx.Graph:
    """The forward of ``module`` in eval mode as an fx graph (the module's mode is restored)."""
    training = module.training
    module.eval()
    try:
        return ConversionTracer().trace(module)
    except Exception as error:  # noqa: BLE001 - any failure of tracing means: not convertible
        raise UnsupportedLayerError(
            f"model: torch.fx cannot trace the forward of {type(module).__name__} "
            f"({type(error).__name__}: {error})") from error
    finally:
        module.train(training)


@dataclass
class SparseGraphPlan:
    """What the rewritten graph needs: how each called module is used, which tensors it reads directly,
    and which modules form the classifier (dense, after the last sparse map)."""

    usage: dict[str, Layout | None] = field(default_factory=dict)
    attributes: set[str] = field(default_factory=set)
    head: set[str] = field(default_factory=set)


def module_path(node: fx.Node) -> str:
    """The innermost module whose forward produced ``node`` ("" for the root)."""
    if node.op == "call_module":
        return node.target
    stack = node.meta.get("nn_module_stack") or {}
    return next(reversed(stack.values()))[0] if stack else ""


def describe(node: fx.Node) -> str:
    if node.op == "call_method":
        return f".{node.target}()"
    if node.op == "call_function":
        return getattr(node.target, "__name__", str(node.target))
    return str(node.target)


class _Planner:
    def __init__(self, graph: fx.Graph, root: nn.Module, settings: InflationSettings, sparse_inputs: int):
        self.graph, self.root, self.settings = graph, root, settings
        self.sparse_inputs = sparse_inputs
        self.kinds: dict[fx.Node, Kind] = {}
        self.plan = SparseGraphPlan()

    def refuse(self, node: fx.Node, problem: str):
        raise UnsupportedLayerError(f"{module_path(node) or 'model'}: {problem} (node {node.name!r}, {describe(node)})")

    def where(self, node: fx.Node) -> str:
        return f"{module_path(node) or 'model'}: node {node.name!r}"

    def kind(self, value) -> Kind:
        return self.kinds.get(value, Kind.DENSE) if isinstance(value, fx.Node) else Kind.DENSE

    def run(self) -> SparseGraphPlan:
        placeholders = 0
        for node in list(self.graph.nodes):
            if node.op == "placeholder":
                self.kinds[node] = Kind.SPARSE_CF if placeholders < self.sparse_inputs else Kind.DENSE
                placeholders += 1
            elif node.op == "get_attr":
                self.plan.attributes.add(node.target)
                self.kinds[node] = Kind.DENSE
            elif node.op == "call_module":
                self.kinds[node] = self.module_call(node)
            elif node.op in ("call_function", "call_method"):
                if any(self.kind(arg) in SPARSE_KINDS for arg in node.all_input_nodes):
                    self.kinds[node] = self.sparse_call(node)
                else:
                    self.kinds[node] = Kind.DENSE
        self.plan.head = self.head_modules()
        self.graph.lint()
        return self.plan

    def module_call(self, node: fx.Node) -> Kind:
        module = self.root.get_submodule(node.target)
        kind = self.kind(node.args[0]) if node.args else Kind.DENSE
        if any(self.kind(arg) in SPARSE_KINDS for arg in node.all_input_nodes[1:]):
            self.refuse(node, f"{type(module).__name__} takes more than one sparse map")
        use = kind.value
        if node.target in self.plan.usage and self.plan.usage[node.target] != use:
            self.refuse(node, f"{type(module).__name__} is called on both sparse maps and dense values")
        self.plan.usage[node.target] = use
        if use is DENSE_USE:
            return Kind.DENSE
        rule = leaf_rule(module)
        if rule is None:
            self.refuse(node, f"{type(module).__name__} has no sparse counterpart; supported on spatial maps: "
                              f"{', '.join(sorted(t.__name__ for t in LEAF_RULES))}")
        if use not in rule.layouts:
            self.refuse(node, f"{type(module).__name__} on a {use.value} map has no sparse counterpart")
        return Kind.DENSE if rule.to_dense else kind

    def sparse_call(self, node: fx.Node) -> Kind:
        key = ("method", node.target) if node.op == "call_method" else node.target
        rule = SPARSE_RULES.get(key)
        if rule is None:
            self.refuse(node, "this operation on a spatial map has no sparse counterpart (flatten, reshape, "
                              "indexing and resampling of a map do not carry over; pool it globally first)")
        return rule(self, node)

    def rewrite(self, node: fx.Node, target: Callable, args: tuple, kwargs: dict | None = None) -> None:
        node.op, node.target, node.args, node.kwargs = "call_function", target, args, kwargs or {}

    def head_modules(self) -> set[str]:
        """Modules on dense values from which no sparse map is computed: the classifier."""
        feeds_sparse: set[fx.Node] = set()
        for node in reversed(list(self.graph.nodes)):
            if self.kinds.get(node) in SPARSE_KINDS or any(user in feeds_sparse for user in node.users):
                feeds_sparse.add(node)
        return {node.target for node in self.graph.nodes
                if node.op == "call_module" and self.kinds.get(node) is Kind.DENSE and node not in feeds_sparse
                and self.plan.usage.get(node.target) is DENSE_USE}


def plan_sparse_graph(graph: fx.Graph, root: nn.Module, settings: InflationSettings = InflationSettings(),
                      sparse_inputs: int = 1) -> SparseGraphPlan:
    """Rewrite ``graph`` (traced from ``root``) in place to run on sparse maps; the first ``sparse_inputs``
    placeholders receive sparse maps (channels first). Refuses what cannot be mapped."""
    return _Planner(graph, root, settings, sparse_inputs).run()


# ---------------------------------------------------------------------------------------------------
# Rules for function and method calls on sparse maps: ``rule(planner, node) -> kind of the result``.

SparseRule = Callable[[_Planner, fx.Node], Kind]
SPARSE_RULES: dict[object, SparseRule] = {}


def sparse_rule(*keys: object):
    """Decorator: ``fn`` rewrites calls of these functions (or ``("method", name)``) on sparse maps."""

    def decorator(fn: SparseRule) -> SparseRule:
        for key in keys:
            SPARSE_RULES[key] = fn
        return fn

    return decorator


def _binary(op_name: str) -> SparseRule:
    def rule(planner: _Planner, node: fx.Node) -> Kind:
        if len(node.args) != 2 or node.kwargs:
            planner.refuse(node, "only two-operand arithmetic on sparse maps carries over")
        kinds = {planner.kind(arg) for arg in node.args} & set(SPARSE_KINDS)
        if len(kinds) != 1:
            planner.refuse(node, "operands in different layouts (channels first and channels last)")
        kind = kinds.pop()
        planner.rewrite(node, fx_ops.binary, (op_name, *node.args, kind.value.value, planner.where(node)))
        return kind

    return rule


for _op_name, _keys in (("add", (operator.add, operator.iadd, torch.add, ("method", "add"), ("method", "add_"))),
                        ("sub", (operator.sub, operator.isub, torch.sub, ("method", "sub"))),
                        ("mul", (operator.mul, operator.imul, torch.mul, ("method", "mul"), ("method", "mul_"))),
                        ("div", (operator.truediv, operator.itruediv, torch.div, ("method", "div")))):
    sparse_rule(*_keys)(_binary(_op_name))


@sparse_rule(torch.cat, torch.concat, torch.concatenate)
def _cat(planner: _Planner, node: fx.Node) -> Kind:
    tensors = node.args[0]
    dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", node.kwargs.get("axis", 0))
    kinds = {planner.kind(tensor) for tensor in tensors}
    if len(kinds) != 1 or not kinds <= set(SPARSE_KINDS):
        planner.refuse(node, "concatenation mixes sparse maps with dense values or layouts")
    kind = kinds.pop()
    if dim % MAP_DIMS != CHANNEL_DIM[kind]:
        planner.refuse(node, f"concatenation along dim {dim}; only the channel dim carries over")
    planner.rewrite(node, fx_ops.sparse_cat, (list(tensors), planner.where(node)))
    return kind


@sparse_rule(torch.permute, ("method", "permute"))
def _permute(planner: _Planner, node: fx.Node) -> Kind:
    source, *dims = node.args
    dims = tuple(dims[0]) if len(dims) == 1 and isinstance(dims[0], (tuple, list)) else tuple(dims or node.kwargs["dims"])
    kind = PERMUTES.get((planner.kind(source), tuple(d % MAP_DIMS for d in dims)))
    if kind is None:
        planner.refuse(node, f"permute {dims}; only channels first <-> channels last carry over")
    # The sites keep their features [N, C] in either layout: the permute only relabels the layout.
    planner.rewrite(node, fx_ops.relayout, (source,))
    return kind


@sparse_rule(torch.mean, ("method", "mean"))
def _mean(planner: _Planner, node: fx.Node) -> Kind:
    source = node.args[0]
    dims = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
    keepdim = node.args[2] if len(node.args) > 2 else node.kwargs.get("keepdim", False)
    kind = planner.kind(source)
    dims = (dims,) if isinstance(dims, int) else tuple(dims or ())
    if {d % MAP_DIMS for d in dims} != SPATIAL_DIMS[kind] or len(dims) != 2:
        planner.refuse(node, f"mean over dims {dims}; only the mean over both spatial dims carries over")
    planner.rewrite(node, fx_ops.global_pool, (source, "mean", kind.value.value, bool(keepdim)))
    return Kind.DENSE


def _adaptive(reduction: str) -> SparseRule:
    def rule(planner: _Planner, node: fx.Node) -> Kind:
        size = node.args[1] if len(node.args) > 1 else node.kwargs.get("output_size")
        if planner.kind(node.args[0]) is not Kind.SPARSE_CF or size not in (1, (1, 1), [1, 1]):
            planner.refuse(node, "only a global pool (output 1×1) of a channels-first map carries over")
        planner.rewrite(node, fx_ops.global_pool, (node.args[0], reduction, Layout.CHANNELS_FIRST.value, True))
        return Kind.DENSE

    return rule


sparse_rule(F.adaptive_avg_pool2d)(_adaptive("mean"))
sparse_rule(F.adaptive_max_pool2d)(_adaptive("max"))


def _bind(node: fx.Node, names: tuple[str, ...], defaults: dict) -> dict:
    bound = dict(defaults)
    bound.update(zip(names, node.args))
    bound.update(node.kwargs)
    return bound


@sparse_rule(F.avg_pool2d)
def _avg_pool(planner: _Planner, node: fx.Node) -> Kind:
    a = _bind(node, ("input", "kernel_size", "stride", "padding", "ceil_mode", "count_include_pad",
                     "divisor_override"), {"stride": None, "padding": 0, "ceil_mode": False,
                                           "count_include_pad": True, "divisor_override": None})
    if planner.kind(a["input"]) is not Kind.SPARSE_CF:
        planner.refuse(node, "average pool of a channels-last map")
    kernel, stride = pool_geometry(module_path(node), "average", a["kernel_size"], a["stride"], a["padding"],
                                   a["ceil_mode"])
    divisor = avg_pool_divisor(kernel, a["count_include_pad"], a["divisor_override"])
    planner.rewrite(node, fx_ops.avg_pool, (a["input"], kernel, stride, planner.settings.stride_mode, divisor))
    return Kind.SPARSE_CF


@sparse_rule(F.max_pool2d)
def _max_pool(planner: _Planner, node: fx.Node) -> Kind:
    a = _bind(node, ("input", "kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices"),
              {"stride": None, "padding": 0, "dilation": 1, "ceil_mode": False, "return_indices": False})
    if planner.kind(a["input"]) is not Kind.SPARSE_CF or a["return_indices"]:
        planner.refuse(node, "max pool of a channels-last map, or with indices")
    kernel, stride = pool_geometry(module_path(node), "max", a["kernel_size"], a["stride"], a["padding"],
                                   a["ceil_mode"], a["dilation"])
    planner.rewrite(node, fx_ops.max_pool, (a["input"], kernel, stride, planner.settings.stride_mode))
    return Kind.SPARSE_CF


def _pointwise(name: str) -> SparseRule:
    def rule(planner: _Planner, node: fx.Node) -> Kind:
        source, *rest = node.args
        kind = planner.kind(source)
        if kind not in SPARSE_KINDS or any(planner.kind(arg) in SPARSE_KINDS for arg in node.all_input_nodes[1:]):
            planner.refuse(node, "an elementwise function with a sparse map as other than its first operand")
        planner.rewrite(node, fx_ops.pointwise, (name, source, *rest), dict(node.kwargs))
        return kind

    return rule


_POINTWISE_KEYS = {
    "relu": (F.relu, torch.relu, ("method", "relu"), F.relu_, torch.relu_, ("method", "relu_")),
    "relu6": (F.relu6,), "leaky_relu": (F.leaky_relu,), "elu": (F.elu,), "gelu": (F.gelu,), "silu": (F.silu,),
    "mish": (F.mish,), "hardswish": (F.hardswish,), "hardsigmoid": (F.hardsigmoid,), "hardtanh": (F.hardtanh,),
    "sigmoid": (torch.sigmoid, F.sigmoid, ("method", "sigmoid")), "tanh": (torch.tanh, F.tanh, ("method", "tanh")),
    "dropout": (F.dropout,), "clamp": (torch.clamp, ("method", "clamp")),
    "identity": (("method", "contiguous"), ("method", "clone")),
}
for _name, _keys in _POINTWISE_KEYS.items():
    sparse_rule(*_keys)(_pointwise(_name))
