"""A trained network, rebuilt from a training checkpoint or an export, in eval mode.

:func:`load_trained` reads ``last.pt`` / ``best.pt`` through the one safe loader
(:func:`image2point.checkpoint.load_training_checkpoint`), :func:`load_exported` an export's
``NAME.safetensors`` and ``NAME.config.yaml`` (:mod:`image2point.checkpoint.exported`); both rebuild the
network from the stored config and refuse weights that do not fit it. :func:`load_model` picks one by
the file's extension.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from image2point.checkpoint import load_training_checkpoint
from image2point.checkpoint.exported import CONFIG_SUFFIX, WEIGHTS_SUFFIX, export_paths, read_exported_weights
from image2point.data.registry import InputFields, LabelScheme, dataset_entry
from image2point.errors import CheckpointError
from image2point.inference.labels import label_scheme
from image2point.models import TransferredNetwork
from image2point.sparse.backends import default_backend
from image2point.tasks import Task
from image2point.train.builders import build_model, task_of
from image2point.train.config import RunConfig, config_from_mapping, read_config_file
from image2point.train.distributed import resolve_device
from image2point.train.families import get_family
from image2point.train.stored import check_weights, is_legacy_config, stored_run_config, upgrade_stored_config


@dataclasses.dataclass(frozen=True, eq=False)
class TrainedModel:
    """A network in eval mode with everything needed to prepare its inputs and name its outputs."""

    network: TransferredNetwork
    config: RunConfig
    task: Task
    labels: LabelScheme
    in_features: int
    source: Path
    device: torch.device

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.labels.class_names

    @property
    def num_classes(self) -> int:
        return self.labels.num_classes

    @property
    def dataset(self) -> str:
        return self.config.data.name

    @property
    def inputs(self) -> InputFields:
        """The per-point features its dataset gives the network after xyz."""
        return dataset_entry(self.dataset).inputs

    @property
    def backend(self) -> str:
        return self.config.model.backend or default_backend(self.device)


def load_trained(checkpoint_path: str | Path, device: str | torch.device = "cpu") -> TrainedModel:
    """The network of a training checkpoint (weights, config, class names, input width) in eval mode.

    Raises CheckpointError when the file is unreadable or unsafe, lacks weights or a config, or holds
    weights that do not fit the network its config builds (the message names the first key or shape
    that differs).
    """
    path = Path(checkpoint_path)
    checkpoint = load_training_checkpoint(path)
    if checkpoint.config is None:
        raise CheckpointError(f"{path}: not a training checkpoint (no 'config' entry)")
    config = config_from_checkpoint(checkpoint.config, path)
    return assemble_model(config, checkpoint.model, path, class_names=checkpoint.class_names,
                          in_features=checkpoint.in_features, device=device, legacy=is_legacy_config(checkpoint.config))


def config_from_checkpoint(mapping: object, source: str | Path) -> RunConfig:
    """The RunConfig stored in a checkpoint, validated exactly as a config file is (a config stored by an
    older image2point reads with that version's behaviour, see :mod:`image2point.train.stored`)."""
    return stored_run_config(mapping, source)


def assemble_model(config: RunConfig, weights: Mapping[str, torch.Tensor], source: str | Path,
                   class_names: Sequence[str] | None = None, in_features: int | None = None,
                   original_ids: Sequence[int] | None = None,
                   device: str | torch.device = "cpu", legacy: bool = False) -> TrainedModel:
    """Build ``config``'s network, check ``weights`` fit it, load them; the model in eval mode.

    class_names and in_features default to what the config's dataset gives (its class list, read from
    ``data.root`` when the dataset is there, else the official one; xyz plus its feature channels).
    ``legacy``: the weights come with a config stored by an older image2point (a misfit is reported so).
    """
    source = Path(source)
    if not isinstance(weights, Mapping):
        raise CheckpointError(f"{source}: weights are a {type(weights).__name__}, not a mapping of tensors")
    if not get_family(config.model.family).voxel_input:
        # Tiling, recentring and the voxel -> point map are written for voxel networks.
        raise CheckpointError(f"{source}: predict runs voxel models; this is a model.family={config.model.family} "
                              "model (score it with `image2point eval`)")
    task = task_of(config.data)
    scheme = label_scheme(config.data, class_names, original_ids)
    features = in_features if in_features is not None else dataset_entry(config.data.name).inputs.in_features
    structural = dataclasses.replace(config, model=dataclasses.replace(config.model, pretrained=None))
    try:
        network = build_model(structural, features, scheme.num_classes, task).network
    except (ValueError, TypeError, KeyError) as error:
        raise CheckpointError(f"{source}: its config does not build a network: {error}") from None
    check_weights(network, weights, source, legacy)
    try:
        network.load_state_dict(weights)
    except (RuntimeError, TypeError, AttributeError) as error:
        first_line = str(error).strip().splitlines()[0]
        raise CheckpointError(f"{source}: weights do not load into the network: {first_line}") from None
    resolved = resolve_device(str(device))
    network.to(resolved).eval()
    return TrainedModel(network, config, task, scheme, features, source, resolved)


def load_exported(path: str | Path, device: str | torch.device = "cpu") -> TrainedModel:
    """The network of an export (``NAME.safetensors`` next to ``NAME.config.yaml``) in eval mode.

    Raises CheckpointError for a missing, corrupt or foreign weights file or weights that do not
    fit the config's network, ConfigError (naming the file) for an invalid config file.
    """
    weights_path, config_path = export_paths(path)
    if not weights_path.is_file():
        raise CheckpointError(f"{weights_path}: no such export file")
    if not config_path.is_file():
        raise CheckpointError(f"{config_path}: missing; an export is NAME{WEIGHTS_SUFFIX} plus NAME{CONFIG_SUFFIX}")
    exported = read_exported_weights(weights_path)
    header = exported.metadata
    # An export made by an older image2point reads with that version's behaviour (train/stored.py).
    stored = read_config_file(config_path)
    config = config_from_mapping(upgrade_stored_config(stored), str(config_path))
    model = assemble_model(config, exported.tensors, weights_path, class_names=header.class_names,
                           in_features=header.in_features, original_ids=header.original_ids, device=device,
                           legacy=is_legacy_config(stored))
    if model.task is not header.task:
        raise CheckpointError(f"{weights_path}: exported as {header.task}, but {config_path} builds {model.task}")
    return model


def load_model(path: str | Path, device: str | torch.device = "cpu") -> TrainedModel:
    """A training checkpoint (.pt) or an export (.safetensors), by extension."""
    if Path(path).suffix == WEIGHTS_SUFFIX:
        return load_exported(path, device)
    return load_trained(path, device)
