"""PointNet++ SSG layers and networks: set abstraction, feature propagation, heads; the classifier, the
segmenter, and the image classifier that sees each pixel as a point."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import replace
from typing import NamedTuple

import torch
from torch import nn

from image2point.errors import ConfigError
from image2point.models.base import TransferredNetwork
from image2point.models.pointnet2.config import PointNet2Config, SetAbstractionSpec
from image2point.models.pointnet2.ops import (
    FPS_STARTS,
    XYZ_DIMENSIONS,
    check_points,
    ball_query,
    farthest_point_sample,
    gather_points,
    group,
    three_nn_interpolate,
)
from image2point.pretrain2d.pixels_as_points import PixelsAsPoints

class PointLevel(NamedTuple):
    """Points of one level: ``xyz [B, S, 3]`` and ``features [B, C, S]`` (None: no features)."""

    xyz: torch.Tensor
    features: torch.Tensor | None


class PointwiseLayer(nn.Module):
    """1×1 conv (no bias) + BN + ReLU on ``[B, C, S, K]`` (or ``[B, C, S, 1]``)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn(self.conv(x)))


def shared_mlp(in_channels: int, channels: Sequence[int]) -> nn.Sequential:
    """Pointwise layers ``in_channels → channels[0] → …``; empty ``channels`` is the identity."""
    widths = (in_channels, *channels)
    return nn.Sequential(*(PointwiseLayer(a, b) for a, b in itertools.pairwise(widths)))


