"""From a :class:`RunConfig` to datasets, a network and an optimizer: the wiring, nothing else."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch.utils.data import Dataset

from image2point.channels import XYZ_CHANNELS
from image2point.data.collate import SceneBatch, ShapeBatch, VoxelCollator
from image2point.data.point_collate import PointBatch, PointCollator
from image2point.data.range_collate import RangeBatch, RangeCollator
from image2point.data.range_image import NUM_CHANNELS as RANGE_IMAGE_CHANNELS
from image2point.data.range_image import RangeProjectionConfig
from image2point.data.pipelines import DatasetPipeline, PipelineSettings, compose_pipeline
from image2point.data.registry import DatasetRequest, dataset_entry
from image2point.data.subsets import DatasetSubset, subset_indices
from image2point.data.transforms import Compose
from image2point.errors import CheckpointError, ConfigError
from image2point.inflate.converter import ConversionReport, InflationSettings
from image2point.models import (
    NetworkConfig,
    PointNet2Classifier,
    PointNet2Config,
    PointNet2Segmenter,
    RangeImageSegmenter,
    TransferredNetwork,
    build_network,
    reinitialise,
    transfer_pointnet2_weights,
)
from image2point.models.pointnet2 import PointNet2TransferReport
from image2point.models2d import create_model_2d, load_pretrained_2d, read_state_dict
from image2point.models2d.loading import LoadReport
from image2point.pretrain2d.pixels_as_points import PixelsAsPoints
from image2point.tasks import Task
from image2point.train.config import DataConfig, RunConfig

# Data-efficiency subsets are drawn on the training split only.
SUBSET_SPLIT = "train"
POINTNET2_BACKBONES = ("pointnet2_ssg",)
RANGE_BACKBONES = ("hrnet_w18", "hrnet_w48")
# Points per cloud of a point network when data.num_points is null (the PointNet++ ModelNet40 setting).
DEFAULT_POINTNET2_POINTS = 1024

Batch = ShapeBatch | SceneBatch | PointBatch | RangeBatch


def task_of(data: DataConfig) -> Task:
    return dataset_entry(data.name).task


def dataset_pipeline(data: DataConfig) -> DatasetPipeline:
    """The transforms settings of ``data.name`` (its section of ``data``, see image2point.data.pipelines)."""
    settings = PipelineSettings(data.modelnet40, data.s3dis, data.semantickitti)
    return dataset_entry(data.name).pipeline(settings)


def build_transform(data: DataConfig, train: bool) -> Compose:
    """Training: augmentation (when ``data.augment``), preprocessing, training-only steps; else preprocessing."""
    return compose_pipeline(dataset_pipeline(data), train, data.augment, data.voxel_size)


def xyz_feature_scale(data: DataConfig) -> float:
    """Factor on the xyz input features of voxel networks (1: metres)."""
    return dataset_pipeline(data).xyz_feature_scale(data.voxel_size)


def build_dataset(data: DataConfig, split: str, train: bool) -> Dataset:
    """The dataset of ``data.name`` for ``split``, with the authors' augmentation when ``train``."""
    entry = dataset_entry(data.name)
    if entry.needs_root and data.root is None:
        raise ConfigError(f"data.root must name the {data.name} directory (it is null)")
    # Without augmentation a dataset still gets its deterministic part (e.g. colour normalisation).
    request = DatasetRequest(data, split, train, build_transform(data, train),
                             None if data.root is None else Path(data.root))
    return entry.open(request)


def build_train_dataset(data: DataConfig) -> Dataset:
    dataset = build_dataset(data, SUBSET_SPLIT, train=True)
    if data.fraction == 1.0 and data.per_class is None:
        return dataset
    labels = getattr(dataset, "labels", None)
    population = labels if labels is not None else len(dataset)
    if data.per_class is not None:
        indices = subset_indices(population, per_class=data.per_class, seed=data.subset_seed)
    else:
        indices = subset_indices(population, fraction=data.fraction, seed=data.subset_seed)
    return DatasetSubset(dataset, indices)


