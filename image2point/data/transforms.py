"""Sample transforms as pure functions of (sample, rng), each a typed settings dataclass.

Each transform returns a new sample and never modifies its input; all randomness comes from the
generator, so a dataset seeded per (seed, epoch, index) augments reproducibly. A random step with
probability ``p`` draws one uniform number to decide, then its parameters. Colour transforms work on
features whose first three channels are RGB in [0, 1] (S3DIS stores rgb / 255); NormalizeColor then
centres them, and must also run at evaluation time.

The classes are also the config schema of the run's augmentation (``data.modelnet40.scale.low``, ...);
:mod:`image2point.data.pipelines` puts them together per dataset with the authors' values.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from image2point.channels import RGB_CHANNELS
from image2point.data.sample import SampleT, Transform, select_points
from image2point.errors import DataError

COLOR_CENTER = 0.5
RGB_COLUMNS = slice(0, RGB_CHANNELS)
HORIZONTAL_AXES = (0, 1)
SPATIAL_AXES = 3


def _check_probability(name: str, p: float) -> None:
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {p!r}")


def _check_at_least_zero(name: str, value: float) -> None:
    if value < 0:
        raise ValueError(f"{name} must be at least 0, got {value!r}")


def _happens(p: float, rng: np.random.Generator) -> bool:
    """One uniform draw decides whether a step with probability p acts (p=1 still draws, so the
    stream does not depend on p)."""
    return bool(rng.random() < p)


@dataclass(frozen=True)
class Compose:
    """Applies transforms in order, all drawing from the same generator."""

    transforms: tuple[Transform, ...] = ()

    def __call__(self, sample: SampleT, rng: np.random.Generator) -> SampleT:
        for transform in self.transforms:
            sample = transform(sample, rng)
        return sample


@dataclass(frozen=True)
class RandomScale:
    """With probability p, multiplies the coordinates by a factor drawn uniformly from [low, high]:
    one factor per axis when per_axis, else one for all three."""

    low: float = 0.9
    high: float = 1.1
    p: float = 1.0
    per_axis: bool = False

    def __post_init__(self) -> None:
        if not 0 < self.low <= self.high:
            raise ValueError(f"scale range must satisfy 0 < low <= high, got low={self.low!r}, high={self.high!r}")
        _check_probability("p", self.p)

    def __call__(self, sample: SampleT, rng: np.random.Generator) -> SampleT:
        if not _happens(self.p, rng):
            return sample
        factors = rng.uniform(self.low, self.high, size=SPATIAL_AXES if self.per_axis else 1)
        return replace(sample, points=sample.points * factors.astype(np.float32))


@dataclass(frozen=True)
class RandomTranslate:
    """With probability p, shifts each axis by an offset drawn uniformly from [-max_shift, max_shift]."""

    max_shift: float = 0.2
    p: float = 1.0

    def __post_init__(self) -> None:
        _check_at_least_zero("max_shift", self.max_shift)
        _check_probability("p", self.p)

    def __call__(self, sample: SampleT, rng: np.random.Generator) -> SampleT:
        if not _happens(self.p, rng):
            return sample
        offset = rng.uniform(-self.max_shift, self.max_shift, size=SPATIAL_AXES).astype(np.float32)
        return replace(sample, points=sample.points + offset)


@dataclass(frozen=True)
class RandomJitter:
    """With probability p, adds per-point noise drawn uniformly from [-half_width, half_width] on each
    axis, clipped to [-clip, clip]."""

    half_width: float = 0.0125
    clip: float = 0.05
    p: float = 1.0

    def __post_init__(self) -> None:
        _check_at_least_zero("half_width", self.half_width)
        _check_at_least_zero("clip", self.clip)
        _check_probability("p", self.p)

    def __call__(self, sample: SampleT, rng: np.random.Generator) -> SampleT:
        if not _happens(self.p, rng):
            return sample
        noise = np.clip(rng.uniform(-self.half_width, self.half_width, sample.points.shape), -self.clip, self.clip)
        return replace(sample, points=(sample.points + noise).astype(np.float32))


@dataclass(frozen=True)
class RandomZRotation:
    """With probability p, rotates about the vertical axis by an angle drawn uniformly from
    [-max_angle, max_angle] (radians)."""

    max_angle: float = math.pi
    p: float = 1.0

    def __post_init__(self) -> None:
        _check_at_least_zero("max_angle", self.max_angle)
        _check_probability("p", self.p)

    def __call__(self, sample: SampleT, rng: np.random.Generator) -> SampleT:
        if not _happens(self.p, rng):
            return sample
        angle = rng.uniform(-self.max_angle, self.max_angle)
        cosine, sine = math.cos(angle), math.sin(angle)
        rotation = np.array([[cosine, -sine, 0.0], [sine, cosine, 0.0], [0.0, 0.0, 1.0]], dtype=np.float32)
        return replace(sample, points=sample.points @ rotation.T)


@dataclass(frozen=True)
class RandomHorizontalFlip:
    """With probability p, mirrors each horizontal axis with probability axis_p, within the scene's
    bounding box so the scene stays where it was."""

    p: float = 1.0
    axis_p: float = 0.5
    axes: tuple[int, ...] = HORIZONTAL_AXES

    def __post_init__(self) -> None:
        _check_probability("p", self.p)
        _check_probability("axis_p", self.axis_p)
        if any(axis not in range(SPATIAL_AXES) for axis in self.axes):
            raise ValueError(f"axes must be among 0, 1, 2, got {list(self.axes)}")

    def __call__(self, sample: SampleT, rng: np.random.Generator) -> SampleT:
        if not _happens(self.p, rng):
            return sample
        points = sample.points.copy()
        for axis in self.axes:
            if _happens(self.axis_p, rng):
                coordinates = points[:, axis]
                points[:, axis] = coordinates.max() + coordinates.min() - coordinates
        return replace(sample, points=points)


@dataclass(frozen=True)
class ChromaticJitter:
    """With probability p, adds per-point Gaussian noise of the given std to the colours."""

    std: float = 0.005
    p: float = 1.0

    def __post_init__(self) -> None:
        _check_at_least_zero("std", self.std)
        _check_probability("p", self.p)

    def __call__(self, sample: SampleT, rng: np.random.Generator) -> SampleT:
        if not _happens(self.p, rng):
            return sample
        colors = _colors(sample)
        return _with_colors(sample, colors + rng.normal(0.0, self.std, colors.shape))


@dataclass(frozen=True)
class ChromaticTranslation:
    """With probability p, shifts all colours by one offset per channel drawn uniformly from
    [-ratio, ratio] (colours in [0, 1])."""

    ratio: float = 0.05
    p: float = 1.0

    def __post_init__(self) -> None:
        _check_at_least_zero("ratio", self.ratio)
        _check_probability("p", self.p)

    def __call__(self, sample: SampleT, rng: np.random.Generator) -> SampleT:
        if not _happens(self.p, rng):
            return sample
        offset = rng.uniform(-self.ratio, self.ratio, size=3)
        return _with_colors(sample, _colors(sample) + offset)


@dataclass(frozen=True)
class ChromaticAutoContrast:
    """With probability p, stretches each colour channel to the full [0, 1] range and blends the
    result with the original: (1 - blend) * colour + blend * stretched."""

    p: float = 1.0
    blend: float = 0.5

    def __post_init__(self) -> None:
        _check_probability("p", self.p)
        _check_probability("blend", self.blend)

    def __call__(self, sample: SampleT, rng: np.random.Generator) -> SampleT:
        if not _happens(self.p, rng):
            return sample
        colors = _colors(sample)
        low, high = colors.min(axis=0), colors.max(axis=0)
        # A channel with one value has nothing to stretch (the authors' code would divide by zero).
        stretched = (colors - low) / np.maximum(high - low, np.finfo(np.float32).eps)
        return _with_colors(sample, (1.0 - self.blend) * colors + self.blend * stretched)


@dataclass(frozen=True)
class NormalizeColor:
    """Clips colours to [0, 1] and centres them on zero; deterministic, used for training and evaluation."""

    center: float = COLOR_CENTER

    def __call__(self, sample: SampleT, rng: np.random.Generator) -> SampleT:
        colors = _colors(sample)
        features = sample.features.copy()
        features[:, RGB_COLUMNS] = np.clip(colors, 0.0, 1.0) - self.center
        return replace(sample, features=features)


@dataclass(frozen=True)
class CenterPoints:
    """Moves the points so their mean is the origin; deterministic."""

    def __call__(self, sample: SampleT, rng: np.random.Generator) -> SampleT:
        mean = sample.points.astype(np.float64).mean(axis=0)
        return replace(sample, points=(sample.points - mean).astype(np.float32))


@dataclass(frozen=True)
class RandomVoxelSubset:
    """Keeps the points of at most max_voxels occupied voxels, drawn uniformly without replacement.

    A voxel is kept or dropped with all its points, so the network sees exactly the chosen voxels
    (the voxels of :func:`image2point.voxelize.voxelize` at the same voxel size); clouds with fewer
    voxels pass unchanged. Caps the memory of one training sample.
    """

    voxel_size: float
    max_voxels: int

    def __post_init__(self) -> None:
        if not self.voxel_size > 0:
            raise ValueError(f"voxel_size must be positive, got {self.voxel_size!r}")
        if self.max_voxels < 1:
            raise ValueError(f"max_voxels must be at least 1, got {self.max_voxels!r}")

    def __call__(self, sample: SampleT, rng: np.random.Generator) -> SampleT:
        from image2point.voxelize import voxelize

        voxels = voxelize(sample.points, self.voxel_size)
        if voxels.num_voxels <= self.max_voxels:
            return sample
        chosen = np.zeros(voxels.num_voxels, dtype=bool)
        chosen[rng.choice(voxels.num_voxels, self.max_voxels, replace=False)] = True
        return select_points(sample, chosen[voxels.inverse.numpy()])


def _colors(sample: SampleT) -> np.ndarray:
    if sample.features is None or sample.features.shape[1] < 3:
        raise DataError("colour transforms need features whose first 3 channels are RGB", sample.source)
    return sample.features[:, RGB_COLUMNS]


def _with_colors(sample: SampleT, colors: np.ndarray) -> SampleT:
    features = sample.features.copy()
    features[:, RGB_COLUMNS] = np.clip(colors, 0.0, 1.0)
    return replace(sample, features=features)
