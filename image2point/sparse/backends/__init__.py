"""Execution backends for sparse convolution and pooling; both take the same kernel maps.

A backend is a module with ``prepare(kernel_map)``, ``conv(features, weight, prepared)`` and
``max_pool(features, prepared)``. ``default_backend(device)`` picks the faster one per device, as measured
by ``benchmarks/bench_sparse.py`` (see docs/benchmarks.md).
"""

from __future__ import annotations

import os
from types import ModuleType

import torch

from image2point.sparse.tensor import BACKENDS

BACKEND_ENV_VAR = "IMAGE2POINT_SPARSE_BACKEND"


def get_backend(name: str) -> ModuleType:
    if name == "torch":
        from image2point.sparse.backends import torch_backend

        return torch_backend
    if name == "spconv":
        from image2point.sparse.backends import spconv_backend

        return spconv_backend
    raise ValueError(f"unknown sparse backend {name!r}; choose one of {BACKENDS}")


def spconv_available() -> bool:
    from image2point.sparse.backends import spconv_backend

    return spconv_backend.is_available()


def default_backend(device: torch.device | str = "cpu") -> str:
    """The faster backend on ``device`` (overridable with the IMAGE2POINT_SPARSE_BACKEND variable).

    On CUDA spconv's kernels win when installed; on CPU the PyTorch backend is at least as fast as
    spconv's CPU build in our measurements and needs no extra package.
    """
    chosen = os.environ.get(BACKEND_ENV_VAR)
    if chosen:
        if chosen not in BACKENDS:
            raise ValueError(f"{BACKEND_ENV_VAR}={chosen!r} is not one of {BACKENDS}")
        return chosen
    if torch.device(device).type == "cuda" and spconv_available():
        return "spconv"
    return "torch"
