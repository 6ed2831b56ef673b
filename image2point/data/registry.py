"""The datasets image2point knows: one typed entry per dataset, each registered by its own module.

A dataset module decorates the function that opens one split of it with :func:`register_dataset`,
giving its name, its :class:`~image2point.tasks.Task`, its class names, the per-point inputs its
networks read, its transforms (a :class:`~image2point.data.pipelines.DatasetPipeline`), its palette
and, where its files name its classes, how to read them. The builders, prediction, the CLI and config
validation look a dataset up here (:func:`dataset_entry`) instead of comparing names.

Adding a dataset is one module that defines and registers it; :mod:`image2point.data` imports the
built-in ones, so they are registered whenever anything of ``image2point.data`` is.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
from torch.utils.data import Dataset

from image2point.channels import RGB_CHANNELS, XYZ_CHANNELS
from image2point.data.pipelines import (
    PAPER_VOXEL_SIZE,
    DatasetPipeline,
    ModelNet40Pipeline,
    PipelineSettings,
    PlainPipeline,
    S3DISPipeline,
    SemanticKITTIPipeline,
    compose_pipeline,
)
from image2point.data.sample import Transform
from image2point.data.transforms import Compose
from image2point.errors import ConfigError
from image2point.tasks import Task
from image2point.viz import extend_palette

# How the io readers name a cloud's colours (red, green, blue joined into one [N, 3] field).
COLOUR_FIELD = "rgb"
NO_PALETTE = np.zeros((0, 3), dtype=np.uint8)


@dataclass(frozen=True)
class InputFields:
    """The per-point features after xyz that a dataset's networks read.

    fields: the cloud fields they come from, in order (as :mod:`image2point.io` names them); channels:
    their total width; colour_channels: how many of the first channels are colours in [0, 1].
    """

    fields: tuple[str, ...] = ()
    channels: int = 0
    colour_channels: int = 0

    @property
    def in_features(self) -> int:
        """Channels per point a network of this dataset reads, xyz included."""
        return XYZ_CHANNELS + self.channels


XYZ_ONLY = InputFields()
COLOURS = InputFields((COLOUR_FIELD,), RGB_CHANNELS, RGB_CHANNELS)


class DataSettings(Protocol):
    """The run config's ``data`` section as dataset openers read it (:class:`image2point.train.config.DataConfig`)."""

    root: str | None
    voxel_size: float
    num_points: int | None
    dataset_seed: int
    train_samples: int
    eval_samples: int
    train_scans: list[str] | None
    eval_scans: list[str] | None
    test_area: int
    # Cross-validation (image2point.data.folds): None keeps the official splits.
    folds: int | None
    fold: int
    fold_seed: int
    modelnet40: ModelNet40Pipeline
    s3dis: S3DISPipeline
    semantickitti: SemanticKITTIPipeline


@dataclass(frozen=True)
class DatasetRequest:
    """One split to open: the data settings, the split, whether it trains, and its transforms.

    root: ``data.root`` as a path (never None for a dataset registered with ``needs_root``).
    """

    data: DataSettings
    split: str
    train: bool
    transform: Transform
    root: Path | None

    @property
    def num_samples(self) -> int:
        """Samples of a generated dataset in this split (data.train_samples or data.eval_samples)."""
        return self.data.train_samples if self.train else self.data.eval_samples


@dataclass(frozen=True, eq=False)
class LabelScheme:
    """Class names and colours of a model's outputs, and a dataset's raw-id tables where it has them.

    original_ids: the dataset id of each class (written to SemanticKITTI ``.label`` files); raw_lookup:
    raw id -> class index, IGNORE_INDEX for no class, -1 for ids the dataset does not know.
    """

    class_names: tuple[str, ...]
    palette: np.ndarray
    original_ids: tuple[int, ...] | None = None
    raw_lookup: np.ndarray | None = None

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


