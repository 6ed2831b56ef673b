"""Augmentations of the paper's Appendix 6.1, as pure functions of (sample, rng).

Each transform returns a new sample and never modifies its input; all randomness comes from the
generator, so a dataset seeded per (seed, epoch, index) augments reproducibly. Colour transforms
work on features whose first three channels are RGB in [0, 1] (S3DIS stores rgb / 255);
NormalizeColor then centres them, and must also run at evaluation time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from image2point.data.sample import SampleT, Transform
from image2point.errors import ConfigError, DataError

# ModelNet40
MODELNET_SCALE_RANGE = (2.0 / 3.0, 3.0 / 2.0)
MODELNET_TRANSLATION = 0.2
MODELNET_JITTER_SIGMA = 0.01
MODELNET_JITTER_CLIP = 0.05
# S3DIS; the colour steps follow the MinkowskiEngine indoor pipeline the paper builds on.
FLIP_PROBABILITY = 0.5
AUTO_CONTRAST_PROBABILITY = 0.2
COLOR_TRANSLATION_RATIO = 0.1
COLOR_JITTER_STD = 0.05
COLOR_STEP_PROBABILITY = 0.95
COLOR_CENTER = 0.5
RGB_CHANNELS = slice(0, 3)
# SemanticKITTI
KITTI_SCALE_RANGE = (0.95, 1.05)
FULL_TURN = 2.0 * math.pi
HORIZONTAL_AXES = (0, 1)


@dataclass(frozen=True)
class Compose:
    """Applies transforms in order, all drawing from the same generator."""

    transforms: tuple[Transform, ...] = ()

    def __call__(self, sample: SampleT, rng: np.random.Generator) -> SampleT:
        for transform in self.transforms:
            sample = transform(sample, rng)
        return sample


@dataclass(frozen=True)
class RandomAnisotropicScale:
    """Multiplies each axis by its own factor drawn uniformly from [low, high]."""

    low: float = MODELNET_SCALE_RANGE[0]
    high: float = MODELNET_SCALE_RANGE[1]

    def __call__(self, sample: SampleT, rng: np.random.Generator) -> SampleT:
        factors = rng.uniform(self.low, self.high, size=3).astype(np.float32)
        return replace(sample, points=sample.points * factors)


@dataclass(frozen=True)
class RandomScale:
    """Multiplies all coordinates by one factor drawn uniformly from [low, high]."""

    low: float = KITTI_SCALE_RANGE[0]
    high: float = KITTI_SCALE_RANGE[1]

    def __call__(self, sample: SampleT, rng: np.random.Generator) -> SampleT:
        return replace(sample, points=sample.points * np.float32(rng.uniform(self.low, self.high)))


@dataclass(frozen=True)
class RandomTranslate:
    """Shifts each axis by an offset drawn uniformly from [-max_shift, max_shift]."""

    max_shift: float = MODELNET_TRANSLATION

    def __call__(self, sample: SampleT, rng: np.random.Generator) -> SampleT:
        offset = rng.uniform(-self.max_shift, self.max_shift, size=3).astype(np.float32)
        return replace(sample, points=sample.points + offset)


@dataclass(frozen=True)
class RandomJitter:
    """Adds per-point Gaussian noise of std sigma, clipped to [-clip, clip]."""

    sigma: float = MODELNET_JITTER_SIGMA
    clip: float = MODELNET_JITTER_CLIP

    def __call__(self, sample: SampleT, rng: np.random.Generator) -> SampleT:
        noise = np.clip(rng.normal(0.0, self.sigma, sample.points.shape), -self.clip, self.clip)
        return replace(sample, points=(sample.points + noise).astype(np.float32))


@dataclass(frozen=True)
class RandomZRotation:
    """Rotates about the vertical axis by an angle drawn uniformly from [-max_angle, max_angle]."""

    max_angle: float = math.pi

    def __call__(self, sample: SampleT, rng: np.random.Generator) -> SampleT:
        angle = rng.uniform(-self.max_angle, self.max_angle)
        cosine, sine = math.cos(angle), math.sin(angle)
        rotation = np.array([[cosine, -sine, 0.0], [sine, cosine, 0.0], [0.0, 0.0, 1.0]], dtype=np.float32)
        return replace(sample, points=sample.points @ rotation.T)


@dataclass(frozen=True)
class RandomHorizontalFlip:
    """Mirrors each horizontal axis with probability p, within the scene's bounding box so the
    scene stays where it was."""

    p: float = FLIP_PROBABILITY
    axes: tuple[int, ...] = HORIZONTAL_AXES

    def __call__(self, sample: SampleT, rng: np.random.Generator) -> SampleT:
        points = sample.points.copy()
        for axis in self.axes:
            if rng.random() < self.p:
                coordinates = points[:, axis]
                points[:, axis] = coordinates.max() + coordinates.min() - coordinates
        return replace(sample, points=points)


@dataclass(frozen=True)
class ChromaticAutoContrast:
    """With probability p, stretches the colours to the full [0, 1] range and blends the result
    with the original by a random factor."""

    p: float = AUTO_CONTRAST_PROBABILITY

    def __call__(self, sample: SampleT, rng: np.random.Generator) -> SampleT:
        if rng.random() >= self.p:
            return sample
        colors = _colors(sample)
        low, high = colors.min(axis=0), colors.max(axis=0)
        stretched = (colors - low) / np.maximum(high - low, np.finfo(np.float32).eps)
        blend = np.float32(rng.random())
        return _with_colors(sample, (1.0 - blend) * colors + blend * stretched)


@dataclass(frozen=True)
class ChromaticTranslation:
    """With probability p, shifts all colours by one offset per channel in [-ratio, ratio]."""

    ratio: float = COLOR_TRANSLATION_RATIO
    p: float = COLOR_STEP_PROBABILITY

    def __call__(self, sample: SampleT, rng: np.random.Generator) -> SampleT:
        if rng.random() >= self.p:
            return sample
        offset = rng.uniform(-self.ratio, self.ratio, size=3)
        return _with_colors(sample, _colors(sample) + offset)


@dataclass(frozen=True)
class ChromaticJitter:
    """With probability p, adds per-point Gaussian noise of the given std to the colours."""

    std: float = COLOR_JITTER_STD
    p: float = COLOR_STEP_PROBABILITY

    def __call__(self, sample: SampleT, rng: np.random.Generator) -> SampleT:
        if rng.random() >= self.p:
            return sample
        colors = _colors(sample)
        return _with_colors(sample, colors + rng.normal(0.0, self.std, colors.shape))


@dataclass(frozen=True)
class NormalizeColor:
    """Clips colours to [0, 1] and centres them on zero; deterministic, used for training and evaluation."""

    center: float = COLOR_CENTER

    def __call__(self, sample: SampleT, rng: np.random.Generator) -> SampleT:
        colors = _colors(sample)
        features = sample.features.copy()
        features[:, RGB_CHANNELS] = np.clip(colors, 0.0, 1.0) - self.center
        return replace(sample, features=features)


def _colors(sample: SampleT) -> np.ndarray:
    if sample.features is None or sample.features.shape[1] < 3:
        raise DataError("colour transforms need features whose first 3 channels are RGB", sample.source)
    return sample.features[:, RGB_CHANNELS]


def _with_colors(sample: SampleT, colors: np.ndarray) -> SampleT:
    features = sample.features.copy()
    features[:, RGB_CHANNELS] = np.clip(colors, 0.0, 1.0)
    return replace(sample, features=features)


def modelnet40_transforms(train: bool) -> Compose:
    if not train:
        return Compose()
    return Compose((RandomAnisotropicScale(), RandomTranslate(), RandomJitter()))


def s3dis_transforms(train: bool) -> Compose:
    if not train:
        return Compose((NormalizeColor(),))
    return Compose(
        (
            RandomHorizontalFlip(),
            ChromaticAutoContrast(),
            ChromaticTranslation(),
            ChromaticJitter(),
            NormalizeColor(),
        )
    )


def semantickitti_transforms(train: bool) -> Compose:
    if not train:
        return Compose()
    return Compose((RandomScale(), RandomZRotation()))


DEFAULT_TRANSFORMS = {
    "modelnet40": modelnet40_transforms,
    "procedural_shapes": modelnet40_transforms,
    "s3dis": s3dis_transforms,
    "procedural_scenes": s3dis_transforms,
    "semantickitti": semantickitti_transforms,
}


def default_transforms(dataset_name: str, train: bool) -> Compose:
    """The paper's augmentation for a dataset (train) or the deterministic part of it (evaluation).

    Procedural shapes use the ModelNet40 recipe and procedural scenes, which carry colours in [0, 1],
    the S3DIS recipe.
    """
    if dataset_name not in DEFAULT_TRANSFORMS:
        raise ConfigError(f"no default transforms for dataset {dataset_name!r}; known: {sorted(DEFAULT_TRANSFORMS)}")
    return DEFAULT_TRANSFORMS[dataset_name](train)
