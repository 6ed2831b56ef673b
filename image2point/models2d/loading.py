"""Load 2D pretrained weights into a model by name, checking every key and shape.

The checkpoint is read with ``torch.load(weights_only=True)``, unwrapped from ``state_dict`` /
``model`` nesting, stripped of a prefix, renamed by an optional key map and matched to the model
by name. Anything that does not fit is an error unless the caller names it as allowed; whatever
was allowed stays as initialised and is listed in the returned ``LoadReport``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from image2point.checkpoint import read_torch_file
from image2point.errors import CheckpointError
from image2point.models2d.registry import (
    DATA_PARALLEL_PREFIX,
    PretrainedWeights,
    create_model_2d,
    get_known_weights,
)

StateDict = Mapping[str, torch.Tensor]
CheckpointSource = str | Path | Mapping[str, object]
KeyMap = Callable[[str], str | None]

# Entries that training scripts commonly wrap a state dict in, tried in this order.
NESTING_KEYS = ("state_dict", "model", "model_state_dict", "model_state")
# Checkpoints unwrap at most this deep; deeper nesting is not a layout anyone writes.
MAX_NESTING_DEPTH = 3
# BatchNorm's batch counter only matters for momentum=None; old checkpoints lack it and
# torch's own BatchNorm loader accepts that, so a missing counter keeps the model's value.
BATCH_COUNTER_SUFFIX = "num_batches_tracked"
IN_MEMORY_SOURCE = "<state dict>"
# Error messages show this many example keys of each problem.
EXAMPLE_KEYS = 5


@dataclass(frozen=True)
class ShapeMismatch:
    """A key present in both checkpoint and model with different shapes."""

    key: str
    checkpoint_shape: tuple[int, ...]
    model_shape: tuple[int, ...]

    def __str__(self) -> str:
        checkpoint, model = list(self.checkpoint_shape), list(self.model_shape)
        return f"{self.key}: checkpoint {checkpoint} vs model {model}"


@dataclass
class LoadReport:
    """What happened to every key: model keys are ``loaded``, ``missing``, ``shape_mismatched``
    or ``defaulted``; checkpoint keys are also ``unexpected`` or ``dropped`` (by the key map)."""

    source: str
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    shape_mismatched: list[ShapeMismatch] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    defaulted: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One line per non-empty category, with the keys of the problem categories."""
        lines = [f"{self.source}: loaded {len(self.loaded)} tensors"]
        if self.shape_mismatched:
            lines.append(
                f"  kept initialised, shape mismatch ({len(self.shape_mismatched)}): "
                + "; ".join(str(m) for m in self.shape_mismatched)
            )
        if self.missing:
            lines.append(
                f"  kept initialised, not in checkpoint ({len(self.missing)}): "
                + ", ".join(self.missing)
            )
        if self.unexpected:
            lines.append(
                f"  ignored, not in model ({len(self.unexpected)}): " + ", ".join(self.unexpected)
            )
        if self.dropped:
            lines.append(f"  dropped by key map: {len(self.dropped)}")
        if self.defaulted:
            lines.append(f"  BatchNorm batch counters absent, kept: {len(self.defaulted)}")
        return "\n".join(lines)


def match_state_dict(
    model_state: StateDict, checkpoint: StateDict, source: str = IN_MEMORY_SOURCE
) -> LoadReport:
    """Sort every key of ``model_state`` and ``checkpoint`` into a report; loads nothing."""
    report = LoadReport(source=source)
    for key, target in model_state.items():
        tensor = checkpoint.get(key)
        if tensor is None:
            if key.endswith(BATCH_COUNTER_SUFFIX):
                report.defaulted.append(key)
            else:
                report.missing.append(key)
        elif tensor.shape != target.shape:
            report.shape_mismatched.append(
                ShapeMismatch(key, tuple(tensor.shape), tuple(target.shape))
            )
        else:
            report.loaded.append(key)
    report.unexpected = [key for key in checkpoint if key not in model_state]
    return report


