"""Execution backends for sparse convolution and pooling; both take the same kernel maps.

A backend is a module with ``prepare(kernel_map)``, ``conv(features, weight, prepared)`` and
``max_pool(features, prepared)``, and a ``FALLBACKS`` dict: the :class:`SparseOp` it cannot run, each
with the reason, which then run on the torch backend (per layer: the rest of the network stays on its
backend). :func:`backend_fallbacks` lists them (``image2point env`` prints it). ``default_backend(device)``
picks the faster one per device, as measured by ``benchmarks/bench_sparse.py`` (see docs/benchmarks.md).
"""

from __future__ import annotations

import enum
import os
from dataclasses import dataclass
from types import ModuleType

import torch

from image2point.sparse.tensor import BACKENDS

BACKEND_ENV_VAR = "IMAGE2POINT_SPARSE_BACKEND"
# Every backend can run every op on this one.
FALLBACK_BACKEND = "torch"


class SparseOp(enum.Enum):
    """Sparse operations whose execution a backend may hand to another one."""

    GROUPED_CONV = "grouped conv"  # groups > 1, other than depthwise
    DEPTHWISE_CONV = "depthwise conv"  # groups = C_in = C_out
    AVG_POOL = "avg pool"


@dataclass(frozen=True)
class Fallback:
    """``op`` asked of ``backend`` runs on ``runs_on`` instead, because of ``reason``."""

    op: SparseOp
    backend: str
    runs_on: str
    reason: str


def get_backend(name: str) -> ModuleType:
    if name == "torch":
        from image2point.sparse.backends import torch_backend

        return torch_backend
    if name == "spconv":
        from image2point.sparse.backends import spconv_backend

        return spconv_backend
    raise ValueError(f"unknown sparse backend {name!r}; choose one of {BACKENDS}")


def execution_backend(name: str, op: SparseOp) -> str:
    """The backend that runs ``op`` for a tensor on backend ``name``: itself, or the fallback."""
    return FALLBACK_BACKEND if op in get_backend(name).FALLBACKS else name


def backend_fallbacks() -> list[Fallback]:
    """Every op that some backend hands to the fallback backend, and why."""
    return [Fallback(op, name, FALLBACK_BACKEND, reason)
            for name in BACKENDS for op, reason in get_backend(name).FALLBACKS.items()]


def spconv_available() -> bool:
    from image2point.sparse.backends import spconv_backend

    return spconv_backend.is_available()


def spconv_has_cuda_kernels() -> bool:
    """Whether the installed spconv is a CUDA build (``pip install spconv`` is CPU-only, ``spconv-cu12x``
    is not); a CPU-only build on a CUDA device fails at its first convolution."""
    if not spconv_available():
        return False
    from spconv.cppconstants import CPU_ONLY_BUILD

    return not CPU_ONLY_BUILD


@dataclass(frozen=True)
class BackendChoice:
    """The backend :func:`default_backend` picks on a device, and why (``image2point env`` prints both)."""

    name: str
    reason: str


def choose_backend(device: torch.device | str = "cpu") -> BackendChoice:
    """:func:`default_backend` with its reason."""
    chosen = os.environ.get(BACKEND_ENV_VAR)
    if chosen:
        if chosen not in BACKENDS:
            raise ValueError(f"{BACKEND_ENV_VAR}={chosen!r} is not one of {BACKENDS}")
        return BackendChoice(chosen, f"set by {BACKEND_ENV_VAR}")
    if torch.device(device).type == "cuda":
        if spconv_has_cuda_kernels():
            return BackendChoice("spconv", "CUDA device and a CUDA build of spconv installed")
        if spconv_available():
            return BackendChoice("torch", "CUDA device, but the installed spconv is a CPU-only build")
        return BackendChoice("torch", "CUDA device, spconv not installed")
    return BackendChoice("torch", "not CUDA: the PyTorch backend is at least as fast as spconv's CPU build "
                                  "(docs/benchmarks.md) and needs no extra package")


def default_backend(device: torch.device | str = "cpu") -> str:
    """The faster backend on ``device`` (overridable with the IMAGE2POINT_SPARSE_BACKEND variable).

    On CUDA spconv's kernels are used when a CUDA build of spconv is installed; on CPU the PyTorch backend is at least as fast as
    spconv's CPU build in our measurements and needs no extra package.
    """
    return choose_backend(device).name
