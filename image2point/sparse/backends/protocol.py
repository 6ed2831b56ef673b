"""What a sparse execution backend is, and the registry ``SparseTensor.backend`` names one in.

A backend is any object (the built-in ones are modules) with the members of :class:`SparseBackend`:
``prepare`` turns a kernel map into the backend's own index layout once per batch, ``conv`` and
``max_pool`` run on it. An op a backend lists in ``FALLBACKS`` runs on the fallback backend instead; an
op it does not list needs its method (:data:`OP_METHODS`), which :func:`get_backend` checks when it
first loads the backend. The fallback backend runs every op (:class:`FullSparseBackend`).

A backend registers once, by name, with a loader that imports it on first use (spconv is optional)::

    @register_backend("mine")
    def _mine() -> SparseBackend:
        from my_package import my_backend
        return my_backend
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import torch

if TYPE_CHECKING:
    from image2point.sparse.kernel_map import KernelMap


class SparseOp(enum.Enum):
    """Sparse operations whose execution a backend may hand to another one."""

    GROUPED_CONV = "grouped conv"  # groups > 1, other than depthwise
    DEPTHWISE_CONV = "depthwise conv"  # groups = C_in = C_out
    AVG_POOL = "avg pool"


# The method that runs each op a backend does not hand to the fallback.
OP_METHODS = {SparseOp.GROUPED_CONV: "grouped_conv", SparseOp.DEPTHWISE_CONV: "depthwise_conv",
              SparseOp.AVG_POOL: "window_sum"}


@runtime_checkable
class SparseBackend(Protocol):
    """Dense convolution and max pooling over a kernel map; any other op on it or on the fallback."""

    NAME: str
    # The ops this backend hands to the fallback backend, each with the reason.
    FALLBACKS: Mapping[SparseOp, str]

    def prepare(self, kernel_map: KernelMap) -> Any:
        """The kernel map in this backend's layout (cached with the batch, one per map and backend)."""

    def conv(self, features: torch.Tensor, weight: torch.Tensor, prepared: Any) -> torch.Tensor:
        """``[N_out, C_out]`` from ``[N_in, C_in]`` features and a ``[C_out, C_in, K, K, K]`` weight."""

    def max_pool(self, features: torch.Tensor, prepared: Any) -> torch.Tensor:
        """The largest feature of every output site's window."""


@runtime_checkable
class FullSparseBackend(SparseBackend, Protocol):
    """A backend that runs every op itself: what the fallback backend must be."""

    def grouped_conv(self, features: torch.Tensor, weight: torch.Tensor, prepared: Any, groups: int) -> torch.Tensor:
        """Convolution with ``groups`` groups (weight ``[C_out, C_in / groups, K, K, K]``)."""

    def depthwise_conv(self, features: torch.Tensor, weight: torch.Tensor, prepared: Any) -> torch.Tensor:
        """One filter per channel (weight ``[C, 1, K, K, K]``)."""

    def window_sum(self, features: torch.Tensor, prepared: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """Sum of each output site's window and how many sites it holds (average pooling)."""


SPARSE_BACKENDS: dict[str, Callable[[], SparseBackend]] = {}
_LOADED: dict[str, SparseBackend] = {}


def register_backend(name: str) -> Callable[[Callable[[], SparseBackend]], Callable[[], SparseBackend]]:
    """Decorator: ``load()`` returns the backend ``SparseTensor(..., backend=name)`` runs on."""

    def decorator(load: Callable[[], SparseBackend]) -> Callable[[], SparseBackend]:
        if name in SPARSE_BACKENDS:
            raise ValueError(f"sparse backend {name!r} is already registered")
        SPARSE_BACKENDS[name] = load
        return load

    return decorator


def backend_names() -> tuple[str, ...]:
    return tuple(SPARSE_BACKENDS)


def get_backend(name: str) -> SparseBackend:
    """The registered backend ``name``, loaded (and checked against the protocol) on first use."""
    if name not in _LOADED:
        if name not in SPARSE_BACKENDS:
            raise ValueError(f"unknown sparse backend {name!r}; choose one of {backend_names()}")
        _LOADED[name] = check_backend(name, SPARSE_BACKENDS[name]())
    return _LOADED[name]


def check_backend(name: str, backend: object) -> SparseBackend:
    """``backend`` itself; TypeError naming what it lacks of :class:`SparseBackend` and of the methods of
    the ops it does not hand to the fallback."""
    missing = [member for member in ("NAME", "FALLBACKS", "prepare", "conv", "max_pool")
               if not hasattr(backend, member)]
    fallbacks = getattr(backend, "FALLBACKS", {})
    missing += [method for op, method in OP_METHODS.items() if op not in fallbacks and not hasattr(backend, method)]
    if missing:
        raise TypeError(f"sparse backend {name!r} lacks {', '.join(missing)}")
    return backend  # type: ignore[return-value]