def load_pretrained_2d(
    model: nn.Module,
    path_or_state_dict: CheckpointSource | None = None,
    weights: PretrainedWeights | None = None,
    key_map: KeyMap | None = None,
    allow_shape_mismatch: Sequence[str] = (),
    allow_missing: Sequence[str] = (),
    allow_unexpected: Sequence[str] = (),
) -> LoadReport:
    """Load a checkpoint file or state dict into ``model`` and report what went where.

    ``weights`` describes the checkpoint layout (prefix, nesting key) and supplies the file when
    ``path_or_state_dict`` is None. Unless it names the nesting key, a ``state_dict``/``model``
    entry is unwrapped; a DataParallel ``module.`` prefix on every key is always stripped.
    ``key_map`` renames
    checkpoint keys to model keys (None drops a key); without it, ``weights.key_map`` applies.
    The ``allow_*`` arguments name keys or
    module prefixes (``"fc"`` covers ``fc.weight`` and ``fc.bias``) that may mismatch in shape,
    be absent from the checkpoint, or be absent from the model; they stay as initialised.

    Raises ``CheckpointError`` naming the source when the file cannot be read, holds no tensor
    dict, nothing matches, or any key mismatches without being allowed.
    """
    source, raw = _resolve_source(path_or_state_dict, weights)
    state = _unwrap(raw, None if weights is None else weights.state_dict_key, source)
    state = _strip_prefix(state, None if weights is None else weights.key_prefix, source)
    if key_map is None and weights is not None:
        key_map = weights.key_map
    state, dropped = _apply_key_map(state, key_map, source)
    model_state = model.state_dict()
    report = match_state_dict(model_state, state, source)
    report.dropped = dropped
    _refuse_unless_allowed(
        report,
        allow_shape_mismatch,
        allow_missing,
        allow_unexpected,
        type(model).__name__,
        list(model_state),
    )
    merged = dict(model_state)
    merged.update((key, state[key]) for key in report.loaded)
    model.load_state_dict(merged, strict=True)
    return report


def build_pretrained_2d(
    weights: PretrainedWeights | str,
    path: str | Path | None = None,
    **model_kwargs: object,
) -> tuple[nn.Module, LoadReport]:
    """Build the architecture of ``weights`` (a descriptor or its name) and load it, strictly.

    The model gets the descriptor's ``num_classes`` unless ``model_kwargs`` overrides it, in which
    case the classifier keeps its fresh initialisation and is reported as a shape mismatch.
    """
    if isinstance(weights, str):
        weights = get_known_weights(weights)
    kwargs = {"num_classes": weights.num_classes, **model_kwargs}
    model = create_model_2d(weights.architecture, **kwargs)
    classifier = getattr(model, "classifier_name", None)
    allowed = (classifier,) if classifier and kwargs["num_classes"] != weights.num_classes else ()
    report = load_pretrained_2d(model, path, weights, allow_shape_mismatch=allowed)
    return model, report


def read_checkpoint(path: str | Path) -> object:
    """The object in a torch file, read onto the CPU with :func:`image2point.checkpoint.read_torch_file`
    (``weights_only=True``); unreadable or unsafe files raise CheckpointError."""
    return read_torch_file(path)