def class_names_of(dataset: Dataset) -> list[str]:
    return list(dataset.class_names)


def num_input_features(data: DataConfig) -> int:
    """Channels per point of ``data.name``'s samples, xyz included (its registered inputs)."""
    return dataset_entry(data.name).inputs.in_features


@dataclass
class BuiltModel:
    network: TransferredNetwork | RangeImageSegmenter
    conversion: ConversionReport | None
    pretrained: LoadReport | PointNet2TransferReport | None


def build_model(config: RunConfig, in_features: int, num_classes: int, task: str) -> BuiltModel:
    """The network of ``model.family``; pretrained weights come from ``model.pretrained`` when set.

    ``in_features``: channels per point of the data, xyz included (range images always have 5).
    """
    family = config.model.family
    if family != "voxel" and config.finetune.scheme == "t":
        raise ConfigError(f"finetune.scheme=t trains inflation transforms, which a {family} model does not have")
    if family == "pointnet2":
        return _build_pointnet2(config, in_features, num_classes, task)
    if family == "range":
        return _build_range_segmenter(config, num_classes, task)
    return _build_voxel_network(config, in_features, num_classes, task)


def _build_voxel_network(config: RunConfig, in_features: int, num_classes: int, task: str) -> BuiltModel:
    model, finetune = config.model, config.finetune
    if finetune.scheme == "t" and finetune.learnable_t == "none":
        raise ConfigError("finetune.scheme=t needs finetune.learnable_t=shared or per_conv")
    inflation = InflationSettings(transform=model.transform, normalize=model.normalize_t,
                                  learnable_t=finetune.learnable_t,
                                  t_init=finetune.t_init, stride_mode=model.stride_mode, shortcut=model.shortcut)
    head = model.head
    if task == "segmentation" and head == "mlp":
        head = "unet"
    network_config = NetworkConfig(task=task, backbone=model.backbone, in_features=in_features,
                                   num_classes=num_classes, input_layer=model.input_layer, head=head,
                                   inflation=inflation, linear_width=model.linear_width,
                                   head_hidden=model.head_hidden)
    model_2d, pretrained = None, None
    if model.backbone != "none":
        model_2d = create_model_2d(model.backbone)
        if model.pretrained is not None:
            classifier = getattr(model_2d, "classifier_name", "fc")
            pretrained = load_pretrained_2d(model_2d, model.pretrained, allow_shape_mismatch=(classifier,),
                                            allow_missing=(classifier,), allow_unexpected=(classifier,))
    built = build_network(network_config, model_2d)
    if model.pretrained is None and built.network.backbone is not None:
        # No pretrained weights: nothing to inflate, so the backbone starts from its own 3D
        # initialisation (the one scheme "scratch" trains from), not from an inflated random 2D one.
        reinitialise(built.network.backbone)
    return BuiltModel(built.network, built.report, pretrained)


def _build_pointnet2(config: RunConfig, in_features: int, num_classes: int, task: str) -> BuiltModel:
    """PointNet++ SSG; a pretrained checkpoint (e.g. image pretraining, each pixel a point) is transferred
    by name: backbone always, input layer when it fits, head never."""
    model = config.model
    if model.backbone not in POINTNET2_BACKBONES:
        raise ConfigError(f"model.family=pointnet2 needs model.backbone one of {POINTNET2_BACKBONES}, "
                          f"got {model.backbone!r}")
    extra_features = in_features - XYZ_CHANNELS
    if task == "classification":
        network_config = PointNet2Config.ssg_classification()
    else:
        network_config = PointNet2Config.ssg_segmentation()
    _check_enough_points(network_config, config.data.num_points or DEFAULT_POINTNET2_POINTS)
    if task == "classification":
        network = PointNet2Classifier(extra_features, num_classes, network_config)
    else:
        network = PointNet2Segmenter(extra_features, num_classes, network_config)
    report = None
    if model.pretrained is not None:
        state = read_state_dict(model.pretrained)
        prefix = PixelsAsPoints.STATE_PREFIX if all(key.startswith(PixelsAsPoints.STATE_PREFIX)
                                                     for key in state) else ""
        try:
            report = transfer_pointnet2_weights(state, network, source_prefix=prefix)
        except CheckpointError as error:
            raise CheckpointError(f"{model.pretrained}: {error}") from None
    return BuiltModel(network, None, report)


