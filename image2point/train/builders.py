"""From a :class:`RunConfig` to datasets, a network and an optimizer: the wiring, nothing else."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import Dataset

from image2point.data.collate import input_channels
from image2point.data.modelnet40 import open_modelnet40
from image2point.data.procedural import ProceduralScenes, ProceduralShapes
from image2point.data.s3dis import S3DIS
from image2point.data.semantickitti import SemanticKITTI
from image2point.data.subsets import DatasetSubset, subset_indices
from image2point.data.transforms import default_transforms
from image2point.errors import ConfigError
from image2point.inflate.converter import ConversionReport, InflationSettings
from image2point.models import NetworkConfig, TransferredNetwork, build_network, reinitialise
from image2point.models2d import create_model_2d, load_pretrained_2d
from image2point.models2d.loading import LoadReport
from image2point.train.config import DataConfig, RunConfig

CLASSIFICATION_DATASETS = ("procedural_shapes", "modelnet40")
S3DIS_AREAS = (1, 2, 3, 4, 5, 6)
# Data-efficiency subsets are drawn on the training split only.
SUBSET_SPLIT = "train"


def task_of(data: DataConfig) -> str:
    return "classification" if data.name in CLASSIFICATION_DATASETS else "segmentation"


def _needs_root(data: DataConfig) -> Path:
    if data.root is None:
        raise ConfigError(f"data.root must name the {data.name} directory (it is null)")
    return Path(data.root)


def build_dataset(data: DataConfig, split: str, train: bool) -> Dataset:
    """The dataset of ``data.name`` for ``split``, with the paper's augmentation when ``train``."""
    # Without augmentation a dataset still gets its deterministic part (e.g. colour normalisation).
    transform = default_transforms(data.name, train and data.augment)
    if data.name == "procedural_shapes":
        count = data.train_samples if train else data.eval_samples
        return ProceduralShapes(count, split, data.dataset_seed, data.num_points or 1024, transform)
    if data.name == "procedural_scenes":
        count = data.train_samples if train else data.eval_samples
        return ProceduralScenes(count, split, data.dataset_seed, transform)
    root = _needs_root(data)
    if data.name == "modelnet40":
        return open_modelnet40(root, split, data.num_points, transform, data.dataset_seed)
    if data.name == "semantickitti":
        scans = data.train_scans if train else data.eval_scans
        return SemanticKITTI(root, split, scans=scans, transform=transform, seed=data.dataset_seed)
    if data.name == "s3dis":
        areas = [a for a in S3DIS_AREAS if a != data.test_area] if train else [data.test_area]
        return S3DIS(root, split, areas=areas, transform=transform, seed=data.dataset_seed)
    raise ConfigError(f"unknown dataset {data.name!r}")


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


def num_input_features(dataset: Dataset) -> int:
    return input_channels(dataset[0])


@dataclass
class BuiltModel:
    network: TransferredNetwork
    conversion: ConversionReport | None
    pretrained: LoadReport | None


def build_model(config: RunConfig, in_features: int, num_classes: int, task: str) -> BuiltModel:
    """The transferred network; the 2D backbone's weights come from ``model.pretrained`` when set."""
    model, finetune = config.model, config.finetune
    if finetune.scheme == "t" and finetune.learnable_t == "none":
        raise ConfigError("finetune.scheme=t needs finetune.learnable_t=shared or per_conv")
    inflation = InflationSettings(transform=model.transform, normalize=model.normalize_t,
                                  learnable_t=finetune.learnable_t,
                                  t_init=finetune.t_init, stride_mode=model.stride_mode)
    head = model.head
    if task == "segmentation" and head == "mlp":
        head = "unet"
    network_config = NetworkConfig(task=task, backbone=model.backbone, in_features=in_features,
                                   num_classes=num_classes, input_layer=model.input_layer, head=head,
                                   inflation=inflation)
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


def build_optimizer(config: RunConfig, parameters: list[torch.nn.Parameter]) -> torch.optim.Optimizer:
    optim = config.optim
    if not parameters:
        raise ConfigError("no trainable parameters: check finetune.scheme")
    if optim.name == "sgd":
        return torch.optim.SGD(parameters, lr=optim.lr, momentum=optim.momentum, weight_decay=optim.weight_decay)
    return torch.optim.Adam(parameters, lr=optim.lr, weight_decay=optim.weight_decay)