def _resolve_source(
    path_or_state_dict: CheckpointSource | None, weights: PretrainedWeights | None
) -> tuple[str, object]:
    if path_or_state_dict is None:
        if weights is None:
            raise CheckpointError("no checkpoint given: pass a file, a state dict or weights")
        if weights.file is None:
            raise CheckpointError(
                f"pretrained weights {weights.name!r} have no local file; obtain them from "
                f"{weights.source} and pass the path"
            )
        path_or_state_dict = weights.file
    if isinstance(path_or_state_dict, Mapping):
        return IN_MEMORY_SOURCE, path_or_state_dict
    return str(path_or_state_dict), read_checkpoint(path_or_state_dict)


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint file: the file itself, or the state dict nested under one of
    ``NESTING_KEYS`` (``state_dict``, ``model``, ...); anything else raises CheckpointError."""
    return _unwrap(read_checkpoint(path), None, str(path))


def _unwrap(raw: object, state_dict_key: str | None, source: str) -> dict[str, torch.Tensor]:
    if not isinstance(raw, Mapping):
        raise CheckpointError(f"{source}: checkpoint holds a {type(raw).__name__}, not a dict")
    if state_dict_key is not None:
        if state_dict_key not in raw:
            raise CheckpointError(
                f"{source}: no {state_dict_key!r} entry; top-level keys: {_examples(list(raw))}"
            )
        raw = raw[state_dict_key]
        if not isinstance(raw, Mapping):
            raise CheckpointError(
                f"{source}: {state_dict_key!r} holds a {type(raw).__name__}, not a dict"
            )
    for _ in range(MAX_NESTING_DEPTH):
        if all(isinstance(value, torch.Tensor) for value in raw.values()):
            break
        nested = next((raw[key] for key in NESTING_KEYS if isinstance(raw.get(key), Mapping)), None)
        if nested is None:
            break
        raw = nested
    not_tensors = [str(key) for key, value in raw.items() if not isinstance(value, torch.Tensor)]
    if not_tensors:
        raise CheckpointError(
            f"{source}: not a state dict, these entries are not tensors: {_examples(not_tensors)}"
        )
    if not raw:
        raise CheckpointError(f"{source}: the state dict is empty")
    return {str(key): value for key, value in raw.items()}


def _strip_prefix(
    state: dict[str, torch.Tensor], prefix: str | None, source: str
) -> dict[str, torch.Tensor]:
    if prefix:
        state = _remove_prefix(state, prefix, source)
    # A DataParallel wrapper puts its prefix on every key, whatever the descriptor says.
    if all(key.startswith(DATA_PARALLEL_PREFIX) for key in state):
        state = _remove_prefix(state, DATA_PARALLEL_PREFIX, source)
    return state


def _remove_prefix(
    state: dict[str, torch.Tensor], prefix: str, source: str
) -> dict[str, torch.Tensor]:
    stripped = {key.removeprefix(prefix): value for key, value in state.items()}
    if len(stripped) != len(state):
        raise CheckpointError(f"{source}: keys collide once the prefix {prefix!r} is stripped")
    return stripped


def _apply_key_map(
    state: dict[str, torch.Tensor], key_map: KeyMap | None, source: str
) -> tuple[dict[str, torch.Tensor], list[str]]:
    if key_map is None:
        return state, []
    mapped: dict[str, torch.Tensor] = {}
    origin: dict[str, str] = {}
    dropped = []
    for key, value in state.items():
        target = key_map(key)
        if target is None:
            dropped.append(key)
            continue
        if target in mapped:
            raise CheckpointError(
                f"{source}: key map sends both {origin[target]!r} and {key!r} to {target!r}"
            )
        mapped[target] = value
        origin[target] = key
    return mapped, dropped


def _covered(key: str, names: Sequence[str]) -> bool:
    return any(key == name or key.startswith(name + ".") for name in names)


def _refuse_unless_allowed(
    report: LoadReport,
    allow_shape_mismatch: Sequence[str],
    allow_missing: Sequence[str],
    allow_unexpected: Sequence[str],
    model_name: str,
    model_keys: list[str],
) -> None:
    if not report.loaded:
        raise CheckpointError(
            f"{report.source}: no checkpoint key matches the model "
            f"(checkpoint keys: {_examples(report.unexpected)}; "
            f"{model_name} keys: {_examples(model_keys)})"
        )
    problems = []
    mismatched = [m for m in report.shape_mismatched if not _covered(m.key, allow_shape_mismatch)]
    if mismatched:
        shown = "; ".join(str(m) for m in mismatched[:EXAMPLE_KEYS])
        problems.append(f"{len(mismatched)} shape mismatches ({shown})")
    missing = [key for key in report.missing if not _covered(key, allow_missing)]
    if missing:
        problems.append(
            f"{len(missing)} model keys missing from the checkpoint ({_examples(missing)})"
        )
    unexpected = [key for key in report.unexpected if not _covered(key, allow_unexpected)]
    if unexpected:
        problems.append(
            f"{len(unexpected)} checkpoint keys not in the model ({_examples(unexpected)})"
        )
    if problems:
        raise CheckpointError(
            f"{report.source}: checkpoint does not fit {model_name}: "
            + "; ".join(problems)
            + ". Is it for another architecture or number of classes?"
        )


def _examples(keys: Sequence[str]) -> str:
    shown = ", ".join(keys[:EXAMPLE_KEYS])
    return shown + (", ..." if len(keys) > EXAMPLE_KEYS else "")
