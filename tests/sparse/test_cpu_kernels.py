"""The compiled CPU kernels of the torch backend (cpu_kernels.py): they build where a compiler and ninja
are present, equal the torch ops' steps in float32 and float64 (against dense references in small tiles:
test_pair_chunks.py), and the backend falls back to those steps where the kernels are off or cannot be
built."""

import shutil

import pytest
import torch
import torch.nn.functional as F
from dense_reference import assert_same_values_and_gradients, at_sites, dense_of

from image2point.sparse import functional as SF
from image2point.sparse.backends import cpu_kernels, torch_backend
from tests.sparse.test_conv_vs_dense import random_sparse, random_weight

BUILD_TOOLS_PRESENT = shutil.which("c++") is not None and shutil.which("ninja") is not None


def _kernels_or_skip():
    if cpu_kernels.load() is None:
        pytest.skip(f"compiled CPU kernels unavailable: {cpu_kernels.status()}")


@pytest.mark.skipif(not BUILD_TOOLS_PRESENT, reason="no C++ compiler or ninja on PATH")
def test_kernels_build_where_a_compiler_and_ninja_are_present():
    assert cpu_kernels.load() is not None, cpu_kernels.status()
    assert cpu_kernels.status() == "built"


def test_tile_rows_keep_a_tile_within_its_bytes_and_above_the_minimum():
    narrow = torch.empty((0, 64))
    assert cpu_kernels.tile_rows(narrow) == cpu_kernels.TILE_BYTES // (4 * 64)
    wide = torch.empty((0, 1 << 16))
    assert cpu_kernels.tile_rows(wide) == cpu_kernels.MIN_TILE_ROWS


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_kernels_equal_the_torch_ops_steps(dtype, monkeypatch):
    _kernels_or_skip()
    x = random_sparse(16, "torch", seed=3)
    x = x.replace_features(x.features.to(dtype))
    weight = random_weight(24, 16, 3, 3, 3).to(dtype)

    def run(kernels: str):
        monkeypatch.setenv(cpu_kernels.KERNELS_ENV_VAR, kernels)
        features = x.features.detach().clone().requires_grad_()
        filters = weight.detach().clone().requires_grad_()
        out = SF.conv3d(x.replace_features(features), filters).features
        out.backward(torch.ones_like(out))
        return out.detach(), features.grad, filters.grad

    tolerance = {"atol": 1e-5, "rtol": 1e-5} if dtype == torch.float32 else {"atol": 1e-12, "rtol": 1e-12}
    for compiled, torch_ops in zip(run("1"), run("0")):
        torch.testing.assert_close(compiled, torch_ops, **tolerance)


def test_environment_variable_turns_the_kernels_off(monkeypatch):
    features = torch.zeros((4, 8))
    monkeypatch.setenv(cpu_kernels.KERNELS_ENV_VAR, "0")
    assert not cpu_kernels.applies(features, features)
    assert cpu_kernels.status() == f"off ({cpu_kernels.KERNELS_ENV_VAR}=0)"


def test_half_precision_and_mixed_dtypes_keep_the_torch_ops():
    features = torch.zeros((4, 8))
    assert not cpu_kernels.applies(features.bfloat16(), features.bfloat16())
    assert not cpu_kernels.applies(features.bfloat16(), features)


def test_a_failed_build_falls_back_to_torch_ops_with_one_warning(monkeypatch, caplog):
    def failing_load(*_args, **_kwargs):
        raise RuntimeError("Ninja is required to load C++ extensions\nmore detail")

    from torch.utils import cpp_extension

    monkeypatch.delenv(cpu_kernels.KERNELS_ENV_VAR, raising=False)
    monkeypatch.setattr(cpp_extension, "load", failing_load)
    monkeypatch.setattr(cpu_kernels._Build, "attempted", False)
    monkeypatch.setattr(cpu_kernels._Build, "module", None)
    monkeypatch.setattr(cpu_kernels._Build, "failure", None)
    with caplog.at_level("WARNING", logger=cpu_kernels.__name__):
        features = torch.zeros((4, 8))
        assert not cpu_kernels.applies(features, features)
        assert not cpu_kernels.applies(features, features)
    assert len(caplog.records) == 1
    assert "Ninja is required" in caplog.records[0].getMessage()
    assert cpu_kernels.status() == "unavailable (RuntimeError: Ninja is required to load C++ extensions)"
    x = random_sparse(3, "torch", seed=4)
    weight = random_weight(2, 3, 3, 3, 3)
    dense = F.conv3d(dense_of(x), weight, padding=1)
    assert_same_values_and_gradients(SF.conv3d(x, weight).features, at_sites(dense, x.coords), (x.features, weight))
