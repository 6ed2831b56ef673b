"""The FractalDB sources of :mod:`image2point.experiments.sources`: generating a FractalDB and pretraining on
it, in memory (small scale, ``make demo``'s) or rendered to disk and read per image (FractalDB-1k / -10k at
the paper's generator settings), the disk those renders need, and the dry run's line for them."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from image2point.errors import ConfigError

if TYPE_CHECKING:
    from torch import nn

    from image2point.experiments.sources import Pretraining, PretrainSettings
    from image2point.pretrain2d.fractaldb import FractalDBConfig
    from image2point.pretrain2d.train2d import Train2DResult

BYTES_PER_GB = 1e9


def fractaldb_config(settings: PretrainSettings) -> FractalDBConfig:
    """The FractalDB generator settings of a source's pretraining settings (those ``image2point pretrain2d``
    builds from the same numbers)."""
    from image2point.pretrain2d.fractal_runs import generator_config
    from image2point.pretrain2d.fractaldb import FractalDBConfig

    return generator_config(settings.fractal_categories, settings.fractal_instances,
                            settings.image_size or FractalDBConfig.image_size, settings.fractal_search_size,
                            settings.fractal_patch_size, settings.fractal_points)


def fractaldb_bytes(settings: PretrainSettings) -> int:
    """The disk a FractalDB rendered to disk takes, else the memory of its images (a byte per grayscale pixel)."""
    if settings.fractal_on_disk:
        from image2point.pretrain2d.fractal_store import StoreLayout

        return StoreLayout.for_config(fractaldb_config(settings), settings.seed).disk_bytes()
    side = settings.image_size or 0
    return settings.fractal_categories * settings.fractal_instances * side * side


def pretrain_fractaldb(pretraining: Pretraining, build_model: Callable[[int], nn.Module],
                       val_fraction: float) -> Train2DResult:
    """Generate a FractalDB and pretrain ``build_model(categories)`` on it into ``pretraining.checkpoint``, as
    ``make demo`` does (image2point/demo.py); with ``fractal_on_disk`` the images are rendered to (or resumed in)
    ``pretraining.render_dir`` and read one per item. ``val_fraction`` of every category is held out."""
    from image2point.pretrain2d.fractal_store import render_to_disk
    from image2point.pretrain2d.train2d import Train2DConfig, pretrain_on_fractaldb, pretrain_on_fractaldb_files

    settings = pretraining.settings
    config = settings.fractal_config()
    train_config = Train2DConfig(epochs=settings.epochs, batch_size=settings.batch_size,
                                 learning_rate=settings.lr, seed=settings.seed)
    if not settings.fractal_on_disk:
        return pretrain_on_fractaldb(config, build_model, train_config, val_fraction,
                                     checkpoint_path=pretraining.checkpoint, architecture=pretraining.arch)
    render_to_disk(config, settings.seed, pretraining.render_dir)
    return pretrain_on_fractaldb_files(pretraining.render_dir, build_model, train_config, val_fraction,
                                       checkpoint_path=pretraining.checkpoint, architecture=pretraining.arch)


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
