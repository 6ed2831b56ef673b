"""What the sparse-vs-dense tests share: random sparse inputs on a small grid, their dense grid, reading a
dense result at the sparse sites, and the forward-and-backward comparison."""

from __future__ import annotations

import pytest
import torch

from image2point.sparse import SparseTensor
from image2point.sparse.backends import spconv_available

GRID = (9, 10, 11)
DENSITY = 0.3
BACKENDS = ["torch", pytest.param("spconv", marks=pytest.mark.skipif(
    not spconv_available(), reason="spconv is not installed (CPU build: Linux x86-64 only)"))]
# Seeds the random projection whose gradients the comparison checks.
PROBE_SEED = 99


def random_sites(batch: int, generator: torch.Generator) -> torch.Tensor:
    """Coordinates [N, 4] of a random DENSITY share of the batch's GRID sites."""
    mask = torch.rand((batch, *GRID), generator=generator) < DENSITY
    return mask.nonzero()


def random_sparse(
    channels: int, backend: str = "torch", seed: int = 0, batch: int = 2, scale: float = 1.0, shift: float = 0.0
) -> SparseTensor:
    """Features ``scale * N(0, 1) + shift`` at random sites, requiring grad."""
    generator = torch.Generator().manual_seed(seed)
    coords = random_sites(batch, generator)
    features = scale * torch.randn(coords.shape[0], channels, generator=generator) + shift
    return SparseTensor(features.requires_grad_(), coords, batch, backend=backend)


def dense_of(x: SparseTensor, margin: int = 2) -> torch.Tensor:
    """Dense grid of x, differentiable w.r.t. x.features, with room for window-convention sites."""
    shape = tuple(int(v) + 1 + margin for v in x.coords[:, 1:].max(0).values)
    return x.to_dense(shape)


def at_sites(dense: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    b, i, j, k = coords.unbind(1)
    return dense[b, :, i, j, k]


def assert_same_values_and_gradients(sparse_out, dense_out, inputs, atol: float = 1e-4, rtol: float = 1e-4):
    """Forward values equal, and the gradients of a random projection equal for every input."""
    torch.testing.assert_close(sparse_out, dense_out, atol=atol, rtol=rtol)
    generator = torch.Generator().manual_seed(PROBE_SEED)
    probe = torch.randn(sparse_out.shape, generator=generator, dtype=sparse_out.dtype).to(sparse_out.device)
    sparse_grads = torch.autograd.grad((sparse_out * probe).sum(), inputs, retain_graph=True)
    dense_grads = torch.autograd.grad((dense_out * probe).sum(), inputs)
    for sparse_grad, dense_grad in zip(sparse_grads, dense_grads, strict=True):
        torch.testing.assert_close(sparse_grad, dense_grad, atol=atol, rtol=rtol)
