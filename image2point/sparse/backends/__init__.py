"""Execution backends for sparse convolution and pooling; all take the same kernel maps.

A backend satisfies :class:`~image2point.sparse.backends.protocol.SparseBackend` (``prepare(kernel_map)``,
``conv(features, weight, prepared)``, ``max_pool(features, prepared)``) and has a ``FALLBACKS`` dict: the
:class:`SparseOp` it cannot run, each with the reason, which then run on the torch backend (per layer:
the rest of the network stays on its backend). Backends are registered below, by name, with
:func:`~image2point.sparse.backends.protocol.register_backend`. :func:`backend_fallbacks` lists them (``image2point env`` prints it). ``default_backend(device)``
picks the faster one per device, as measured by ``benchmarks/bench_sparse.py`` (see docs/benchmarks.md).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from image2point.sparse.backends.protocol import (  # noqa: F401  (the backends' public API)
    SPARSE_BACKENDS,
    FullSparseBackend,
    SparseBackend,
    SparseOp,
    backend_names,
    get_backend,
    register_backend,
)

BACKEND_ENV_VAR = "IMAGE2POINT_SPARSE_BACKEND"
# Every backend can run every op on this one.
FALLBACK_BACKEND = "torch"


@dataclass(frozen=True)
class Fallback:
    """``op`` asked of ``backend`` runs on ``runs_on`` instead, because of ``reason``."""

    op: SparseOp
    backend: str
    runs_on: str
    reason: str


@register_backend("torch")
def _torch_backend() -> FullSparseBackend:
    from image2point.sparse.backends import torch_backend

    return torch_backend


@register_backend("spconv")
def _spconv_backend() -> SparseBackend:
    from image2point.sparse.backends import spconv_backend

    return spconv_backend


def execution_backend(name: str, op: SparseOp) -> str:
    """The backend that runs ``op`` for a tensor on backend ``name``: itself, or the fallback."""
    return FALLBACK_BACKEND if op in get_backend(name).FALLBACKS else name


def backend_fallbacks() -> list[Fallback]:
    """Every op that some backend hands to the fallback backend, and why."""
    return [Fallback(op, name, FALLBACK_BACKEND, reason)
            for name in backend_names() for op, reason in get_backend(name).FALLBACKS.items()]


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
        if chosen not in SPARSE_BACKENDS:
            raise ValueError(f"{BACKEND_ENV_VAR}={chosen!r} is not one of {backend_names()}")
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
