"""The FractalDB sources of :mod:`image2point.experiments.sources`: generating a FractalDB and pretraining on
it, in memory (small scale, ``make demo``'s) or rendered to disk and read per image (FractalDB-1k / -10k at
the paper's generator settings), the disk those renders need, and the dry run's line for them."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from image2point.errors import ConfigError

if TYPE_CHECKING:
    from image2point.experiments.sources import Pretraining

BYTES_PER_GB = 1e9


def pretrain_fractaldb(pretraining: Pretraining) -> float:
    """Generate a FractalDB and pretrain on it, as ``make demo`` does (image2point/demo.py); with
    ``fractal_on_disk`` the images are rendered to (or resumed in) ``pretraining.render_dir`` and read per item.
    Returns the validation top-1 in [0, 1]."""
    import yaml

    from image2point.checkpoint import atomic_write
    from image2point.experiments.sources import (
        CONFIG_FILE,
        FINISHED_FILE,
        FRACTALDB_VAL_FRACTION,
        pixel_model_factory,
    )
    from image2point.models2d import create_model_2d
    from image2point.pretrain2d.fractal_store import render_to_disk
    from image2point.pretrain2d.train2d import Train2DConfig, pretrain_on_fractaldb, pretrain_on_fractaldb_files

    settings = pretraining.settings
    config = settings.fractal_config()
    factory = pixel_model_factory(pretraining.arch)

    def build_model(num_classes: int):
        return factory(num_classes) if factory else create_model_2d(pretraining.arch, num_classes=num_classes)

    pretraining.run_dir.mkdir(parents=True, exist_ok=True)
    with atomic_write(pretraining.run_dir / CONFIG_FILE, "w") as stream:
        yaml.safe_dump({"source": pretraining.source, "arch": pretraining.arch,
                        "settings": dataclasses.asdict(settings)}, stream, sort_keys=False)
    train_config = Train2DConfig(epochs=settings.epochs, batch_size=settings.batch_size,
                                 learning_rate=settings.lr, seed=settings.seed)
    if settings.fractal_on_disk:
        render_to_disk(config, settings.seed, pretraining.render_dir)
        result = pretrain_on_fractaldb_files(pretraining.render_dir, build_model, train_config,
                                             FRACTALDB_VAL_FRACTION, checkpoint_path=pretraining.checkpoint,
                                             architecture=pretraining.arch)
    else:
        result = pretrain_on_fractaldb(config, build_model, train_config, FRACTALDB_VAL_FRACTION,
                                       checkpoint_path=pretraining.checkpoint, architecture=pretraining.arch)
    with atomic_write(pretraining.run_dir / FINISHED_FILE, "w") as stream:
        json.dump({"val_top1": result.top1, "num_classes": result.num_classes,
                   "history": [dataclasses.asdict(epoch) for epoch in result.history]}, stream, indent=2)
    return result.top1


def fractaldb_disk_needed(pretraining_list: Iterable[Pretraining]) -> dict[Path, int]:
    """Bytes each FractalDB render of the unfinished ``pretraining_list`` still needs on disk, by render
    directory (one render serves every architecture; finished categories are not counted again)."""
    from image2point.pretrain2d.fractal_store import StoreLayout, remaining_disk_bytes

    renders = {p.render_dir: p.settings for p in pretraining_list if p.settings.fractal_on_disk and not p.finished}
    return {render_dir: remaining_disk_bytes(StoreLayout.for_config(settings.fractal_config(), settings.seed),
                                             render_dir)
            for render_dir, settings in renders.items()}


def check_fractaldb_disk(pretraining_list: Iterable[Pretraining], out_dir: Path) -> None:
    """Before anything runs: :class:`ConfigError` naming ``out_dir`` when the FractalDB renders that the
    pending pretrainings make cannot fit on its disk."""
    from image2point.pretrain2d.fractal_store import free_disk_bytes

    needed = fractaldb_disk_needed(pretraining_list)
    free = free_disk_bytes(out_dir)
    if sum(needed.values()) > free:
        names = ", ".join(path.name for path in needed)
        raise ConfigError(f"--out-dir {out_dir}: the FractalDB renders ({names}) need "
                          f"{sum(needed.values()) / BYTES_PER_GB:.1f} GB of disk, {free / BYTES_PER_GB:.1f} GB free "
                          f"there")


def describe_fractaldb(pretraining: Pretraining) -> str:
    """The dry run's account of a FractalDB source: what is generated, and the disk (or memory) it takes."""
    settings = pretraining.settings
    size = settings.fractal_bytes() / BYTES_PER_GB
    if settings.fractal_on_disk:
        from image2point.pretrain2d.fractal_store import free_disk_bytes

        free = free_disk_bytes(pretraining.render_dir) / BYTES_PER_GB
        where = f"{size:.1f} GB of disk in {pretraining.render_dir} ({free:.1f} GB free there), read per image"
    else:
        where = f"{size:.1f} GB of images in memory"
    return (f"generated here: {settings.fractal_categories} categories x {settings.fractal_instances} images at "
            f"{settings.image_size} px (searched at {settings.fractal_search_size} px, "
            f"{settings.fractal_points or 'default'} points of {settings.fractal_patch_size} px per image), {where}")
