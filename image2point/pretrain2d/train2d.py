"""A plain 2D image classification training loop, used to pretrain 2D ConvNets (e.g. on FractalDB)
whose checkpoints the 2D-to-3D converter then loads.

SGD with momentum and weight decay, a cosine learning rate stepped every iteration, light tensor
augmentation (random crop with padding, horizontal flip), top-1 on a validation set every epoch, and
an atomically written checkpoint after every epoch.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from image2point.checkpoint import save_checkpoint, seed_everything
from image2point.errors import ConfigError, DataError
from image2point.pretrain2d.fractaldb import FractalDB, FractalDBConfig

logger = logging.getLogger(__name__)

# Probability of flipping an image left-right.
FLIP_PROBABILITY = 0.5


@dataclass(frozen=True)
class Train2DConfig:
    """Hyperparameters of :func:`train_2d`."""

    epochs: int = 30
    batch_size: int = 64
    # Peak learning rate; the cosine schedule decays it to 0 over all iterations.
    learning_rate: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    # Zero padding (in normalised units: the dataset's mean colour) around each image before a
    # random crop back to its size; 0 disables the crop.
    crop_padding: int = 4
    horizontal_flip: bool = True
    # Seeds the shuffling and the augmentation; the model's initialisation is the caller's.
    seed: int = 0
    num_workers: int = 0
    eval_batch_size: int = 256
    device: str = "cpu"

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "eval_batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"Train2DConfig.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("crop_padding", "num_workers", "weight_decay"):
            if getattr(self, name) < 0:
                raise ConfigError(f"Train2DConfig.{name} must be >= 0, got {getattr(self, name)}")
        if not self.learning_rate > 0:
            raise ConfigError(f"Train2DConfig.learning_rate must be > 0, got {self.learning_rate}")
        if not 0 <= self.momentum < 1:
            raise ConfigError(f"Train2DConfig.momentum must be in [0, 1), got {self.momentum}")


@dataclass(frozen=True)
class EpochStats:
    epoch: int
    # Mean training loss over the epoch's samples.
    train_loss: float
    # Fraction of validation samples classified correctly, in [0, 1].
    val_top1: float


@dataclass(frozen=True)
class Train2DResult:
    num_classes: int
    # Validation top-1 of the last epoch, in [0, 1]; the weights in the checkpoint are these.
    top1: float
    history: tuple[EpochStats, ...]
    checkpoint_path: Path | None


# -- augmentation ------------------------------------------------------------------------------


def random_crop(images: torch.Tensor, padding: int, generator: torch.Generator) -> torch.Tensor:
    """Zero-pad a batch ``[B, C, H, W]`` by ``padding`` and crop each image back at its own random
    offset."""
    if padding == 0:
        return images
    batch, _, height, width = images.shape
    padded = F.pad(images, (padding, padding, padding, padding))
    row_offsets = torch.randint(0, 2 * padding + 1, (batch, 1), generator=generator)
    col_offsets = torch.randint(0, 2 * padding + 1, (batch, 1), generator=generator)
    rows = row_offsets + torch.arange(height)
    cols = col_offsets + torch.arange(width)
    batch_index = torch.arange(batch)[:, None, None]
    # Advanced indexing on dims 0, 2, 3 puts the channel dim last: [B, H, W, C].
    cropped = padded[batch_index, :, rows[:, :, None], cols[:, None, :]]
    return cropped.permute(0, 3, 1, 2).contiguous()


def random_horizontal_flip(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Flip each image of ``[B, C, H, W]`` left-right with probability ``FLIP_PROBABILITY``."""
    flip = torch.rand(images.shape[0], generator=generator) < FLIP_PROBABILITY
    return torch.where(flip[:, None, None, None], images.flip(-1), images)


def augment_batch(images: torch.Tensor, cfg: Train2DConfig, generator: torch.Generator) -> torch.Tensor:
    images = random_crop(images, cfg.crop_padding, generator)
    if cfg.horizontal_flip:
        images = random_horizontal_flip(images, generator)
    return images


# -- training and evaluation -------------------------------------------------------------------


def train_step_2d(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
) -> float:
    """One SGD iteration on a batch (cross-entropy); advances the per-iteration schedule and returns
    the batch's loss."""
    model.train()
    loss = F.cross_entropy(model(images), labels)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    scheduler.step()
    return loss.item()


