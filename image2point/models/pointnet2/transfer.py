"""Transfer of pretrained PointNet++ weights into a network, part by part, with a report."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import torch

from image2point.errors import CheckpointError
from image2point.models.pointnet2.network import PointNet2Network

PARTS = ("input_layer", "backbone", "head")


@dataclass(frozen=True)
class PointNet2TransferReport:
    """What :func:`transfer_pointnet2_weights` did, key by key (model keys, without prefix).

    ``loaded``: model tensors copied from the checkpoint; ``initialised``: model tensors left as
    initialised; ``dropped``: checkpoint keys not used; ``reasons``: why, for each initialised or
    dropped key.
    """

    loaded: tuple[str, ...]
    initialised: tuple[str, ...]
    dropped: tuple[str, ...]
    reasons: Mapping[str, str] = field(default_factory=dict)

    @property
    def input_layer_reinitialised(self) -> bool:
        return any(key.startswith("input_layer.") for key in self.initialised)

    def summary(self) -> str:
        counts = (f"{len(self.loaded)} loaded, {len(self.initialised)} initialised, "
                  f"{len(self.dropped)} dropped")
        lines = [f"PointNet++ weight transfer: {counts}"]
        explained = dict.fromkeys(key for key in (*self.initialised, *self.dropped) if key in self.reasons)
        lines += [f"  {key}: {self.reasons[key]}" for key in explained]
        return "\n".join(lines)


def _part(key: str) -> str:
    return key.split(".", 1)[0]


def _shape_problems(source: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor]) -> dict[str, str]:
    problems = {}
    for key in sorted(set(source) | set(target)):
        if key not in target:
            problems[key] = "in the checkpoint, not in the model"
        elif key not in source:
            problems[key] = "in the model, not in the checkpoint"
        elif source[key].shape != target[key].shape:
            problems[key] = (f"checkpoint shape {tuple(source[key].shape)}, model shape "
                             f"{tuple(target[key].shape)}")
    return problems


def transfer_pointnet2_weights(state_dict: Mapping[str, torch.Tensor], model: PointNet2Network,
                               source_prefix: str = "") -> PointNet2TransferReport:
    """Copy a pretrained PointNet++ state dict into ``model`` by name, checking every shape.

    Keys are those of a :class:`PointNet2Network` after removing ``source_prefix`` (e.g.
    ``PixelsAsPoints.STATE_PREFIX`` for a checkpoint of image pretraining); keys without the prefix are
    dropped and reported. Then, part by part:

    * ``backbone``: every tensor must exist on both sides with the same shape, else
      :class:`CheckpointError` names each problem (a different architecture is never half loaded).
    * ``input_layer``: loaded when every tensor matches; otherwise (another input modality, e.g. RGB
      pixels to xyz only) the whole input layer keeps its fresh initialisation and each mismatch is
      reported.
    * ``head``: the pretraining task's output layer, never loaded: checkpoint keys dropped, model keys
      initialised.

    A key outside these parts raises :class:`CheckpointError`.
    """
    if not isinstance(model, PointNet2Network):
        raise TypeError(f"expected a PointNet2Network, got {type(model).__name__}")
    reasons: dict[str, str] = {}
    dropped: list[str] = []
    source: dict[str, dict[str, torch.Tensor]] = {part: {} for part in PARTS}
    for key, value in state_dict.items():
        if not key.startswith(source_prefix):
            dropped.append(key)
            reasons[key] = f"outside the prefix {source_prefix!r}"
            continue
        name = key[len(source_prefix):]
        if _part(name) not in PARTS:
            raise CheckpointError(f"checkpoint key {key!r} is not part of a PointNet++ network ({', '.join(PARTS)})")
        source[_part(name)][name] = value
    target_all = model.state_dict()
    target = {part: {k: v for k, v in target_all.items() if _part(k) == part} for part in PARTS}

    problems = _shape_problems(source["backbone"], target["backbone"])
    if problems:
        listed = "; ".join(f"{key}: {problem}" for key, problem in problems.items())
        raise CheckpointError(f"the checkpoint's backbone does not fit the model: {listed}")
    loaded = list(source["backbone"])
    input_problems = _shape_problems(source["input_layer"], target["input_layer"])
    if input_problems:
        initialised = list(target["input_layer"])
        dropped += list(source["input_layer"])
        for key in (*initialised, *source["input_layer"]):
            problem = input_problems.get(key, "the rest of the layer does not fit")
            reasons[key] = f"input layer re-initialised: {problem}"
    else:
        initialised = []
        loaded += list(source["input_layer"])
    initialised += list(target["head"])
    dropped += list(source["head"])
    for key in (*target["head"], *source["head"]):
        reasons[key] = "output layer of the pretraining task, never transferred"
    with torch.no_grad():
        for key in loaded:
            target_all[key].copy_(source[_part(key)][key])
    return PointNet2TransferReport(tuple(loaded), tuple(initialised), tuple(dropped), reasons)
