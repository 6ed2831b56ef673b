"""Where a training run stands: what an optimisation step changes (network, optimizer, scheduler, gradient
scaler) and the run's progress (last epoch, best score, losses, metrics history), as one object that a
training checkpoint is written from and resumed into."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from image2point.checkpoint import TrainingCheckpoint, TrainingProgress, capture_rng_state, restore_rng_state
from image2point.errors import CheckpointError
from image2point.train.config import RunConfig, config_to_dict, upgrade_stored_head
from image2point.train.stored import upgrade_stored_config

# Config sections a resumed run must share with its checkpoint: they decide the network and what trains.
STRUCTURAL_SECTIONS = ("model", "finetune")


@dataclass
class RunState:
    network: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    # The last epoch trained (-1: none yet).
    epoch: int = -1
    best_score: float = -math.inf
    best_epoch: int = -1
    # Mean training loss of every epoch, and one metrics record per epoch (metrics.jsonl).
    losses: list[float] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def next_epoch(self) -> int:
        return self.epoch + 1

    def improves(self, score: float) -> bool:
        return score > self.best_score

    def checkpoint(self, config: RunConfig, class_names: list[str], in_features: int) -> TrainingCheckpoint:
        """The training checkpoint of this state (``last.pt``, ``best.pt``), the RNG state included."""
        progress = TrainingProgress(self.optimizer.state_dict(), self.scheduler.state_dict(), self.scaler.state_dict(),
                                    self.epoch, self.best_score, self.best_epoch, list(self.losses),
                                    list(self.history), capture_rng_state())
        return TrainingCheckpoint(self.network.state_dict(), config_to_dict(config), tuple(class_names), in_features,
                                  progress)

    def restore(self, checkpoint: TrainingCheckpoint, source: str | Path) -> None:
        """Continue from ``checkpoint`` (weights already checked against the network); a checkpoint that
        holds weights only is refused naming ``source``."""
        progress = checkpoint.resumable(source)
        self.network.load_state_dict(checkpoint.model)
        self.optimizer.load_state_dict(progress.optimizer)
        self.scheduler.load_state_dict(progress.scheduler)
        self.scaler.load_state_dict(progress.scaler)
        restore_rng_state(progress.rng)
        self.epoch, self.best_score, self.best_epoch = progress.epoch, progress.best_score, progress.best_epoch
        self.losses = list(progress.epoch_losses)
        self.history = list(progress.history)


def check_compatible(checkpoint: TrainingCheckpoint, config: RunConfig, path: Path) -> None:
    """A resumed run must rebuild the same network and the same trainable set."""
    saved, current = checkpoint.config, config_to_dict(config)
    # A checkpoint from an older image2point: compare with the behaviour it had (train/stored.py).
    saved = dict(upgrade_stored_head(upgrade_stored_config(dict(saved)))) if saved is not None else {}
    for section in STRUCTURAL_SECTIONS:
        if saved.get(section) != current[section]:
            raise CheckpointError(f"{path}: was trained with {section} settings {saved.get(section)}, "
                                  f"not {current[section]}")
