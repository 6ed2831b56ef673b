"""The paper's main family: a 2D ConvNet inflated to a sparse 3D ConvNet on voxels (input layer, inflated
stages, classification head or U-Net decoder)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import nn

from image2point.data.batch import Collate
from image2point.data.collate import SceneBatch, ShapeBatch, VoxelCollator
from image2point.errors import ConfigError
from image2point.inflate.converter import InflationSettings
from image2point.models import CLASSIFICATION_HEADS, SEGMENTATION_HEADS, NetworkConfig, build_network, reinitialise
from image2point.models2d import create_model_2d, load_pretrained_2d
from image2point.models2d.loading import LoadReport
from image2point.tasks import Task
from image2point.train.families.registry import (
    TRANSFORM_SCHEME,
    BatchSettings,
    BuiltModel,
    ModelFamily,
    register_family,
)

if TYPE_CHECKING:
    from image2point.train.config import ModelConfig, RunConfig

# The heads each task takes, and the one ``model.head: null`` means.
TASK_HEADS = {Task.CLASSIFICATION: tuple(CLASSIFICATION_HEADS), Task.SEGMENTATION: tuple(SEGMENTATION_HEADS)}
DEFAULT_HEADS = {Task.CLASSIFICATION: "mlp", Task.SEGMENTATION: "unet"}
# model.backbone of Listing 1's network, which has no inflated backbone.
NO_BACKBONE = "none"


def voxel_head(model: ModelConfig, task: Task) -> str:
    """``model.head``, or the task's default head when it is null; ConfigError for another task's head."""
    head = DEFAULT_HEADS[task] if model.head is None else model.head
    if head not in TASK_HEADS[task]:
        raise ConfigError(f"model.head={head} is not a {task} head; a {task} network takes one of "
                          f"{', '.join(TASK_HEADS[task])} (null: {DEFAULT_HEADS[task]})")
    return head


@register_family("voxel")
class VoxelFamily(ModelFamily):
    description = "inflates 2D ConvNets to sparse 3D ConvNets on voxels"
    batch_types = (ShapeBatch, SceneBatch)
    has_filter_transforms = True
    voxel_input = True

    def check(self, config: RunConfig, task: Task) -> None:
        super().check(config, task)
        if config.finetune.scheme == TRANSFORM_SCHEME and config.finetune.learnable_t == "none":
            raise ConfigError(f"finetune.scheme={TRANSFORM_SCHEME} needs finetune.learnable_t=shared or per_conv")
        voxel_head(config.model, task)

    def build(self, config: RunConfig, in_features: int, num_classes: int, task: Task) -> BuiltModel:
        model, finetune = config.model, config.finetune
        inflation = InflationSettings(transform=model.transform, normalize=model.normalize_t,
                                      learnable_t=finetune.learnable_t, t_init=finetune.t_init,
                                      stride_mode=model.stride_mode, shortcut=model.shortcut)
        network_config = NetworkConfig(task=task, backbone=model.backbone, in_features=in_features,
                                       num_classes=num_classes, input_layer=model.input_layer,
                                       head=voxel_head(model, task), inflation=inflation,
                                       linear_width=model.linear_width, head_hidden=model.head_hidden)
        model_2d, pretrained = None, None
        if model.backbone != NO_BACKBONE:
            model_2d = create_model_2d(model.backbone)
            if model.pretrained is not None:
                pretrained = self.load_pretrained(model_2d, model.pretrained)
        built = build_network(network_config, model_2d)
        if model.pretrained is None and built.network.backbone is not None:
            # No pretrained weights: nothing to inflate, so the backbone starts from its own 3D
            # initialisation (the one scheme "scratch" trains from), not from an inflated random 2D one.
            reinitialise(built.network.backbone)
        return BuiltModel(built.network, built.report, pretrained)

    def load_pretrained(self, target: nn.Module, path: str) -> LoadReport:
        """2D weights into the 2D model before inflation; its classifier may differ (another task's)."""
        classifier = getattr(target, "classifier_name", "fc")
        return load_pretrained_2d(target, path, allow_shape_mismatch=(classifier,), allow_missing=(classifier,),
                                  allow_unexpected=(classifier,))

    def collate(self, config: RunConfig, settings: BatchSettings) -> Collate:
        collator = VoxelCollator(config.data.voxel_size, settings.num_classes, settings.backend,
                                 settings.xyz_feature_scale)
        return collator.shapes if settings.task == Task.CLASSIFICATION else collator.scenes