class SetAbstraction(nn.Module):
    """Sample centres, group their neighbours (relative xyz, then features), shared MLP, max pool.

    ``in_channels``: the channels entering the MLP, 3 + the input feature channels, or the width of the
    ``stem`` given to :meth:`forward` (a layer applied to the grouped points first: the network's input
    layer). ``fps_start`` applies in training; evaluation starts farthest point sampling at point 0.
    """

    def __init__(self, in_channels: int, spec: SetAbstractionSpec, fps_start: str = "first"):
        super().__init__()
        if fps_start not in FPS_STARTS:
            raise ConfigError(f"fps_start must be one of {FPS_STARTS}, got {fps_start!r}")
        self.spec = spec
        self.fps_start = fps_start
        self.mlp = shared_mlp(in_channels, spec.mlp)
        self.out_channels = spec.mlp[-1] if spec.mlp else in_channels

    def sample_and_group(self, xyz: torch.Tensor,
                         features: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(centres [B, S, 3], grouped [B, 3 + C, S, K])``."""
        if self.spec.group_all:
            centres = xyz.new_zeros(xyz.shape[0], 1, XYZ_DIMENSIONS)
            grouped_xyz = xyz.transpose(1, 2).unsqueeze(2)
            grouped_features = None if features is None else features.unsqueeze(2)
        else:
            num_centres = self.spec.centres_for(xyz.shape[1])
            start = self.fps_start if self.training else "first"
            centres = gather_points(xyz, farthest_point_sample(xyz.detach(), num_centres, start))
            idx = ball_query(xyz.detach(), centres.detach(), self.spec.radius, self.spec.max_neighbours)
            grouped_xyz = group(xyz.transpose(1, 2), idx) - centres.transpose(1, 2).unsqueeze(-1)
            grouped_features = None if features is None else group(features, idx)
        if grouped_features is None:
            return centres, grouped_xyz
        return centres, torch.cat([grouped_xyz, grouped_features], dim=1)

    def forward(self, xyz: torch.Tensor, features: torch.Tensor | None,
                stem: nn.Module | None = None) -> PointLevel:
        centres, grouped = self.sample_and_group(xyz, features)
        if stem is not None:
            grouped = stem(grouped)
        return PointLevel(centres, self.mlp(grouped).amax(dim=-1))


class PointNet2Encoder(nn.Module):
    """The set abstraction levels; the first level's MLP starts after the network's input layer."""

    def __init__(self, config: PointNet2Config):
        super().__init__()
        first = config.levels[0]
        levels = [SetAbstraction(first.mlp[0], replace(first, mlp=first.mlp[1:]), config.fps_start)]
        for spec in config.levels[1:]:
            levels.append(SetAbstraction(levels[-1].out_channels + XYZ_DIMENSIONS, spec, config.fps_start))
        self.levels = nn.ModuleList(levels)
        self.level_channels = [level.out_channels for level in levels]

    def forward(self, xyz: torch.Tensor, features: torch.Tensor | None, stem: nn.Module) -> list[PointLevel]:
        """Output of every level, first to last; ``stem`` (the network's input layer) maps the first
        level's grouped points to its MLP's input."""
        outputs = []
        for index, level in enumerate(self.levels):
            out = level(xyz, features, stem if index == 0 else None)
            outputs.append(out)
            xyz, features = out
        return outputs


class FeaturePropagation(nn.Module):
    """Three-NN interpolation of coarse features onto finer points, concatenated with the finer points'
    own (skip) features, then a shared MLP: ``[B, in_channels, n] → [B, mlp[-1], n]``."""

    def __init__(self, in_channels: int, mlp: Sequence[int]):
        super().__init__()
        if not mlp:
            raise ConfigError("a feature propagation level needs at least one MLP layer")
        self.mlp = shared_mlp(in_channels, mlp)
        self.out_channels = mlp[-1]

    def forward(self, fine_xyz: torch.Tensor, coarse_xyz: torch.Tensor, fine_features: torch.Tensor | None,
                coarse_features: torch.Tensor) -> torch.Tensor:
        interpolated = three_nn_interpolate(fine_xyz, coarse_xyz, coarse_features)
        if fine_features is not None:
            interpolated = torch.cat([interpolated, fine_features], dim=1)
        return self.mlp(interpolated.unsqueeze(-1)).squeeze(-1)


class PointNet2ClassificationHead(nn.Module):
    """``[B, C]`` global feature → (FC-BN-ReLU-Dropout) per hidden width → FC → logits ``[B, classes]``."""

    def __init__(self, in_channels: int, num_classes: int, hidden: Sequence[int], dropout: float):
        super().__init__()
        widths = (in_channels, *hidden)
        layers: list[nn.Module] = []
        for a, b in itertools.pairwise(widths):
            layers += [nn.Linear(a, b, bias=False), nn.BatchNorm1d(b), nn.ReLU(inplace=True), nn.Dropout(dropout)]
        self.classifier = nn.Sequential(*layers, nn.Linear(widths[-1], num_classes))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.classifier(features)


class PointNet2SegmentationHead(nn.Module):
    """Feature propagation from the coarsest level back to the input points, then per-point
    (Conv1d-BN-ReLU-Dropout) per hidden width and a per-point classifier."""

    def __init__(self, in_features: int, level_channels: Sequence[int], propagation: Sequence[Sequence[int]],
                 num_classes: int, hidden: Sequence[int], dropout: float):
        super().__init__()
        if len(propagation) != len(level_channels):
            raise ConfigError(f"segmentation needs one propagation MLP per set abstraction level: "
                              f"{len(level_channels)} levels, {len(propagation)} propagation MLPs")
        # Skip channels of levels 0 (the input points), 1, …, L-1; propagation runs from level L down.
        skip_channels = [in_features, *level_channels[:-1]]
        coarse = level_channels[-1]
        stages = []
        for skip, mlp in zip(reversed(skip_channels), propagation):
            stages.append(FeaturePropagation(coarse + skip, mlp))
            coarse = stages[-1].out_channels
        self.propagation = nn.ModuleList(stages)
        widths = (coarse, *hidden)
        layers: list[nn.Module] = []
        for a, b in itertools.pairwise(widths):
            layers += [nn.Conv1d(a, b, 1, bias=False), nn.BatchNorm1d(b), nn.ReLU(inplace=True), nn.Dropout(dropout)]
        self.classifier = nn.Sequential(*layers, nn.Conv1d(widths[-1], num_classes, 1))

    def forward(self, levels: Sequence[PointLevel]) -> torch.Tensor:
        """``levels``: the input points, then each set abstraction's output; logits ``[B, classes, N]``."""
        coarse = levels[-1]
        for stage, fine in zip(self.propagation, reversed(levels[:-1])):
            features = stage(fine.xyz, coarse.xyz, fine.features, coarse.features)
            coarse = PointLevel(fine.xyz, features)
        return self.classifier(coarse.features)


class PointNet2Network(TransferredNetwork):
    """Input layer + set abstraction backbone; subclasses add the head.

    ``in_features``: channels C of the input ``features [B, N, C]`` besides xyz (0: xyz only, pass None).
    """

    backbone: PointNet2Encoder

    def __init__(self, in_features: int, config: PointNet2Config):
        super().__init__()
        if in_features < 0:
            raise ConfigError(f"in_features must be >= 0, got {in_features}")
        self.in_features = in_features
        self.config = config
        self.input_layer = PointwiseLayer(in_features + XYZ_DIMENSIONS, config.levels[0].mlp[0])
        self.backbone = PointNet2Encoder(config)

    def _channel_first_features(self, xyz: torch.Tensor, features: torch.Tensor | None) -> torch.Tensor | None:
        check_points("xyz", xyz)
        if self.in_features == 0:
            if features is not None:
                raise ValueError(f"this network reads xyz only, but got features {list(features.shape)}")
            return None
        expected = [xyz.shape[0], xyz.shape[1], self.in_features]
        if features is None or list(features.shape) != expected:
            got = None if features is None else list(features.shape)
            raise ValueError(f"features must have shape {expected} ([B, N, in_features]), got {got}")
        return features.transpose(1, 2)

    def encode(self, xyz: torch.Tensor, features: torch.Tensor | None = None) -> list[PointLevel]:
        """The input points (features ``[B, C, N]``), then the output of every set abstraction level."""
        first = PointLevel(xyz, self._channel_first_features(xyz, features))
        return [first, *self.backbone(first.xyz, first.features, self.input_layer)]

    def forward_features(self, xyz: torch.Tensor, features: torch.Tensor | None = None) -> list[PointLevel]:
        """Every level, classifier and segmenter alike: :meth:`encode`."""
        return self.encode(xyz, features)

    def forward_head(self, levels: list[PointLevel]) -> torch.Tensor:
        return self.head(levels)

    def forward(self, xyz: torch.Tensor, features: torch.Tensor | None = None) -> torch.Tensor:
        return self.forward_head(self.forward_features(xyz, features))


class PointNet2Classifier(PointNet2Network):
    """Logits ``[B, num_classes]`` for clouds ``xyz [B, N, 3]`` with ``features [B, N, in_features]``.

    The global feature is the last level's features max-pooled over its centres (the single group_all
    centre in SSG).
    """

    def __init__(self, in_features: int, num_classes: int, config: PointNet2Config = PointNet2Config()):
        super().__init__(in_features, config)
        self.head = PointNet2ClassificationHead(self.backbone.level_channels[-1], num_classes,
                                                config.classifier_hidden, config.dropout)

    @staticmethod
    def global_feature(levels: list[PointLevel]) -> torch.Tensor:
        """``[B, C]``: the last level's features max-pooled over its centres."""
        return levels[-1].features.amax(dim=-1)

    def forward_head(self, levels: list[PointLevel]) -> torch.Tensor:
        return self.head(self.global_feature(levels))


class PointNet2Segmenter(PointNet2Network):
    """Logits ``[B, num_classes, N]`` for every input point (the layout ``cross_entropy`` takes with
    labels ``[B, N]``). ``config.propagation`` needs one MLP per set abstraction level; the default
    config is :meth:`PointNet2Config.ssg_segmentation`."""

    def __init__(self, in_features: int, num_classes: int, config: PointNet2Config | None = None):
        config = PointNet2Config.ssg_segmentation() if config is None else config
        super().__init__(in_features, config)
        self.head = PointNet2SegmentationHead(in_features, self.backbone.level_channels, config.propagation,
                                              num_classes, config.segmenter_hidden, config.dropout)


# The 2D pretraining architecture name of a PointNet++ trained on images, each pixel a point.
PIXEL_PRETRAINING_ARCH = "pointnet2_ssg"
IMAGE_CHANNELS = 3


def pixel_pretraining_network(num_classes: int, image_channels: int = IMAGE_CHANNELS) -> PixelsAsPoints:
    """An image classifier made of a PointNet++ SSG with :meth:`PointNet2Config.image_pretraining`
    (each pixel a point carrying its colour), whose backbone loads into ModelNet40 classifiers."""
    return PixelsAsPoints(PointNet2Classifier(image_channels, num_classes, PointNet2Config.image_pretraining()))
