"""Samples → fixed-size point sets ``[B, N, 3]`` for point-based networks (PointNet++).

Point networks take every cloud with the same number of points N. A cloud of N points is used as it
is; one with more keeps a random subset of N; one with fewer repeats randomly chosen points (duplicates change neither max
pooling nor the set abstraction's neighbourhoods). The draw uses numpy's global generator, which
the training loop seeds per run and per loader worker. Segmentation is trained and scored on the
points drawn.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from image2point.data.sample import SceneSample, ShapeSample
from image2point.errors import ConfigError


@dataclass
class PointBatch:
    xyz: torch.Tensor  # [B, N, 3] float32
    features: torch.Tensor | None  # [B, N, C] float32, or None for xyz-only data
    labels: torch.Tensor  # [B] (classification) or [B, N] (segmentation) int64

    @property
    def device(self) -> torch.device:
        return self.xyz.device

    def to(self, device: torch.device) -> PointBatch:
        features = None if self.features is None else self.features.to(device)
        return PointBatch(self.xyz.to(device), features, self.labels.to(device))

    def network_inputs(self) -> tuple[torch.Tensor | None, ...]:
        return (self.xyz, self.features)

    @property
    def loss_targets(self) -> torch.Tensor:
        return self.labels

    def scored(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Predicted and true class of every shape, or of every point drawn (logits ``[B, K, N]``)."""
        return logits.argmax(1), self.labels


def draw_points(num_available: int, num_points: int) -> np.ndarray:
    """Indices of ``num_points`` points out of ``num_available``: all of them in order when the counts
    agree, a random subset when there are more, all of them plus random repeats when there are fewer."""
    if num_available < 1:
        raise ValueError("cannot draw points from an empty cloud")
    if num_available == num_points:
        # Every point, in its order: a cloud of the right size is used as it is (and scored the same way
        # every time, since farthest point sampling starts from the first point).
        return np.arange(num_points)
    if num_available > num_points:
        return np.random.choice(num_available, num_points, replace=False)
    repeats = np.random.choice(num_available, num_points - num_available, replace=True)
    return np.concatenate([np.arange(num_available), repeats])


@dataclass(frozen=True)
class PointCollator:
    """Picklable collate function for DataLoader workers; ``num_points`` per cloud."""

    num_points: int

    def __post_init__(self) -> None:
        if self.num_points < 1:
            raise ConfigError(f"a point network needs at least one point per cloud, got num_points={self.num_points}")

    def _points(self, samples: Sequence[ShapeSample | SceneSample]) -> tuple[list[np.ndarray], torch.Tensor,
                                                                           torch.Tensor | None]:
        indices = [draw_points(len(sample.points), self.num_points) for sample in samples]
        xyz = torch.from_numpy(np.stack([s.points[i] for s, i in zip(samples, indices)])).float()
        if samples[0].features is None:
            return indices, xyz, None
        features = torch.from_numpy(np.stack([s.features[i] for s, i in zip(samples, indices)])).float()
        return indices, xyz, features

    def shapes(self, samples: Sequence[ShapeSample]) -> PointBatch:
        _, xyz, features = self._points(samples)
        labels = torch.tensor([sample.label for sample in samples], dtype=torch.int64)
        return PointBatch(xyz, features, labels)

    def scenes(self, samples: Sequence[SceneSample]) -> PointBatch:
        indices, xyz, features = self._points(samples)
        labels = torch.from_numpy(np.stack([s.labels[i] for s, i in zip(samples, indices)])).long()
        return PointBatch(xyz, features, labels)
