"""Offline 2D pretraining: FractalDB (in memory, or streamed to disk and read per image), real image datasets
(Tiny-ImageNet, image folders, MNIST), pixels as points for PointNet++, and a plain 2D classification loop."""

from image2point.pretrain2d.fractaldb import (
    IFS,
    Candidate,
    FractalDB,
    FractalDBConfig,
    InstanceVariant,
    chaos_game,
    filling_rate,
    instance_variants,
    iter_candidates,
    render_ifs,
    search_categories,
)
from image2point.pretrain2d.fractal_files import FractalDBFiles
from image2point.pretrain2d.fractal_store import render_to_disk
from image2point.pretrain2d.image_folders import MNIST, ImageFolder, TinyImageNet
from image2point.pretrain2d.pixels_as_points import PixelPointCloudDataset, PixelsAsPoints, image_to_points
from image2point.pretrain2d.real_images import pretrain_on_images
from image2point.pretrain2d.train2d import (
    EpochStats,
    Train2DConfig,
    Train2DResult,
    evaluate_top1,
    split_train_val,
    train_2d,
    train_step_2d,
)

__all__ = [
    "MNIST",
    "ImageFolder",
    "PixelPointCloudDataset",
    "PixelsAsPoints",
    "TinyImageNet",
    "image_to_points",
    "pretrain_on_images",
    "IFS",
    "Candidate",
    "EpochStats",
    "FractalDB",
    "FractalDBConfig",
    "FractalDBFiles",
    "InstanceVariant",
    "Train2DConfig",
    "Train2DResult",
    "chaos_game",
    "evaluate_top1",
    "filling_rate",
    "instance_variants",
    "iter_candidates",
    "render_ifs",
    "render_to_disk",
    "search_categories",
    "split_train_val",
    "train_2d",
    "train_step_2d",
]
