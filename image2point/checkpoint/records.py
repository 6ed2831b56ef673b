"""Typed checkpoints: what a training run and an inflation store, versioned, checked when read.

On disk a checkpoint stays a flat dict of tensors and plain values (so ``torch.load(weights_only=True)``
reads it), with a ``format_version`` entry. Checkpoints written before format versions existed have
none and read as version 1: the same entries, which map onto these records unchanged. Reading names
the file and the entry in one line when an entry is missing, unknown, of the wrong type, or the
version is newer than this image2point reads.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from image2point.checkpoint.files import load_checkpoint, save_checkpoint
from image2point.errors import CheckpointError

FORMAT_VERSION_KEY = "format_version"
# Checkpoints written before format versions existed.
UNVERSIONED = 1
TRAINING_FORMAT_VERSION = 2
INFLATED_FORMAT_VERSION = 2

# What resuming a run needs beyond the weights, each entry's type.
PROGRESS_TYPES: dict[str, type | tuple[type, ...]] = {
    "optimizer": dict, "scheduler": dict, "scaler": dict, "epoch": int, "best_score": (int, float),
    "best_epoch": int, "epoch_losses": list, "history": list, "rng": dict,
}
TRAINING_KEYS = ("model", "config", "class_names", "in_features", *PROGRESS_TYPES)
INFLATED_TYPES: dict[str, type] = {
    "state_dict": dict, "architecture": str, "transform": str, "learnable_t": str, "stride_mode": str,
    "normalize": bool, "shortcut": str, "torch_version": str,
}


@dataclass(frozen=True)
class TrainingProgress:
    """Where a run stood after an epoch: optimizer, scheduler and scaler states, scores, RNG state."""

    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    scaler: dict[str, Any]
    epoch: int
    best_score: float
    best_epoch: int
    epoch_losses: list[float]
    history: list[dict[str, Any]]
    rng: dict[str, Any]


@dataclass(frozen=True, eq=False)
class TrainingCheckpoint:
    """``last.pt`` / ``best.pt`` of a run: the weights, the run's config (a plain dict, see
    :func:`image2point.train.config.config_to_dict`), the class names and input width it was trained
    with, and its progress (None for a weights-only checkpoint, which predicts but cannot resume)."""

    model: Mapping[str, torch.Tensor]
    config: Mapping[str, Any] | None = None
    class_names: tuple[str, ...] | None = None
    in_features: int | None = None
    progress: TrainingProgress | None = None
    format_version: int = TRAINING_FORMAT_VERSION

    def to_dict(self) -> dict[str, Any]:
        """The flat dict written to disk (entries that are None are left out)."""
        # The weights go as given: a state dict's metadata (module versions) must reach load_state_dict.
        state: dict[str, Any] = {FORMAT_VERSION_KEY: TRAINING_FORMAT_VERSION, "model": self.model}
        if self.config is not None:
            state["config"] = self.config
        if self.class_names is not None:
            state["class_names"] = list(self.class_names)
        if self.in_features is not None:
            state["in_features"] = self.in_features
        if self.progress is not None:
            state.update({key: getattr(self.progress, key) for key in PROGRESS_TYPES})
        return state

    @classmethod
    def from_mapping(cls, state: Mapping[str, Any], source: str | Path) -> TrainingCheckpoint:
        version = _format_version(state, "training checkpoint", TRAINING_FORMAT_VERSION, source)
        _refuse_unknown(state, TRAINING_KEYS, "training checkpoint", source)
        if "model" not in state:
            raise CheckpointError(f"{source}: not a training checkpoint (no 'model' entry)")
        model = state["model"]
        if not isinstance(model, Mapping):
            raise CheckpointError(f"{source}: its 'model' entry is a {type(model).__name__}, not a mapping of tensors")
        config = state.get("config")
        if config is not None and not isinstance(config, Mapping):
            raise CheckpointError(f"{source}: its 'config' entry is a {type(config).__name__}, not a mapping")
        return cls(model, config, _class_names(state.get("class_names"), source),
                   _in_features(state.get("in_features"), source), _progress(state, source), version)

    def resumable(self, source: str | Path) -> TrainingProgress:
        """The progress to resume from; CheckpointError when the checkpoint holds weights only."""
        if self.progress is None:
            raise CheckpointError(f"{source}: holds weights only (no 'optimizer', 'epoch', ... entries), so a run "
                                  "cannot resume from it")
        return self.progress


@dataclass(frozen=True, eq=False)
class InflatedCheckpoint:
    """The 3D weights ``image2point inflate`` writes, and how the 2D network was inflated."""

    state_dict: Mapping[str, torch.Tensor]
    architecture: str
    transform: str
    learnable_t: str
    stride_mode: str
    normalize: bool
    shortcut: str
    torch_version: str = field(default_factory=lambda: str(torch.__version__))
    format_version: int = INFLATED_FORMAT_VERSION

    def to_dict(self) -> dict[str, Any]:
        return {FORMAT_VERSION_KEY: INFLATED_FORMAT_VERSION, **{key: getattr(self, key) for key in INFLATED_TYPES}}

    @classmethod
    def from_mapping(cls, state: Mapping[str, Any], source: str | Path) -> InflatedCheckpoint:
        version = _format_version(state, "inflated checkpoint", INFLATED_FORMAT_VERSION, source)
        _refuse_unknown(state, tuple(INFLATED_TYPES), "inflated checkpoint", source)
        values = {key: _typed_entry(state, key, expected, "inflated checkpoint", source)
                  for key, expected in INFLATED_TYPES.items()}
        return cls(**values, format_version=version)


def save_training_checkpoint(path: str | Path, checkpoint: TrainingCheckpoint) -> None:
    save_checkpoint(path, checkpoint.to_dict())


def load_training_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> TrainingCheckpoint:
    """The training checkpoint in ``path``, read safely (see :func:`image2point.checkpoint.read_torch_file`)."""
    return TrainingCheckpoint.from_mapping(load_checkpoint(path, map_location), path)


def save_inflated_checkpoint(path: str | Path, checkpoint: InflatedCheckpoint) -> None:
    save_checkpoint(path, checkpoint.to_dict())


def load_inflated_checkpoint(path: str | Path) -> InflatedCheckpoint:
    return InflatedCheckpoint.from_mapping(load_checkpoint(path), path)


def _format_version(state: Mapping[str, Any], kind: str, current: int, source: str | Path) -> int:
    version = state.get(FORMAT_VERSION_KEY, UNVERSIONED)
    if isinstance(version, bool) or not isinstance(version, int) or version < UNVERSIONED:
        raise CheckpointError(f"{source}: its {FORMAT_VERSION_KEY!r} entry {version!r} is not a format version")
    if version > current:
        raise CheckpointError(f"{source}: {kind} format version {version} comes from a newer image2point; this one "
                              f"reads versions up to {current}")
    return version


def _refuse_unknown(state: Mapping[str, Any], known: Sequence[str], kind: str, source: str | Path) -> None:
    unknown = [key for key in state if key != FORMAT_VERSION_KEY and key not in known]
    if unknown:
        raise CheckpointError(f"{source}: {kind} has an unknown entry {unknown[0]!r} (known: {', '.join(known)})")


def _typed_entry(state: Mapping[str, Any], key: str, expected: type | tuple[type, ...], kind: str,
                 source: str | Path) -> Any:
    if key not in state:
        raise CheckpointError(f"{source}: {kind} has no {key!r} entry")
    value = state[key]
    # bool is an int to Python, but never a valid epoch or count.
    if not isinstance(value, expected) or (isinstance(value, bool) and expected is not bool):
        names = " or ".join(kind.__name__ for kind in (expected if isinstance(expected, tuple) else (expected,)))
        raise CheckpointError(f"{source}: its {key!r} entry is of type {type(value).__name__}, expected {names}")
    return value


def _class_names(value: object, source: str | Path) -> tuple[str, ...] | None:
    if value is None:
        return None
    if not isinstance(value, (list, tuple)) or not all(isinstance(name, str) for name in value):
        raise CheckpointError(f"{source}: its 'class_names' entry is not a list of names")
    return tuple(value)


def _in_features(value: object, source: str | Path) -> int | None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise CheckpointError(f"{source}: its 'in_features' entry is not an integer")
    return value


def _progress(state: Mapping[str, Any], source: str | Path) -> TrainingProgress | None:
    present = [key for key in PROGRESS_TYPES if key in state]
    if not present:
        return None
    values = {key: _typed_entry(state, key, expected, "training checkpoint", source)
              for key, expected in PROGRESS_TYPES.items()}
    values["best_score"] = float(values["best_score"])
    return TrainingProgress(**values)
