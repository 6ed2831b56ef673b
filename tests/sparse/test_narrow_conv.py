"""The narrow-input convolution (one gathered neighbourhood GEMM, the first layer's path) and the per-offset
loop, each forced, against dense conv3d: forward and both gradients."""

import pytest
import torch
import torch.nn.functional as F
from dense_reference import assert_same_values_and_gradients, at_sites, dense_of

from image2point.sparse import functional as SF
from image2point.sparse.backends import narrow_conv
from tests.sparse.test_conv_vs_dense import random_sparse, random_weight

PATHS = {"narrow": 10**9, "per-offset": 0}


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("kernel_size", [1, 3])
def test_submanifold_conv_on_either_path_equals_dense(path, kernel_size, device, monkeypatch):
    monkeypatch.setattr(narrow_conv, "MAX_GATHERED_WIDTH", PATHS[path])
    x = random_sparse(4, "torch", seed=2, device=device)
    weight = random_weight(6, 4, kernel_size, kernel_size, kernel_size, device=device)
    out = SF.conv3d(x, weight)
    dense = F.conv3d(dense_of(x), weight, padding=(kernel_size - 1) // 2)
    assert_same_values_and_gradients(out.features, at_sites(dense, x.coords), (x.features, weight))


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("stride_mode", ["floor", "window"])
def test_strided_and_inverse_conv_on_either_path_equal_dense(path, stride_mode, device, monkeypatch):
    monkeypatch.setattr(narrow_conv, "MAX_GATHERED_WIDTH", PATHS[path])
    x = random_sparse(3, "torch", seed=4, device=device)
    weight = random_weight(5, 3, 3, 3, 3, device=device)
    out = SF.conv3d(x, weight, stride=2, stride_mode=stride_mode)
    dense = F.conv3d(dense_of(x), weight, stride=2, padding=1)
    assert_same_values_and_gradients(out.features, at_sites(dense, out.coords), (x.features, weight))
    coarse = out.replace_features(torch.randn(out.num_sites, 2, device=device, requires_grad=True))
    up_weight = random_weight(3, 2, 2, 2, 2, device=device)
    up = SF.inverse_conv3d(coarse, up_weight, target=x, stride_mode=stride_mode)
    dense_up = F.conv_transpose3d(dense_of(coarse), up_weight.transpose(0, 1), stride=2)
    assert_same_values_and_gradients(up.features, at_sites(dense_up, x.coords), (coarse.features, up_weight))


def test_the_first_layer_of_the_default_network_takes_the_narrow_path():
    assert narrow_conv.applies(4, 27) and narrow_conv.applies(3, 27)
    assert not narrow_conv.applies(16, 27) and not narrow_conv.applies(4, 125)
