"""Export a trained network as ``NAME.safetensors`` (weights) plus ``NAME.config.yaml`` (its RunConfig).

safetensors holds only tensors and a string header, so loading an export can never run code, and
other frameworks read the weights without torch's pickle format. The header's metadata records the
task, the class names, the input width, the dataset ids of the classes (SemanticKITTI) and which
tensors are tied: weights shared between modules (a shared learnable filter transform T appears in
every inflated conv) are stored once and restored as one tensor under every name. The config is a
plain config file: :func:`image2point.train.config.load_config` reads it, and ``image2point train``
accepts it. :func:`load_exported` rebuilds the network from the two files and refuses files that are
corrupt, not an export, or do not fit each other.

What cannot be exported to ONNX or TorchScript, and why:

- Sparse tensors are Python dataclasses (``SparseTensor``) carrying a per-batch ``CoordinateCache``.
  TorchScript cannot script modules whose inputs and outputs are such dataclasses with dict caches,
  and tracing would freeze one input's structure.
- Kernel maps are data-dependent: which input site feeds which output site is found at run time with
  ``torch.unique`` / ``searchsorted`` over the coordinates and cached per batch. The pairs, their
  counts and the strided levels' site counts change with every cloud; ONNX would need the gather /
  scatter loops over kernel offsets unrolled for one input's pair lists, so an exported graph would
  only be valid for the cloud it was traced with.
- The sparse convolutions are custom autograd functions (and, on CUDA, spconv kernels), which have
  no ONNX operators.
- Shapes are dynamic per input (sites per level, pairs per kernel offset), beyond what a static
  graph with a few symbolic dimensions expresses.

The exportable part is the weights: any runtime that re-implements submanifold and strided sparse
convolutions (spconv, MinkowskiEngine, TorchSparse) can load them by name from the safetensors file.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path

import torch

from image2point.errors import CheckpointError, DataError
from image2point.io.output import require_output_directory
from image2point.predict import TrainedModel, assemble_model, commit_outputs, load_trained
from image2point.train.config import config_from_mapping, read_config_file, save_config
from image2point.train.stored import is_legacy_config, upgrade_stored_config

SAFETENSORS_INSTALL_HINT = 'exporting needs safetensors: pip install "image2point[io]"'
WEIGHTS_SUFFIX = ".safetensors"
CONFIG_SUFFIX = ".config.yaml"
EXPORT_FORMAT = "image2point"
EXPORT_FORMAT_VERSION = "1"
METADATA_KEYS = ("format", "format_version", "task", "class_names", "in_features", "original_ids", "tied")


@dataclasses.dataclass(frozen=True)
class ExportedFiles:
    """The two files of an export, and the tensor names stored as aliases of another (alias, stored)."""

    weights: Path
    config: Path
    num_tensors: int
    tied: tuple[tuple[str, str], ...]


def export_paths(out: str | Path) -> tuple[Path, Path]:
    """(NAME.safetensors, NAME.config.yaml) for ``out`` given as NAME or NAME.safetensors."""
    out = Path(out)
    base = out.with_suffix("") if out.suffix == WEIGHTS_SUFFIX else out
    return base.with_name(base.name + WEIGHTS_SUFFIX), base.with_name(base.name + CONFIG_SUFFIX)


def export_checkpoint(checkpoint: str | Path | TrainedModel, out: str | Path, force: bool = False) -> ExportedFiles:
    """Write the network of ``checkpoint`` (a training checkpoint or a loaded model) as an export.

    Both files are written, atomically and together, only after the checkpoint was loaded and
    checked; existing files are replaced only with ``force``.
    """
    try:
        from safetensors.torch import save
    except ImportError as error:
        raise ImportError(SAFETENSORS_INSTALL_HINT) from error
    weights_path, config_path = export_paths(out)
    require_output_directory(weights_path.parent)
    for path in (weights_path, config_path):
        if path.exists() and not force:
            raise DataError(f"{path}: exists; pass --force to replace it")
    model = checkpoint if isinstance(checkpoint, TrainedModel) else load_trained(checkpoint)
    stored, tied = untie(model.network.state_dict())
    metadata = {
        "format": EXPORT_FORMAT,
        "format_version": EXPORT_FORMAT_VERSION,
        "task": model.task,
        "class_names": json.dumps(list(model.class_names)),
        "in_features": str(model.in_features),
        "original_ids": json.dumps(None if model.labels.original_ids is None else list(model.labels.original_ids)),
        "tied": json.dumps(dict(tied)),
    }
    data = save(stored, metadata=metadata)

    def write_weights(target: Path) -> None:
        target.write_bytes(data)

    commit_outputs({weights_path: write_weights, config_path: lambda target: save_config(model.config, target)})
    return ExportedFiles(weights_path, config_path, len(stored), tied)


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


def load_exported(path: str | Path, device: str | torch.device = "cpu") -> TrainedModel:
    """The network of an export (``NAME.safetensors`` next to ``NAME.config.yaml``) in eval mode.

    Raises CheckpointError for a missing, corrupt or foreign weights file or weights that do not
    fit the config's network, ConfigError (naming the file) for an invalid config file.
    """
    try:
        from safetensors import SafetensorError, safe_open
    except ImportError as error:
        raise ImportError(SAFETENSORS_INSTALL_HINT) from error
    weights_path, config_path = export_paths(path)
    if not weights_path.is_file():
        raise CheckpointError(f"{weights_path}: no such export file")
    if not config_path.is_file():
        raise CheckpointError(f"{config_path}: missing; an export is NAME{WEIGHTS_SUFFIX} plus NAME{CONFIG_SUFFIX}")
    try:
        with safe_open(str(weights_path), framework="pt", device="cpu") as handle:
            metadata = handle.metadata() or {}
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}
    except (SafetensorError, OSError, ValueError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"{weights_path}: unreadable (truncated or corrupt safetensors): {first_line}") from None
    header = ExportMetadata.parse(metadata, weights_path)
    for alias, name in header.tied.items():
        if name not in tensors:
            raise CheckpointError(f"{weights_path}: tied tensor {alias!r} refers to {name!r}, which is not stored")
        tensors[alias] = tensors[name]
    # An export made by an older image2point reads with that version's behaviour (train/stored.py).
    stored = read_config_file(config_path)
    config = config_from_mapping(upgrade_stored_config(stored), str(config_path))
    model = assemble_model(config, tensors, weights_path, class_names=header.class_names,
                           in_features=header.in_features, original_ids=header.original_ids, device=device,
                           legacy=is_legacy_config(stored))
    if model.task != header.task:
        raise CheckpointError(f"{weights_path}: exported as {header.task}, but {config_path} builds {model.task}")
    return model


@dataclasses.dataclass(frozen=True)
class ExportMetadata:
    """The safetensors header metadata of an export, parsed and checked."""

    task: str
    class_names: tuple[str, ...]
    in_features: int
    original_ids: tuple[int, ...] | None
    tied: Mapping[str, str]

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
        try:
            class_names = json.loads(metadata["class_names"])
            original_ids = json.loads(metadata["original_ids"])
            tied = json.loads(metadata["tied"])
            in_features = int(metadata["in_features"])
        except (json.JSONDecodeError, ValueError) as error:
            raise CheckpointError(f"{path}: malformed export metadata: {error}") from None
        if not isinstance(class_names, list) or not all(isinstance(name, str) for name in class_names):
            raise CheckpointError(f"{path}: export metadata 'class_names' is not a list of names")
        if original_ids is not None and (not isinstance(original_ids, list)
                                         or not all(isinstance(value, int) for value in original_ids)):
            raise CheckpointError(f"{path}: export metadata 'original_ids' is not a list of integers")
        if not isinstance(tied, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in tied.items()):
            raise CheckpointError(f"{path}: export metadata 'tied' is not a mapping of tensor names")
        return cls(metadata["task"], tuple(class_names), in_features,
                   None if original_ids is None else tuple(original_ids), dict(tied))


def load_model(path: str | Path, device: str | torch.device = "cpu") -> TrainedModel:
    """A training checkpoint (.pt) or an export (.safetensors), by extension."""
    if Path(path).suffix == WEIGHTS_SUFFIX:
        return load_exported(path, device)
    return load_trained(path, device)
