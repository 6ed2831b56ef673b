"""Grouped, depthwise and dilated sparse convolutions against dense ``F.conv3d(groups=, dilation=)``.

Every case compares the sparse result with the dense convolution of the same grid at the output sites,
forward and backward (input and weight gradients), on both backends: spconv runs dilated convs itself
and hands grouped ones to the torch backend.
"""

import pytest
import torch
import torch.nn.functional as F
from dense_reference import BACKENDS, assert_same_values_and_gradients, at_sites, dense_of, random_sparse

from image2point.sparse import functional as SF
from image2point.sparse import kernel_map as KM
from image2point.sparse.downsample import downsample_coords
from image2point.sparse.backends import (
    SparseOp,
    backend_fallbacks,
    execution_backend,
    spconv_available,
    torch_backend,
    torch_grouped,
)
from image2point.sparse.modules import SparseConv3d

ATOL = 1e-4
RTOL = 1e-4
# (stride, stride mode): submanifold, and stride 2 under both conventions.
STRIDES = [(1, "floor"), (2, "floor"), (2, "window")]
# (C_in, C_out, groups): depthwise; narrow groups (merged into block-diagonal super-groups); a channel
# multiplier (groups = C_in < C_out); groups 16 channels wide (one batched GEMM over groups); ungrouped.
CONV_SHAPES = {
    "depthwise": (6, 6, 6),
    "narrow groups": (8, 12, 4),
    "multiplier": (4, 8, 4),
    "wide groups": (32, 32, 2),
    "ungrouped": (5, 7, 1),
}


