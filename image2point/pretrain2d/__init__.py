"""Offline 2D pretraining: the FractalDB synthetic image set and a plain 2D classification loop."""

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
    "IFS",
    "Candidate",
    "EpochStats",
    "FractalDB",
    "FractalDBConfig",
    "InstanceVariant",
    "Train2DConfig",
    "Train2DResult",
    "chaos_game",
    "evaluate_top1",
    "filling_rate",
    "instance_variants",
    "iter_candidates",
    "render_ifs",
    "search_categories",
    "split_train_val",
    "train_2d",
    "train_step_2d",
]
