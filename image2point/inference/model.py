"""A trained network, rebuilt from a training checkpoint (or an export's config and weights), in eval mode.

:func:`load_trained` reads ``last.pt`` / ``best.pt`` through the one safe loader
(:func:`image2point.checkpoint.load_training_checkpoint`), rebuilds the network from the config stored in
it and refuses weights that do not fit that network.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from image2point.checkpoint import load_training_checkpoint
from image2point.data.registry import InputFields, LabelScheme, dataset_entry
from image2point.errors import CheckpointError
from image2point.inference.labels import label_scheme
from image2point.models import TransferredNetwork
from image2point.sparse.backends import default_backend
from image2point.tasks import Task
from image2point.train.builders import build_model, task_of
from image2point.train.config import RunConfig
from image2point.train.distributed import resolve_device
from image2point.train.stored import check_weights, is_legacy_config, stored_run_config


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
    if config.model.family != "voxel":
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
