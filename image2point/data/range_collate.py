"""Scenes → LiDAR range images ``[B, 5, H, W]`` for projection-based networks (the paper's HRNet).

Each scan is projected with :func:`image2point.data.range_image.project_to_range_image`; its
intensity is the scene's first feature channel (SemanticKITTI's remission; zeros without features).
The network trains on pixel labels (each pixel: the label of the point it shows) and is scored on
every point of the scan by back-projection: each point takes its pixel's prediction, or with
``knn`` RangeNet++'s kNN vote among neighbouring pixels.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch

from image2point.data.range_image import (
    RangeImage,
    RangeProjectionConfig,
    back_project_labels,
    knn_refine,
    pixel_labels_from_points,
    project_to_range_image,
)
from image2point.data.sample import IGNORE_INDEX, SceneSample


@dataclass
class RangeBatch:
    images: torch.Tensor  # [B, 5, H, W] float32
    pixel_labels: torch.Tensor  # [B, H, W] int64, IGNORE_INDEX at empty pixels
    projections: tuple[RangeImage, ...]  # per scan, on the CPU: the point <-> pixel maps
    point_labels: torch.Tensor  # [sum of N_i] int64, the scans' points in order
    knn: bool = False

    @property
    def device(self) -> torch.device:
        return self.images.device

    def to(self, device: torch.device) -> RangeBatch:
        return RangeBatch(self.images.to(device), self.pixel_labels.to(device), self.projections,
                          self.point_labels.to(device), self.knn)

    def network_inputs(self) -> tuple[torch.Tensor, ...]:
        return (self.images,)

    @property
    def loss_targets(self) -> torch.Tensor:
        return self.pixel_labels

    def scored(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Predicted and true class of every point of every scan (logits ``[B, K, H, W]``)."""
        predictions = []
        for scan_logits, projection in zip(logits.detach().float().cpu(), self.projections):
            nearest = back_project_labels(scan_logits.argmax(0), projection)
            if self.knn:
                voted = knn_refine(projection, scan_logits)
                # A point left without any vote keeps its own pixel's prediction.
                nearest = torch.where(voted == IGNORE_INDEX, nearest, voted)
            predictions.append(nearest)
        return torch.cat(predictions).to(logits.device), self.point_labels


@dataclass(frozen=True)
class RangeCollator:
    """Picklable collate function for DataLoader workers."""

    projection: RangeProjectionConfig = field(default_factory=RangeProjectionConfig)
    knn: bool = False

    def scenes(self, samples: Sequence[SceneSample]) -> RangeBatch:
        # Samples are checked when made (finite, non-empty), so every one projects.
        projections = [project_to_range_image(sample.points, None if sample.features is None else sample.features[:, 0],
                                              self.projection) for sample in samples]
        labels = [torch.from_numpy(sample.labels).long() for sample in samples]
        pixel_labels = [pixel_labels_from_points(scan, projection) for scan, projection in zip(labels, projections)]
        images = torch.stack([projection.image for projection in projections])
        return RangeBatch(images, torch.stack(pixel_labels), tuple(projections), torch.cat(labels), self.knn)
