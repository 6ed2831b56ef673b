"""The 3D module tree of a 2D model: the same names, every layer replaced by its sparse counterpart.

Two modes:

- **module tree** (``usage=None``, :func:`image2point.inflate.converter.build_3d_like`): every layer with a
  sparse counterpart is converted as if it ran on a channels-first map; classifier layers (Linear, Dropout,
  Flatten) are left out; a nested module with its own forward must be a known ResNet block, or the
  conversion fails, so no computation is silently lost.
- **graph** (``usage`` from the traced forward, :mod:`image2point.inflate.graph_convert`): exactly the
  modules the forward calls are built, each as it is used: on a sparse map of some layout it becomes its
  sparse counterpart, on dense values (a squeeze-and-excitation gate, the classifier after the global pool)
  it stays the 2D module, copied with its weights. Containers keep their names and, where they can, their
  types (Sequential, ModuleList, the ResNet blocks), so ``model.layer1`` is still callable; other containers
  become :class:`ConvertedContainer`, which only holds its children: the graph runs them.
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from collections.abc import Iterable, Mapping

from torch import nn

from image2point.inflate.blocks import SparseBasicBlock, SparseBottleneck, SparseCifarBasicBlock
from image2point.inflate.layer_map import LeafContext, Layout, convert_leaf, leaf_rule
from image2point.inflate.settings import InflationSettings, TransformBank, UnsupportedLayerError
from image2point.models2d.cifar_resnet import CifarBasicBlock
from image2point.models2d.resnet import BasicBlock, Bottleneck

# 2D layers that exist only to classify images; a module-tree conversion leaves them out.
HEAD_ONLY_LAYERS = (nn.Linear, nn.Dropout, nn.Flatten)
# The known residual blocks: their sparse counterparts and the children they are built from, in order.
KNOWN_BLOCKS: dict[type, tuple[type, tuple[str, ...]]] = {
    BasicBlock: (SparseBasicBlock, ("conv1", "bn1", "conv2", "bn2", "downsample")),
    Bottleneck: (SparseBottleneck, ("conv1", "bn1", "conv2", "bn2", "conv3", "bn3", "downsample")),
    CifarBasicBlock: (SparseCifarBasicBlock, ("conv1", "bn1", "conv2", "bn2", "shortcut")),
}
# A module that runs on dense values in the traced forward (it stays a 2D module).
DENSE_USE = None


class ConvertedContainer(nn.Module):
    """A converted module whose 2D forward is not a plain chain: it holds its converted children under
    their 2D names; the converted graph of an enclosing module runs them."""

    def __init__(self, source_type: str):
        super().__init__()
        self.source_type = source_type

    def forward(self, *args, **kwargs):
        raise NotImplementedError(
            f"this converted {self.source_type} only holds its children; call the model it came from (or "
            "convert the 2D module on its own with convert_2d_to_3d)")

    def extra_repr(self) -> str:
        return f"from {self.source_type}"


def join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


class ModuleMirror:
    """Builds the 3D tree for one conversion; owns the learnable transforms it shares between convs.

    ``usage`` maps the path of every module the traced forward calls to the layout of the sparse map it
    runs on, or :data:`DENSE_USE`; ``None`` (no mapping) selects the module-tree mode. ``attributes`` are
    the tensors the forward reads directly (``self.layer_scale``): their owners are kept too.
    """

    def __init__(self, settings: InflationSettings = InflationSettings(),
                 usage: Mapping[str, Layout | None] | None = None, transforms: TransformBank | None = None,
                 attributes: Iterable[str] = ()):
        self.settings = settings
        self.usage = usage
        self.transforms = transforms or TransformBank(settings)
        owners = [attribute.rpartition(".")[0] for attribute in attributes]
        self._needed = None if usage is None else _with_ancestors([*usage, *owners])

    def build(self, name: str, module: nn.Module) -> nn.Module | None:
        """The 3D counterpart of ``module`` (None for modules the 3D model does not need)."""
        if self.usage is not None:
            return self._build_used(name, module)
        if isinstance(module, HEAD_ONLY_LAYERS):
            return None
        if leaf_rule(module) is not None:
            return self.leaf(name, module, Layout.CHANNELS_FIRST)
        return self._container(name, module, root=not name)

    def leaf(self, name: str, module: nn.Module, layout: Layout | None) -> nn.Module:
        if layout is DENSE_USE:
            return copy.deepcopy(module)
        return convert_leaf(module, LeafContext(name, layout, self.settings, self.transforms))

    def _build_used(self, name: str, module: nn.Module) -> nn.Module | None:
        if name not in self._needed:
            return None
        if name in self.usage:
            return self.leaf(name, module, self.usage[name])
        return self._container(name, module, root=True)

    def _container(self, name: str, module: nn.Module, root: bool) -> nn.Module | None:
        if type(module) in KNOWN_BLOCKS:
            sparse_type, child_names = KNOWN_BLOCKS[type(module)]
            return sparse_type(*self.children(name, module, *child_names))
        children = [(child_name, self.build(join(name, child_name), child))
                    for child_name, child in module.named_children()]
        if isinstance(module, nn.Sequential) and type(module).forward is nn.Sequential.forward:
            return self._sequential(children, type(module).__name__)
        kept = OrderedDict((child_name, child) for child_name, child in children if child is not None)
        if isinstance(module, nn.ModuleList) and len(kept) == len(children):
            return nn.ModuleList(kept.values())
        if isinstance(module, nn.ModuleDict) and len(kept) == len(children):
            return nn.ModuleDict(kept)
        if not root:
            raise UnsupportedLayerError(
                f"{name}: no 3D counterpart for {type(module).__name__}; supported: the layers of "
                "image2point.inflate.layer_map, Sequential, torchvision/CIFAR ResNet blocks (convert_2d_to_3d "
                "converts any module through its traced forward)")
        container = ConvertedContainer(type(module).__name__)
        for child_name, child in kept.items():
            container.add_module(child_name, child)
        if self.usage is not None:
            _copy_own_tensors(module, container)
        return container

    def _sequential(self, children: list[tuple[str, nn.Module | None]], source_type: str) -> nn.Module | None:
        if self.usage is None:
            if children and all(child is None for _, child in children):
                return None
            # Same child names as in 2D (Identity where a head-only layer was), so keys still match.
            return nn.Sequential(OrderedDict(
                (child_name, nn.Identity() if child is None else child) for child_name, child in children))
        kept = [(child_name, child) for child_name, child in children if child is not None]
        if not kept:
            return None
        if len(kept) == len(children):
            return nn.Sequential(OrderedDict(kept))
        # A chain with links the forward does not call (a cut graph) is no chain any more.
        container = ConvertedContainer(source_type)
        for child_name, child in kept:
            container.add_module(child_name, child)
        return container

    def children(self, name: str, module: nn.Module, *child_names: str) -> list[nn.Module | None]:
        children = []
        for child_name in child_names:
            child = getattr(module, child_name)
            children.append(None if child is None else self.build(join(name, child_name), child))
        return children


def _with_ancestors(paths) -> set[str]:
    needed = {""}
    for path in paths:
        parts = path.split(".")
        needed.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    return needed


def _copy_own_tensors(source: nn.Module, target: nn.Module) -> None:
    """A container's own parameters and buffers (ConvNeXt's ``layer_scale``), copied under their names."""
    for key, parameter in source._parameters.items():
        if parameter is not None:
            target.register_parameter(key, nn.Parameter(parameter.detach().clone(), parameter.requires_grad))
    for key, buffer in source._buffers.items():
        if buffer is not None:
            target.register_buffer(key, buffer.detach().clone(), key not in source._non_persistent_buffers_set)

