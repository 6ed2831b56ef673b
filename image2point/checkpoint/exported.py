"""The weights file of an export: safetensors tensors plus a typed, versioned header.

An export is two files: ``NAME.safetensors`` (read and written here) and ``NAME.config.yaml``, the run's
config as a plain config file (:func:`export_paths`).

safetensors holds only tensors and a string header, so reading an export can never run code. The
header's metadata records the task, the class names, the input width, the dataset ids of the classes
(SemanticKITTI) and which tensors are tied: weights shared between modules (a shared learnable filter
transform T appears in every inflated conv) are stored once and restored as one tensor under every
name. The network itself is rebuilt by :mod:`image2point.inference.export`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

from image2point.errors import CheckpointError
from image2point.tasks import Task

SAFETENSORS_INSTALL_HINT = 'exporting needs safetensors: pip install "image2point[io]"'
WEIGHTS_SUFFIX = ".safetensors"
CONFIG_SUFFIX = ".config.yaml"
EXPORT_FORMAT = "image2point"
EXPORT_FORMAT_VERSION = "1"
METADATA_KEYS = ("format", "format_version", "task", "class_names", "in_features", "original_ids", "tied")


def export_paths(out: str | Path) -> tuple[Path, Path]:
    """(NAME.safetensors, NAME.config.yaml) of the export ``out``, given as NAME or NAME.safetensors."""
    out = Path(out)
    base = out.with_suffix("") if out.suffix == WEIGHTS_SUFFIX else out
    return base.with_name(base.name + WEIGHTS_SUFFIX), base.with_name(base.name + CONFIG_SUFFIX)


@dataclass(frozen=True)
class ExportMetadata:
    """The safetensors header metadata of an export, parsed and checked."""

    task: Task
    class_names: tuple[str, ...]
    in_features: int
    original_ids: tuple[int, ...] | None
    tied: Mapping[str, str]

    def encode(self) -> dict[str, str]:
        return {
            "format": EXPORT_FORMAT,
            "format_version": EXPORT_FORMAT_VERSION,
            "task": self.task.value,
            "class_names": json.dumps(list(self.class_names)),
            "in_features": str(self.in_features),
            "original_ids": json.dumps(None if self.original_ids is None else list(self.original_ids)),
            "tied": json.dumps(dict(self.tied)),
        }

    @classmethod
    def parse(cls, metadata: Mapping[str, str], path: Path) -> ExportMetadata:
        if metadata.get("format") != EXPORT_FORMAT:
            raise CheckpointError(f"{path}: not an image2point export (its metadata has no format {EXPORT_FORMAT!r})")
        if metadata.get("format_version") != EXPORT_FORMAT_VERSION:
            raise CheckpointError(f"{path}: export format version {metadata.get('format_version')!r}; this version "
                                  f"reads {EXPORT_FORMAT_VERSION!r}")
        missing = [key for key in METADATA_KEYS if key not in metadata]
        if missing:
            raise CheckpointError(f"{path}: export metadata lacks {', '.join(missing)}")
        unknown = [key for key in metadata if key not in METADATA_KEYS]
        if unknown:
            raise CheckpointError(f"{path}: unknown export metadata entry {unknown[0]!r} (known: {', '.join(METADATA_KEYS)})")
        try:
            class_names = json.loads(metadata["class_names"])
            original_ids = json.loads(metadata["original_ids"])
            tied = json.loads(metadata["tied"])
            in_features = int(metadata["in_features"])
        except (json.JSONDecodeError, ValueError) as error:
            raise CheckpointError(f"{path}: malformed export metadata: {error}") from None
        if metadata["task"] not in tuple(Task):
            raise CheckpointError(f"{path}: export metadata 'task' is {metadata['task']!r}, not one of "
                                  f"{', '.join(task.value for task in Task)}")
        if not isinstance(class_names, list) or not all(isinstance(name, str) for name in class_names):
            raise CheckpointError(f"{path}: export metadata 'class_names' is not a list of names")
        if original_ids is not None and (not isinstance(original_ids, list)
                                         or not all(isinstance(value, int) for value in original_ids)):
            raise CheckpointError(f"{path}: export metadata 'original_ids' is not a list of integers")
        if not isinstance(tied, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in tied.items()):
            raise CheckpointError(f"{path}: export metadata 'tied' is not a mapping of tensor names")
        return cls(Task(metadata["task"]), tuple(class_names), in_features,
                   None if original_ids is None else tuple(original_ids), dict(tied))


@dataclass(frozen=True, eq=False)
class ExportedWeights:
    """An export's tensors by name (tied names share one tensor again) and its header."""

    tensors: dict[str, torch.Tensor]
    metadata: ExportMetadata


def untie(state: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], tuple[tuple[str, str], ...]]:
    """Tensors to store (each storage once, contiguous, owning its memory) and (alias, stored name) pairs.

    Two names are tied when they view the same memory with the same shape and strides; the first
    name in ``state`` order is stored.
    """
    stored: dict[str, torch.Tensor] = {}
    first_of: dict[tuple, str] = {}
    tied = []
    for name, tensor in state.items():
        tensor = tensor.detach().cpu()
        key = (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape), tensor.stride(),
               tensor.dtype)
        if tensor.numel() and key in first_of:
            tied.append((name, first_of[key]))
            continue
        first_of[key] = name
        stored[name] = tensor.contiguous().clone()
    return stored, tuple(tied)


def encode_exported_weights(state: Mapping[str, torch.Tensor], task: Task, class_names: tuple[str, ...],
                            in_features: int, original_ids: tuple[int, ...] | None) -> tuple[bytes, ExportMetadata, int]:
    """The safetensors bytes of ``state`` with its header, the header, and how many tensors it stores."""
    try:
        from safetensors.torch import save
    except ImportError as error:
        raise ImportError(SAFETENSORS_INSTALL_HINT) from error
    stored, tied = untie(state)
    metadata = ExportMetadata(task, class_names, in_features, original_ids, dict(tied))
    return save(stored, metadata=metadata.encode()), metadata, len(stored)


def read_exported_weights(path: Path) -> ExportedWeights:
    """The tensors and header of an export's weights file; CheckpointError for a missing, corrupt or
    foreign file."""
    try:
        from safetensors import SafetensorError, safe_open
    except ImportError as error:
        raise ImportError(SAFETENSORS_INSTALL_HINT) from error
    if not path.is_file():
        raise CheckpointError(f"{path}: no such export file")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            raw_metadata = handle.metadata() or {}
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}
    except (SafetensorError, OSError, ValueError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"{path}: unreadable (truncated or corrupt safetensors): {first_line}") from None
    metadata = ExportMetadata.parse(raw_metadata, path)
    for alias, name in metadata.tied.items():
        if name not in tensors:
            raise CheckpointError(f"{path}: tied tensor {alias!r} refers to {name!r}, which is not stored")
        tensors[alias] = tensors[name]
    return ExportedWeights(tensors, metadata)
