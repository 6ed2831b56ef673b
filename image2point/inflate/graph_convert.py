"""Whole-forward conversion: a 2D module's traced graph, rewritten, run by its converted module tree.

:func:`convert_graph` traces the 2D module (:mod:`image2point.inflate.fx_graph`), builds the 3D tree of the
modules the graph calls (:class:`~image2point.inflate.mirror.ModuleMirror`: same names, so 2D state dicts
map onto it by name), and returns an ``fx.GraphModule`` whose forward is the rewritten graph; its submodules
are that tree, so ``model.layer1`` or ``model.features[3]`` are still there. ``outputs`` cuts the graph at
named values (``forward_features``-style backbones): a node name of the traced graph, or a module path
(the value that module's call returns), one name (the model returns that value) or several (a list).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch.fx as fx
from torch import nn

from image2point.inflate.fx_graph import SparseGraphPlan, module_path, plan_sparse_graph, trace_for_conversion
from image2point.inflate.layer_map import LeafContext, Layout, convert_leaf, leaf_rule
from image2point.inflate.mirror import ConvertedContainer, ModuleMirror
from image2point.inflate.settings import InflationSettings, TransformBank, UnsupportedLayerError
from image2point.inflate.transfer import ConversionReport, transfer_2d_weights

Outputs = str | Sequence[str] | None


def _scope(graph: fx.Graph, path: str) -> list[fx.Node]:
    """The nodes computed inside calls of module ``path``."""
    return [node for node in graph.nodes
            if node.op == "call_module" and (node.target == path or node.target.startswith(path + "."))
            or path in (node.meta.get("nn_module_stack") or {})]


def resolve_output(graph: fx.Graph, name: str) -> fx.Node:
    """The node called ``name``, or the value returned by the call of the module at path ``name``."""
    for node in graph.nodes:
        if node.name == name and node.op != "output":
            return node
    scope = _scope(graph, name)
    inside = set(scope)
    exits = [node for node in scope if any(user not in inside for user in node.users)]
    if len(exits) != 1:
        found = "no node" if not scope else f"{len(exits)} values leaving it ({', '.join(n.name for n in exits)})"
        raise UnsupportedLayerError(
            f"{name}: not a node of the traced graph nor a module called once with one result ({found})")
    return exits[0]


def cut_graph(graph: fx.Graph, outputs: str | Sequence[str]) -> None:
    """Make ``graph`` return the named values (one value, or a list) and drop what they do not need."""
    single = isinstance(outputs, str)
    nodes = [resolve_output(graph, name) for name in ([outputs] if single else outputs)]
    set_outputs(graph, nodes[0] if single else list(nodes))


def set_outputs(graph: fx.Graph, result: fx.Node | list[fx.Node]) -> None:
    """Make ``graph`` return ``result`` (a node or a list of nodes) and drop what it does not need."""
    output = next(node for node in graph.nodes if node.op == "output")
    graph.erase_node(output)
    graph.output(result)
    # Not graph.eliminate_dead_code(): that needs the owning module, and every unused value goes here, the
    # running statistics a cut-off BatchNorm would update in training included.
    for node in reversed(list(graph.nodes)):
        if node.op not in ("placeholder", "output") and not node.users:
            graph.erase_node(node)


def trace_2d(module: nn.Module, outputs: Outputs = None) -> fx.GraphModule:
    """The 2D module's own traced graph (cut at ``outputs``), e.g. to read shapes with a 2D input."""
    graph = trace_for_conversion(module)
    if outputs is not None:
        cut_graph(graph, outputs)
    return fx.GraphModule(module, graph, f"Traced{type(module).__name__}")


def wrap_graph(tree: nn.Module, graph: fx.Graph, class_name: str) -> fx.GraphModule:
    """An ``fx.GraphModule`` running ``graph`` whose submodules are ``tree``'s children themselves (fx would
    copy only the called leaves into plain containers; the tree keeps Sequentials and blocks callable)."""
    module = fx.GraphModule(tree, graph, class_name)
    for name, child in tree.named_children():
        setattr(module, name, child)
    return module