def check_against_dense(backend, shape, kernel_size, stride, stride_mode, dilation, bias=False, seed=0):
    c_in, c_out, groups = shape
    x = random_sparse(c_in, backend, seed)
    generator = torch.Generator().manual_seed(seed + 1)
    weight = torch.randn(c_out, c_in // groups, kernel_size, kernel_size, kernel_size, generator=generator)
    weight.requires_grad_()
    bias_vector = torch.randn(c_out, generator=generator).requires_grad_() if bias else None
    out = SF.conv3d(x, weight, bias_vector, stride, stride_mode, dilation=dilation, groups=groups)
    assert out.stride == stride
    dense = F.conv3d(dense_of(x), weight, bias_vector, stride=stride, padding=dilation * (kernel_size - 1) // 2,
                     dilation=dilation, groups=groups)
    inputs = (x.features, weight) + ((bias_vector,) if bias else ())
    assert_same_values_and_gradients(out.features, at_sites(dense, out.coords), inputs)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape", list(CONV_SHAPES.values()), ids=list(CONV_SHAPES))
@pytest.mark.parametrize("stride,stride_mode", STRIDES)
@pytest.mark.parametrize("kernel_size", [1, 3, 5, 7])
def test_grouped_conv_equals_dense_conv3d(backend, shape, stride, stride_mode, kernel_size):
    check_against_dense(backend, shape, kernel_size, stride, stride_mode, dilation=1)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape", list(CONV_SHAPES.values()), ids=list(CONV_SHAPES))
@pytest.mark.parametrize("stride,stride_mode", STRIDES)
@pytest.mark.parametrize("kernel_size", [3, 5, 7])
def test_dilated_conv_equals_dense_conv3d(backend, shape, stride, stride_mode, kernel_size):
    check_against_dense(backend, shape, kernel_size, stride, stride_mode, dilation=2, seed=3)


@pytest.mark.parametrize("stride,stride_mode", STRIDES)
@pytest.mark.parametrize("kernel_size", [1, 3, 5])
def test_batched_gemm_over_narrow_groups_equals_dense_conv3d(monkeypatch, stride, stride_mode, kernel_size):
    """With super-groups off, narrow groups and channel multipliers run the per-group batched GEMM."""
    monkeypatch.setattr(torch_grouped, "MIN_GROUP_WIDTH", 1)
    for shape in (CONV_SHAPES["narrow groups"], CONV_SHAPES["multiplier"]):
        assert torch_grouped.super_group_size(shape[2], shape[0] // shape[2]) == 1
        check_against_dense("torch", shape, kernel_size, stride, stride_mode, dilation=1, seed=5)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dilation", [1, 3])
def test_grouped_conv_with_bias(backend, dilation):
    check_against_dense(backend, CONV_SHAPES["depthwise"], 3, 1, "floor", dilation, bias=True, seed=7)
    check_against_dense(backend, CONV_SHAPES["narrow groups"], 3, 2, "window", dilation, bias=True, seed=8)


def test_depthwise_conv_inference_and_weight_only_gradients():
    """The backward computes only the gradients asked for, and forward works without autograd."""
    x = random_sparse(6, "torch", seed=9)
    weight = torch.randn(6, 1, 3, 3, 3, requires_grad=True)
    dense = at_sites(F.conv3d(dense_of(x).detach(), weight, padding=1, groups=6), x.coords)
    with torch.no_grad():
        torch.testing.assert_close(SF.conv3d(x, weight, groups=6).features, dense.detach(), atol=ATOL, rtol=RTOL)
    features = x.features.detach()
    out = SF.conv3d(x.replace_features(features), weight, groups=6).features
    (grad,) = torch.autograd.grad(out.sum(), weight)
    (expected,) = torch.autograd.grad(dense.sum(), weight)
    torch.testing.assert_close(grad, expected, atol=ATOL, rtol=RTOL)


def test_super_groups_reach_the_minimum_width():
    assert torch_grouped.super_group_size(groups=32, group_width=4) == 4
    assert torch_grouped.super_group_size(groups=8, group_width=16) == 1
    assert torch_grouped.super_group_size(groups=6, group_width=5) == 6  # 4 does not divide 6
    assert torch_grouped.super_group_size(groups=3, group_width=2) == 3  # all of them, still narrower


@pytest.mark.parametrize("kernel_size,stride,mode", [(3, 1, None), (5, 2, "floor"), (7, 2, "window")])
def test_dilated_maps_follow_the_geometry_with_table_and_binary_search(monkeypatch, kernel_size, stride, mode):
    generator = torch.Generator().manual_seed(11)
    spatial = torch.unique(torch.randint(0, 25, (600, 3), generator=generator), dim=0)
    coords = torch.cat([torch.zeros(len(spatial), 1, dtype=torch.int64), spatial], 1)
    out_coords = coords if stride == 1 else downsample_coords(coords, mode)
    dilation = 2
    with_table = KM.build_kernel_map(coords, out_coords, kernel_size, stride, dilation)
    monkeypatch.setattr(KM, "TABLE_MIN_CELLS", 0)
    monkeypatch.setattr(KM, "TABLE_CELLS_PER_SITE", 0)
    with_search = KM.build_kernel_map(coords, out_coords, kernel_size, stride, dilation)
    assert with_table.counts == with_search.counts and with_table.dilation == dilation
    assert torch.equal(with_table.in_index, with_search.in_index)
    offsets = KM.kernel_offsets(kernel_size, dilation=dilation)
    starts = with_table.starts
    for offset, (start, end) in enumerate(zip(starts[:-1], starts[1:])):
        ins, outs = with_table.in_index[start:end], with_table.out_index[start:end]
        assert torch.equal(coords[ins, 1:], stride * out_coords[outs, 1:] + offsets[offset])


def test_kernel_maps_are_keyed_by_dilation():
    x = random_sparse(2, "torch", seed=12)
    weight = torch.randn(2, 2, 3, 3, 3)
    SF.conv3d(x, weight)
    SF.conv3d(x, weight, dilation=2)
    SF.conv3d(x, weight, stride=2, dilation=3)
    maps = x.cache.kernel_maps
    # Undilated keys are unchanged; dilated ones add the dilation.
    assert maps[("subm", (), 3)].dilation == 1
    assert maps[("subm", (), 3, 2)].dilation == 2
    assert maps[("down", (), "floor", 3, 3)].dilation == 3


@pytest.mark.skipif(not spconv_available(), reason="spconv is not installed")
def test_spconv_tensors_run_grouped_convs_on_the_torch_backend():
    x = random_sparse(4, "spconv", seed=13)
    SF.conv3d(x, torch.randn(4, 1, 3, 3, 3), groups=4)
    SF.conv3d(x, torch.randn(4, 4, 3, 3, 3), dilation=2)
    prepared_for = {key[1] for key in x.cache.kernel_maps if len(key) == 2 and isinstance(key[0], tuple)}
    assert prepared_for == {"torch", "spconv"}
    assert execution_backend("spconv", SparseOp.DEPTHWISE_CONV) == "torch"
    assert execution_backend("torch", SparseOp.GROUPED_CONV) == "torch"


def test_fallbacks_name_every_op_spconv_cannot_run():
    fallbacks = {(fallback.backend, fallback.op): fallback for fallback in backend_fallbacks()}
    assert set(fallbacks) == {("spconv", op) for op in SparseOp}
    assert all(fallback.runs_on == "torch" and fallback.reason for fallback in fallbacks.values())


def test_conv_module_has_torch_shapes_and_matches_the_functional_form():
    module = SparseConv3d(8, 12, 3, stride=2, bias=True, dilation=2, groups=4)
    reference = torch.nn.Conv3d(8, 12, 3, stride=2, dilation=2, groups=4)
    shapes = {name: value.shape for name, value in module.state_dict().items()}
    assert shapes == {name: value.shape for name, value in reference.state_dict().items()}
    assert "dilation=2, groups=4" in repr(module)
    x = random_sparse(8, "torch", seed=14)
    expected = SF.conv3d(x, module.weight, module.bias, 2, "floor", dilation=2, groups=4).features
    torch.testing.assert_close(module(x).features, expected)
    with pytest.raises(ValueError, match="groups=3"):
        SparseConv3d(8, 12, 3, groups=3)


def test_bad_groups_and_dilations_are_rejected():
    x = random_sparse(4, "torch", seed=15)
    with pytest.raises(ValueError, match="input channels per group"):
        SF.conv3d(x, torch.randn(4, 2, 3, 3, 3), groups=4)
    with pytest.raises(ValueError, match="output channels"):
        SF.conv3d(x, torch.randn(6, 1, 3, 3, 3), groups=4)
    with pytest.raises(ValueError, match="groups must be"):
        SF.conv3d(x, torch.randn(4, 4, 3, 3, 3), groups=0)
    with pytest.raises(ValueError, match="odd kernel"):
        SF.conv3d(x, torch.randn(4, 4, 2, 2, 2), stride=2, dilation=2)
    with pytest.raises(ValueError, match="dilation must be"):
        SF.conv3d(x, torch.randn(4, 4, 3, 3, 3), dilation=0)
