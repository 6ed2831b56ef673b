"""Pretraining on FractalDB into a run directory (``image2point pretrain2d --dataset fractaldb``): the images
generated in memory, or rendered into a store on disk (:mod:`~image2point.pretrain2d.fractal_store`: streamed,
resumable, hashed) and read one per item, so that FractalDB-1k (1,000 x 1,000 images at 362 px) fits.

A run directory holds ``config.yaml`` (the caller's arguments, the resolved generator and training settings,
the validation fraction and ``fractaldb_store``: with a store, its path and content sha256), ``metrics.json``
(validation top-1, the per-epoch history and ``fractaldb_store`` again) and ``model.pt``
(:func:`~image2point.pretrain2d.train2d.train_2d`'s checkpoint). The run directory, the store's settings and the
disk are checked before anything is written; with a store the run directory is only created once the render is
complete.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from image2point.errors import ConfigError
from image2point.pretrain2d.fractaldb import FractalDBConfig

if TYPE_CHECKING:
    from torch import nn

    from image2point.pretrain2d.train2d import Train2DConfig, Train2DResult

CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.json"
CHECKPOINT_FILE = "model.pt"


def generator_config(categories: int, instances: int, image_size: int, search_size: int, patch_size: int = 1,
                     points: int | None = None) -> FractalDBConfig:
    """The FractalDB generator settings of a number of categories and instances, the image and search sides,
    the patch drawn at each chaos-game point and ``points`` per image (None: the default density). The
    experiments' sources and the command line both build theirs here: the same numbers give the same
    settings, so a store rendered by one is the other's too."""
    density = {} if points is None else {"points_per_pixel": points / image_size**2}
    return FractalDBConfig(num_categories=categories, instances_per_category=instances, image_size=image_size,
                           search_size=search_size, patch_size=patch_size, **density)


@dataclass(frozen=True)
class FractalPretraining:
    """One pretraining run: what is generated, how it is trained, and where it goes."""

    generator: FractalDBConfig
    # Its seed is also the generator's: the store must have been rendered with it.
    train: Train2DConfig
    architecture: str
    val_fraction: float
    run_dir: Path
    # A render on disk to make, resume or reuse; None holds the images in memory.
    store: Path | None = None


@dataclass(frozen=True)
class StoreSummary:
    """What a run records of the store it read: enough to tell whether two runs saw the same images."""

    path: Path
    content_sha256: str
    num_images: int
    shard_instances: int
    format: str

    @classmethod
    def from_index(cls, path: Path, index: Mapping[str, Any]) -> StoreSummary:
        return cls(path=path.resolve(), content_sha256=index["content_sha256"],
                   num_images=int(index["num_categories"]) * int(index["instances_per_category"]),
                   shard_instances=int(index["shard_instances"]), format=index["format"])

    def record(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "path": str(self.path)}


@dataclass(frozen=True)
class FractalRunResult:
    training: Train2DResult
    store: StoreSummary | None
    checkpoint: Path


@dataclass(frozen=True)
class RunOptions:
    """The names the caller gives the settings, for messages: the run directory's and the store's options,
    and labels of the generator settings (``FractalDBConfig`` field or ``seed`` -> option)."""

    run_dir: str = "run directory"
    store: str = "store"
    settings: Mapping[str, str] = dataclasses.field(default_factory=dict)


def _refuse_nested(store: Path, run_dir: Path, options: RunOptions) -> None:
    store, run_dir = store.resolve(), run_dir.resolve()
    if store == run_dir or run_dir in store.parents or store in run_dir.parents:
        raise ConfigError(f"{options.store} {store}: must lie apart from {options.run_dir} {run_dir} (the run "
                          f"directory is new for every run, the store is kept and reused)")


def render_store(run: FractalPretraining, store: Path, options: RunOptions) -> StoreSummary:
    """Make, resume or reuse the render of ``run``'s generator in ``store`` (checked first: nothing is
    written on a refusal)."""
    from image2point.pretrain2d.fractal_store import StoreLayout, check_store, render_to_disk

    _refuse_nested(store, run.run_dir, options)
    check_store(StoreLayout.for_config(run.generator, run.train.seed), store, options.store, options.settings)
    return StoreSummary.from_index(store, render_to_disk(run.generator, run.train.seed, store))


def _write(path: Path, write: Callable[[Any], None]) -> None:
    from image2point.checkpoint import atomic_write

    with atomic_write(path, "w") as stream:
        write(stream)


def pretrain_fractaldb_run(run: FractalPretraining, build_model: Callable[[int], nn.Module],
                           arguments: Mapping[str, Any], options: RunOptions | None = None) -> FractalRunResult:
    """Pretrain ``build_model(categories)`` on the FractalDB of ``run`` into ``run.run_dir`` (see the module
    docstring); ``arguments`` (the command's options) go into ``config.yaml`` beside the resolved settings."""
    import yaml

    from image2point.io import json_out
    from image2point.io.output import check_new_run_directory, make_run_directory
    from image2point.pretrain2d.train2d import pretrain_on_fractaldb, pretrain_on_fractaldb_files

    options = options or RunOptions()
    check_new_run_directory(run.run_dir, options.run_dir)
    store = None if run.store is None else render_store(run, run.store, options)
    run_dir = make_run_directory(run.run_dir, options.run_dir)
    store_record = None if store is None else store.record()
    # JSON's round trip turns the generator's tuples into lists, which YAML's safe dumper takes.
    generator = json.loads(json.dumps(dataclasses.asdict(run.generator)))
    settings = {**arguments, "val_fraction": run.val_fraction, "fractaldb": generator, "fractaldb_store": store_record,
                "train2d": dataclasses.asdict(run.train)}
    _write(run_dir / CONFIG_FILE, lambda stream: yaml.safe_dump(settings, stream, sort_keys=False))
    checkpoint = run_dir / CHECKPOINT_FILE
    if store is None:
        result = pretrain_on_fractaldb(run.generator, build_model, run.train, run.val_fraction,
                                       checkpoint_path=checkpoint, architecture=run.architecture)
    else:
        result = pretrain_on_fractaldb_files(store.path, build_model, run.train, run.val_fraction,
                                             checkpoint_path=checkpoint, architecture=run.architecture)
    metrics = {"val_top1": result.top1, "num_classes": result.num_classes, "fractaldb_store": store_record,
               "history": [dataclasses.asdict(epoch) for epoch in result.history]}
    _write(run_dir / METRICS_FILE, lambda stream: stream.write(json_out.dumps(metrics, indent=2)))
    return FractalRunResult(training=result, store=store, checkpoint=checkpoint)
