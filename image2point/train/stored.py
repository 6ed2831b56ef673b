"""Configs and weights stored by a checkpoint or an export, read the way the image2point that wrote them meant.

Every config written now holds every model key (``config_to_dict`` writes all fields), so a stored
config without ``model.shortcut`` was written before the strided-shortcut setting existed. Such a
config is *legacy*: its absent keys take the behaviour of the version that wrote it
(:data:`LEGACY_MODEL_DEFAULTS`: ``shortcut`` is ``center``), and where its weights no longer fit the
network (the decoder and heads follow the paper's Listings 4-6 since the same change) loading stops
with one line saying so, instead of a shape error.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from image2point.errors import CheckpointError, ConfigError
from image2point.inflate.shortcuts import LEGACY_STRIDED_SHORTCUT
from image2point.train.config import RunConfig, config_from_mapping

# Model keys an older image2point did not write, and the behaviour it had instead: centre-child
# shortcuts, a 256-wide mlp head (whose checkpoints still fit and load as they were) and a 64-wide
# network without backbone.
LEGACY_MODEL_DEFAULTS: dict[str, Any] = {"shortcut": LEGACY_STRIDED_SHORTCUT.value, "head_hidden": 256,
                                         "linear_width": 64}
# Model keys that shape what a checkpoint's weights were trained with but that a run config may leave
# at their defaults: evaluating a checkpoint takes them from the checkpoint's stored config.
TRAINED_MODEL_KEYS = tuple(LEGACY_MODEL_DEFAULTS)
# The key whose absence marks a config written before this layout.
LAYOUT_MARKER = "shortcut"


def is_legacy_config(mapping: object) -> bool:
    """Whether a stored config was written by an image2point older than the current network layout."""
    if not isinstance(mapping, Mapping):
        return False
    model = mapping.get("model", {})
    return not isinstance(model, Mapping) or LAYOUT_MARKER not in model


def upgrade_stored_config(mapping: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``mapping`` with the legacy model defaults filled in where a legacy config left them out."""
    upgraded = copy.deepcopy(dict(mapping))
    if not is_legacy_config(mapping):
        return upgraded
    model = dict(upgraded.get("model") or {})
    for key, value in LEGACY_MODEL_DEFAULTS.items():
        model.setdefault(key, value)
    upgraded["model"] = model
    return upgraded


def stored_run_config(mapping: object, source: str | Path) -> RunConfig:
    """The RunConfig stored in a checkpoint, upgraded if legacy and validated exactly as a config file is."""
    if not isinstance(mapping, Mapping):
        raise CheckpointError(f"{source}: its 'config' entry is a {type(mapping).__name__}, not a mapping")
    try:
        return config_from_mapping(upgrade_stored_config(mapping), f"{source} (stored config)")
    except ConfigError as error:
        raise CheckpointError(str(error)) from None


def older_layout_error(source: str | Path, key: str) -> CheckpointError:
    return CheckpointError(
        f"{source}: made by an older image2point (its config has no model.{LAYOUT_MARKER}), whose network layout "
        f"differs from this version's at {key!r} (decoders and heads now follow the paper's Listings 4-6), so "
        "its weights cannot load; retrain it, or use the image2point version that made it")


def check_weights(network: torch.nn.Module, weights: Mapping[str, object], source: str | Path,
                  legacy: bool = False) -> None:
    """CheckpointError naming the first key missing from, extra in, or shaped differently in ``weights``.

    With ``legacy`` (the weights come with a legacy config) a difference is reported as the older
    layout it is.
    """
    expected = network.state_dict()

    def mismatch(key: str, detail: str) -> CheckpointError:
        if legacy:
            return older_layout_error(source, key)
        return CheckpointError(f"{source}: weights do not fit the network its config builds: {detail}")

    for key, tensor in expected.items():
        if key not in weights:
            raise mismatch(key, f"missing {key!r} (shape {list(tensor.shape)})")
        given = weights[key]
        if not isinstance(given, torch.Tensor):
            raise CheckpointError(f"{source}: weights entry {key!r} is a {type(given).__name__}, not a tensor")
        if given.shape != tensor.shape:
            raise mismatch(key, f"{key!r} has shape {list(given.shape)} in the file but {list(tensor.shape)} "
                                "in the network")
    for key in weights:
        if key not in expected:
            raise mismatch(key, f"unexpected {key!r}")
