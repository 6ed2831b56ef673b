"""The sparse-backend registry: the built-in backends satisfy the protocol, a backend missing a method it
needs is refused by name, and a backend registered from outside runs a network's convolutions."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from image2point.sparse import SparseTensor
from image2point.sparse import functional as SF
from image2point.sparse.backends import (
    SPARSE_BACKENDS,
    FullSparseBackend,
    SparseBackend,
    SparseOp,
    backend_names,
    get_backend,
    register_backend,
    spconv_available,
    torch_backend,
)
from image2point.sparse.backends.protocol import OP_METHODS, check_backend

GRID = (6, 7, 8)
CHANNELS = 4


def random_sparse(backend: str, seed: int = 0) -> SparseTensor:
    generator = torch.Generator().manual_seed(seed)
    coords = (torch.rand((2, *GRID), generator=generator) < 0.3).nonzero()
    return SparseTensor(torch.randn(coords.shape[0], CHANNELS, generator=generator), coords, 2, backend=backend)


def counting_backend(calls: list[str]) -> SimpleNamespace:
    """The torch backend's convolution, counted, handing every other op to the fallback."""

    def conv(features, weight, prepared):
        calls.append("conv")
        return torch_backend.conv(features, weight, prepared)

    return SimpleNamespace(NAME="counting", FALLBACKS={op: "counts only dense convolutions" for op in SparseOp},
                           prepare=torch_backend.prepare, conv=conv, max_pool=torch_backend.max_pool)


def test_the_built_in_backends_are_registered_and_satisfy_the_protocol():
    assert backend_names()[:2] == ("torch", "spconv")
    assert isinstance(get_backend("torch"), FullSparseBackend)
    if spconv_available():
        assert isinstance(get_backend("spconv"), SparseBackend)
    assert set(OP_METHODS) == set(SparseOp)


def test_an_unknown_backend_is_refused_by_the_registry_and_the_tensor():
    with pytest.raises(ValueError, match=r"unknown sparse backend 'nonesuch'; choose one of \('torch', 'spconv'"):
        get_backend("nonesuch")
    with pytest.raises(ValueError, match="unknown sparse backend 'nonesuch'"):
        random_sparse("nonesuch")


def test_a_backend_lacking_what_it_does_not_hand_off_is_refused_by_name():
    incomplete = SimpleNamespace(NAME="x", FALLBACKS={SparseOp.AVG_POOL: "no"}, prepare=None, conv=None)
    with pytest.raises(TypeError, match="sparse backend 'x' lacks max_pool, grouped_conv, depthwise_conv"):
        check_backend("x", incomplete)


def test_a_registered_backend_runs_convolutions_like_the_torch_one(isolated_registries):
    calls: list[str] = []
    register_backend("counting")(lambda: counting_backend(calls))
    assert "counting" in SPARSE_BACKENDS
    with pytest.raises(ValueError, match="already registered"):
        register_backend("counting")(lambda: counting_backend(calls))
    weight = torch.randn(6, CHANNELS, 3, 3, 3)
    expected = SF.conv3d(random_sparse("torch"), weight)
    got = SF.conv3d(random_sparse("counting"), weight)
    assert calls == ["conv"]
    torch.testing.assert_close(got.features, expected.features)
    # Depthwise convolution is handed to the torch backend.
    depthwise = torch.randn(CHANNELS, 1, 3, 3, 3)
    torch.testing.assert_close(SF.conv3d(random_sparse("counting"), depthwise, groups=CHANNELS).features,
                               SF.conv3d(random_sparse("torch"), depthwise, groups=CHANNELS).features)
    assert calls == ["conv"]
