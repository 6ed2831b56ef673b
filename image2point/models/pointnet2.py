"""PointNet++ with single-scale grouping (SSG), and image pretraining with each pixel a point.

Paper Section 4.2 / Table 2 asks whether image pretraining helps a point-based network. PointNet++ has no
kernels to inflate, so it is pretrained on images turned into point clouds
(:mod:`image2point.pretrain2d.pixels_as_points`) with :meth:`PointNet2Config.image_pretraining`, and its
backbone is then moved into a 3D network with :func:`transfer_pointnet2_weights`.

Layout of every network (the attributes the finetuning schemes act on):

* ``input_layer``: the first layer of the first set abstraction's shared MLP (1×1 conv + BN + ReLU). It is
  the only layer that reads the raw inputs (relative xyz and the input point features), so it is the one
  whose shape depends on the input modality.
* ``backbone``: the rest of the set abstraction levels, the pretrained and transferable part.
* ``head``: FC-BN-ReLU-Dropout layers and a classifier (classification), or the feature propagation
  levels and a per-point classifier (segmentation).

Tensor layouts: point coordinates ``xyz [B, N, 3]``; inputs ``features [B, N, C]`` (point-major, like
``xyz``); internally features are channel-first ``[B, C, N]``, as the 1×1 convolutions want them.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import NamedTuple

import torch
from torch import nn

from image2point.errors import CheckpointError, ConfigError
from image2point.models.networks import TransferredNetwork
from image2point.pretrain2d.pixels_as_points import PixelsAsPoints

XYZ_DIMENSIONS = 3
# At most this many point pairs per chunk of a pairwise-distance computation (ball query, three-NN):
# about 100 MB of temporaries, whatever the number of points.
PAIRWISE_CHUNK_ELEMENTS = 1 << 22
# Three-NN interpolation: neighbours per point, and the distance added before inverting it.
INTERPOLATION_NEIGHBOURS = 3
INTERPOLATION_EPSILON = 1e-8
FPS_STARTS = ("first", "random")

# ---------------------------------------------------------------------------------------------------
# Functional core.


def _check_points(name: str, points: torch.Tensor) -> None:
    if points.dim() != 3 or points.shape[-1] != XYZ_DIMENSIONS:
        raise ValueError(f"{name} must have shape [B, N, 3], got {list(points.shape)}")


def _squared_distances(queries: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """``[B, S, N]``: squared Euclidean distances, summed coordinate by coordinate from the differences
    (exact for integer coordinates; no ``|a|² + |b|² - 2ab`` cancellation)."""
    query_planes = queries.transpose(1, 2).contiguous()
    point_planes = points.transpose(1, 2).contiguous()
    total = torch.zeros(queries.shape[0], queries.shape[1], points.shape[1], dtype=points.dtype,
                        device=points.device)
    for axis in range(XYZ_DIMENSIONS):
        difference = query_planes[:, axis, :, None] - point_planes[:, axis, None, :]
        total.addcmul_(difference, difference)
    return total


def _query_chunk_size(batch: int, num_queries: int, num_points: int) -> int:
    return max(1, min(num_queries, PAIRWISE_CHUNK_ELEMENTS // max(1, batch * num_points)))


def gather_points(points: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """``points [B, N, D]`` at ``idx [B, S]``: ``[B, S, D]``."""
    return points.gather(1, idx[..., None].expand(*idx.shape, points.shape[-1]))


@torch.no_grad()
def farthest_point_sample(points: torch.Tensor, num_samples: int, start: str = "first",
                          generator: torch.Generator | None = None) -> torch.Tensor:
    """Indices ``[B, num_samples]`` of a farthest point sampling of ``points [B, N, 3]``.

    The first index is 0 (``start="first"``, deterministic) or uniformly random per cloud
    (``start="random"``, drawn from ``generator``, a CPU generator). Each further index is the point
    farthest from those chosen so far (largest distance to its nearest chosen point; the lowest index on
    ties). Chosen points are never chosen again, so the indices are distinct even where points coincide.
    """
    _check_points("points", points)
    batch, num_points, _ = points.shape
    if not 1 <= num_samples <= num_points:
        raise ValueError(f"cannot sample {num_samples} of {num_points} points")
    if start not in FPS_STARTS:
        raise ValueError(f"start must be one of {FPS_STARTS}, got {start!r}")
    batch_index = torch.arange(batch, device=points.device)
    if start == "first":
        current = torch.zeros(batch, dtype=torch.int64, device=points.device)
    else:
        current = torch.randint(num_points, (batch,), generator=generator).to(points.device)
    chosen = torch.empty(batch, num_samples, dtype=torch.int64, device=points.device)
    planes = points.transpose(1, 2).contiguous()
    nearest_chosen = torch.full((batch, num_points), math.inf, dtype=points.dtype, device=points.device)
    for step in range(num_samples):
        chosen[:, step] = current
        last = planes[batch_index, :, current]
        distance = torch.zeros_like(nearest_chosen)
        for axis in range(XYZ_DIMENSIONS):
            difference = planes[:, axis] - last[:, axis, None]
            distance.addcmul_(difference, difference)
        torch.minimum(nearest_chosen, distance, out=nearest_chosen)
        nearest_chosen[batch_index, current] = -1.0
        current = nearest_chosen.argmax(dim=1)
    return chosen


@torch.no_grad()
def ball_query(points: torch.Tensor, centres: torch.Tensor, radius: float, max_neighbours: int) -> torch.Tensor:
    """Indices ``[B, S, K]`` into ``points [B, N, 3]`` of the neighbours of each of ``centres [B, S, 3]``.

    A point is a neighbour when its squared distance to the centre is strictly below ``radius²``. Each row
    holds the first ``K = max_neighbours`` neighbours in index order; when there are fewer, the remaining
    slots repeat the first neighbour found. A centre that is one of the points always finds itself. A
    centre with no point within the radius gets its nearest point (lowest index on ties) in every slot;
    the reference CUDA kernel leaves index 0 there, an arbitrary point.
    """
    _check_points("points", points)
    _check_points("centres", centres)
    if max_neighbours < 1 or not radius > 0:
        raise ValueError(f"need radius > 0 and max_neighbours >= 1, got {radius} and {max_neighbours}")
    batch, num_points, _ = points.shape
    num_centres = centres.shape[1]
    take = min(max_neighbours, num_points)
    positions = torch.arange(num_points, device=points.device)
    out = torch.empty(batch, num_centres, max_neighbours, dtype=torch.int64, device=points.device)
    chunk = _query_chunk_size(batch, num_centres, num_points)
    for begin in range(0, num_centres, chunk):
        distances = _squared_distances(centres[:, begin:begin + chunk], points)
        # Outside points get the key N, so the `take` smallest keys are the first neighbours in order.
        keys = torch.where(distances < radius * radius, positions, num_points)
        first = keys.topk(take, dim=-1, largest=False, sorted=True).values
        if take < max_neighbours:
            first = torch.cat([first, first.new_full((*first.shape[:2], max_neighbours - take), num_points)], -1)
        found = first < num_points
        fallback = torch.where(found[..., :1], first[..., :1], distances.argmin(-1, keepdim=True))
        out[:, begin:begin + chunk] = torch.where(found, first, fallback)
    return out


def group(features: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """``features [B, C, N]`` gathered at ``idx [B, S, K]``: ``[B, C, S, K]`` (differentiable)."""
    batch, channels, _ = features.shape
    _, num_groups, group_size = idx.shape
    flat = idx.reshape(batch, 1, num_groups * group_size).expand(batch, channels, num_groups * group_size)
    return features.gather(2, flat).reshape(batch, channels, num_groups, group_size)


def three_nn_interpolate(unknown: torch.Tensor, known: torch.Tensor, known_features: torch.Tensor) -> torch.Tensor:
    """Features ``[B, C, n]`` at ``unknown [B, n, 3]``, interpolated from ``known_features [B, C, m]``
    at ``known [B, m, 3]``.

    Each unknown point averages its 3 nearest known points (all of them when ``m < 3``) with weights
    proportional to ``1 / (distance + INTERPOLATION_EPSILON)`` (Euclidean distance), summing to 1. An
    unknown point on top of a known one thus copies it. Gradients flow to the features, not the weights.
    """
    _check_points("unknown", unknown)
    _check_points("known", known)
    if known_features.dim() != 3 or known_features.shape[2] != known.shape[1]:
        raise ValueError(f"known_features must be [B, C, {known.shape[1]}], got {list(known_features.shape)}")
    batch, num_unknown, _ = unknown.shape
    num_known = known.shape[1]
    neighbours = min(INTERPOLATION_NEIGHBOURS, num_known)
    chunk = _query_chunk_size(batch, num_unknown, num_known)
    outputs = []
    for begin in range(0, num_unknown, chunk):
        with torch.no_grad():
            distances = _squared_distances(unknown[:, begin:begin + chunk], known)
            nearest, idx = distances.topk(neighbours, dim=-1, largest=False, sorted=True)
            inverse = 1.0 / (nearest.sqrt() + INTERPOLATION_EPSILON)
            weights = inverse / inverse.sum(-1, keepdim=True)
        outputs.append((group(known_features, idx) * weights[:, None]).sum(-1))
    return torch.cat(outputs, dim=2)


# ---------------------------------------------------------------------------------------------------
# Configuration.


@dataclass(frozen=True)
class SetAbstractionSpec:
    """One set abstraction level.

    Centres: ``num_centres`` by farthest point sampling, or ``fraction`` of the level's input points
    (``max(1, round(N * fraction))``), or, with ``group_all``, a single group of every point around the
    origin (absolute coordinates, as the original). Groups: ``ball_query(radius, max_neighbours)``.
    ``mlp``: output channels of the shared MLP's layers.
    """

    mlp: tuple[int, ...]
    num_centres: int | None = None
    fraction: float | None = None
    radius: float | None = None
    max_neighbours: int | None = None
    group_all: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "mlp", tuple(self.mlp))
        if any(channels < 1 for channels in self.mlp):
            raise ConfigError(f"MLP channels must be >= 1, got {self.mlp}")
        sampled = (self.num_centres, self.fraction, self.radius, self.max_neighbours)
        if self.group_all:
            if any(value is not None for value in sampled):
                raise ConfigError("a group_all level takes no num_centres, fraction, radius or max_neighbours")
            return
        if (self.num_centres is None) == (self.fraction is None):
            raise ConfigError("give exactly one of num_centres and fraction (or group_all=True)")
        if self.num_centres is not None and self.num_centres < 1:
            raise ConfigError(f"num_centres must be >= 1, got {self.num_centres}")
        if self.fraction is not None and not 0 < self.fraction <= 1:
            raise ConfigError(f"fraction must be in (0, 1], got {self.fraction}")
        if self.radius is None or not self.radius > 0:
            raise ConfigError(f"radius must be > 0, got {self.radius}")
        if self.max_neighbours is None or self.max_neighbours < 1:
            raise ConfigError(f"max_neighbours must be >= 1, got {self.max_neighbours}")

    def centres_for(self, num_points: int) -> int:
        """Number of centres sampled from ``num_points`` points."""
        if self.group_all:
            return 1
        if self.num_centres is not None:
            return self.num_centres
        return max(1, round(num_points * self.fraction))


# The SSG classification levels of the original PointNet++ (ModelNet40, unit-sphere coordinates). Image
# pretraining keeps their MLPs, so its backbone fits a ModelNet40 network.
SSG_MLPS = ((64, 64, 128), (128, 128, 256), (256, 512, 1024))
SSG_CLASSIFICATION_LEVELS = (
    SetAbstractionSpec(SSG_MLPS[0], num_centres=512, radius=0.2, max_neighbours=32),
    SetAbstractionSpec(SSG_MLPS[1], num_centres=128, radius=0.4, max_neighbours=64),
    SetAbstractionSpec(SSG_MLPS[2], group_all=True),
)
SSG_PART_PROPAGATION = ((256, 256), (256, 128), (128, 128, 128))
# The SSG semantic segmentation levels (S3DIS blocks, metres).
SSG_SEGMENTATION_LEVELS = (
    SetAbstractionSpec((32, 32, 64), num_centres=1024, radius=0.1, max_neighbours=32),
    SetAbstractionSpec((64, 64, 128), num_centres=256, radius=0.2, max_neighbours=32),
    SetAbstractionSpec((128, 128, 256), num_centres=64, radius=0.4, max_neighbours=32),
    SetAbstractionSpec((256, 256, 512), num_centres=16, radius=0.8, max_neighbours=32),
)
SSG_SEGMENTATION_PROPAGATION = ((256, 256), (256, 256), (256, 128), (128, 128, 128))
# Image pretraining (pixel units): a quarter of the points kept at each level, ball radius 3 pixels at the
# first. Keeping 1/4 of the points on a 2D lattice doubles their spacing, so each level doubles the radius
# to keep about the same number of neighbours (π·3² ≈ 28 pixels) per ball.
IMAGE_FRACTION = 0.25
IMAGE_RADIUS = 3.0
IMAGE_RADIUS_GROWTH = 2.0
IMAGE_NEIGHBOURS = (32, 64)
CLASSIFIER_HIDDEN = (512, 256)
SEGMENTER_HIDDEN = (128,)
HEAD_DROPOUT = 0.5


@dataclass(frozen=True)
class PointNet2Config:
    """A PointNet++ SSG network.

    ``levels``: the set abstraction levels (only the last may be ``group_all``); ``propagation``: MLP
    channels of the feature propagation levels, coarsest first, one per set abstraction level (used by
    the segmenter); ``classifier_hidden`` / ``segmenter_hidden``: hidden widths of the heads, each layer
    followed by BN, ReLU and ``dropout``; ``fps_start``: how farthest point sampling starts in training
    ("random" varies the centres between epochs); evaluation always starts at the first point.
    """

    levels: tuple[SetAbstractionSpec, ...] = SSG_CLASSIFICATION_LEVELS
    propagation: tuple[tuple[int, ...], ...] = SSG_PART_PROPAGATION
    classifier_hidden: tuple[int, ...] = CLASSIFIER_HIDDEN
    segmenter_hidden: tuple[int, ...] = SEGMENTER_HIDDEN
    dropout: float = HEAD_DROPOUT
    fps_start: str = "first"

    def __post_init__(self) -> None:
        object.__setattr__(self, "levels", tuple(self.levels))
        object.__setattr__(self, "propagation", tuple(tuple(mlp) for mlp in self.propagation))
        object.__setattr__(self, "classifier_hidden", tuple(self.classifier_hidden))
        object.__setattr__(self, "segmenter_hidden", tuple(self.segmenter_hidden))
        if not self.levels:
            raise ConfigError("PointNet2Config needs at least one set abstraction level")
        if not self.levels[0].mlp:
            raise ConfigError("the first level needs an MLP: its first layer is the network's input layer")
        if any(level.group_all for level in self.levels[:-1]):
            raise ConfigError("only the last set abstraction level may be group_all")
        if any(not mlp or min(mlp) < 1 for mlp in self.propagation):
            raise ConfigError(f"propagation MLPs need channels >= 1, got {self.propagation}")
        if any(width < 1 for width in self.classifier_hidden + self.segmenter_hidden):
            raise ConfigError("hidden widths must be >= 1")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.fps_start not in FPS_STARTS:
            raise ConfigError(f"fps_start must be one of {FPS_STARTS}, got {self.fps_start!r}")

    @classmethod
    def ssg_classification(cls) -> PointNet2Config:
        """The original SSG classifier for ModelNet40 (512 and 128 centres, radii 0.2 and 0.4)."""
        return cls()

    @classmethod
    def ssg_segmentation(cls) -> PointNet2Config:
        """The original SSG semantic segmentation network (4 levels, 4 propagation levels)."""
        return cls(levels=SSG_SEGMENTATION_LEVELS, propagation=SSG_SEGMENTATION_PROPAGATION)

    @classmethod
    def image_pretraining(cls) -> PointNet2Config:
        """Each pixel a point: 1/4 of the points kept per level, radii 3 and 6 pixels, then group_all.

        A 32×32 image (1024 points) gives 256 and 64 centres. The MLPs are the SSG classifier's, so the
        pretrained backbone loads into :meth:`ssg_classification` networks.
        """
        levels = tuple(
            SetAbstractionSpec(mlp, fraction=IMAGE_FRACTION, radius=IMAGE_RADIUS * IMAGE_RADIUS_GROWTH**depth,
                               max_neighbours=neighbours)
            for depth, (mlp, neighbours) in enumerate(zip(SSG_MLPS[:-1], IMAGE_NEIGHBOURS))
        ) + (SetAbstractionSpec(SSG_MLPS[-1], group_all=True),)
        return cls(levels=levels)


# ---------------------------------------------------------------------------------------------------
# Modules.


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
        _check_points("xyz", xyz)
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


class PointNet2Classifier(PointNet2Network):
    """Logits ``[B, num_classes]`` for clouds ``xyz [B, N, 3]`` with ``features [B, N, in_features]``.

    The global feature is the last level's features max-pooled over its centres (the single group_all
    centre in SSG).
    """

    def __init__(self, in_features: int, num_classes: int, config: PointNet2Config = PointNet2Config()):
        super().__init__(in_features, config)
        self.head = PointNet2ClassificationHead(self.backbone.level_channels[-1], num_classes,
                                                config.classifier_hidden, config.dropout)

    def forward_features(self, xyz: torch.Tensor, features: torch.Tensor | None = None) -> torch.Tensor:
        return self.encode(xyz, features)[-1].features.amax(dim=-1)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(features)

    def forward(self, xyz: torch.Tensor, features: torch.Tensor | None = None) -> torch.Tensor:
        return self.forward_head(self.forward_features(xyz, features))


class PointNet2Segmenter(PointNet2Network):
    """Logits ``[B, num_classes, N]`` for every input point (the layout ``cross_entropy`` takes with
    labels ``[B, N]``). ``config.propagation`` needs one MLP per set abstraction level; the default
    config is :meth:`PointNet2Config.ssg_segmentation`."""

    def __init__(self, in_features: int, num_classes: int, config: PointNet2Config | None = None):
        config = PointNet2Config.ssg_segmentation() if config is None else config
        super().__init__(in_features, config)
        self.head = PointNet2SegmentationHead(in_features, self.backbone.level_channels, config.propagation,
                                              num_classes, config.segmenter_hidden, config.dropout)

    def forward_features(self, xyz: torch.Tensor, features: torch.Tensor | None = None) -> list[PointLevel]:
        return self.encode(xyz, features)

    def forward_head(self, levels: list[PointLevel]) -> torch.Tensor:
        return self.head(levels)

    def forward(self, xyz: torch.Tensor, features: torch.Tensor | None = None) -> torch.Tensor:
        return self.forward_head(self.forward_features(xyz, features))


# The 2D pretraining architecture name of a PointNet++ trained on images, each pixel a point.
PIXEL_PRETRAINING_ARCH = "pointnet2_ssg"
IMAGE_CHANNELS = 3


def pixel_pretraining_network(num_classes: int, image_channels: int = IMAGE_CHANNELS) -> PixelsAsPoints:
    """An image classifier made of a PointNet++ SSG with :meth:`PointNet2Config.image_pretraining`
    (each pixel a point carrying its colour), whose backbone loads into ModelNet40 classifiers."""
    return PixelsAsPoints(PointNet2Classifier(image_channels, num_classes, PointNet2Config.image_pretraining()))


# ---------------------------------------------------------------------------------------------------
# Transfer of pretrained weights.

PARTS = ("input_layer", "backbone", "head")


@dataclass(frozen=True)
class PointNet2TransferReport:
    """What :func:`transfer_pointnet2_weights` did, key by key (model keys, without prefix).

    ``loaded``: model tensors copied from the checkpoint; ``initialised``: model tensors left as
    initialised; ``dropped``: checkpoint keys not used; ``reasons``: why, for each initialised or
    dropped key.
    """

    loaded: tuple[str, ...]
    initialised: tuple[str, ...]
    dropped: tuple[str, ...]
    reasons: Mapping[str, str] = field(default_factory=dict)

    @property
    def input_layer_reinitialised(self) -> bool:
        return any(key.startswith("input_layer.") for key in self.initialised)

    def summary(self) -> str:
        counts = (f"{len(self.loaded)} loaded, {len(self.initialised)} initialised, "
                  f"{len(self.dropped)} dropped")
        lines = [f"PointNet++ weight transfer: {counts}"]
        explained = dict.fromkeys(key for key in (*self.initialised, *self.dropped) if key in self.reasons)
        lines += [f"  {key}: {self.reasons[key]}" for key in explained]
        return "\n".join(lines)


def _part(key: str) -> str:
    return key.split(".", 1)[0]


def _shape_problems(source: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor]) -> dict[str, str]:
    problems = {}
    for key in sorted(set(source) | set(target)):
        if key not in target:
            problems[key] = "in the checkpoint, not in the model"
        elif key not in source:
            problems[key] = "in the model, not in the checkpoint"
        elif source[key].shape != target[key].shape:
            problems[key] = (f"checkpoint shape {tuple(source[key].shape)}, model shape "
                             f"{tuple(target[key].shape)}")
    return problems


def transfer_pointnet2_weights(state_dict: Mapping[str, torch.Tensor], model: PointNet2Network,
                               source_prefix: str = "") -> PointNet2TransferReport:
    """Copy a pretrained PointNet++ state dict into ``model`` by name, checking every shape.

    Keys are those of a :class:`PointNet2Network` after removing ``source_prefix`` (e.g.
    ``PixelsAsPoints.STATE_PREFIX`` for a checkpoint of image pretraining); keys without the prefix are
    dropped and reported. Then, part by part:

    * ``backbone``: every tensor must exist on both sides with the same shape, else
      :class:`CheckpointError` names each problem (a different architecture is never half loaded).
    * ``input_layer``: loaded when every tensor matches; otherwise (another input modality, e.g. RGB
      pixels to xyz only) the whole input layer keeps its fresh initialisation and each mismatch is
      reported.
    * ``head``: the pretraining task's output layer, never loaded: checkpoint keys dropped, model keys
      initialised.

    A key outside these parts raises :class:`CheckpointError`.
    """
    if not isinstance(model, PointNet2Network):
        raise TypeError(f"expected a PointNet2Network, got {type(model).__name__}")
    reasons: dict[str, str] = {}
    dropped: list[str] = []
    source: dict[str, dict[str, torch.Tensor]] = {part: {} for part in PARTS}
    for key, value in state_dict.items():
        if not key.startswith(source_prefix):
            dropped.append(key)
            reasons[key] = f"outside the prefix {source_prefix!r}"
            continue
        name = key[len(source_prefix):]
        if _part(name) not in PARTS:
            raise CheckpointError(f"checkpoint key {key!r} is not part of a PointNet++ network ({', '.join(PARTS)})")
        source[_part(name)][name] = value
    target_all = model.state_dict()
    target = {part: {k: v for k, v in target_all.items() if _part(k) == part} for part in PARTS}

    problems = _shape_problems(source["backbone"], target["backbone"])
    if problems:
        listed = "; ".join(f"{key}: {problem}" for key, problem in problems.items())
        raise CheckpointError(f"the checkpoint's backbone does not fit the model: {listed}")
    loaded = list(source["backbone"])
    input_problems = _shape_problems(source["input_layer"], target["input_layer"])
    if input_problems:
        initialised = list(target["input_layer"])
        dropped += list(source["input_layer"])
        for key in (*initialised, *source["input_layer"]):
            problem = input_problems.get(key, "the rest of the layer does not fit")
            reasons[key] = f"input layer re-initialised: {problem}"
    else:
        initialised = []
        loaded += list(source["input_layer"])
    initialised += list(target["head"])
    dropped += list(source["head"])
    for key in (*target["head"], *source["head"]):
        reasons[key] = "output layer of the pretraining task, never transferred"
    with torch.no_grad():
        for key in loaded:
            target_all[key].copy_(source[_part(key)][key])
    return PointNet2TransferReport(tuple(loaded), tuple(initialised), tuple(dropped), reasons)
