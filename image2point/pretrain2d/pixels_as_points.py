"""Images as point clouds, to pretrain point-based networks (PointNet++) on image classification.

Paper Section 4.2 asks whether image pretraining also helps a point-based network. There is no kernel
to inflate, so the image itself is turned into a point cloud: each pixel becomes one point at
``(x, y, z) = (column, row, PIXEL_DEPTH)`` in pixel units, carrying the pixel's channels (RGB) as its
features. A point network trained to classify such clouds then transfers its weights to 3D tasks.

Pixel ``(r, c)`` of an ``H × W`` image is point ``r * W + c`` (row-major order, as ``image.flatten``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from image2point.errors import DataError

# The z coordinate shared by every pixel: the image is the plane z = PIXEL_DEPTH.
PIXEL_DEPTH = 1.0
IMAGE_DIMS = 3  # [C, H, W]
BATCH_DIMS = 4  # [B, C, H, W]


def pixel_coordinates(height: int, width: int, dtype: torch.dtype = torch.float32,
                      device: torch.device | str | None = None) -> torch.Tensor:
    """``[height * width, 3]``: ``(column, row, PIXEL_DEPTH)`` of every pixel in row-major order."""
    rows, cols = torch.meshgrid(torch.arange(height, dtype=dtype, device=device),
                                torch.arange(width, dtype=dtype, device=device), indexing="ij")
    depth = torch.full_like(rows, PIXEL_DEPTH)
    return torch.stack([cols, rows, depth], dim=-1).reshape(height * width, 3)


def image_to_points(image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each pixel a point: ``image`` ``[C, H, W]`` or ``[B, C, H, W]`` (floating point) to
    ``(xyz [B, H*W, 3], features [B, H*W, C])``.

    A single image gets a batch dimension of 1. Point ``r * W + c`` is pixel ``(r, c)`` at
    ``x = c, y = r, z = PIXEL_DEPTH`` and carries the pixel's C values. Gradients flow to the features.
    """
    if image.dim() == IMAGE_DIMS:
        image = image.unsqueeze(0)
    if image.dim() != BATCH_DIMS:
        raise DataError(f"expected an image [C, H, W] or a batch [B, C, H, W], got shape {list(image.shape)}")
    if not image.is_floating_point():
        raise DataError(f"expected a floating-point image, got {image.dtype}; convert (and scale) it first")
    batch, channels, height, width = image.shape
    xyz = pixel_coordinates(height, width, image.dtype, image.device).expand(batch, height * width, 3)
    features = image.reshape(batch, channels, height * width).transpose(1, 2)
    return xyz.contiguous(), features.contiguous()


class PixelPointCloudDataset(Dataset):
    """Wraps any dataset of ``(image [C, H, W], label)`` into ``(xyz [H*W, 3], features [H*W, C], label)``.

    The default collate stacks items into ``xyz [B, N, 3]``, ``features [B, N, C]`` and labels ``[B]``,
    the inputs of a point network's ``forward(xyz, features)``.
    """

    def __init__(self, image_dataset: Dataset):
        self.image_dataset = image_dataset

    def __len__(self) -> int:
        return len(self.image_dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, Any]:
        image, label = self.image_dataset[index]
        xyz, features = image_to_points(torch.as_tensor(image))
        return xyz[0], features[0], label


class PixelsAsPoints(nn.Module):
    """An image classifier made of a point network: ``forward(images) = point_model(*image_to_points(images))``.

    Image training loops (:func:`image2point.pretrain2d.train2d.train_2d`, with its crop and flip
    augmentation on the images) then pretrain ``point_model`` directly. Its weights appear in this
    module's ``state_dict`` under ``STATE_PREFIX``.
    """

    STATE_PREFIX = "point_model."

    def __init__(self, point_model: nn.Module):
        super().__init__()
        self.point_model = point_model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        xyz, features = image_to_points(images)
        return self.point_model(xyz, features)
