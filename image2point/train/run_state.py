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

from image2point.checkpoint import capture_rng_state, restore_rng_state
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

    def checkpoint(self, config: RunConfig, class_names: list[str], in_features: int) -> dict[str, Any]:
        """The training checkpoint of this state (``last.pt``, ``best.pt``), the RNG state included."""
        return {
            "class_names": list(class_names),
            "in_features": in_features,
            "model": self.network.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "epoch": self.epoch,
            "best_score": self.best_score,
            "best_epoch": self.best_epoch,
            "epoch_losses": list(self.losses),
            "history": list(self.history),
            "rng": capture_rng_state(),
            "config": config_to_dict(config),
        }

    def restore(self, checkpoint: dict[str, Any]) -> None:
        """Continue from ``checkpoint`` (weights already checked against the network)."""
        self.network.load_state_dict(checkpoint["model"])
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        self.scheduler.load_state_dict(checkpoint["scheduler"])
        self.scaler.load_state_dict(checkpoint["scaler"])
        restore_rng_state(checkpoint["rng"])
        self.epoch, self.best_score, self.best_epoch = checkpoint["epoch"], checkpoint["best_score"], checkpoint[
            "best_epoch"]
        self.losses = list(checkpoint["epoch_losses"])
        self.history = list(checkpoint["history"])


def check_compatible(checkpoint: dict[str, Any], config: RunConfig, path: Path) -> None:
    """A resumed run must rebuild the same network and the same trainable set."""
    saved, current = checkpoint.get("config", {}), config_to_dict(config)
    # A checkpoint from an older image2point: compare with the behaviour it had (train/stored.py).
    saved = dict(upgrade_stored_head(upgrade_stored_config(saved))) if isinstance(saved, dict) else {}
    for section in STRUCTURAL_SECTIONS:
        if saved.get(section) != current[section]:
            raise CheckpointError(f"{path}: was trained with {section} settings {saved.get(section)}, "
                                  f"not {current[section]}")