@torch.no_grad()
def evaluate_top1(model: nn.Module, loader: DataLoader, device: torch.device) -> float:
    """Fraction of the loader's samples whose highest logit is their label."""
    model.eval()
    correct = 0
    total = 0
    for images, labels in loader:
        predictions = model(images.to(device)).argmax(dim=1)
        correct += int((predictions == labels.to(device)).sum())
        total += len(labels)
    return correct / total


@torch.no_grad()
def count_outputs(model: nn.Module, dataset: Dataset, device: torch.device) -> int:
    """Number of logits ``model`` gives for one sample of ``dataset``."""
    model.eval()
    image, _ = dataset[0]
    return int(model(image.unsqueeze(0).to(device)).shape[1])


def check_labels(labels: torch.Tensor, num_classes: int) -> None:
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise DataError(
            f"labels must lie in [0, {num_classes}) to match the model's {num_classes} outputs, got "
            f"[{int(labels.min())}, {int(labels.max())}]"
        )


def split_train_val(
    dataset: Dataset, val_fraction: float, seed: int, labels: Sequence[int] | torch.Tensor | None = None
) -> tuple[Subset, Subset]:
    """Random (train, validation) subsets of ``dataset`` with about ``val_fraction`` held out.

    With ``labels`` (one per sample) the split is stratified: each class gives the same fraction.
    """
    if not 0 < val_fraction < 1:
        raise ConfigError(f"val_fraction must be in (0, 1), got {val_fraction}")
    generator = torch.Generator().manual_seed(seed)
    if labels is None:
        groups = [torch.arange(len(dataset))]
    else:
        label_tensor = torch.as_tensor(labels)
        if label_tensor.shape != (len(dataset),):
            raise DataError(
                f"need one label per sample ({len(dataset)}), got shape {list(label_tensor.shape)}"
            )
        groups = [torch.nonzero(label_tensor == label).flatten() for label in label_tensor.unique()]
    train_indices: list[int] = []
    val_indices: list[int] = []
    for group in groups:
        shuffled = group[torch.randperm(len(group), generator=generator)]
        num_val = round(len(group) * val_fraction)
        val_indices += shuffled[:num_val].tolist()
        train_indices += shuffled[num_val:].tolist()
    if not train_indices or not val_indices:
        raise DataError(f"{len(dataset)} samples are too few to hold out a fraction {val_fraction}")
    return Subset(dataset, train_indices), Subset(dataset, val_indices)


def _make_loaders(train_set: Dataset, val_set: Dataset, cfg: Train2DConfig) -> tuple[DataLoader, DataLoader]:
    # A last batch of a single sample breaks BatchNorm in training mode, so incomplete batches are
    # dropped, unless the whole set is smaller than one batch.
    drop_last = len(train_set) >= cfg.batch_size
    train_loader = DataLoader(
        train_set,
        batch_size=cfg.batch_size,
        shuffle=True,
        drop_last=drop_last,
        num_workers=cfg.num_workers,
        generator=torch.Generator().manual_seed(cfg.seed),
    )
    val_loader = DataLoader(val_set, batch_size=cfg.eval_batch_size, num_workers=cfg.num_workers)
    return train_loader, val_loader


def _checkpoint(
    model: nn.Module, architecture: str, num_classes: int, stats: EpochStats, cfg: Train2DConfig
) -> dict[str, Any]:
    return {
        "state_dict": model.state_dict(),
        "architecture": architecture,
        "num_classes": num_classes,
        "top1": stats.val_top1,
        "epoch": stats.epoch,
        "config": dataclasses.asdict(cfg),
    }


def _train_epoch(
    model: nn.Module,
    loader: DataLoader,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    cfg: Train2DConfig,
    num_classes: int,
    generator: torch.Generator,
) -> float:
    """One pass over ``loader``; returns the mean loss per sample."""
    device = torch.device(cfg.device)
    loss_sum = 0.0
    seen = 0
    for images, labels in loader:
        check_labels(labels, num_classes)
        images = augment_batch(images, cfg, generator).to(device)
        loss = train_step_2d(model, images, labels.to(device), optimizer, scheduler)
        loss_sum += loss * len(labels)
        seen += len(labels)
    return loss_sum / seen


