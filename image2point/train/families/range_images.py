"""An HRNet on LiDAR range images (paper Table 2); its 2D weights come from an (e.g. Cityscapes) HRNet
checkpoint, and points are scored by back-projection."""

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

RANGE_BACKBONES = ("hrnet_w18", "hrnet_w48")


@register_family("range")
class RangeFamily(ModelFamily):
    description = "segments LiDAR scans as range images"
    tasks = frozenset({Task.SEGMENTATION})
    backbones = RANGE_BACKBONES
    batch_types = (RangeBatch,)
    input_channels = RANGE_IMAGE_CHANNELS

    def build(self, config: RunConfig, in_features: int, num_classes: int, task: Task) -> BuiltModel:
        model = config.model
        model_2d = create_model_2d(model.backbone)
        pretrained = None if model.pretrained is None else self.load_pretrained(model_2d, model.pretrained)
        network = RangeImageSegmenter(model.backbone, RANGE_IMAGE_CHANNELS, num_classes, backbone=model_2d)
        return BuiltModel(network, None, pretrained)

    def load_pretrained(self, target: nn.Module, path: str) -> LoadReport:
        """2D HRNet weights; the classifier (another dataset's classes) may differ."""
        classifier = target.classifier_name
        return load_pretrained_2d(target, path, allow_shape_mismatch=(classifier,), allow_missing=(classifier,),
                                  allow_unexpected=(classifier,))

    def collate(self, config: RunConfig, settings: BatchSettings) -> Collate:
        projection = config.data.range_image
        return RangeCollator(RangeProjectionConfig(projection.height, projection.width, projection.fov_up_deg,
                                                   projection.fov_down_deg), config.model.knn_refine).scenes
