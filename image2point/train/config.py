"""The run configuration: one typed section each for data, model, finetuning, optimiser, schedule and
training, read from a YAML file and ``key=value`` overrides by :mod:`image2point.train.schema`.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from image2point.data.pipelines import ModelNet40Pipeline, S3DISPipeline, SemanticKITTIPipeline
from image2point.data.registry import dataset_entry, dataset_names
from image2point.inflate.transforms import TRANSFORM_NAMES, unknown_transform_message
from image2point.inflate.shortcuts import DEFAULT_STRIDED_SHORTCUT, StridedShortcut
from image2point.sparse.backends import SPARSE_BACKENDS, backend_names
from image2point.tasks import Task
from image2point.train.families import MODEL_FAMILIES
from image2point.train.schema import FieldValueError, SchemaT, apply_override, load_schema, require, schema_from_mapping
from image2point.train.yaml_io import config_to_dict, read_config_file, save_config

_require = require
# The config API (the schema functions re-exported, so callers keep importing them from here).
__all__ = [
    "DataConfig", "FieldValueError", "FinetuneConfig", "ModelConfig", "OptimConfig",
    "RangeImageConfig", "RunConfig", "ScheduleConfig", "TrainConfig", "apply_override", "config_from_mapping",
    "config_to_dict", "dataset_task", "load_config", "read_config_file", "save_config", "upgrade_stored_head",
]

# The head every stored config of an older image2point names when it left model.head unset.
STORED_MLP_HEAD = "mlp"
# Seeds reach numpy's legacy seeding (np.random.seed), which takes [0, 2**32 - 1].
MAX_SEED = 2**32 - 1
# Below a micrometre the voxel keys of even a one-metre object overflow int64 with their margins; such a
# value is a typo (1e-300 for 1e-3), refused before a run directory exists.
MIN_VOXEL_SIZE = 1e-6


def _require_seed(seed: int, field_name: str) -> None:
    _require(0 <= seed <= MAX_SEED, field_name, f"in [0, {MAX_SEED}]", seed)


def _require_eval_split(data: DataConfig) -> None:
    """data.eval_split must be a split the dataset opens (explicit eval_scans make it a label only)."""
    splits = dataset_entry(data.name).splits
    if splits is not None and data.eval_scans is None:
        _require(data.eval_split in splits, "eval_split", f"one of {', '.join(splits)} for {data.name}",
                 data.eval_split)


def _require_fold(data: DataConfig) -> None:
    _require(data.folds is None or data.folds >= 2, "folds", "at least 2 or null", data.folds)
    if data.folds is None:
        _require(data.fold == 0, "fold", "0 when folds is null", data.fold)
    else:
        _require(0 <= data.fold < data.folds, "fold", f"in 0..{data.folds - 1} (folds is {data.folds})", data.fold)
    _require_seed(data.fold_seed, "fold_seed")


@dataclasses.dataclass
class RangeImageConfig:
    """Spherical projection of LiDAR scans for ``model.family=range`` (defaults: the HDL-64E of KITTI)."""

    height: int = 64
    width: int = 2048
    fov_up_deg: float = 3.0
    fov_down_deg: float = -25.0

    def __post_init__(self) -> None:
        _require(self.height >= 1, "height", "at least 1", self.height)
        _require(self.width >= 1, "width", "at least 1", self.width)
        _require(self.fov_up_deg > self.fov_down_deg, "fov_up_deg", f"above fov_down_deg ({self.fov_down_deg})",
                 self.fov_up_deg)


@dataclasses.dataclass
class DataConfig:
    # A registered dataset (image2point.data.registry: modelnet40, s3dis, semantickitti, procedural_shapes, ...).
    name: str = "procedural_shapes"
    root: str | None = None
    voxel_size: float = 0.05
    # Points sampled per cloud; None keeps every point.
    num_points: int | None = None
    # Fraction of the training set kept (the paper's data-efficiency study), drawn with subset_seed.
    fraction: float = 1.0
    # Training samples kept per class (few-shot); None keeps all.
    per_class: int | None = None
    subset_seed: int = 0
    # Samples per process and step; the batch of one optimiser step is world size x batch_size.
    batch_size: int = 32
    # The step batch (world size x batch_size) the recipe's numbers were tuned for, e.g. the paper's
    # 2 GPUs x 3 on S3DIS; training warns when the run's differs. None: no check.
    effective_batch_size: int | None = None
    # None: the training batch size.
    eval_batch_size: int | None = None
    num_workers: int = 2
    augment: bool = True
    # Split the metrics are computed on: "test" (ModelNet40, S3DIS area), "val" (SemanticKITTI 08).
    eval_split: str = "test"
    # Procedural datasets: samples per split and the generator seed.
    train_samples: int = 1000
    eval_samples: int = 200
    dataset_seed: int = 0
    # SemanticKITTI: explicit scans ("00/000000") instead of the standard sequence splits.
    train_scans: list[str] | None = None
    eval_scans: list[str] | None = None
    # S3DIS: the held-out area (the paper tests on area 5).
    test_area: int = 5
    # Cross-validation (image2point.data.folds): pool the official splits, cut them into ``folds`` folds
    # (stratified by class, drawn with fold_seed; scans in contiguous blocks), train on all but ``fold``
    # and evaluate ``fold``. None keeps the official splits.
    folds: int | None = None
    fold: int = 0
    fold_seed: int = 0
    # model.family=range: how scans become range images.
    range_image: RangeImageConfig = dataclasses.field(default_factory=RangeImageConfig)
    # Each dataset's augmentation and preprocessing, defaults the authors' (image2point.data.pipelines);
    # procedural shapes use modelnet40's, procedural scenes s3dis's augmentation.
    modelnet40: ModelNet40Pipeline = dataclasses.field(default_factory=ModelNet40Pipeline)
    s3dis: S3DISPipeline = dataclasses.field(default_factory=S3DISPipeline)
    semantickitti: SemanticKITTIPipeline = dataclasses.field(default_factory=SemanticKITTIPipeline)

    def __post_init__(self) -> None:
        known = dataset_names()
        _require(self.name in known, "name", "one of " + ", ".join(repr(name) for name in known), self.name)
        _require(self.train_samples >= 1, "train_samples", "at least 1", self.train_samples)
        _require(self.eval_samples >= 1, "eval_samples", "at least 1", self.eval_samples)
        _require(self.voxel_size >= MIN_VOXEL_SIZE, "voxel_size", f"at least {MIN_VOXEL_SIZE:g}", self.voxel_size)
        _require_seed(self.subset_seed, "subset_seed")
        _require_seed(self.dataset_seed, "dataset_seed")
        _require_eval_split(self)
        _require(self.num_points is None or self.num_points >= 1, "num_points", "at least 1 or null", self.num_points)
        _require(0 < self.fraction <= 1, "fraction", "in (0, 1]", self.fraction)
        _require(self.per_class is None or self.per_class >= 1, "per_class", "at least 1 or null", self.per_class)
        _require(self.batch_size >= 1, "batch_size", "at least 1", self.batch_size)
        _require(self.effective_batch_size is None or self.effective_batch_size >= 1, "effective_batch_size",
                 "at least 1 or null", self.effective_batch_size)
        _require(
            self.eval_batch_size is None or self.eval_batch_size >= 1,
            "eval_batch_size",
            "at least 1 or null",
            self.eval_batch_size,
        )
        _require(self.num_workers >= 0, "num_workers", "at least 0", self.num_workers)
        _require_fold(self)


@dataclasses.dataclass
class ModelConfig:
    # A registered model family (image2point.train.families): the paper's three are voxel (``backbone``
    # a 2D ConvNet inflated to 3D), pointnet2 (``backbone`` pointnet2_ssg, ``pretrained`` a PointNet++
    # checkpoint, e.g. pretrained on images, each pixel a point) and range (``backbone`` an HRNet,
    # hrnet_w18 or hrnet_w48, run on range images).
    family: str = "voxel"
    backbone: str = "resnet18"
    # A checkpoint path or a registered weight name; None starts from random weights.
    pretrained: str | None = None
    # How 2D kernels become 3D kernels: a name of image2point.inflate.transforms ("default" is the
    # authors' default; copy_x, copy_y, copy_z, ..._transposed).
    transform: str = "default"
    # Divide T by the kernel size, so a field constant along the copy axis gives the 2D response.
    normalize_t: bool = False
    input_layer: Literal["conv3", "linear"] = "conv3"
    # Output layer: mlp or linear (classification), unet or linear (segmentation); null: the task's
    # default, mlp for classification and unet for segmentation.
    head: Literal["mlp", "linear", "unet"] | None = None
    # Hidden width of the mlp classification head (Listing 3: 1024; models.heads.HEAD_HIDDEN_CHANNELS).
    head_hidden: int = 1024
    # Channels of the network without a backbone, backbone=none (Listing 1: ResNet-18's deepest width,
    # 512; models.networks.LINEAR_NETWORK_WIDTH).
    linear_width: int = 512
    stride_mode: Literal["floor", "window"] = "floor"
    # How strided 1×1 shortcuts (and CIFAR option-A subsamples) read the finer level: "center" (the
    # child at 2q, as in 2D), "children_sum" (the authors' 2×2×2 kernel), "children_mean" (that sum
    # over the occupied children). See image2point/inflate/shortcuts.py and docs/fidelity.md.
    shortcut: StridedShortcut = DEFAULT_STRIDED_SHORTCUT
    # Sparse convolution backend; None picks the best one installed.
    backend: str | None = None
    # family=range: score each point by a kNN vote over its range-image neighbours (RangeNet++)
    # instead of its own pixel's prediction.
    knn_refine: bool = False

    def __post_init__(self) -> None:
        _require(self.family in MODEL_FAMILIES, "family", f"one of {', '.join(MODEL_FAMILIES)}", self.family)
        _require(
            self.backend is None or self.backend in SPARSE_BACKENDS, "backend", f"one of {backend_names()} or null",
            self.backend
        )
        if self.transform not in TRANSFORM_NAMES:
            raise FieldValueError("transform", f"transform: {unknown_transform_message(self.transform)}")
        _require(self.head_hidden >= 1, "head_hidden", "at least 1", self.head_hidden)
        _require(self.linear_width >= 1, "linear_width", "at least 1", self.linear_width)


@dataclasses.dataclass
class FinetuneConfig:
    # Which parameters train: input/output layers only ("io"), plus BN statistics ("io_stats") or
    # all BN parameters ("io_bn"), everything ("all"), from scratch ("scratch"), or only the
    # inflation parameters ("t").
    scheme: Literal["io", "io_stats", "io_bn", "all", "scratch", "t"] = "all"
    learnable_t: Literal["none", "shared", "per_conv"] = "none"
    t_init: Literal["default", "random"] = "default"


@dataclasses.dataclass
class OptimConfig:
    name: Literal["sgd", "adam"] = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    # Nesterov momentum (sgd only), as the authors' S3DIS and SemanticKITTI configs use.
    nesterov: bool = False

    def __post_init__(self) -> None:
        _require(self.lr > 0, "lr", "positive", self.lr)
        _require(0 <= self.momentum < 1, "momentum", "in [0, 1)", self.momentum)
        _require(self.weight_decay >= 0, "weight_decay", "at least 0", self.weight_decay)
        _require(not self.nesterov or self.name == "sgd", "nesterov", "false unless name is sgd", self.nesterov)
        _require(not self.nesterov or self.momentum > 0, "nesterov", "false when momentum is 0", self.nesterov)


@dataclasses.dataclass
class ScheduleConfig:
    name: Literal["cosine", "poly", "warmup_cosine", "constant"] = "cosine"
    # Optimiser steps of each process, as the authors' warm-up counts them (SPVNAS's
    # cosine_schedule_with_warmup: 1000 // world size, 250 on their 4 GPUs).
    warmup_iters: int = 0
    power: float = 0.9
    # Learning rate reached at the last iteration by the decaying schedules.
    min_lr: float = 0.0

    def __post_init__(self) -> None:
        _require(self.warmup_iters >= 0, "warmup_iters", "at least 0", self.warmup_iters)
        _require(self.power > 0, "power", "positive", self.power)
        _require(self.min_lr >= 0, "min_lr", "at least 0", self.min_lr)


@dataclasses.dataclass
class TrainConfig:
    epochs: int = 300
    seed: int = 0
    amp: Literal["none", "bf16", "fp16"] = "none"
    # "auto" (CUDA when available), "cpu", "cuda" or "cuda:N".
    device: str = "auto"
    eval_every: int = 1
    log_every: int = 10
    run_dir: str = "runs/default"
    # Caps the iterations of each epoch (quick runs); None runs the whole loader.
    max_steps_per_epoch: int | None = None
    # Intra-op threads of each training process; None: the cores per process left after the loader
    # workers (at least 1). More threads than cores makes every op wait on a busy core.
    threads: int | None = None
    # Deterministic algorithms (train/determinism.py): a CUDA run repeats bit for bit, at some cost in
    # speed; a family whose training needs an op without a deterministic CUDA implementation is refused
    # (none of the built-in ones). The CPU repeats runs anyway.
    deterministic: bool = False

    def __post_init__(self) -> None:
        _require(self.epochs >= 1, "epochs", "at least 1", self.epochs)
        _require_seed(self.seed, "seed")
        _require(self.threads is None or self.threads >= 1, "threads", "at least 1 or null", self.threads)
        _require(self.eval_every >= 1, "eval_every", "at least 1", self.eval_every)
        _require(self.log_every >= 1, "log_every", "at least 1", self.log_every)
        _require(
            self.max_steps_per_epoch is None or self.max_steps_per_epoch >= 1,
            "max_steps_per_epoch",
            "at least 1 or null",
            self.max_steps_per_epoch,
        )


@dataclasses.dataclass
class RunConfig:
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    finetune: FinetuneConfig = dataclasses.field(default_factory=FinetuneConfig)
    optim: OptimConfig = dataclasses.field(default_factory=OptimConfig)
    schedule: ScheduleConfig = dataclasses.field(default_factory=ScheduleConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)


def dataset_task(name: str) -> Task:
    """What a network learns on the registered dataset ``name``: a class per cloud, or per point."""
    return dataset_entry(name).task


def load_config(path: str | Path | None, overrides: Sequence[str] = (),
                schema: type[SchemaT] = RunConfig) -> SchemaT:  # type: ignore[assignment]
    """A run config (or ``schema``) from its defaults, the YAML file at ``path`` (if any), then ``overrides``
    in order (see :func:`image2point.train.schema.load_schema`)."""
    return load_schema(path, overrides, schema)


def config_from_mapping(mapping: Mapping[str, Any], source: str,
                        schema: type[SchemaT] = RunConfig) -> SchemaT:  # type: ignore[assignment]
    """A config from an already parsed mapping (the one stored in a checkpoint or beside an export),
    validated like a file; errors name ``source``. A stored run config is read as its writer meant it
    (:func:`upgrade_stored_head`)."""
    if schema is RunConfig:
        mapping = upgrade_stored_head(mapping)
    return schema_from_mapping(mapping, source, schema)


def upgrade_stored_head(mapping: Mapping[str, Any]) -> Mapping[str, Any]:
    """``model.head`` once defaulted to mlp for every task, and a segmentation network built its default
    (unet) for it; a stored segmentation config saying mlp is read as null, the task's default, now that
    asking a segmentation network for an mlp head is refused."""
    model, data = mapping.get("model"), mapping.get("data")
    if not (isinstance(model, Mapping) and model.get("head") == STORED_MLP_HEAD and isinstance(data, Mapping)):
        return mapping
    name = str(data.get("name", DataConfig.name))
    if name not in dataset_names() or dataset_task(name) != Task.SEGMENTATION:
        return mapping  # an unknown dataset is refused by the validation that follows
    upgraded = copy.copy(dict(mapping))
    upgraded["model"] = {**model, "head": None}
    return upgraded