def train_2d(
    model: nn.Module,
    train_set: Dataset,
    val_set: Dataset,
    cfg: Train2DConfig,
    checkpoint_path: str | Path | None = None,
    architecture: str = "",
) -> Train2DResult:
    """Train ``model`` to classify ``train_set`` (items: image ``[C, H, W]``, int label).

    Measures top-1 on ``val_set`` after every epoch and, with ``checkpoint_path``, writes a checkpoint
    there after every epoch (atomically, so an interrupted run leaves the last complete epoch):
    ``{"state_dict", "architecture", "num_classes", "top1", "epoch", "config"}``. ``architecture``
    names the model for loaders (e.g. ``"resnet18"``); the number of classes is read off the model's
    output.
    """
    if len(train_set) == 0 or len(val_set) == 0:
        raise DataError(
            f"need non-empty training and validation sets, got {len(train_set)} and {len(val_set)}"
        )
    device = torch.device(cfg.device)
    model.to(device)
    num_classes = count_outputs(model, val_set, device)
    train_loader, val_loader = _make_loaders(train_set, val_set, cfg)
    optimizer = torch.optim.SGD(
        model.parameters(), lr=cfg.learning_rate, momentum=cfg.momentum, weight_decay=cfg.weight_decay
    )
    total_steps = max(cfg.epochs * len(train_loader), 1)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
    generator = torch.Generator().manual_seed(cfg.seed)
    history: list[EpochStats] = []
    for epoch in range(1, cfg.epochs + 1):
        train_loss = _train_epoch(model, train_loader, optimizer, scheduler, cfg, num_classes, generator)
        stats = EpochStats(
            epoch=epoch, train_loss=train_loss, val_top1=evaluate_top1(model, val_loader, device)
        )
        history.append(stats)
        logger.info(
            "epoch %d/%d: train loss %.4f, val top-1 %.4f", epoch, cfg.epochs, train_loss, stats.val_top1
        )
        if not math.isfinite(train_loss):
            raise ConfigError(f"training diverged at epoch {epoch} (loss {train_loss}); lower learning_rate")
        if checkpoint_path is not None:
            save_checkpoint(checkpoint_path, _checkpoint(model, architecture, num_classes, stats, cfg))
    return Train2DResult(
        num_classes=num_classes,
        top1=history[-1].val_top1,
        history=tuple(history),
        checkpoint_path=None if checkpoint_path is None else Path(checkpoint_path),
    )


def pretrain_on_fractaldb(
    fractal_config: FractalDBConfig,
    build_model: Callable[[int], nn.Module],
    cfg: Train2DConfig,
    val_fraction: float,
    checkpoint_path: str | Path | None = None,
    architecture: str = "",
) -> Train2DResult:
    """Generate a FractalDB with ``cfg.seed``, hold out ``val_fraction`` of every category, and train the
    model ``build_model(num_categories)`` on it with :func:`train_2d`; python, numpy and torch are
    seeded with ``cfg.seed`` first, so a run repeats exactly."""
    seed_everything(cfg.seed)
    dataset = FractalDB(fractal_config, seed=cfg.seed)
    train_set, val_set = split_train_val(dataset, val_fraction, cfg.seed, labels=dataset.labels)
    model = build_model(dataset.num_classes)
    return train_2d(model, train_set, val_set, cfg, checkpoint_path=checkpoint_path, architecture=architecture)


def pretrain_on_fractaldb_files(
    root: str | Path,
    build_model: Callable[[int], nn.Module],
    cfg: Train2DConfig,
    val_fraction: float,
    checkpoint_path: str | Path | None = None,
    architecture: str = "",
) -> Train2DResult:
    """:func:`pretrain_on_fractaldb` on a FractalDB rendered to disk under ``root``
    (:func:`~image2point.pretrain2d.fractal_store.render_to_disk`): images are read one per item, so memory
    does not grow with the database; ``val_fraction`` of every category is held out, drawn with ``cfg.seed``."""
    from image2point.pretrain2d.fractal_files import FractalDBFiles, category_split

    seed_everything(cfg.seed)
    dataset = FractalDBFiles(root)
    train_indices, val_indices = category_split(dataset.num_classes, dataset.instances_per_category,
                                                val_fraction, cfg.seed)
    model = build_model(dataset.num_classes)
    return train_2d(model, Subset(dataset, train_indices), Subset(dataset, val_indices), cfg,
                    checkpoint_path=checkpoint_path, architecture=architecture)
