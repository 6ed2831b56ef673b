"""How a conversion inflates: the settings, the bank of (learnable) filter transforms, the refusal error.

Shared by the module-tree converter (:mod:`image2point.inflate.converter`), the layer map
(:mod:`image2point.inflate.layer_map`) and the graph converter (:mod:`image2point.inflate.graph_convert`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from image2point.inflate.learnable import LEARNABLE_INITS, FilterTransform
from image2point.inflate.shortcuts import DEFAULT_STRIDED_SHORTCUT, StridedShortcut
from image2point.inflate.transforms import TRANSFORM_NAMES
from image2point.sparse.functional import ChildrenReduce
from image2point.sparse.kernel_map import STRIDE_MODES

LearnableT = Literal["none", "shared", "per_conv"]
LEARNABLE_T_MODES = ("none", "shared", "per_conv")
# The sparse reduction behind each strided-shortcut setting (None: the child at 2q only).
CHILDREN_REDUCTION: dict[StridedShortcut, ChildrenReduce | None] = {
    StridedShortcut.CENTER: None,
    StridedShortcut.CHILDREN_SUM: ChildrenReduce.SUM,
    StridedShortcut.CHILDREN_MEAN: ChildrenReduce.MEAN,
}


class UnsupportedLayerError(TypeError):
    """The 2D model contains a layer or an operation the converter cannot map to 3D.

    The message starts with the module path (``layer3.1.conv2: ...``), or ``model`` for the root.
    """


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


class TransformBank:
    """The learnable transforms of one conversion: one per kernel size shared by all convs
    (``learnable_t="shared"``, tied like shared embeddings), or a new one per conv (``"per_conv"``)."""

    def __init__(self, settings: InflationSettings):
        self.settings = settings
        self.shared: dict[int, FilterTransform] = {}

    def transform_for(self, kernel_size: int) -> FilterTransform:
        settings = self.settings
        if settings.learnable_t == "per_conv":
            return FilterTransform(kernel_size, settings.t_init, normalize=self._normalize_init())
        if kernel_size not in self.shared:
            self.shared[kernel_size] = FilterTransform(kernel_size, settings.t_init, normalize=self._normalize_init())
        return self.shared[kernel_size]

    def _normalize_init(self) -> bool:
        return self.settings.normalize and self.settings.t_init != "random"
