"""The offset-group convolution (one bmm per group of offsets, the torch backend's path on CUDA), forced
on every device: against dense conv3d and against the per-offset path, forward and both gradients."""

import pytest
import torch
import torch.nn.functional as F
from dense_reference import assert_same_values_and_gradients, at_sites, dense_of

from image2point.sparse import functional as SF
from image2point.sparse.backends import offset_groups, torch_backend
from tests.sparse.test_conv_vs_dense import random_sparse, random_weight


@pytest.fixture
def batched_offsets(monkeypatch, device):
    """The offset-group path on ``device`` (and on the CPU, where it is otherwise off)."""
    monkeypatch.setattr(torch_backend, "BATCHED_OFFSET_DEVICE_TYPES", {"cpu", torch.device(device).type})


@pytest.mark.parametrize("kernel_size", [1, 3, 5])
def test_submanifold_conv_equals_dense(kernel_size, device, batched_offsets):
    x = random_sparse(6, "torch", device=device)
    weight = random_weight(9, 6, kernel_size, kernel_size, kernel_size, device=device)
    out = SF.conv3d(x, weight)
    dense = F.conv3d(dense_of(x), weight, padding=(kernel_size - 1) // 2)
    assert_same_values_and_gradients(out.features, at_sites(dense, x.coords), (x.features, weight))


@pytest.mark.parametrize("stride_mode", ["floor", "window"])
@pytest.mark.parametrize("kernel_size", [2, 3])
def test_strided_and_inverse_conv_equal_dense(stride_mode, kernel_size, device, batched_offsets):
    x = random_sparse(5, "torch", seed=1, device=device)
    weight = random_weight(7, 5, kernel_size, kernel_size, kernel_size, device=device)
    out = SF.conv3d(x, weight, stride=2, stride_mode=stride_mode)
    dense = F.conv3d(dense_of(x), weight, stride=2, padding=(kernel_size - 1) // 2)
    assert_same_values_and_gradients(out.features, at_sites(dense, out.coords), (x.features, weight))

    coarse = out.replace_features(torch.randn(out.num_sites, 4, device=device, requires_grad=True))
    up_weight = random_weight(3, 4, kernel_size, kernel_size, kernel_size, device=device)
    up = SF.inverse_conv3d(coarse, up_weight, target=x, stride_mode=stride_mode)
    dense_up = F.conv_transpose3d(dense_of(coarse), up_weight.transpose(0, 1), stride=2,
                                  padding=(kernel_size - 1) // 2)
    assert_same_values_and_gradients(up.features, at_sites(dense_up, x.coords), (coarse.features, up_weight))


def test_groups_under_a_small_buffer_cap_give_the_per_offset_result(device, monkeypatch):
    """Many small groups (a tiny cap) and the per-offset loop agree to float32 rounding."""
    x = random_sparse(8, "torch", seed=3, device=device)
    weight = random_weight(8, 8, 3, 3, 3, device=device)
    monkeypatch.setattr(torch_backend, "BATCHED_OFFSET_DEVICE_TYPES", set())
    reference = SF.conv3d(x, weight, stride=2).features
    reference_grads = torch.autograd.grad(reference.square().sum(), (x.features, weight))
    monkeypatch.setattr(torch_backend, "BATCHED_OFFSET_DEVICE_TYPES", {torch.device(device).type})
    monkeypatch.setattr(offset_groups, "GROUP_BUFFER_BYTES", 1)
    x = x.replace_features(x.features)
    batched = SF.conv3d(x, weight, stride=2).features
    batched_grads = torch.autograd.grad(batched.square().sum(), (x.features, weight))
    torch.testing.assert_close(batched, reference, atol=1e-5, rtol=1e-5)
    for got, expected in zip(batched_grads, reference_grads):
        torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-5)


def test_grouping_pads_at_most_a_quarter_and_skips_identity_and_empty_offsets():
    counts = (100, 0, 80, 90, 500, 60, 74, 100)
    groups = offset_groups.group_offsets(counts, skip=4, max_rows=10**6)
    assert sorted(offset for group in groups for offset in group) == [0, 2, 3, 5, 6, 7]
    for group in groups:
        assert all(counts[offset] >= offset_groups.MIN_FILL * counts[group[0]] for offset in group)
    assert groups == [[0, 7, 3, 2], [6, 5]]
    # A row cap splits groups, but an offset bigger than the cap still runs (alone).
    assert offset_groups.group_offsets(counts, skip=None, max_rows=200) == [[4], [0, 7], [3, 2], [6, 5]]


def test_plan_slots_hold_each_pair_once_and_pad_to_dummy_rows():
    in_index = torch.arange(8)
    out_index = torch.arange(8).flip(0)
    counts = (4, 3, 1)
    (group,) = offset_groups.plan_groups(in_index, out_index, counts, num_in=8, num_out=9, skip=2, max_rows=100)
    assert group.offsets.tolist() == [0, 1] and group.width == 4
    assert group.in_rows.tolist() == [0, 1, 2, 3, 4, 5, 6, 0]
    assert group.in_rows_or_dummy.tolist() == [0, 1, 2, 3, 4, 5, 6, 8]
    assert group.out_rows_or_dummy.tolist() == [7, 6, 5, 4, 3, 2, 1, 9]
