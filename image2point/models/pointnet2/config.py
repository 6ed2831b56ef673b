"""PointNet++ SSG configurations: the set abstraction levels and the network settings."""

from __future__ import annotations

from dataclasses import dataclass

from image2point.errors import ConfigError
from image2point.models.pointnet2.ops import FPS_STARTS


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