def runnable(module: nn.Module) -> bool:
    """Whether the converted tree computes its 2D original's forward by itself (no graph needed)."""
    if isinstance(module, (ConvertedContainer, nn.ModuleList, nn.ModuleDict)):
        return False
    if type(module) is nn.Sequential:
        return all(runnable(child) for child in module.children())
    return True


def build_sparse_module(
    module_2d: nn.Module,
    settings: InflationSettings = InflationSettings(),
    outputs: Outputs = None,
    transforms: TransformBank | None = None,
    prefer_tree: bool = False,
) -> tuple[nn.Module, SparseGraphPlan]:
    """The 3D module of ``module_2d`` without weights, and the plan of its graph.

    A layer with a sparse counterpart becomes that layer; with ``prefer_tree`` a module whose converted tree
    runs by itself (a Sequential of layers or ResNet blocks) is returned as that tree; anything else is the
    graph module running the rewritten forward.
    """
    transforms = transforms or TransformBank(settings)
    if leaf_rule(module_2d) is not None and outputs is None:
        layer = convert_leaf(module_2d, LeafContext("", Layout.CHANNELS_FIRST, settings, transforms))
        return layer, SparseGraphPlan(usage={"": Layout.CHANNELS_FIRST})
    graph = trace_for_conversion(module_2d)
    if outputs is not None:
        cut_graph(graph, outputs)
    return build_from_graph(module_2d, graph, settings, transforms, prefer_tree and outputs is None)


def build_from_graph(module_2d: nn.Module, graph: fx.Graph, settings: InflationSettings = InflationSettings(),
                     transforms: TransformBank | None = None,
                     prefer_tree: bool = False) -> tuple[nn.Module, SparseGraphPlan]:
    """:func:`build_sparse_module` for a graph traced from ``module_2d`` (:func:`trace_for_conversion`) and
    possibly edited since (cut, or fed from elsewhere); the graph is rewritten in place."""
    transforms = transforms or TransformBank(settings)
    plan = plan_sparse_graph(graph, module_2d, settings)
    tree = ModuleMirror(settings, plan.usage, transforms, plan.attributes).build("", module_2d)
    if tree is None:
        raise UnsupportedLayerError(f"model: the forward of {type(module_2d).__name__} calls no module to convert")
    if prefer_tree and runnable(tree):
        return tree, plan
    return wrap_graph(tree, graph, f"Sparse{type(module_2d).__name__}"), plan


def head_keys(keys: Sequence[str], head: set[str]) -> list[str]:
    """The keys that belong to one of the ``head`` module paths."""
    return [key for key in keys if any(key == path or key.startswith(path + ".") for path in head)]


def convert_graph(module_2d: nn.Module, settings: InflationSettings = InflationSettings(),
                  outputs: Outputs = None) -> tuple[nn.Module, ConversionReport]:
    """The 3D module running ``module_2d``'s forward (up to ``outputs``) on sparse maps, its weights
    inflated or carried over by name, in ``module_2d``'s mode (train or eval), and the report (the
    classifier's keys under ``classifier``)."""
    model_3d, plan = build_sparse_module(module_2d, settings, outputs)
    return model_3d, transfer_with_report(module_2d, model_3d, plan, settings)


def transfer_with_report(module_2d: nn.Module, model_3d: nn.Module, plan: SparseGraphPlan,
                         settings: InflationSettings = InflationSettings()) -> ConversionReport:
    """``module_2d``'s weights into its converted ``model_3d``, which takes ``module_2d``'s mode (train or
    eval, so that it computes what the 2D model computes); the report names the classifier's keys."""
    model_3d.train(module_2d.training)
    report = transfer_2d_weights(module_2d.state_dict(), model_3d, settings)
    report.classifier = head_keys(report.carried, plan.head)
    report.carried = [key for key in report.carried if key not in set(report.classifier)]
    return report


__all__ = ["build_from_graph", "build_sparse_module", "convert_graph", "cut_graph", "head_keys", "module_path",
           "resolve_output", "runnable", "set_outputs", "trace_2d", "transfer_with_report", "wrap_graph"]
