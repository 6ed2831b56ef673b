"""Where the pretrained weights of an experiment come from: a small registry of sources.

* ``cifar10``: the CIFAR-10 ResNets of the shared directory (``weights/resnet{20,32,44,56}-*.th``).
* ``fractaldb``, ``tiny-imagenet``, ``mnist``: pretrained by the experiment itself, once per architecture,
  into ``<out>/pretrained/<source>-<arch>/model.pt`` and reused by every run of every table.
* ``random``: no weights (``model.pretrained=null``): a random backbone, frozen by the partial schemes.
* ``fractaldb-1k``, ``fractaldb-10k`` (paper scale): generated and pretrained by the experiment at the
  FractalDB paper's generator settings, rendered to disk (``<out>/fractaldb/<source>-seed<seed>/``, shared by
  every architecture and resumed after an interruption) and read one image at a time.
* ``imagenet``, ``imagenet21k``, ``cityscapes``, ``ade20k``: exist only when the user gives them
  (``--weights imagenet=PATH``, or ``--weights imagenet:resnet50=PATH`` for another architecture than the
  scale's backbone); runs needing them are reported missing. ``imagenet`` and ``cityscapes`` also have a
  shared checkpoint for one architecture each (:mod:`image2point.experiments.shared_checkpoints`).

At paper scale a source pretrained on an image dataset needs the full dataset (``--data-root``): the
shared directory holds samples, and a pretraining on one would stand in silently for the real thing.

``--weights`` also replaces the pretraining of the sources pretrained here. The shared directory is
``$IMAGE2POINT_SHARED`` when set, else the directory ``shared`` beside the repository.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

from image2point.errors import ConfigError, DataError
from image2point.experiments import fractal_sources
from image2point.experiments import shared_checkpoints as released
from image2point.experiments.scales import PAPER, REPOSITORY_ROOT, SMALL
from image2point.experiments.staleness import SETTINGS_FILE, write_pretraining_settings

SHARED_ENV = "IMAGE2POINT_SHARED"
SHARED_WEIGHTS = "weights"
PRETRAINED_DIR = "pretrained"
CHECKPOINT_FILE = "model.pt"
# Written last by every pretraining: its presence marks a finished one.
FINISHED_FILE = "metrics.json"
CONFIG_FILE = "config.yaml"
CIFAR_ARCH = re.compile(r"cifar_resnet(\d+)")
# Pretrainings do not vary with the finetuning seed: one checkpoint serves every seed.
PRETRAINING_SEED = 0
FRACTALDB_VAL_FRACTION = 0.2
FRACTALDB_SEARCH_SIZE = 128
# Under the out-dir: the FractalDB renders on disk, one per source and seed.
FRACTALDB_RENDER_DIR = "fractaldb"
# PointNet++ pretrained on images, each pixel a point (image2point.models.pointnet2).
PIXEL_ARCH = "pointnet2_ssg"

KIND_SHARED, KIND_PRETRAIN, KIND_RANDOM, KIND_USER = "shared", "pretrain", "random", "user"


def shared_root() -> Path:
    """``$IMAGE2POINT_SHARED`` when set, else ``shared`` beside the repository (``../shared``)."""
    configured = os.environ.get(SHARED_ENV)
    return Path(configured).expanduser() if configured else REPOSITORY_ROOT.parent / "shared"


@dataclass(frozen=True)
class PretrainSettings:
    """How a source pretrains one architecture (ours, not the paper's: it used released checkpoints)."""

    epochs: int
    batch_size: int = 128
    lr: float = 0.1
    # Square side images are resized to; None keeps the dataset's size.
    image_size: int | None = 32
    fractal_categories: int = 10
    fractal_instances: int = 48
    # FractalDB generator: side of the filling-rate search image, side of the patch drawn per point,
    # chaos-game points per image (None: the generator's default density).
    fractal_search_size: int = FRACTALDB_SEARCH_SIZE
    fractal_patch_size: int = 1
    fractal_points: int | None = None
    # Render the FractalDB to disk and read it per image (the paper-scale sources), instead of in memory.
    fractal_on_disk: bool = False
    seed: int = PRETRAINING_SEED

    def fractal_config(self):
        """The FractalDB generator settings (a ``FractalDBConfig``)."""
        return fractal_sources.fractaldb_config(self)

    def fractal_bytes(self) -> int:
        """Bytes of the rendered FractalDB: the disk its render takes (``fractal_on_disk``), else the memory its
        images take (one byte per grayscale pixel)."""
        return fractal_sources.fractaldb_bytes(self)


@dataclass(frozen=True)
class WeightSource:
    """A registered source; ``pretrain`` is set for the sources pretrained by the experiment."""

    name: str
    label: str
    kind: str
    # The image dataset it pretrains on (a --data-root key), for KIND_PRETRAIN sources.
    dataset: str | None = None
    # Under the shared root: the pretraining images, or the weights directory.
    shared_path: str | None = None
    # scale -> settings; the pixel-pretrained PointNet++ has its own (fewer, smaller images).
    settings: Mapping[str, PretrainSettings] = dataclasses.field(default_factory=dict)
    pixel_settings: Mapping[str, PretrainSettings] = dataclasses.field(default_factory=dict)
    pretrain: Callable[[Pretraining], float] | None = None
    # The shared directory's checkpoints of a user source, one per architecture.
    shared_checkpoints: tuple[released.SharedCheckpoint, ...] = ()


SOURCES: dict[str, WeightSource] = {}


def register_source(builder: Callable[[], WeightSource]) -> Callable[[], WeightSource]:
    """Decorator: register the source ``builder`` returns under its name."""
    source = builder()
    if source.name in SOURCES:
        raise ValueError(f"weight source {source.name!r} is registered twice")
    SOURCES[source.name] = source
    return builder


def get_source(name: str) -> WeightSource:
    if name not in SOURCES:
        raise ConfigError(f"unknown weight source {name!r}; known: {', '.join(SOURCES)}")
    return SOURCES[name]


@dataclass(frozen=True)
class Pretraining:
    """One pretraining the experiment runs before the runs that load its checkpoint."""

    source: str
    arch: str
    run_dir: Path
    root: Path | None
    settings: PretrainSettings

    @property
    def checkpoint(self) -> Path:
        return self.run_dir / CHECKPOINT_FILE

    @property
    def finished(self) -> bool:
        # The settings are recorded last (staleness.write_pretraining_settings): without them it did not finish.
        return all((self.run_dir / name).is_file() for name in (FINISHED_FILE, CHECKPOINT_FILE, SETTINGS_FILE))

    @property
    def name(self) -> str:
        return self.run_dir.name

    @property
    def render_dir(self) -> Path:
        """Where a FractalDB source renders its images: beside the pretrainings, shared by every architecture
        (and kept when an unfinished pretraining starts over)."""
        out_dir = self.run_dir.parent.parent
        return out_dir / FRACTALDB_RENDER_DIR / f"{self.source}-seed{self.settings.seed}"


@dataclass(frozen=True)
class Resolution:
    """What ``model.pretrained`` becomes for a run: a checkpoint (None: random weights), the pretraining
    that writes it first, or why the run cannot happen."""

    checkpoint: Path | None = None
    pretraining: Pretraining | None = None
    missing: str | None = None


@dataclass(frozen=True)
class SourceContext:
    """What resolving a source needs from the command line."""

    scale: str
    # The scale's backbone: what a plain --weights SOURCE=PATH is for.
    backbone: str
    out_dir: Path
    weights: Mapping[str, Path]
    data_roots: Mapping[str, Path]
    shared: Path


def resolve_source(name: str, arch: str, context: SourceContext) -> Resolution:
    """The checkpoint of source ``name`` for architecture ``arch`` at ``context.scale``."""
    source = get_source(name)
    # A plain --weights SOURCE=PATH is for the scale's backbone; other architectures need SOURCE:ARCH=PATH.
    default = context.weights.get(name) if arch == context.backbone else None
    given = context.weights.get(f"{name}:{arch}", default)
    if given is not None:
        return Resolution(checkpoint=given)
    if source.kind == KIND_RANDOM:
        return Resolution()
    if source.kind == KIND_USER:
        found = released.locate_shared_checkpoint(name, source.shared_checkpoints, arch, context.shared, SHARED_ENV)
        if found is not None:
            return Resolution(checkpoint=found[0], missing=found[1])
        if arch == context.backbone:
            return Resolution(missing=f"no {name} weights given (--weights {name}=PATH)")
        return Resolution(missing=f"no {name} weights given for {arch} (--weights {name}:{arch}=PATH)")
    if source.kind == KIND_SHARED:
        return _shared_weights(source, arch, context)
    settings = (source.pixel_settings if arch == PIXEL_ARCH else source.settings).get(context.scale)
    if settings is None:
        return Resolution(missing=f"{name} does not pretrain {arch} at {context.scale} scale "
                                  f"(--weights {name}:{arch}=PATH)")
    if context.scale == PAPER and source.dataset is not None and source.dataset not in context.data_roots:
        # ../shared holds samples: pretraining on one would stand in silently for the full dataset.
        return Resolution(missing=f"{name} pretrains on the full {source.dataset} at paper scale (../shared holds a "
                                  f"sample): give --data-root {source.dataset}=PATH or --weights {name}:{arch}=PATH")
    root = _pretraining_root(source, context)
    run_dir = context.out_dir / PRETRAINED_DIR / f"{name}-{arch}"
    pretraining = Pretraining(name, arch, run_dir, root, settings)
    return Resolution(checkpoint=pretraining.checkpoint, pretraining=pretraining)


def _shared_weights(source: WeightSource, arch: str, context: SourceContext) -> Resolution:
    match = CIFAR_ARCH.fullmatch(arch)
    if match is None:
        return Resolution(missing=f"no {source.name} weights for {arch} (the shared ones are CIFAR ResNets; "
                                  f"--weights {source.name}:{arch}=PATH)")
    directory = context.shared / str(source.shared_path)
    if not directory.is_dir():
        raise DataError(f"shared weights directory not found (set {SHARED_ENV} or pass --weights "
                        f"{source.name}=PATH)", directory)
    files = sorted(directory.glob(f"resnet{match.group(1)}-*.th"))
    if not files:
        return Resolution(missing=f"no {source.name} weights for {arch} in {directory}")
    return Resolution(checkpoint=files[0])


def _pretraining_root(source: WeightSource, context: SourceContext) -> Path | None:
    """The image dataset a source pretrains on: --data-root, else the shared sample (FractalDB: none)."""
    if source.dataset is None:
        return None
    if source.dataset in context.data_roots:
        return context.data_roots[source.dataset]
    root = context.shared / str(source.shared_path)
    if not root.is_dir():
        raise DataError(f"{source.dataset} images not found (set {SHARED_ENV} or pass --data-root "
                        f"{source.dataset}=PATH)", root)
    return root


def run_pretraining(pretraining: Pretraining) -> float:
    """Pretrain unless finished; an unfinished directory (an interrupted pretraining) starts over.
    Returns the validation top-1 in [0, 1]."""
    if pretraining.finished:
        return float(json.loads((pretraining.run_dir / FINISHED_FILE).read_text())["val_top1"])
    if pretraining.run_dir.exists():
        shutil.rmtree(pretraining.run_dir)
    source = get_source(pretraining.source)
    if source.pretrain is None:
        raise ConfigError(f"weight source {source.name!r} is not pretrained by the experiment")
    top1 = source.pretrain(pretraining)
    write_pretraining_settings(pretraining)
    return top1


def pixel_model_factory(arch: str) -> Callable[[int], object] | None:
    """PointNet++ sees each pixel as a point; every other architecture comes from the 2D registry."""
    if arch != PIXEL_ARCH:
        return None
    from image2point.models.pointnet2 import pixel_pretraining_network

    return pixel_pretraining_network


def _pretrain_fractaldb(pretraining: Pretraining) -> float:
    """Pretrain on a FractalDB generated here (in memory, or on disk: experiments.fractal_sources)."""
    from image2point.checkpoint import atomic_write
    from image2point.models2d import create_model_2d

    factory = pixel_model_factory(pretraining.arch)
    pretraining.run_dir.mkdir(parents=True, exist_ok=True)
    with atomic_write(pretraining.run_dir / CONFIG_FILE, "w") as stream:
        yaml.safe_dump({"source": pretraining.source, "arch": pretraining.arch,
                        "settings": dataclasses.asdict(pretraining.settings)}, stream, sort_keys=False)
    result = fractal_sources.pretrain_fractaldb(pretraining, lambda classes: factory(classes) if factory else
                                create_model_2d(pretraining.arch, num_classes=classes), FRACTALDB_VAL_FRACTION)
    with atomic_write(pretraining.run_dir / FINISHED_FILE, "w") as stream:
        json.dump({"val_top1": result.top1, "num_classes": result.num_classes,
                   "history": [dataclasses.asdict(epoch) for epoch in result.history]}, stream, indent=2)
    return result.top1


def _pretrain_images(pretraining: Pretraining) -> float:
    from image2point.pretrain2d.real_images import pretrain_on_images

    settings = pretraining.settings
    result = pretrain_on_images(get_source(pretraining.source).dataset, pretraining.root, pretraining.arch,
                                settings.epochs, settings.batch_size, settings.lr, settings.seed,
                                pretraining.run_dir, image_size=settings.image_size,
                                model_factory=pixel_model_factory(pretraining.arch))
    return result.top1


@register_source
def _cifar10() -> WeightSource:
    return WeightSource("cifar10", "CIFAR-10 (50k natural images, 10 classes)", KIND_SHARED,
                        shared_path=SHARED_WEIGHTS)


@register_source
def _imagenet() -> WeightSource:
    return WeightSource("imagenet", "ImageNet-1k (1.28M natural images, 1000 classes)", KIND_USER,
                        shared_checkpoints=released.IMAGENET_CHECKPOINTS)


@register_source
def _cityscapes() -> WeightSource:
    return WeightSource("cityscapes", "Cityscapes (street-scene segmentation)", KIND_USER,
                        shared_checkpoints=released.CITYSCAPES_CHECKPOINTS)


@register_source
def _random() -> WeightSource:
    return WeightSource("random", "random weights, no pretraining", KIND_RANDOM)


@register_source
def _fractaldb() -> WeightSource:
    # Small: make demo's FractalDB (10 x 48 images), 60 epochs (89.0 % top-1, docs/results/README.md); PointNet++
    # sees 16x16 images (256 points each), since its cost grows with the points per image.
    return WeightSource(
        "fractaldb", "FractalDB generated here (synthetic fractals, no natural images)", KIND_PRETRAIN,
        settings={SMALL: PretrainSettings(epochs=60, batch_size=64),
                  PAPER: PretrainSettings(epochs=90, image_size=64, fractal_categories=100, fractal_instances=100)},
        pixel_settings={SMALL: PretrainSettings(epochs=6, batch_size=64, image_size=16),
                        PAPER: PretrainSettings(epochs=90, fractal_categories=100, fractal_instances=100)},
        pretrain=_pretrain_fractaldb)


@register_source
def _imagenet21k() -> WeightSource:
    # The paper's ResNet-50 on ImageNet-21K comes from Alibaba-MIIL/ImageNet21K (appendix 6.1, ref. [78]).
    return WeightSource("imagenet21k", "ImageNet-21K (14.2M natural images, 21,841 classes)", KIND_USER)


@register_source
def _ade20k() -> WeightSource:
    # The paper's ResNet-18 on ADE20K: CSAILVision/semantic-segmentation-pytorch (appendix 6.1).
    return WeightSource("ade20k", "ADE20K (scene parsing segmentation)", KIND_USER)


def _paper_fractaldb(categories: int) -> PretrainSettings:
    """FractalDB-1k / -10k at the generator settings of Kataoka et al. (ACCV 2020) and their renderer
    (github hirokatsukataoka16/FractalDB-Pretrained-ResNet-PyTorch, exe.sh and README): filling rate 0.2
    searched on 512 px, 1,000 instances per category (the renderer's --instance 10), 362 px images,
    200,000 patches of 3 px per image ('patch_gray'), rendered to disk (131 GB for FractalDB-1k). The paper's
    ResNet-50s are that repository's checkpoints; the training settings here (90 epochs, SGD 0.1, batch 256)
    are the PyTorch ImageNet example's, not theirs."""
    return PretrainSettings(epochs=90, batch_size=256, lr=0.1, image_size=362, fractal_categories=categories,
                            fractal_instances=1000, fractal_search_size=512, fractal_patch_size=3,
                            fractal_points=200_000, fractal_on_disk=True)


@register_source
def _fractaldb_1k() -> WeightSource:
    return WeightSource("fractaldb-1k", "FractalDB-1k generated here (1,000 fractal categories)", KIND_PRETRAIN,
                        settings={PAPER: _paper_fractaldb(1000)}, pretrain=_pretrain_fractaldb)


@register_source
def _fractaldb_10k() -> WeightSource:
    return WeightSource("fractaldb-10k", "FractalDB-10k generated here (10,000 fractal categories)", KIND_PRETRAIN,
                        settings={PAPER: _paper_fractaldb(10000)}, pretrain=_pretrain_fractaldb)


@register_source
def _tiny_imagenet() -> WeightSource:
    # Small: the 10k-image sample at 32x32, 30 epochs (15.68 % top-1, docs/results/README.md). Paper: the full set at
    # 64 px, 90 epochs as the PyTorch ImageNet example the paper names (appendix 6.1); PointNet++ as the
    # paper's Section 4.2 detail: each pixel a point, batch 64, SGD 0.1, 90 epochs.
    return WeightSource(
        "tiny-imagenet", "Tiny-ImageNet (natural images, 200 classes)", KIND_PRETRAIN,
        dataset="tiny-imagenet", shared_path="data/tiny-imagenet-200",
        settings={SMALL: PretrainSettings(epochs=30), PAPER: PretrainSettings(epochs=90, image_size=None)},
        pixel_settings={PAPER: PretrainSettings(epochs=90, batch_size=64, lr=0.1, image_size=None)},
        pretrain=_pretrain_images)


@register_source
def _mnist() -> WeightSource:
    # Small: the 10k test digits (9k train after the held-out tenth), 32x32, 8 epochs (98.20 % top-1,
    # docs/results/README.md); PointNet++ sees them at 16x16 (256 points each), 4 epochs (90.40 %).
    return WeightSource(
        "mnist", "MNIST (handwritten digits, 10 classes)", KIND_PRETRAIN,
        dataset="mnist", shared_path="data/mnist",
        settings={SMALL: PretrainSettings(epochs=8), PAPER: PretrainSettings(epochs=30)},
        pixel_settings={SMALL: PretrainSettings(epochs=4, batch_size=64, lr=0.05, image_size=16),
                        PAPER: PretrainSettings(epochs=30)},
        pretrain=_pretrain_images)


PRETRAINING_DATASETS = tuple(source.dataset for source in SOURCES.values() if source.dataset is not None)
