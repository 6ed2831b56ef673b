"""Strided 1×1 shortcuts that read every child: against dense ``conv3d`` with the 1×1 weight on all
eight taps of a 2×2×2 stride-2 kernel (divided, for the mean, by the dense count of occupied
children), forward and backward, both backends, both stride conventions."""

import pytest
import torch
import torch.nn.functional as F
from dense_reference import BACKENDS, assert_same_values_and_gradients, at_sites, dense_of, random_sparse

from image2point.sparse import SparseTensor
from image2point.sparse import functional as SF
from image2point.sparse.backends import spconv_available
from image2point.sparse.modules import SparseChildrenConv3d, SparseSubsampleShortcut

CHILD_KERNEL = (2, 2, 2)
STRIDE_MODES = ["floor", "window"]


def dense_children_conv(x: SparseTensor, weight: torch.Tensor, reduce: SF.ChildrenReduce) -> torch.Tensor:
    """The reference: the 1×1 weight on all taps of a 2×2×2 stride-2 conv3d of the dense grid."""
    out = F.conv3d(dense_of(x), weight.expand(*weight.shape[:2], *CHILD_KERNEL), stride=2)
    if reduce is SF.ChildrenReduce.MEAN:
        occupancy = dense_of(x.replace_features(torch.ones(x.num_sites, 1)))
        present = F.conv3d(occupancy, torch.ones(1, 1, *CHILD_KERNEL), stride=2)
        out = out / present.clamp(min=1)
    return out


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("stride_mode", STRIDE_MODES)
@pytest.mark.parametrize("reduce", list(SF.ChildrenReduce))
def test_children_conv_equals_dense_2x2x2_conv_with_the_weight_on_every_tap(backend, stride_mode, reduce):
    x = random_sparse(5, backend, seed=1)
    weight = torch.randn(7, 5, 1, 1, 1, requires_grad=True)
    bias = torch.randn(7, requires_grad=True)
    out = SF.children_conv3d(x, weight, bias, stride_mode, reduce)
    assert torch.equal(out.coords, SF.coarser_coords(x, stride_mode))
    assert out.level == (stride_mode,) and out.backend == backend
    expected = at_sites(dense_children_conv(x, weight, reduce), out.coords) + bias
    assert_same_values_and_gradients(out.features, expected, (x.features, weight, bias))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("stride_mode", STRIDE_MODES)
@pytest.mark.parametrize("reduce", list(SF.ChildrenReduce))
def test_module_equals_dense_reference_and_keeps_a_1x1_conv_state_dict(backend, stride_mode, reduce):
    x = random_sparse(4, backend, seed=2)
    module = SparseChildrenConv3d(4, 6, reduce, stride_mode=stride_mode)
    assert {name: tuple(t.shape) for name, t in module.state_dict().items()} == {"weight": (6, 4, 1, 1, 1)}
    out = module(x)
    expected = at_sites(dense_children_conv(x, module.weight, reduce), out.coords)
    assert_same_values_and_gradients(out.features, expected, (x.features, module.weight))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("stride_mode", STRIDE_MODES)
@pytest.mark.parametrize("reduce", list(SF.ChildrenReduce))
def test_option_a_shortcut_pools_children_then_pads_channels(backend, stride_mode, reduce):
    x = random_sparse(4, backend, seed=3)
    out = SparseSubsampleShortcut(4, 8, stride=2, stride_mode=stride_mode, reduce=reduce)(x)
    identity = torch.eye(4).reshape(4, 4, 1, 1, 1)
    pooled = at_sites(dense_children_conv(x, identity, reduce), out.coords)
    expected = F.pad(pooled, (2, 2))
    assert_same_values_and_gradients(out.features, expected, (x.features,))


def test_option_a_shortcut_without_reduce_keeps_the_child_at_2q():
    x = random_sparse(3, "torch", seed=4)
    out = SparseSubsampleShortcut(3, 3, stride=2)(x)
    torch.testing.assert_close(out.features, SF.subsample(x).features)


def test_every_floor_site_has_a_child_and_window_sites_beyond_them_have_none():
    x = random_sparse(1, "torch", seed=5)
    floor_counts = SF.children_map(x, "floor").counts
    assert bool((floor_counts >= 1).all()) and int(floor_counts.sum()) == x.num_sites
    window = SF.children_map(x, "window")
    window_sites = SF.coarser_coords(x, "window")
    floor_sites = SF.coarser_coords(x, "floor")
    has_children = window.counts > 0
    assert int(has_children.sum()) == floor_sites.shape[0]
    assert torch.equal(window_sites[has_children], floor_sites)
    assert int(window.counts.sum()) == x.num_sites


def test_children_map_is_cached_per_batch_and_level():
    x = random_sparse(2, "torch", seed=6)
    first = SF.children_map(x, "floor")
    SF.pool_children(x.replace_features(x.features * 2), "floor")
    assert SF.children_map(x, "floor") is first


@pytest.mark.skipif(not spconv_available(), reason="spconv is not installed")
@pytest.mark.parametrize("reduce", list(SF.ChildrenReduce))
def test_backends_give_identical_children_results(reduce):
    weight = torch.randn(6, 4, 1, 1, 1)
    a = SF.children_conv3d(random_sparse(4, "torch", seed=7), weight, reduce=reduce)
    b = SF.children_conv3d(random_sparse(4, "spconv", seed=7), weight, reduce=reduce)
    assert torch.equal(a.coords, b.coords)
    assert torch.equal(a.features, b.features)


def test_children_conv_rejects_kernels_other_than_1x1():
    x = random_sparse(2, "torch")
    with pytest.raises(ValueError, match="1×1×1"):
        SF.children_conv3d(x, torch.randn(3, 2, 3, 3, 3))
    with pytest.raises(ValueError, match="input channels"):
        SF.children_conv3d(x, torch.randn(3, 5, 1, 1, 1))
