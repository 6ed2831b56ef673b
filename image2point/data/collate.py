"""Samples → voxels → one sparse batch with its labels.

Every batch type (these, :mod:`image2point.data.point_collate`, :mod:`image2point.data.range_collate`)
offers the same four members to the training loop: ``to(device)``, ``network_inputs()`` (the
network's positional arguments), ``loss_targets`` (what the logits are trained against) and
``scored(logits)`` (predicted and true class of every sample or point, for the metrics).

A voxel's input feature is the mean of its points' ``xyz`` followed by the mean of their extra features
(intensity for SemanticKITTI, colour for S3DIS); ModelNet shapes carry xyz only, as in the paper. The
xyz features may be scaled (``xyz_feature_scale``: 1 / voxel size counts them in voxels, the authors'
S3DIS input). For
segmentation, each voxel is trained on the majority label of its points, and predictions go back to
every point through the point→voxel map, where metrics are computed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from image2point.channels import XYZ_CHANNELS
from image2point.data.sample import IGNORE_INDEX, SceneSample, ShapeSample
from image2point.voxelize import CollatedVoxels, collate_voxels, voxelize


@dataclass
class ShapeBatch:
    voxels: CollatedVoxels
    labels: torch.Tensor  # [batch_size] int64

    @property
    def device(self) -> torch.device:
        return self.labels.device

    def to(self, device: torch.device) -> "ShapeBatch":
        return ShapeBatch(_voxels_to(self.voxels, device), self.labels.to(device))

    def network_inputs(self) -> tuple[torch.Tensor, ...]:
        return (self.voxels.tensor,)

    @property
    def loss_targets(self) -> torch.Tensor:
        return self.labels

    def scored(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Predicted and true class of every shape."""
        return logits.argmax(1), self.labels


@dataclass
class SceneBatch:
    voxels: CollatedVoxels
    site_labels: torch.Tensor  # [num_sites] int64, majority label of each voxel's points
    point_labels: torch.Tensor  # [num_points] int64

    @property
    def device(self) -> torch.device:
        return self.point_labels.device

    def to(self, device: torch.device) -> "SceneBatch":
        return SceneBatch(_voxels_to(self.voxels, device), self.site_labels.to(device), self.point_labels.to(device))

    def network_inputs(self) -> tuple[torch.Tensor, ...]:
        return (self.voxels.tensor,)

    @property
    def loss_targets(self) -> torch.Tensor:
        """Voxels train on the majority label of their points."""
        return self.site_labels

    def scored(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Predicted and true class of every point: each point takes its voxel's prediction."""
        return logits.argmax(1)[self.voxels.point_to_site], self.point_labels


def _voxels_to(voxels: CollatedVoxels, device: torch.device) -> CollatedVoxels:
    moved = voxels.tensor.to(device)
    if moved is voxels.tensor:
        return voxels
    return CollatedVoxels(moved, voxels.point_to_site.to(device), voxels.points_per_sample, voxels.sites_per_sample)


def point_features(points: np.ndarray, features: np.ndarray | None, xyz_scale: float = 1.0) -> np.ndarray:
    """Per-point network input: xyz (times ``xyz_scale``), then the sample's own features when it has any."""
    xyz = points if xyz_scale == 1.0 else (points * np.float32(xyz_scale)).astype(np.float32)
    if features is None:
        return xyz
    return np.concatenate([xyz, features], axis=1)


def input_channels(sample: ShapeSample | SceneSample) -> int:
    return XYZ_CHANNELS + (0 if sample.features is None else sample.features.shape[1])


def majority_labels(labels: torch.Tensor, inverse: torch.Tensor, num_sites: int, num_classes: int) -> torch.Tensor:
    """The most frequent label among each voxel's points; IGNORE_INDEX where all are ignored.

    Ties go to the smaller class index.
    """
    valid = labels != IGNORE_INDEX
    keys = inverse[valid] * num_classes + labels[valid]
    counts = torch.bincount(keys, minlength=num_sites * num_classes).view(num_sites, num_classes)
    site_labels = counts.argmax(1)
    site_labels[counts.sum(1) == 0] = IGNORE_INDEX
    return site_labels


@dataclass(frozen=True)
class VoxelCollator:
    """Picklable collate function for DataLoader workers."""

    voxel_size: float
    num_classes: int
    backend: str = "torch"
    # Factor on the xyz input features (1: metres).
    xyz_feature_scale: float = 1.0

    def _voxels(self, samples: Sequence[ShapeSample | SceneSample]) -> CollatedVoxels:
        voxelized = [voxelize(s.points, self.voxel_size, point_features(s.points, s.features, self.xyz_feature_scale))
                     for s in samples]
        return collate_voxels(voxelized, self.backend)

    def shapes(self, samples: Sequence[ShapeSample]) -> ShapeBatch:
        labels = torch.tensor([sample.label for sample in samples], dtype=torch.int64)
        return ShapeBatch(self._voxels(samples), labels)

    def scenes(self, samples: Sequence[SceneSample]) -> SceneBatch:
        voxels = self._voxels(samples)
        point_labels = torch.from_numpy(np.concatenate([sample.labels for sample in samples])).long()
        site_labels = majority_labels(point_labels, voxels.point_to_site, voxels.tensor.num_sites, self.num_classes)
        return SceneBatch(voxels, site_labels, point_labels)
