"""Honest resumes: a run continued from its checkpoint says what it ran.

``--resume`` compares the config given now with the one stored in ``last.pt``, key by key. Keys that
cannot change what the run computes (where it runs, how many threads and loader workers, how often it
logs) may differ freely. ``train.epochs`` may grow, which extends the run. Any other difference
(optimizer, schedule, data, seed, ...) is refused with one line naming the keys, unless the resume
says ``--resume-with-changes``; then the new config is written next to the run's ``config.yaml`` as
``config.resumed-at-epoch-N.yaml`` (N: the first epoch trained with it), so the run directory still
says what ran when. (The model and the trainable set cannot change at all: the weights would not fit.)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.optim.lr_scheduler import LambdaLR

from image2point.checkpoint import TrainingCheckpoint, TrainingProgress, load_training_checkpoint
from image2point.errors import ConfigError
from image2point.train.config import RunConfig, config_to_dict, save_config, upgrade_stored_head
from image2point.train.stored import upgrade_stored_config
from image2point.train.yaml_io import flatten

# Keys that do not change what a run computes (beyond the order of float additions: the device, the
# threads and deterministic algorithms change only that).
NEUTRAL_KEYS = frozenset({"train.device", "train.threads", "train.deterministic", "train.log_every", "train.run_dir",
                          "data.num_workers", "data.eval_batch_size"})
# Keys whose change is recorded but needs no --resume-with-changes: a longer run.
EXTENDING_KEYS = frozenset({"train.epochs"})
RESUMED_CONFIG = "config.resumed-at-epoch-{epoch}.yaml"
# Longest rendering of an old or new value in the refusal.
MAX_VALUE_CHARS = 40


@dataclass(frozen=True, eq=False)
class ResumePoint:
    """The last.pt a resume continues from, and the config keys changed since the run started."""

    path: Path
    checkpoint: TrainingCheckpoint
    changed: list[str]


def read_resume_point(path: Path, config: RunConfig, with_changes: bool, device: torch.device,
                      check_structure: Callable[[TrainingCheckpoint, RunConfig, Path], None]) -> ResumePoint:
    """Read ``path`` through the typed record (a missing or mistyped entry, such as the scheduler state or
    the epoch, is one line naming it), let ``check_structure`` refuse another network, then compare the
    rest of its config with ``config`` (:func:`check_resume`)."""
    checkpoint = load_training_checkpoint(path, map_location=device)
    progress = checkpoint.resumable(path)
    check_structure(checkpoint, config, path)
    stored = dict(upgrade_stored_head(upgrade_stored_config(dict(checkpoint.config)))) if checkpoint.config else {}
    return ResumePoint(path, checkpoint, check_resume(stored, config, path, with_changes, progress.epoch + 1))


def changed_keys(stored: Mapping[str, Any], config: RunConfig) -> list[str]:
    """Dotted keys whose value in ``config`` differs from ``stored`` (the checkpoint's config), neutral keys aside.

    Keys ``stored`` lacks (a config written before they existed) are not compared: what they were is unknown.
    """
    before, after = flatten(stored), flatten(config_to_dict(config))
    return sorted(key for key in before
                  if key not in NEUTRAL_KEYS and key in after and _plain(before[key]) != _plain(after[key]))


def check_resume(stored: Mapping[str, Any], config: RunConfig, checkpoint: Path, with_changes: bool,
                 next_epoch: int) -> list[str]:
    """The keys changed since the run started (neutral ones aside); ConfigError for changes not allowed.

    ``train.epochs`` may only grow past the epochs already trained; other changes need ``with_changes``.
    """
    changed = changed_keys(stored, config)
    if config.train.epochs < next_epoch:
        raise ConfigError(f"{checkpoint}: train.epochs={config.train.epochs}, but the run has trained {next_epoch} "
                          "epochs already")
    refused = [key for key in changed if key not in EXTENDING_KEYS]
    if refused and not with_changes:
        before, after = flatten(stored), flatten(config_to_dict(config))
        details = "; ".join(f"{key}: {_shown(before.get(key))} -> {_shown(after.get(key))}" for key in refused)
        raise ConfigError(f"{checkpoint}: the config differs from the run's in {', '.join(refused)} ({details}); "
                          "resume with the run's values, or pass --resume-with-changes to continue with these (they "
                          f"are then recorded in {RESUMED_CONFIG.format(epoch=next_epoch)})")
    return changed


def record_changes(run_dir: Path, config: RunConfig, next_epoch: int) -> Path:
    """Write the config the run continues with as ``config.resumed-at-epoch-N.yaml``; its path."""
    path = run_dir / RESUMED_CONFIG.format(epoch=next_epoch)
    save_config(config, path)
    return path


def continue_optimization(optimizer: torch.optim.Optimizer, scheduler: LambdaLR, progress: TrainingProgress,
                          changed: Sequence[str]) -> None:
    """Load the optimizer and scheduler states of ``progress`` into the ones built from the config resumed with.

    Unchanged, they continue exactly. With changed optim or schedule keys, the new hyperparameters (learning
    rate, momentum, ...) replace the stored ones from the current step on; an optimizer of another kind
    (optim.name) starts with fresh state, since Adam cannot read SGD's.
    """
    fresh_groups = [{key: value for key, value in group.items() if key != "params"} for group in optimizer.param_groups]
    fresh_base_lrs = list(scheduler.base_lrs)
    if "optim.name" not in changed:
        optimizer.load_state_dict(progress.optimizer)
    scheduler.load_state_dict(progress.scheduler)
    if any(key.startswith(("optim.", "schedule.")) for key in changed):
        for group, fresh in zip(optimizer.param_groups, fresh_groups, strict=True):
            group.update(fresh)
        scheduler.base_lrs = fresh_base_lrs
        for group, base_lr, factor in zip(optimizer.param_groups, fresh_base_lrs, scheduler.lr_lambdas, strict=True):
            group["lr"] = base_lr * factor(scheduler.last_epoch)


def _plain(value: Any) -> Any:
    """Lists and tuples compare equal when their items do (YAML has no tuples)."""
    return [_plain(item) for item in value] if isinstance(value, (list, tuple)) else value


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= MAX_VALUE_CHARS else text[:MAX_VALUE_CHARS] + "..."
