"""From a :class:`RunConfig` to datasets, a network and an optimizer: the wiring, nothing else."""

from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import Dataset

from image2point.data.batch import Collate
from image2point.data.pipelines import DatasetPipeline, PipelineSettings, compose_pipeline
from image2point.data.registry import DatasetRequest, dataset_entry
from image2point.data.subsets import DatasetSubset, subset_indices
from image2point.data.transforms import Compose
from image2point.errors import ConfigError
from image2point.tasks import Task
from image2point.train.config import DataConfig, RunConfig, dataset_task
from image2point.train.families import BatchSettings, BuiltModel, get_family

# Data-efficiency subsets are drawn on the training split only.
SUBSET_SPLIT = "train"


def task_of(data: DataConfig) -> Task:
    return dataset_task(data.name)


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


def build_model(config: RunConfig, in_features: int, num_classes: int, task: Task) -> BuiltModel:
    """The network of ``model.family`` (its registry entry); pretrained weights come from ``model.pretrained``.

    ``in_features``: channels per point of the data, xyz included (range images always have 5).
    """
    family, task = get_family(config.model.family), Task(task)
    family.check(config, task)
    return family.build(config, in_features, num_classes, task)


def network_in_features(config: RunConfig) -> int:
    """Input channels of the network: per point (xyz included), or the family's own (a range image's)."""
    return get_family(config.model.family).network_in_features(lambda: num_input_features(config.data))


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