def _check_enough_points(network_config: PointNet2Config, num_points: int) -> None:
    """Every set abstraction level must find its centres among the points that reach it."""
    available = num_points
    for depth, level in enumerate(network_config.levels):
        centres = level.centres_for(available)
        if centres > available:
            raise ConfigError(f"PointNet++ level {depth} samples {centres} centres from {available} points; "
                              f"raise data.num_points (now {num_points})")
        available = centres


def _build_range_segmenter(config: RunConfig, num_classes: int, task: str) -> BuiltModel:
    """HRNet on range images; its 2D weights come from an (e.g. Cityscapes) HRNet checkpoint."""
    model = config.model
    if task != "segmentation":
        raise ConfigError(f"model.family=range segments LiDAR scans; {config.data.name} is a classification dataset")
    if model.backbone not in RANGE_BACKBONES:
        raise ConfigError(f"model.family=range needs model.backbone one of {RANGE_BACKBONES}, got {model.backbone!r}")
    model_2d = create_model_2d(model.backbone)
    pretrained = None
    if model.pretrained is not None:
        classifier = model_2d.classifier_name
        pretrained = load_pretrained_2d(model_2d, model.pretrained, allow_shape_mismatch=(classifier,),
                                        allow_missing=(classifier,), allow_unexpected=(classifier,))
    network = RangeImageSegmenter(model.backbone, RANGE_IMAGE_CHANNELS, num_classes, backbone=model_2d)
    return BuiltModel(network, None, pretrained)


def network_in_features(config: RunConfig, dataset: Dataset) -> int:
    """Input channels of the network: per point (xyz included), or the range image's channels."""
    return RANGE_IMAGE_CHANNELS if config.model.family == "range" else num_input_features(config.data)


def build_collate(config: RunConfig, task: str, num_classes: int, backend: str) -> Callable[[list], Batch]:
    """The DataLoader collate function of ``model.family`` (voxels, point sets or range images)."""
    family, data = config.model.family, config.data
    if family == "range":
        projection = RangeProjectionConfig(data.range_image.height, data.range_image.width,
                                           data.range_image.fov_up_deg, data.range_image.fov_down_deg)
        return RangeCollator(projection, config.model.knn_refine).scenes
    if family == "pointnet2":
        collator = PointCollator(data.num_points or DEFAULT_POINTNET2_POINTS)
        return collator.shapes if task == "classification" else collator.scenes
    voxel_collator = VoxelCollator(data.voxel_size, num_classes, backend, xyz_feature_scale(data))
    return voxel_collator.shapes if task == "classification" else voxel_collator.scenes


def step_batch_warning(data: DataConfig, world_size: int) -> str | None:
    """Why this run's step batch (world size x data.batch_size) differs from the recipe's
    data.effective_batch_size, or None when it does not (or the recipe names none)."""
    step_batch = world_size * data.batch_size
    if data.effective_batch_size is None or step_batch == data.effective_batch_size:
        return None
    return (f"this run steps on {world_size} process(es) x data.batch_size {data.batch_size} = {step_batch} samples, "
            f"but the recipe's data.effective_batch_size is {data.effective_batch_size}; its learning rate and "
            f"schedule were tuned for that batch (change the process count or data.batch_size to match)")


def build_optimizer(config: RunConfig, parameters: list[torch.nn.Parameter]) -> torch.optim.Optimizer:
    optim = config.optim
    if not parameters:
        raise ConfigError("no trainable parameters: check finetune.scheme")
    if optim.name == "sgd":
        return torch.optim.SGD(parameters, lr=optim.lr, momentum=optim.momentum, weight_decay=optim.weight_decay,
                               nesterov=optim.nesterov)
    return torch.optim.Adam(parameters, lr=optim.lr, weight_decay=optim.weight_decay)
