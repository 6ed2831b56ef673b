"""The torch backend's CPU path runs pairs in small steps: with torch ops, each offset's pairs in steps of
at most CPU_CHUNK_BYTES of buffers; in the compiled kernels (cpu_kernels.py), every offset's pairs of one
tile of TILE_BYTES of scattered rows before the next tile. Forced down to a few pairs per step or rows
per tile (several steps per offset, a short last one; tiles where some offsets have no pair), on one and
two threads, convolutions still equal dense conv3d / conv_transpose3d, forward and both gradients, and
the input gradient alone (frozen weights) too."""

import pytest
import torch
import torch.nn.functional as F
from dense_reference import assert_same_values_and_gradients, at_sites, dense_of

from image2point.sparse import functional as SF
from image2point.sparse.backends import cpu_kernels, torch_backend
from tests.sparse.test_conv_vs_dense import random_sparse, random_weight

PAIRS_PER_STEP = 3


@pytest.fixture
def torch_op_steps(monkeypatch):
    monkeypatch.setenv(cpu_kernels.KERNELS_ENV_VAR, "0")
    monkeypatch.setattr(torch_backend, "CPU_CHUNK_BYTES", 1)
    monkeypatch.setattr(torch_backend, "MIN_CHUNK_ROWS", PAIRS_PER_STEP)


@pytest.fixture(params=["torch ops", "compiled kernels"])
def small_steps(request, monkeypatch):
    if request.param == "torch ops":
        request.getfixturevalue("torch_op_steps")
        return
    if cpu_kernels.load() is None:
        pytest.skip(f"compiled CPU kernels unavailable: {cpu_kernels.status()}")
    monkeypatch.delenv(cpu_kernels.KERNELS_ENV_VAR, raising=False)
    monkeypatch.setattr(cpu_kernels, "TILE_BYTES", 1)
    monkeypatch.setattr(cpu_kernels, "MIN_TILE_ROWS", PAIRS_PER_STEP)


@pytest.fixture(params=[1, 2], ids=["1-thread", "2-threads"])
def threads(request):
    previous = torch.get_num_threads()
    torch.set_num_threads(request.param)
    yield request.param
    torch.set_num_threads(previous)


def test_steps_split_every_offset_and_keep_each_pair_once(torch_op_steps):
    x = random_sparse(4, "torch")
    pairs = torch_backend.prepare(SF.kernel_map(x, 3, 1, "floor"))
    rows = torch_backend._chunk_rows(x.features, 8, pairs.max_count)
    assert rows == PAIRS_PER_STEP < pairs.max_count
    steps = list(torch_backend._chunks(pairs, rows))
    assert all(0 < end - start <= PAIRS_PER_STEP for _, start, end in steps)
    covered = [index for _, start, end in steps for index in range(start, end)]
    expected = [index for _, start, end in torch_backend._spans(pairs) for index in range(start, end)]
    assert covered == expected


def test_steps_are_whole_offsets_off_the_cpu(torch_op_steps):
    features = torch.empty((10, 4), device="meta")
    assert torch_backend._chunk_rows(features, 8, max_count=1000) == 1000


@pytest.mark.parametrize("kernel_size", [2, 3])
def test_submanifold_conv_in_small_steps_equals_dense(kernel_size, small_steps, threads):
    x = random_sparse(6, "torch")
    weight = random_weight(9, 6, kernel_size, kernel_size, kernel_size)
    out = SF.conv3d(x, weight) if kernel_size == 3 else SF.conv3d(x, weight, stride=2)
    padding = (kernel_size - 1) // 2
    dense = F.conv3d(dense_of(x), weight, padding=padding, stride=1 if kernel_size == 3 else 2)
    assert_same_values_and_gradients(out.features, at_sites(dense, out.coords), (x.features, weight))


@pytest.mark.parametrize("stride_mode", ["floor", "window"])
def test_inverse_conv_in_small_steps_equals_dense(stride_mode, small_steps):
    x = random_sparse(5, "torch", seed=1)
    coarse_sites = SF.conv3d(x, random_weight(4, 5, 3, 3, 3), stride=2, stride_mode=stride_mode)
    coarse = coarse_sites.replace_features(torch.randn(coarse_sites.num_sites, 4, requires_grad=True))
    weight = random_weight(3, 4, 3, 3, 3)
    up = SF.inverse_conv3d(coarse, weight, target=x, stride_mode=stride_mode)
    dense = F.conv_transpose3d(dense_of(coarse), weight.transpose(0, 1), stride=2, padding=1)
    assert_same_values_and_gradients(up.features, at_sites(dense, x.coords), (coarse.features, weight))


def test_input_gradient_alone_in_small_steps_equals_dense(small_steps):
    x = random_sparse(6, "torch", seed=2)
    weight = torch.randn(7, 6, 3, 3, 3)  # frozen: the backward computes the input gradient only
    out = SF.conv3d(x, weight)
    dense = F.conv3d(dense_of(x), weight, padding=1)
    assert_same_values_and_gradients(out.features, at_sites(dense, x.coords), (x.features,))
