"""The [C_out, K³, C_in] filters of both backends, and their reuse across inference calls."""

import pytest
import torch
from dense_reference import BACKENDS

from image2point.sparse import functional as SF
from image2point.sparse.backends import weight_layout
from tests.sparse.test_conv_vs_dense import random_sparse


def test_filters_hold_each_offsets_weight_in_row_major_kernel_order():
    weight = torch.randn(5, 3, 3, 3, 3)
    filters = weight_layout.filters_of(weight, torch.float32)
    assert filters.shape == (5, 27, 3) and filters.is_contiguous()
    assert torch.equal(filters[:, (1 * 3 + 2) * 3 + 0], weight[:, :, 1, 2, 0])


def test_inference_reuses_the_filters_until_the_weight_changes():
    weight = torch.nn.Parameter(torch.randn(4, 2, 3, 3, 3))
    with torch.no_grad():
        first = weight_layout.filters_of(weight, torch.float32)
        assert weight_layout.filters_of(weight, torch.float32) is first
        assert weight_layout.filters_of(weight, torch.float64) is not first
        weight.mul_(2)  # an optimizer step or load_state_dict: the version counter moves
        second = weight_layout.filters_of(weight, torch.float64)
        assert torch.equal(second, 2 * first.double())
        weight.data.mul_(0)  # unseen by the version counter, so the copy stays until forgotten
        assert weight_layout.filters_of(weight, torch.float64) is second
        weight_layout.forget_filters(weight)
        assert torch.count_nonzero(weight_layout.filters_of(weight, torch.float64)) == 0
    with_graph = weight_layout.filters_of(weight, torch.float32)
    assert with_graph.requires_grad and with_graph is not second


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_conv_in_eval_sees_weight_updates_and_state_dict_loads(backend):
    x = random_sparse(3, backend).replace_features(torch.randn(random_sparse(3, backend).num_sites, 3))
    weight = torch.nn.Parameter(torch.randn(4, 3, 3, 3, 3))
    with torch.no_grad():
        before = SF.conv3d(x, weight).features
        weight.add_(1.0)
        after = SF.conv3d(x, weight).features
        fresh = SF.conv3d(x, weight.detach().clone()).features
    assert not torch.allclose(before, after)
    torch.testing.assert_close(after, fresh)
    module = torch.nn.Module()
    module.weight = weight
    module.load_state_dict({"weight": torch.zeros_like(weight)})
    with torch.no_grad():
        assert torch.count_nonzero(SF.conv3d(x, module.weight).features) == 0
