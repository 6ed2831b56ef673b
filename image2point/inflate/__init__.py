"""Inflation of 2D image filters into 3D filters: fixed and learnable filter transforms T.

The names below are imported on first use (PEP 562): the command line reads the torch-free
:mod:`image2point.inflate.shortcuts` for its choices without loading torch.
"""

from __future__ import annotations

import importlib

_LEARNABLE = "image2point.inflate.learnable"
_TRANSFORMS = "image2point.inflate.transforms"
# Public name -> the module that defines it.
_EXPORTS = {
    "AUTHORS_TRANSFORMS": _TRANSFORMS,
    "COPY_LAYOUTS": _TRANSFORMS,
    "LEARNABLE_INITS": _LEARNABLE,
    "RETIRED_NAMES": _TRANSFORMS,
    "TRANSFORM_NAMES": _TRANSFORMS,
    "CopyLayout": _TRANSFORMS,
    "FilterTransform": _LEARNABLE,
    "copy_layout": _TRANSFORMS,
    "filter_transform": _TRANSFORMS,
    "inflate_weight": _TRANSFORMS,
    "random_transform": _LEARNABLE,
    "unknown_transform_message": _TRANSFORMS,
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
