"""From a :class:`RunConfig` to datasets, a network and an optimizer: the wiring, nothing else."""

from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import Dataset

from image2point.data.batch import Collate
from image2point.data.collate import input_channels
from image2point.data.modelnet40 import open_modelnet40
from image2point.data.procedural import ProceduralScenes, ProceduralShapes
from image2point.data.s3dis import S3DIS
from image2point.data.semantickitti import SemanticKITTI
from image2point.data.subsets import DatasetSubset, subset_indices
from image2point.data.pipelines import DatasetPipeline, PipelineSettings, compose_pipeline, pipeline_for
from image2point.data.transforms import Compose
from image2point.errors import ConfigError
from image2point.tasks import Task
from image2point.train.config import DataConfig, RunConfig, dataset_task
from image2point.train.families import BatchSettings, BuiltModel, get_family

S3DIS_AREAS = (1, 2, 3, 4, 5, 6)
# Data-efficiency subsets are drawn on the training split only.
SUBSET_SPLIT = "train"


def task_of(data: DataConfig) -> Task:
    return dataset_task(data.name)


def _needs_root(data: DataConfig) -> Path:
    if data.root is None:
        raise ConfigError(f"data.root must name the {data.name} directory (it is null)")
    return Path(data.root)


def dataset_pipeline(data: DataConfig) -> DatasetPipeline:
    """The transforms settings of ``data.name`` (its section of ``data``, see image2point.data.pipelines)."""
    return pipeline_for(data.name, PipelineSettings(data.modelnet40, data.s3dis, data.semantickitti))


def build_transform(data: DataConfig, train: bool) -> Compose:
    """Training: augmentation (when ``data.augment``), preprocessing, training-only steps; else preprocessing."""
    return compose_pipeline(dataset_pipeline(data), train, data.augment, data.voxel_size)


def xyz_feature_scale(data: DataConfig) -> float:
    """Factor on the xyz input features of voxel networks (1: metres)."""
    return dataset_pipeline(data).xyz_feature_scale(data.voxel_size)


def build_dataset(data: DataConfig, split: str, train: bool) -> Dataset:
    """The dataset of ``data.name`` for ``split``, with the authors' augmentation when ``train``."""
    # Without augmentation a dataset still gets its deterministic part (e.g. colour normalisation).
    transform = build_transform(data, train)
    if data.name == "procedural_shapes":
        count = data.train_samples if train else data.eval_samples
        return ProceduralShapes(count, split, data.dataset_seed, data.num_points or 1024, transform)
    if data.name == "procedural_scenes":
        count = data.train_samples if train else data.eval_samples
        return ProceduralScenes(count, split, data.dataset_seed, transform)
    root = _needs_root(data)
    if data.name == "modelnet40":
        return open_modelnet40(root, split, data.num_points, transform, data.dataset_seed,
                               data.modelnet40.point_sampling)
    if data.name == "semantickitti":
        scans = data.train_scans if train else data.eval_scans
        return SemanticKITTI(root, split, scans=scans, transform=transform, seed=data.dataset_seed)
    if data.name == "s3dis":
        areas = [a for a in S3DIS_AREAS if a != data.test_area] if train else [data.test_area]
        return S3DIS(root, split, areas=areas, transform=transform, seed=data.dataset_seed,
                     clip_bound=data.s3dis.clip_bound)
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


def build_model(config: RunConfig, in_features: int, num_classes: int, task: Task) -> BuiltModel:
    """The network of ``model.family`` (its registry entry); pretrained weights come from ``model.pretrained``.

    ``in_features``: channels per point of the data, xyz included (range images always have 5).
    """
    family, task = get_family(config.model.family), Task(task)
    family.check(config, task)
    return family.build(config, in_features, num_classes, task)


def network_in_features(config: RunConfig, dataset: Dataset) -> int:
    """Input channels of the network: per point (xyz included), or the family's own (a range image's)."""
    return get_family(config.model.family).network_in_features(lambda: num_input_features(dataset))


def build_collate(config: RunConfig, task: Task, num_classes: int, backend: str) -> Collate:
    """The DataLoader collate function of ``model.family`` (voxels, point sets, range images, ...)."""
    settings = BatchSettings(Task(task), num_classes, backend, xyz_feature_scale(config.data))
    return get_family(config.model.family).collate(config, settings)


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
