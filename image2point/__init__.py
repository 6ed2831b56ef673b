"""image2point: 2D image-pretrained ConvNets as 3D sparse ConvNets for point clouds.

The core API at the top level; everything else lives in the subpackages (``sparse``, ``inflate``,
``models2d``, ``models``, ``data``, ``train``, ``io``).

The names below are imported on first use (PEP 562), so ``import image2point`` and the command line's
``--help`` load no torch.
"""

from __future__ import annotations

import importlib
import sys
import types

__version__ = "0.1.0"

# Public name -> the module that defines it.
_EXPORTS = {
    "SparseTensor": "image2point.sparse.tensor",
    "collate_voxels": "image2point.voxelize",
    "convert_2d_to_3d": "image2point.inflate.converter",
    "filter_transform": "image2point.inflate.transforms",
    "inflate_weight": "image2point.inflate.transforms",
    "voxelize": "image2point.voxelize",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})


class _Package(types.ModuleType):
    """``image2point.voxelize`` is both a submodule and the public function of that name. Importing the
    submodule binds its name on the package to the module; keep the public function there instead (what
    the package root has always exported), as an eager ``from ... import voxelize`` would."""

    def __setattr__(self, name: str, value) -> None:
        if isinstance(value, types.ModuleType) and _EXPORTS.get(name) == value.__name__:
            value = getattr(value, name)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