@dataclass(frozen=True, eq=False)
class DatasetLabels:
    """What a dataset (its files when present, else its official lists) says about its classes.

    palette: uint8 [M, 3] colours of the first classes, extended generically for more.
    """

    class_names: tuple[str, ...]
    palette: np.ndarray = field(default_factory=lambda: NO_PALETTE)
    original_ids: tuple[int, ...] | None = None
    raw_lookup: np.ndarray | None = None

    def scheme(self, class_names: Sequence[str] | None = None,
               original_ids: Sequence[int] | None = None) -> LabelScheme:
        """The label scheme, with the class names and ids stored with a model in place of the dataset's."""
        names = self.class_names if class_names is None else tuple(str(name) for name in class_names)
        ids = self.original_ids if original_ids is None else tuple(int(value) for value in original_ids)
        if ids is not None and len(ids) != len(names):
            ids = None
        return LabelScheme(names, extend_palette(self.palette, len(names)), ids, self.raw_lookup)


Opener = Callable[[DatasetRequest], Dataset]
PipelineFactory = Callable[[PipelineSettings], DatasetPipeline]
LabelsReader = Callable[[Path | None], DatasetLabels]


def plain_pipeline(settings: PipelineSettings) -> DatasetPipeline:
    """No transforms: the pipeline of a dataset that registers none."""
    return PlainPipeline()


@dataclass(frozen=True, eq=False)
class DatasetEntry:
    """Everything the package needs to know about one dataset (see the module docstring)."""

    name: str
    task: Task
    open: Opener
    class_names: tuple[str, ...]
    inputs: InputFields = XYZ_ONLY
    pipeline: PipelineFactory = plain_pipeline
    palette: np.ndarray = field(default_factory=lambda: NO_PALETTE)
    needs_root: bool = False
    read_labels: LabelsReader | None = None
    # The split names it opens; None: any name (the split is a label, e.g. when areas or scans choose the data).
    splits: tuple[str, ...] | None = None

    def labels(self, root: Path | None) -> DatasetLabels:
        """Its classes as the files under ``root`` name them (when it reads them), else its own list."""
        if self.read_labels is not None:
            return self.read_labels(root)
        return DatasetLabels(self.class_names, self.palette)


DATASETS: dict[str, DatasetEntry] = {}


def register_dataset(name: str, task: Task, class_names: Sequence[str], *, inputs: InputFields = XYZ_ONLY,
                     pipeline: PipelineFactory = plain_pipeline, palette: np.ndarray | None = None,
                     needs_root: bool = False, read_labels: LabelsReader | None = None,
                     splits: Sequence[str] | None = None) -> Callable[[Opener], Opener]:
    """Decorator: register the function that opens a split of dataset ``name`` (see :class:`DatasetEntry`)."""

    def register(opener: Opener) -> Opener:
        if name in DATASETS:
            raise ValueError(f"dataset {name!r} is registered twice")
        DATASETS[name] = DatasetEntry(name, Task(task), opener, tuple(class_names), inputs, pipeline,
                                      NO_PALETTE if palette is None else np.asarray(palette, dtype=np.uint8),
                                      needs_root, read_labels, None if splits is None else tuple(splits))
        return opener

    return register


def dataset_names() -> tuple[str, ...]:
    return tuple(sorted(DATASETS))


def dataset_entry(name: str) -> DatasetEntry:
    """The registered dataset ``name``; ConfigError naming the known ones otherwise."""
    entry = DATASETS.get(name)
    if entry is None:
        raise ConfigError(f"unknown dataset {name!r}; known: {', '.join(dataset_names())}")
    return entry


def pipeline_for(dataset_name: str, settings: PipelineSettings | None = None) -> DatasetPipeline:
    """The transforms of ``dataset_name`` with ``settings`` (the run's data.modelnet40, ...; defaults: the authors')."""
    return dataset_entry(dataset_name).pipeline(settings or PipelineSettings())


def default_transforms(dataset_name: str, train: bool, settings: PipelineSettings | None = None,
                       voxel_size: float = PAPER_VOXEL_SIZE) -> Compose:
    """The authors' transforms for a dataset's training split (train) or its deterministic part."""
    return compose_pipeline(pipeline_for(dataset_name, settings), train, True, voxel_size)


def dataset_palette(dataset_name: str, num_classes: int) -> np.ndarray:
    """uint8 [num_classes, 3]: the fixed colours of a dataset's classes, extended generically if short."""
    return extend_palette(dataset_entry(dataset_name).palette, num_classes)
