"""FractalDB: a synthetic image classification set rendered from iterated function systems.

Follows Kataoka et al., "Pre-training without Natural Images" (ACCV 2020) and their reference
renderer (repository hirokatsukataoka16/FractalDB-Pretrained-ResNet-PyTorch):

* A category is an iterated function system (IFS) of N random affine maps
  ``(x, y) -> (a x + b y + e, c x + d y + f)`` with every parameter uniform in [-1, 1]; map ``i`` is
  picked with probability ``|det A_i| / sum_j |det A_j|`` (``A_i = [[a, b], [c, d]]``).
* A candidate category is kept only if its attractor, drawn with the chaos game and stretched to
  fill the image, covers at least ``filling_rate_threshold`` of the pixels (0.2 in the paper).
* Instances of a category perturb it with a "weight parameter": one of the six parameters is
  multiplied, in every map, by a factor near 1 (0.8 .. 1.2); images are also flipped up-down
  and/or left-right. The selection probabilities stay those of the category.

Points are drawn with many independent chaos-game chains advanced together in numpy, so a small
database (tens of categories, tens of instances, 32 or 64 pixels) is generated in seconds.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from image2point.errors import ConfigError, DataError
from image2point.pretrain2d.ifs import (  # noqa: F401  (re-exported: FractalDB's drawing API)
    AFFINE_COLS,
    AFFINE_ROWS,
    IFS,
    NUM_AFFINE_PARAMS,
    RGB_CHANNELS,
    UINT8_MAX,
    chaos_game,
    filling_rate,
    points_to_pixels,
    random_hue_colors,
    render_ifs,
)

# The flips of an instance: (up-down, left-right).
ALL_FLIPS = ((False, False), (True, False), (False, True), (True, True))
NO_FLIP = ((False, False),)
# ImageNet statistics, so models pretrained here take the same inputs as ImageNet-pretrained ones.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class FractalDBConfig:
    """How FractalDB is searched and rendered. The defaults build 100 categories x 100 instances at
    64 x 64 (in memory with :class:`FractalDB`); the paper's FractalDB-1k uses 1,000 x 1,000 at 362 px,
    which :mod:`image2point.pretrain2d.fractal_store` streams to disk."""

    num_categories: int = 100
    instances_per_category: int = 100
    # Side of the square images of the dataset.
    image_size: int = 64
    # Number of affine maps of a category, drawn uniformly in [min_maps, max_maps].
    min_maps: int = 2
    max_maps: int = 8
    # Every map parameter is drawn uniformly in [-param_range, param_range].
    param_range: float = 1.0
    # Fraction of pixels the attractor must cover for a candidate to become a category.
    filling_rate_threshold: float = 0.2
    # Side of the image the filling rate is measured on. Coarser grids fill more easily; at this
    # size and density about 2.5% of candidates pass 0.2 (the paper measures at 512, about 1.5%).
    search_size: int = 256
    # Chaos-game points per image pixel; the reference draws 100,000 points on 512 x 512.
    points_per_pixel: float = 100_000 / 512**2
    # Empty border around the attractor, as a fraction of the side; the reference uses 6 of 512.
    padding_fraction: float = 6 / 512
    # Factors of the "weight parameter" perturbation besides 1; 0.8 .. 1.2 as in the paper.
    weight_factors: tuple[float, ...] = (0.8, 0.9, 1.1, 1.2)
    # Whether instances are also flipped up-down and/or left-right.
    flips: bool = True
    # Random-hue colour images instead of grayscale.
    color: bool = False
    # Side of the random binary patch drawn at each point (the reference's "patch" mode uses 3 at
    # 512 pixels); 1 draws single pixels.
    patch_size: int = 1
    # The search gives up after this many candidates per requested category.
    max_attempts_per_category: int = 2000
    normalize_mean: tuple[float, float, float] = IMAGENET_MEAN
    normalize_std: tuple[float, float, float] = IMAGENET_STD

    def __post_init__(self) -> None:
        positive_ints = ("num_categories", "instances_per_category", "image_size", "search_size")
        for name in (*positive_ints, "min_maps", "patch_size", "max_attempts_per_category"):
            if getattr(self, name) < 1:
                raise ConfigError(f"FractalDBConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.max_maps < self.min_maps:
            raise ConfigError(f"FractalDBConfig.max_maps ({self.max_maps}) < min_maps ({self.min_maps})")
        if not 0.0 <= self.filling_rate_threshold <= 1.0:
            raise ConfigError(
                f"FractalDBConfig.filling_rate_threshold must be in [0, 1], got {self.filling_rate_threshold}"
            )
        if not 0.0 <= self.padding_fraction < 0.5:
            raise ConfigError(
                f"FractalDBConfig.padding_fraction must be in [0, 0.5), got {self.padding_fraction}"
            )
        if self.param_range <= 0 or self.points_per_pixel <= 0:
            raise ConfigError("FractalDBConfig.param_range and points_per_pixel must be > 0")
        if any(factor <= 0 or factor == 1.0 for factor in self.weight_factors):
            raise ConfigError(
                f"FractalDBConfig.weight_factors must be > 0 and != 1, got {self.weight_factors}"
            )
        if len(self.normalize_mean) != RGB_CHANNELS or len(self.normalize_std) != RGB_CHANNELS:
            raise ConfigError(
                "FractalDBConfig.normalize_mean and normalize_std need one value per RGB channel"
            )
        if any(std <= 0 for std in self.normalize_std):
            raise ConfigError(f"FractalDBConfig.normalize_std must be > 0, got {self.normalize_std}")

    @classmethod
    def small(cls) -> FractalDBConfig:
        """10 categories x 32 instances at 32 x 32, searched at 128: about a second on one core."""
        return cls(num_categories=10, instances_per_category=32, image_size=32, search_size=128)

    def num_points(self, size: int) -> int:
        """Chaos-game points for a ``size`` x ``size`` image at the configured density."""
        return math.ceil(self.points_per_pixel * size * size)

    def padding(self, size: int) -> int:
        return round(self.padding_fraction * size)


@dataclass(frozen=True)
class Candidate:
    """A random IFS and the filling rate of its attractor at the search size."""

    ifs: IFS
    filling_rate: float


@dataclass(frozen=True)
class InstanceVariant:
    """How one instance derives from its category: an optional weight perturbation and flips."""

    param_index: int | None = None
    factor: float = 1.0
    flip_up_down: bool = False
    flip_left_right: bool = False

    def apply(self, ifs: IFS) -> IFS:
        return ifs if self.param_index is None else ifs.scaled(self.param_index, self.factor)


# -- category search ---------------------------------------------------------------------------


def sample_ifs(config: FractalDBConfig, rng: np.random.Generator) -> IFS | None:
    """A random IFS as in the paper, or None in the (measure-zero) case that every map is singular."""
    num_maps = int(rng.integers(config.min_maps, config.max_maps + 1))
    maps = rng.uniform(-config.param_range, config.param_range, size=(num_maps, AFFINE_ROWS, AFFINE_COLS))
    try:
        return IFS.from_maps(maps)
    except DataError:
        return None


def iter_candidates(config: FractalDBConfig, rng: np.random.Generator) -> Iterator[Candidate]:
    """Endless random IFS candidates with their filling rate at ``config.search_size`` (grayscale
    points, as in the reference search)."""
    size = config.search_size
    while True:
        ifs = sample_ifs(config, rng)
        if ifs is None:
            continue
        image = render_ifs(ifs, size, config.num_points(size), rng, padding=config.padding(size))
        yield Candidate(ifs=ifs, filling_rate=filling_rate(image))


def search_categories(config: FractalDBConfig, rng: np.random.Generator) -> list[IFS]:
    """``config.num_categories`` random IFS whose filling rate reaches the threshold.

    Raises :class:`ConfigError` when ``max_attempts_per_category`` x ``num_categories`` candidates
    do not yield enough: the threshold is then too high for the search size.
    """
    max_attempts = config.max_attempts_per_category * config.num_categories
    categories: list[IFS] = []
    for candidate in itertools.islice(iter_candidates(config, rng), max_attempts):
        if candidate.filling_rate >= config.filling_rate_threshold:
            categories.append(candidate.ifs)
            if len(categories) == config.num_categories:
                return categories
    raise ConfigError(
        f"found only {len(categories)} of {config.num_categories} fractal categories with filling rate >= "
        f"{config.filling_rate_threshold} in {max_attempts} candidates; lower filling_rate_threshold "
        f"or search_size"
    )


# -- instances and the dataset -----------------------------------------------------------------


def instance_variants(config: FractalDBConfig) -> list[InstanceVariant]:
    """Every distinct (weight perturbation, flip) pair: 25 x 4 = 100 with the defaults."""
    perturbations: list[tuple[int | None, float]] = [(None, 1.0)]
    perturbations += [
        (index, factor) for index in range(NUM_AFFINE_PARAMS) for factor in config.weight_factors
    ]
    flips = ALL_FLIPS if config.flips else NO_FLIP
    return [
        InstanceVariant(param_index=index, factor=factor, flip_up_down=up_down, flip_left_right=left_right)
        for (index, factor), (up_down, left_right) in itertools.product(perturbations, flips)
    ]


def render_instance(
    category: IFS, variant: InstanceVariant, config: FractalDBConfig, rng: np.random.Generator
) -> np.ndarray:
    """One instance image of ``category`` at ``config.image_size``."""
    size = config.image_size
    image = render_ifs(
        variant.apply(category),
        size,
        config.num_points(size),
        rng,
        color=config.color,
        padding=config.padding(size),
        patch_size=config.patch_size,
    )
    if variant.flip_up_down:
        image = image[::-1]
    if variant.flip_left_right:
        image = image[:, ::-1]
    return np.ascontiguousarray(image)


def iter_category_instances(
    category: IFS, config: FractalDBConfig, rng: np.random.Generator
) -> Iterator[np.ndarray]:
    """The ``config.instances_per_category`` images of ``category``, one at a time. Instances take the
    variants in a random order, cycling when there are more instances than variants (repeats still
    differ: each rendering draws its own chaos-game points)."""
    variants = instance_variants(config)
    order = rng.permutation(len(variants))
    for index in range(config.instances_per_category):
        yield render_instance(category, variants[order[index % len(variants)]], config, rng)


def render_category(category: IFS, config: FractalDBConfig, rng: np.random.Generator) -> np.ndarray:
    """``config.instances_per_category`` images of ``category`` ``[I, H, W(, 3)]``, held at once: the
    in-memory path (:mod:`image2point.pretrain2d.fractal_store` streams the same images to disk)."""
    return np.stack(list(iter_category_instances(category, config, rng)))


def category_seeds(seed: int, num_categories: int) -> tuple[np.random.SeedSequence, list[np.random.SeedSequence]]:
    """The seed of the category search and one rendering seed per category, derived from ``seed``; a
    category's images do not depend on the others'."""
    search_seed, render_seed = np.random.SeedSequence(seed).spawn(2)
    return search_seed, render_seed.spawn(num_categories)


def image_to_tensor(image: np.ndarray, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """A uint8 image ``[H, W]`` or ``[H, W, 3]`` as float32 ``[3, H, W]`` normalised with ``mean`` and
    ``std`` (``[3, 1, 1]``); grayscale is repeated over the channels."""
    pixels = torch.from_numpy(image).float() / UINT8_MAX
    channels_first = pixels.expand(RGB_CHANNELS, -1, -1) if pixels.ndim == 2 else pixels.permute(2, 0, 1)
    return (channels_first - mean) / std


class FractalDB(Dataset):
    """FractalDB rendered once into memory; items are (image float32 ``[3, H, W]`` normalised with
    the config's mean and std, label). The same ``config`` and ``seed`` give the same images.

    Attributes: ``categories`` (one IFS per label), ``images`` (uint8 ``[N, H, W]`` grayscale or
    ``[N, H, W, 3]`` colour, category-major) and ``labels`` (int64 ``[N]``).
    """

    def __init__(self, config: FractalDBConfig, seed: int = 0):
        self.config = config
        self.seed = seed
        search_seed, render_seeds = category_seeds(seed, config.num_categories)
        self.categories = search_categories(config, np.random.default_rng(search_seed))
        self.images = np.concatenate(
            [
                render_category(category, config, np.random.default_rng(render_seed))
                for category, render_seed in zip(self.categories, render_seeds, strict=True)
            ]
        )
        self.labels = np.repeat(np.arange(len(self.categories)), config.instances_per_category)
        self._mean = torch.tensor(config.normalize_mean, dtype=torch.float32).view(RGB_CHANNELS, 1, 1)
        self._std = torch.tensor(config.normalize_std, dtype=torch.float32).view(RGB_CHANNELS, 1, 1)

    @property
    def num_classes(self) -> int:
        return len(self.categories)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return image_to_tensor(self.images[index], self._mean, self._std), int(self.labels[index])

    def save_png_tree(self, root: str | Path) -> list[Path]:
        """Write every image as ``root/<category>/<instance>.png`` (zero-padded numbers, so names
        sort in order) and return the written paths. Needs Pillow."""
        try:
            from PIL import Image
        except ImportError as error:
            raise ImportError("saving FractalDB as PNG files needs Pillow: pip install Pillow") from error

        root = Path(root)
        category_digits = len(str(max(self.num_classes - 1, 0)))
        instance_digits = len(str(max(self.config.instances_per_category - 1, 0)))
        written: list[Path] = []
        for index, (image, label) in enumerate(zip(self.images, self.labels, strict=True)):
            instance = index % self.config.instances_per_category
            path = root / f"{label:0{category_digits}d}" / f"{instance:0{instance_digits}d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(path)
            written.append(path)
        return written
