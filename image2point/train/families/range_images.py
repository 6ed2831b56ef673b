"""A 2D segmentation network on LiDAR range images (paper Table 2: HRNet; ESPNet-C, whose Cityscapes weights are
in ../shared); its 2D weights come from an (e.g. Cityscapes) checkpoint, and points are scored by
back-projection."""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import nn

from image2point.data.batch import Collate
from image2point.data.range_collate import RangeBatch, RangeCollator
from image2point.data.range_image import NUM_CHANNELS as RANGE_IMAGE_CHANNELS
from image2point.data.range_image import RangeProjectionConfig
from image2point.models import RangeImageSegmenter
from image2point.models2d import create_model_2d, load_pretrained_2d
from image2point.models2d.loading import LoadReport
from image2point.tasks import Task
from image2point.train.families.registry import BatchSettings, BuiltModel, ModelFamily, register_family

if TYPE_CHECKING:
    from image2point.train.config import RunConfig

# The registry's 2D models with a dense head (models2d.DenseFeatures2D) that a range-image run may name.
RANGE_BACKBONES = ("hrnet_w18", "hrnet_w48", "espnet_c")


@register_family("range")
class RangeFamily(ModelFamily):
    description = "segments LiDAR scans as range images"
    tasks = frozenset({Task.SEGMENTATION})
    backbones = RANGE_BACKBONES
    batch_types = (RangeBatch,)
    input_channels = RANGE_IMAGE_CHANNELS

    def build(self, config: RunConfig, in_features: int, num_classes: int, task: Task) -> BuiltModel:
        model = config.model
        network = RangeImageSegmenter(model.backbone, RANGE_IMAGE_CHANNELS, num_classes,
                                      backbone=create_model_2d(model.backbone))
        # Loaded once the classifier is gone, so the report names its checkpoint keys as not used.
        pretrained = None if model.pretrained is None else self.load_pretrained(network.backbone, model.pretrained)
        return BuiltModel(network, None, pretrained)

    def load_pretrained(self, target: nn.Module, path: str) -> LoadReport:
        """2D weights into the backbone without its classifier: the checkpoint's classifier (another dataset's
        classes) is reported as ignored; every other key must fit."""
        return load_pretrained_2d(target, path, allow_unexpected=(target.classifier_name,))

    def collate(self, config: RunConfig, settings: BatchSettings) -> Collate:
        projection = config.data.range_image
        return RangeCollator(RangeProjectionConfig(projection.height, projection.width, projection.fov_up_deg,
                                                   projection.fov_down_deg), config.model.knn_refine).scenes
