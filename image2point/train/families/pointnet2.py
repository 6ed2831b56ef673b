"""PointNet++ SSG on raw points (paper Table 2); pretrained weights (e.g. from images, each pixel a point)
are transferred by name: backbone always, input layer when it fits, head never."""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import nn

from image2point.data.batch import Collate
from image2point.data.point_collate import PointBatch, PointCollator
from image2point.errors import CheckpointError, ConfigError
from image2point.models.pointnet2 import (
    XYZ_DIMENSIONS,
    PointNet2Classifier,
    PointNet2Config,
    PointNet2Segmenter,
    PointNet2TransferReport,
    transfer_pointnet2_weights,
)
from image2point.models2d import read_state_dict
from image2point.pretrain2d.pixels_as_points import PixelsAsPoints
from image2point.tasks import Task
from image2point.train.families.registry import BatchSettings, BuiltModel, ModelFamily, register_family

if TYPE_CHECKING:
    from image2point.train.config import RunConfig

POINTNET2_BACKBONES = ("pointnet2_ssg",)
# Points per cloud of a point network when data.num_points is null (the PointNet++ ModelNet40 setting).
DEFAULT_POINTNET2_POINTS = 1024


def points_per_cloud(config: RunConfig) -> int:
    return config.data.num_points or DEFAULT_POINTNET2_POINTS


def network_config(task: Task) -> PointNet2Config:
    return PointNet2Config.ssg_classification() if task == Task.CLASSIFICATION else PointNet2Config.ssg_segmentation()


def check_enough_points(config: PointNet2Config, num_points: int) -> None:
    """Every set abstraction level must find its centres among the points that reach it."""
    available = num_points
    for depth, level in enumerate(config.levels):
        centres = level.centres_for(available)
        if centres > available:
            raise ConfigError(f"PointNet++ level {depth} samples {centres} centres from {available} points; "
                              f"raise data.num_points (now {num_points})")
        available = centres


@register_family("pointnet2")
class PointNet2Family(ModelFamily):
    description = "runs PointNet++ on raw points"
    backbones = POINTNET2_BACKBONES
    batch_types = (PointBatch,)

    def check(self, config: RunConfig, task: Task) -> None:
        super().check(config, task)
        check_enough_points(network_config(task), points_per_cloud(config))

    def build(self, config: RunConfig, in_features: int, num_classes: int, task: Task) -> BuiltModel:
        extra_features = in_features - XYZ_DIMENSIONS
        network_class = PointNet2Classifier if task == Task.CLASSIFICATION else PointNet2Segmenter
        network = network_class(extra_features, num_classes, network_config(task))
        pretrained = None
        if config.model.pretrained is not None:
            pretrained = self.load_pretrained(network, config.model.pretrained)
        return BuiltModel(network, None, pretrained)

    def load_pretrained(self, target: nn.Module, path: str) -> PointNet2TransferReport:
        """A PointNet++ checkpoint (keys under PixelsAsPoints' prefix when pretrained on images)."""
        state = read_state_dict(path)
        prefix = PixelsAsPoints.STATE_PREFIX
        prefix = prefix if all(key.startswith(prefix) for key in state) else ""
        try:
            return transfer_pointnet2_weights(state, target, source_prefix=prefix)
        except CheckpointError as error:
            raise CheckpointError(f"{path}: {error}") from None

    def collate(self, config: RunConfig, settings: BatchSettings) -> Collate:
        collator = PointCollator(points_per_cloud(config))
        return collator.shapes if settings.task == Task.CLASSIFICATION else collator.scenes
