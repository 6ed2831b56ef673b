"""Bilinear resizing as two matmuls against ``F.interpolate``: forward and backward in float64, up and down,
odd sizes, both corner conventions; and which of the two a network takes, by deterministic mode."""

import pytest
import torch
import torch.nn.functional as F

from image2point.models2d import resize
from image2point.models2d.resize import bilinear_resize, interpolation_matrix, separable_bilinear_resize
from image2point.train.determinism import deterministic_algorithms

TOLERANCE = 1e-10
# (input size, output size): HRNet's 2x/4x/8x upsampling of odd sizes, downsampling, one row or column,
# a single pixel either way, and the same size.
RESIZES = [((4, 16), (16, 64)), ((5, 7), (17, 25)), ((3, 9), (12, 36)), ((16, 64), (5, 3)), ((9, 8), (4, 15)),
           ((1, 6), (4, 6)), ((1, 1), (3, 5)), ((7, 3), (1, 1)), ((6, 5), (6, 5))]


def _reference_and_separable(x: torch.Tensor, size, align_corners: bool):
    upstream = torch.randn(x.shape[:2] + size, dtype=x.dtype, device=x.device)
    reference = F.interpolate(x, size=size, mode="bilinear", align_corners=align_corners)
    (reference_grad,) = torch.autograd.grad(reference, x, upstream)
    # Under deterministic mode, which on CUDA refuses the reference's backward.
    with deterministic_algorithms(True):
        resized = separable_bilinear_resize(x, size, align_corners)
        (grad,) = torch.autograd.grad(resized, x, upstream)
    return (reference, reference_grad), (resized, grad)


@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("in_size, out_size", RESIZES)
def test_two_matmuls_equal_interpolate_forward_and_backward(device, in_size, out_size, align_corners):
    torch.manual_seed(0)
    x = torch.randn(2, 3, *in_size, dtype=torch.float64, device=device, requires_grad=True)
    (reference, reference_grad), (resized, grad) = _reference_and_separable(x, out_size, align_corners)
    assert resized.shape == reference.shape
    torch.testing.assert_close(resized, reference, rtol=0, atol=TOLERANCE)
    torch.testing.assert_close(grad, reference_grad, rtol=0, atol=TOLERANCE)


@pytest.mark.parametrize("align_corners", [False, True])
def test_every_row_of_an_interpolation_matrix_sums_to_one(align_corners):
    for in_size, out_size in [(7, 25), (25, 7), (1, 4), (4, 1)]:
        matrix = interpolation_matrix(in_size, out_size, align_corners, torch.float64)
        assert matrix.shape == (out_size, in_size) and (matrix >= 0).all()
        torch.testing.assert_close(matrix.sum(dim=1), torch.ones(out_size, dtype=torch.float64))
        assert ((matrix > 0).sum(dim=1) <= 2).all()  # two taps at most: no antialiasing


def test_a_network_resizes_with_interpolate_unless_deterministic_mode_is_on(monkeypatch):
    """The matmuls only where they are needed: F.interpolate's kernel reads two taps per output."""
    calls = []
    interpolate = F.interpolate

    def counted(*args, **kwargs):
        calls.append(kwargs["mode"])
        return interpolate(*args, **kwargs)

    monkeypatch.setattr(resize.F, "interpolate", counted)
    x = torch.randn(1, 2, 4, 6)
    default = bilinear_resize(x, (8, 12), align_corners=False)
    assert calls == ["bilinear"]
    with deterministic_algorithms(True):
        matmuls = bilinear_resize(x, torch.Size((8, 12)), align_corners=False)
    assert calls == ["bilinear"]
    torch.testing.assert_close(matmuls, default)
