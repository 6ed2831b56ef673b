"""Helpers for the plane-equivalence tests: real images on a one-site-thick plane, and back.

With the default T (the authors' copy_y) a converted K×K×K kernel meets a plane y = 0 only with its y = 0
slice, which is the 2D kernel itself (2D rows on z, columns on x), and the floor convention's coarse sites
are the 2D output grid: a converted network on ``G[b, c, x, 0, z] = I[b, c, z, x]`` computes what the 2D
network computes on ``I``.
"""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
import torch

from image2point.sparse import SparseTensor

SHARED_DIR = Path(__file__).resolve().parents[2] / ".." / "shared"
SHARED_DATA = SHARED_DIR / "data"
SHARED_WEIGHTS = SHARED_DIR / "weights"
# Dims of a dense [B, C, X, Y, Z] grid.
DENSE_X, DENSE_Y, DENSE_Z = 2, 3, 4
# The bar for "returns the 2D network's output".
MAX_RELATIVE_ERROR = 1e-4


def image_on_plane(image: torch.Tensor, backend: str = "torch") -> SparseTensor:
    """``G[b, c, x, 0, z] = image[b, c, z, x]``: every pixel one site of the plane y = 0."""
    batch, _, rows, cols = image.shape
    dense = image.transpose(2, 3).unsqueeze(DENSE_Y).contiguous()
    return SparseTensor.from_dense(dense, torch.ones(batch, cols, 1, rows, dtype=torch.bool), backend)


def plane_as_image(x: SparseTensor, rows: int, cols: int) -> torch.Tensor:
    """A sparse map on the plane y = 0 as the 2D map ``[B, C, rows, cols]`` (zeros where no site is)."""
    return x.to_dense((cols, 1, rows)).select(DENSE_Y, 0).transpose(DENSE_X, DENSE_Z - 1)


def relative_error(out: torch.Tensor, reference: torch.Tensor) -> float:
    return float((out - reference).norm() / reference.norm())


def assert_same_output(out: torch.Tensor, reference: torch.Tensor, class_dim: int = 1) -> None:
    """Relative error under :data:`MAX_RELATIVE_ERROR` and the same top-1 along ``class_dim``."""
    assert out.shape == reference.shape
    error = relative_error(out, reference)
    assert error < MAX_RELATIVE_ERROR, f"relative error {error:.2e}"
    assert torch.equal(out.argmax(class_dim), reference.argmax(class_dim))


@functools.cache
def real_images(source: str, count: int, size: int | None = None, normalize: bool = True) -> torch.Tensor:
    """``[count, 3, S, S]`` real images: MNIST test digits (28×28, or resized to ``size``) or Tiny-ImageNet
    validation images (64×64, or resized); ImageNet-normalised unless ``normalize`` is False ([0, 1])."""
    from image2point.pretrain2d.image_folders import MNIST, TinyImageNet

    if source == "mnist":
        root = SHARED_DATA / "mnist"
        if not root.is_dir():
            pytest.skip(f"MNIST not found at {root.resolve()}")
        dataset = MNIST(root, "test", image_size=size, mode="resize", normalize=normalize)
    else:
        root = SHARED_DATA / "tiny-imagenet-200"
        if not root.is_dir():
            pytest.skip(f"Tiny-ImageNet not found at {root.resolve()}")
        dataset = TinyImageNet(root, "val", image_size=size, normalize=normalize)
    return torch.stack([dataset[index][0] for index in range(count)])


def randomize_batchnorm(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Trained-looking BatchNorm statistics and affine parameters, so a tensor left behind shows."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                n = module.num_features
                module.weight.copy_(0.5 + torch.rand(n, generator=generator))
                module.bias.copy_(0.2 * torch.randn(n, generator=generator))
                module.running_mean.copy_(0.2 * torch.randn(n, generator=generator))
                module.running_var.copy_(0.5 + torch.rand(n, generator=generator))
    return model
