"""Each dataset's transforms with the authors' settings: typed, and the run config's ``data.<dataset>``.

The defaults are the values of the authors' code (github chenfengxu714/image2point, commit a82e2e7;
files named below); the paper's Appendix 6.1 names the steps without numbers. A pipeline has three
parts, applied in this order:

- augmentation: random steps of the training split, skipped when ``data.augment`` is false;
- preprocessing: deterministic steps of every split and of prediction (colour centring, ...);
- training_only: steps of the training split whatever ``data.augment`` says (the voxel cap).

Procedural shapes use the ModelNet40 pipeline and procedural scenes the S3DIS augmentation with the
colour normalisation only (they are generated centred, and have no rooms to normalise). Which
pipeline a dataset uses is part of its registration (:mod:`image2point.data.registry`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Literal, Protocol, get_args

from image2point.data.sample import Transform
from image2point.data.transforms import (
    CenterPoints,
    ChromaticAutoContrast,
    ChromaticJitter,
    ChromaticTranslation,
    Compose,
    NormalizeColor,
    RandomHorizontalFlip,
    RandomJitter,
    RandomScale,
    RandomTranslate,
    RandomVoxelSubset,
    RandomZRotation,
)

# Paper Appendix 6.1: voxel size 0.05 on all three datasets.
PAPER_VOXEL_SIZE = 0.05
# Which num_points points of a modelnet40_normal_resampled file are read (see ModelNet40Pipeline).
PointSampling = Literal["first", "random"]
POINT_SAMPLINGS: tuple[str, ...] = get_args(PointSampling)


class DatasetPipeline(Protocol):
    def augmentation(self) -> tuple[Transform, ...]: ...

    def preprocessing(self) -> tuple[Transform, ...]: ...

    def training_only(self, voxel_size: float) -> tuple[Transform, ...]: ...

    def xyz_feature_scale(self, voxel_size: float) -> float: ...


@dataclass(frozen=True)
class PlainPipeline:
    """No transforms at all: the pipeline of a dataset that registers none. The dataset pipelines below
    extend it and override only the parts they fill, so a part they leave out stays empty (and the xyz
    input features stay in metres)."""

    def augmentation(self) -> tuple[Transform, ...]:
        return ()

    def preprocessing(self) -> tuple[Transform, ...]:
        return ()

    def training_only(self, voxel_size: float) -> tuple[Transform, ...]:
        return ()

    def xyz_feature_scale(self, voxel_size: float) -> float:
        return 1.0


@dataclass(frozen=True)
class ModelNet40Pipeline(PlainPipeline):
    """ModelNet40 (core/datasets/modelnet.py, CoordinateTransformation(trans=0.2)): per-axis scale in
    [0.9, 1.1] with p 0.9, translation in [-0.2, 0.2] with p 0.9, and with p 0.7 uniform jitter
    0.025 * (u - 0.5), i.e. in [-0.0125, 0.0125] (their clip at 0.05 never binds).

    point_sampling: which ``data.num_points`` points of a modelnet40_normal_resampled file are read.
    "first": the file's first points (PointNet++'s convention; the files list points in farthest-point
    order, so a prefix covers the shape evenly). "random": a fixed random subset per shape, the same
    every epoch, which like the authors' modelnet40_ply_hdf5_2048 points is a plain uniform sample of
    the surface; a farthest-point prefix is more even and occupies more voxels (see
    tests/data/test_modelnet40.py on the shared shapes).
    """

    scale: RandomScale = field(default_factory=partial(RandomScale, 0.9, 1.1, p=0.9, per_axis=True))
    translation: RandomTranslate = field(default_factory=partial(RandomTranslate, 0.2, p=0.9))
    jitter: RandomJitter = field(default_factory=partial(RandomJitter, 0.0125, 0.05, p=0.7))
    point_sampling: PointSampling = "first"

    def augmentation(self) -> tuple[Transform, ...]:
        return (self.scale, self.translation, self.jitter)


@dataclass(frozen=True)
class S3DISPipeline(PlainPipeline):
    """S3DIS (core/datasets/s3dis.py; values from configs/s3dis/*.yaml data.clip_bound, color_std,
    color_trans_ratio). Training: with p 0.95, mirror x and y each with p 0.5; colour jitter, Gaussian
    with std 0.005 (their 0.005 * 255 on 0..255), p 0.95; colour translation uniform in [-0.05, 0.05]
    (their (u - 0.5) * 255 * 2 * 0.05), p 0.95; auto-contrast blended half and half, p 0.2; in that order.

    Every split: rooms cropped to the half-open cube of half-width clip_bound (metres) around their
    bounding-box centre (the S3DIS dataset does this when it loads a room; prediction never crops);
    colours centred (rgb / 255 - 0.5); with center, coordinates moved to their mean; with
    xyz_in_voxels, the xyz input features counted in voxels (their features are the rounded voxel
    indices minus their mean) instead of metres. clip_bound null keeps whole rooms.
    """

    flip: RandomHorizontalFlip = field(default_factory=partial(RandomHorizontalFlip, p=0.95, axis_p=0.5))
    color_jitter: ChromaticJitter = field(default_factory=partial(ChromaticJitter, 0.005, p=0.95))
    color_translation: ChromaticTranslation = field(default_factory=partial(ChromaticTranslation, 0.05, p=0.95))
    auto_contrast: ChromaticAutoContrast = field(default_factory=partial(ChromaticAutoContrast, p=0.2, blend=0.5))
    clip_bound: float | None = 4.0
    center: bool = True
    xyz_in_voxels: bool = True

    def __post_init__(self) -> None:
        if self.clip_bound is not None and not self.clip_bound > 0:
            raise ValueError(f"clip_bound must be positive or null, got {self.clip_bound!r}")

    def augmentation(self) -> tuple[Transform, ...]:
        return (self.flip, self.color_jitter, self.color_translation, self.auto_contrast)

    def preprocessing(self) -> tuple[Transform, ...]:
        return (NormalizeColor(),) + ((CenterPoints(),) if self.center else ())

    def xyz_feature_scale(self, voxel_size: float) -> float:
        return 1.0 / voxel_size if self.xyz_in_voxels else 1.0

    def colour_only(self) -> S3DISPipeline:
        """The same augmentation with only the colour normalisation kept (procedural scenes)."""
        return replace(self, center=False, xyz_in_voxels=False)


@dataclass(frozen=True)
class SemanticKITTIPipeline(PlainPipeline):
    """SemanticKITTI (core/datasets/semantic_kitti.py): rotation about z by an angle uniform over a full
    turn, then one scale factor uniform in [0.95, 1.05], both always. max_train_voxels: training scans
    keep a random 80,000 of their voxels when they have more (configs/semantic_kitti/*.yaml
    data.num_points: 80000; their loader draws that many voxel indices without replacement); null keeps all.
    """

    rotation: RandomZRotation = field(default_factory=partial(RandomZRotation, math.pi, p=1.0))
    scale: RandomScale = field(default_factory=partial(RandomScale, 0.95, 1.05, p=1.0, per_axis=False))
    max_train_voxels: int | None = 80_000

    def __post_init__(self) -> None:
        if self.max_train_voxels is not None and self.max_train_voxels < 1:
            raise ValueError(f"max_train_voxels must be at least 1 or null, got {self.max_train_voxels!r}")

    def augmentation(self) -> tuple[Transform, ...]:
        return (self.rotation, self.scale)

    def training_only(self, voxel_size: float) -> tuple[Transform, ...]:
        if self.max_train_voxels is None:
            return ()
        return (RandomVoxelSubset(voxel_size, self.max_train_voxels),)


@dataclass(frozen=True)
class PipelineSettings:
    """The per-dataset settings a run carries (the config's data.modelnet40, data.s3dis, data.semantickitti)."""

    modelnet40: ModelNet40Pipeline = field(default_factory=ModelNet40Pipeline)
    s3dis: S3DISPipeline = field(default_factory=S3DISPipeline)
    semantickitti: SemanticKITTIPipeline = field(default_factory=SemanticKITTIPipeline)


def compose_pipeline(pipeline: DatasetPipeline, train: bool, augment: bool = True,
                     voxel_size: float = PAPER_VOXEL_SIZE) -> Compose:
    """The transforms of one split: augmentation (train and augment), preprocessing, training-only steps."""
    steps = pipeline.augmentation() if train and augment else ()
    steps += pipeline.preprocessing()
    if train:
        steps += pipeline.training_only(voxel_size)
    return Compose(steps)
