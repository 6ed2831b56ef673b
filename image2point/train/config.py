"""Typed run configurations: nested dataclasses filled from a YAML file and ``key=value`` overrides.

A schema is any dataclass whose fields are plain types (int, float, bool, str, Path), ``Literal``,
``Enum`` (written as its members' values),
``Optional``/unions, ``list``/``tuple``/``dict`` of those, or nested schema dataclasses. A YAML file
may set any subset of the fields; overrides use dotted keys (``optim.lr=0.01``) and YAML values
(``model.pretrained=null``; lists and tuples as ``[1,2]``). Every value is checked against the
field's type hint, and every error names its source (the file, or the override) and the dotted key.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import enum
import types
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path, PurePath
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

import yaml

from image2point.checkpoint import atomic_write
from image2point.data.pipelines import ModelNet40Pipeline, S3DISPipeline, SemanticKITTIPipeline
from image2point.data.registry import dataset_names
from image2point.errors import ConfigError
from image2point.inflate.transforms import TRANSFORM_NAMES, unknown_transform_message
from image2point.inflate.shortcuts import DEFAULT_STRIDED_SHORTCUT, StridedShortcut
from image2point.sparse.tensor import BACKENDS

SchemaT = TypeVar("SchemaT")

# The three model families of the paper: inflated sparse 3D ConvNets on voxels, PointNet++ on raw
# points, and a 2D ConvNet (HRNet) on LiDAR range images.
ModelFamily = Literal["voxel", "pointnet2", "range"]


class FieldValueError(ValueError):
    """A field value of the right type outside its valid range, raised by a schema's ``__post_init__``."""

    def __init__(self, field_name: str, message: str):
        self.field_name = field_name
        super().__init__(message)


def _require(condition: bool, field_name: str, requirement: str, value: Any) -> None:
    """Range checks for ``__post_init__``; the loader prefixes the section and the source."""
    if not condition:
        raise FieldValueError(field_name, f"{field_name} must be {requirement}, got {value!r}")


@dataclasses.dataclass
class RangeImageConfig:
    """Spherical projection of LiDAR scans for ``model.family=range`` (defaults: the HDL-64E of KITTI)."""

    height: int = 64
    width: int = 2048
    fov_up_deg: float = 3.0
    fov_down_deg: float = -25.0

    def __post_init__(self) -> None:
        _require(self.height >= 1, "height", "at least 1", self.height)
        _require(self.width >= 1, "width", "at least 1", self.width)
        _require(self.fov_up_deg > self.fov_down_deg, "fov_up_deg", f"above fov_down_deg ({self.fov_down_deg})",
                 self.fov_up_deg)


@dataclasses.dataclass
class DataConfig:
    # A registered dataset (image2point.data.registry: modelnet40, s3dis, semantickitti, procedural_shapes, ...).
    name: str = "procedural_shapes"
    root: str | None = None
    voxel_size: float = 0.05
    # Points sampled per cloud; None keeps every point.
    num_points: int | None = None
    # Fraction of the training set kept (the paper's data-efficiency study), drawn with subset_seed.
    fraction: float = 1.0
    # Training samples kept per class (few-shot); None keeps all.
    per_class: int | None = None
    subset_seed: int = 0
    # Samples per process and step; the batch of one optimiser step is world size x batch_size.
    batch_size: int = 32
    # The step batch (world size x batch_size) the recipe's numbers were tuned for, e.g. the paper's
    # 2 GPUs x 3 on S3DIS; training warns when the run's differs. None: no check.
    effective_batch_size: int | None = None
    # None: the training batch size.
    eval_batch_size: int | None = None
    num_workers: int = 2
    augment: bool = True
    # Split the metrics are computed on: "test" (ModelNet40, S3DIS area), "val" (SemanticKITTI 08).
    eval_split: str = "test"
    # Procedural datasets: samples per split and the generator seed.
    train_samples: int = 1000
    eval_samples: int = 200
    dataset_seed: int = 0
    # SemanticKITTI: explicit scans ("00/000000") instead of the standard sequence splits.
    train_scans: list[str] | None = None
    eval_scans: list[str] | None = None
    # S3DIS: the held-out area (the paper tests on area 5).
    test_area: int = 5
    # model.family=range: how scans become range images.
    range_image: RangeImageConfig = dataclasses.field(default_factory=RangeImageConfig)
    # Each dataset's augmentation and preprocessing, defaults the authors' (image2point.data.pipelines);
    # procedural shapes use modelnet40's, procedural scenes s3dis's augmentation.
    modelnet40: ModelNet40Pipeline = dataclasses.field(default_factory=ModelNet40Pipeline)
    s3dis: S3DISPipeline = dataclasses.field(default_factory=S3DISPipeline)
    semantickitti: SemanticKITTIPipeline = dataclasses.field(default_factory=SemanticKITTIPipeline)

    def __post_init__(self) -> None:
        known = dataset_names()
        _require(self.name in known, "name", "one of " + ", ".join(repr(name) for name in known), self.name)
        _require(self.train_samples >= 1, "train_samples", "at least 1", self.train_samples)
        _require(self.eval_samples >= 1, "eval_samples", "at least 1", self.eval_samples)
        _require(self.voxel_size > 0, "voxel_size", "positive", self.voxel_size)
        _require(self.num_points is None or self.num_points >= 1, "num_points", "at least 1 or null", self.num_points)
        _require(0 < self.fraction <= 1, "fraction", "in (0, 1]", self.fraction)
        _require(self.per_class is None or self.per_class >= 1, "per_class", "at least 1 or null", self.per_class)
        _require(self.batch_size >= 1, "batch_size", "at least 1", self.batch_size)
        _require(self.effective_batch_size is None or self.effective_batch_size >= 1, "effective_batch_size",
                 "at least 1 or null", self.effective_batch_size)
        _require(
            self.eval_batch_size is None or self.eval_batch_size >= 1,
            "eval_batch_size",
            "at least 1 or null",
            self.eval_batch_size,
        )
        _require(self.num_workers >= 0, "num_workers", "at least 0", self.num_workers)


@dataclasses.dataclass
class ModelConfig:
    # voxel: ``backbone`` is a 2D ConvNet inflated to 3D; pointnet2: ``backbone`` is pointnet2_ssg and
    # ``pretrained`` a PointNet++ checkpoint (e.g. pretrained on images, each pixel a point); range:
    # ``backbone`` is an HRNet (hrnet_w18, hrnet_w48) run on range images.
    family: ModelFamily = "voxel"
    backbone: str = "resnet18"
    # A checkpoint path or a registered weight name; None starts from random weights.
    pretrained: str | None = None
    # How 2D kernels become 3D kernels: a name of image2point.inflate.transforms ("default" is the
    # authors' default; copy_x, copy_y, copy_z, ..._transposed).
    transform: str = "default"
    # Divide T by the kernel size, so a field constant along the copy axis gives the 2D response.
    normalize_t: bool = False
    input_layer: Literal["conv3", "linear"] = "conv3"
    head: Literal["mlp", "linear", "unet"] = "mlp"
    # Hidden width of the mlp classification head (Listing 3: 1024; models.heads.HEAD_HIDDEN_CHANNELS).
    head_hidden: int = 1024
    # Channels of the network without a backbone, backbone=none (Listing 1: ResNet-18's deepest width,
    # 512; models.networks.LINEAR_NETWORK_WIDTH).
    linear_width: int = 512
    stride_mode: Literal["floor", "window"] = "floor"
    # How strided 1×1 shortcuts (and CIFAR option-A subsamples) read the finer level: "center" (the
    # child at 2q, as in 2D), "children_sum" (the authors' 2×2×2 kernel), "children_mean" (that sum
    # over the occupied children). See image2point/inflate/shortcuts.py and docs/fidelity.md.
    shortcut: StridedShortcut = DEFAULT_STRIDED_SHORTCUT
    # Sparse convolution backend; None picks the best one installed.
    backend: str | None = None
    # family=range: score each point by a kNN vote over its range-image neighbours (RangeNet++)
    # instead of its own pixel's prediction.
    knn_refine: bool = False

    def __post_init__(self) -> None:
        _require(
            self.backend is None or self.backend in BACKENDS, "backend", f"one of {BACKENDS} or null", self.backend
        )
        if self.transform not in TRANSFORM_NAMES:
            raise FieldValueError("transform", f"transform: {unknown_transform_message(self.transform)}")
        _require(self.head_hidden >= 1, "head_hidden", "at least 1", self.head_hidden)
        _require(self.linear_width >= 1, "linear_width", "at least 1", self.linear_width)


@dataclasses.dataclass
class FinetuneConfig:
    # Which parameters train: input/output layers only ("io"), plus BN statistics ("io_stats") or
    # all BN parameters ("io_bn"), everything ("all"), from scratch ("scratch"), or only the
    # inflation parameters ("t").
    scheme: Literal["io", "io_stats", "io_bn", "all", "scratch", "t"] = "all"
    learnable_t: Literal["none", "shared", "per_conv"] = "none"
    t_init: Literal["default", "random"] = "default"


@dataclasses.dataclass
class OptimConfig:
    name: Literal["sgd", "adam"] = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    # Nesterov momentum (sgd only), as the authors' S3DIS and SemanticKITTI configs use.
    nesterov: bool = False

    def __post_init__(self) -> None:
        _require(self.lr > 0, "lr", "positive", self.lr)
        _require(0 <= self.momentum < 1, "momentum", "in [0, 1)", self.momentum)
        _require(self.weight_decay >= 0, "weight_decay", "at least 0", self.weight_decay)
        _require(not self.nesterov or self.name == "sgd", "nesterov", "false unless name is sgd", self.nesterov)
        _require(not self.nesterov or self.momentum > 0, "nesterov", "false when momentum is 0", self.nesterov)


@dataclasses.dataclass
class ScheduleConfig:
    name: Literal["cosine", "poly", "warmup_cosine", "constant"] = "cosine"
    # Optimiser steps of each process, as the authors' warm-up counts them (SPVNAS's
    # cosine_schedule_with_warmup: 1000 // world size, 250 on their 4 GPUs).
    warmup_iters: int = 0
    power: float = 0.9
    # Learning rate reached at the last iteration by the decaying schedules.
    min_lr: float = 0.0

    def __post_init__(self) -> None:
        _require(self.warmup_iters >= 0, "warmup_iters", "at least 0", self.warmup_iters)
        _require(self.power > 0, "power", "positive", self.power)
        _require(self.min_lr >= 0, "min_lr", "at least 0", self.min_lr)


@dataclasses.dataclass
class TrainConfig:
    epochs: int = 300
    seed: int = 0
    amp: Literal["none", "bf16", "fp16"] = "none"
    # "auto" (CUDA when available), "cpu", "cuda" or "cuda:N".
    device: str = "auto"
    eval_every: int = 1
    log_every: int = 10
    run_dir: str = "runs/default"
    # Caps the iterations of each epoch (quick runs); None runs the whole loader.
    max_steps_per_epoch: int | None = None
    # Intra-op threads of each training process; None: the cores per process left after the loader
    # workers (at least 1). More threads than cores makes every op wait on a busy core.
    threads: int | None = None

    def __post_init__(self) -> None:
        _require(self.epochs >= 1, "epochs", "at least 1", self.epochs)
        _require(self.threads is None or self.threads >= 1, "threads", "at least 1 or null", self.threads)
        _require(self.eval_every >= 1, "eval_every", "at least 1", self.eval_every)
        _require(self.log_every >= 1, "log_every", "at least 1", self.log_every)
        _require(
            self.max_steps_per_epoch is None or self.max_steps_per_epoch >= 1,
            "max_steps_per_epoch",
            "at least 1 or null",
            self.max_steps_per_epoch,
        )


@dataclasses.dataclass
class RunConfig:
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    finetune: FinetuneConfig = dataclasses.field(default_factory=FinetuneConfig)
    optim: OptimConfig = dataclasses.field(default_factory=OptimConfig)
    schedule: ScheduleConfig = dataclasses.field(default_factory=ScheduleConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)


def load_config(
    path: str | Path | None,
    overrides: Sequence[str] = (),
    schema: type[SchemaT] = RunConfig,  # type: ignore[assignment]
) -> SchemaT:
    """Build ``schema`` from its defaults, updated by the YAML file at ``path`` (if any), then ``overrides`` in order.

    Overrides are merged before the dataclasses are built, so they can also supply fields the schema
    leaves without a default.
    """
    if isinstance(overrides, str):
        raise TypeError("overrides must be a sequence of 'key=value' strings, not a single string")
    if path is None:
        source, mapping = f"{schema.__name__} defaults", {}
    else:
        source, mapping = str(path), copy.deepcopy(dict(_read_yaml_mapping(Path(path))))
    for override in overrides:
        parts, value = _parse_override(schema, override)
        node = mapping
        for part in parts[:-1]:
            # A missing, null or scalar entry at a section is superseded by the override's keys.
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node[parts[-1]] = value
    return _build(schema, mapping, source, "", None)


def apply_override(config: SchemaT, override: str) -> SchemaT:
    """Return a copy of ``config`` with one ``dotted.key=value`` override applied."""
    parts, value = _parse_override(type(config), override)
    nested: Any = value
    for part in reversed(parts):
        nested = {part: nested}
    return _build(type(config), nested, value.source, "", config)


@dataclasses.dataclass(frozen=True)
class _OverrideValue:
    """A parsed override value, carrying its override so errors found while building name it."""

    value: Any
    source: str


def _parse_override(schema: type, override: str) -> tuple[list[str], _OverrideValue]:
    """Split ``dotted.key=value``, check the key exists in ``schema`` and parse the value for its field."""
    source = f"override {override!r}"
    key, separator, raw_value = override.partition("=")
    key = key.strip()
    if not separator or not key:
        raise ConfigError(f"{source}: expected dotted.key=value")
    parts = key.split(".")
    if not all(parts):
        raise ConfigError(f"{source}: key {key!r} has an empty part")
    hint = _resolve_hint(schema, parts, source)
    value = _parse_override_value(raw_value, hint, source)
    if value is not None and _schema_in(hint) is not None:
        raise ConfigError(f"{source}: {key!r} is a section; set its keys one by one ({key}.<key>=value)")
    return parts, _OverrideValue(value, source)


def config_to_dict(config: Any) -> dict[str, Any]:
    """Plain nested dicts, lists and scalars (what YAML and JSON can hold) in field order."""
    if not dataclasses.is_dataclass(config) or isinstance(config, type):
        raise TypeError(f"expected a dataclass instance, got {type(config).__name__}")
    return {field.name: _to_plain(getattr(config, field.name)) for field in dataclasses.fields(config)}


def save_config(config: Any, path: str | Path) -> None:
    """Write ``config`` as YAML atomically; :func:`load_config` reads it back to an equal config."""
    text = yaml.safe_dump(config_to_dict(config), sort_keys=False, default_flow_style=False)
    try:
        with atomic_write(path, "w") as handle:
            handle.write(text)
    except OSError as error:
        raise ConfigError(f"{path}: cannot write config: {error.strerror or error}") from error


def _to_plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return config_to_dict(value)
    if isinstance(value, (list, tuple)):
        return [_to_plain(item) for item in value]
    if isinstance(value, Mapping):
        return {key: _to_plain(item) for key, item in value.items()}
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, enum.Enum):
        return value.value
    return value


def read_config_file(path: str | Path) -> Mapping[Any, Any]:
    """The key mapping of a YAML config file, not yet validated (errors name the file)."""
    return _read_yaml_mapping(Path(path))


def _read_yaml_mapping(path: Path) -> Mapping[Any, Any]:
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file")
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: cannot read config: {error}") from error
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: invalid YAML: {' '.join(str(error).split())}") from error
    if loaded is None:
        return {}
    if not isinstance(loaded, Mapping):
        raise ConfigError(f"{path}: expected a mapping of keys at the top level, got {type(loaded).__name__}")
    return loaded


def _field_hints(schema: type) -> dict[str, Any]:
    """Resolved type hints of the fields ``schema.__init__`` takes, in declaration order."""
    try:
        hints = get_type_hints(schema)
    except NameError as error:
        raise TypeError(f"cannot resolve the type hints of {schema.__name__}: {error}") from error
    return {field.name: hints[field.name] for field in dataclasses.fields(schema) if field.init}


def _is_schema(hint: Any) -> bool:
    return isinstance(hint, type) and dataclasses.is_dataclass(hint)


def _is_union(hint: Any) -> bool:
    return get_origin(hint) in (Union, types.UnionType)


def _unknown_key(source: str, prefix: str, name: str, valid_names: Sequence[str]) -> ConfigError:
    matches = difflib.get_close_matches(name, valid_names, n=1)
    if matches:
        hint = f"did you mean {prefix + matches[0]!r}?"
    else:
        hint = "valid keys: " + ", ".join(prefix + valid for valid in valid_names)
    return ConfigError(f"{source}: unknown key {prefix + name!r} ({hint})")


def _resolve_hint(schema: type, parts: Sequence[str], source: str) -> Any:
    """The type hint of the field at ``parts`` (a dotted key split), checking every step exists."""
    hint: Any = schema
    for depth, part in enumerate(parts):
        prefix = "".join(f"{step}." for step in parts[:depth])
        section = _schema_in(hint)
        if section is None:
            raise ConfigError(f"{source}: {prefix.rstrip('.')!r} is a value, not a section with key {part!r}")
        hints = _field_hints(section)
        if part not in hints:
            raise _unknown_key(source, prefix, part, list(hints))
        hint = hints[part]
    return hint


def _schema_in(hint: Any) -> type | None:
    """The schema dataclass in ``hint`` (itself, or the one member of an Optional), else None."""
    if _is_schema(hint):
        return hint
    if _is_union(hint):
        schemas = [option for option in get_args(hint) if _is_schema(option)]
        if len(schemas) == 1:
            return schemas[0]
    return None


def _is_text_hint(hint: Any) -> bool:
    """Whether a field takes only text (str, Path, string Literals), optionally None."""
    if hint is str or (isinstance(hint, type) and issubclass(hint, PurePath)):
        return True
    if get_origin(hint) is Literal:
        return all(isinstance(choice, str) for choice in get_args(hint))
    if _is_enum(hint):
        return all(isinstance(member.value, str) for member in hint)
    if _is_union(hint):
        options = [option for option in get_args(hint) if option is not type(None)]
        return all(_is_text_hint(option) for option in options)
    return False


def _is_enum(hint: Any) -> bool:
    return isinstance(hint, type) and issubclass(hint, enum.Enum)


def _parse_override_value(raw_value: str, hint: Any, source: str) -> Any:
    """YAML-parse an override value; text fields keep the text as typed (``run_dir=0.10`` stays "0.10")."""
    try:
        parsed = yaml.safe_load(raw_value)
    except yaml.YAMLError as error:
        if _is_text_hint(hint):
            return raw_value.strip()
        raise ConfigError(f"{source}: value is not valid YAML: {' '.join(str(error).split())}") from error
    if parsed is None or isinstance(parsed, str) or not _is_text_hint(hint):
        return parsed
    return raw_value.strip()


def config_from_mapping(mapping: Mapping[str, Any], source: str, schema: type[SchemaT] = RunConfig) -> SchemaT:  # type: ignore[assignment]
    """A config from an already parsed mapping (e.g. the one stored in a checkpoint), validated like a
    file; errors name ``source``."""
    return _build(schema, mapping, source, "", None)


def _build(schema: type[SchemaT], mapping: Any, source: str, prefix: str, base: SchemaT | None) -> SchemaT:
    """Instantiate ``schema`` from ``base`` (or the defaults) updated with ``mapping``."""
    if not isinstance(mapping, Mapping):
        section = prefix.rstrip(".") or "the top level"
        raise ConfigError(f"{source}: {section!r} must be a mapping of keys, got {_describe_value(mapping)}")
    hints = _field_hints(schema)
    values: dict[str, Any] = _section_defaults(schema) if base is None else {name: getattr(base, name) for name in hints}
    for key, value in mapping.items():
        name = str(key)
        if name not in hints:
            raise _unknown_key(source, prefix, name, list(hints))
        values[name] = _coerce(value, hints[name], prefix + name, source, values.get(name))
    for field in dataclasses.fields(schema):
        has_default = field.default is not dataclasses.MISSING or field.default_factory is not dataclasses.MISSING
        if field.init and field.name not in values and not has_default:
            raise ConfigError(f"{source}: missing required key {prefix + field.name!r}")
    try:
        return schema(**values)
    except ConfigError:
        raise
    except FieldValueError as error:
        # Name whichever set the offending field: an override, else this section's source.
        offending = mapping.get(error.field_name)
        field_source = offending.source if isinstance(offending, _OverrideValue) else source
        raise ConfigError(f"{field_source}: {prefix}{error}") from error
    except (TypeError, ValueError) as error:
        raise ConfigError(f"{source}: invalid {prefix.rstrip('.') or schema.__name__}: {error}") from error


def _section_defaults(schema: type) -> dict[str, Any]:
    """The default of every nested-section field, so a partial section updates the parent's default for it
    (e.g. S3DIS's flip settings) rather than the section class's own defaults."""
    defaults = {}
    for field in dataclasses.fields(schema):
        if field.init and field.default_factory is not dataclasses.MISSING:
            value = field.default_factory()
            if dataclasses.is_dataclass(value):
                defaults[field.name] = value
    return defaults


def _describe_value(value: Any) -> str:
    return f"{type(value).__name__} {value!r}"


def _describe_hint(hint: Any) -> str:
    if hint is type(None):
        return "null"
    if _is_enum(hint):
        return "one of " + ", ".join(repr(member.value) for member in hint)
    if isinstance(hint, type):
        return hint.__name__
    if get_origin(hint) is Literal:
        return "one of " + ", ".join(repr(choice) for choice in get_args(hint))
    if _is_union(hint):
        return " or ".join(_describe_hint(option) for option in get_args(hint))
    return str(hint)


def _coerce(value: Any, hint: Any, key: str, source: str, current: Any) -> Any:
    """Check ``value`` against ``hint`` and convert it (YAML lists to tuples, numbers to float, ...)."""

    def mismatch() -> ConfigError:
        return ConfigError(f"{source}: key {key!r}: expected {_describe_hint(hint)}, got {_describe_value(value)}")

    if isinstance(value, _OverrideValue):
        return _coerce(value.value, hint, key, value.source, current)
    origin = get_origin(hint)
    if hint is Any:
        return value
    if _is_union(hint):
        options = [option for option in get_args(hint) if option is not type(None)]
        if value is None:
            if len(options) < len(get_args(hint)):
                return None
            raise mismatch()
        if len(options) == 1:
            # Optional[X]: X's own error is the precise one (e.g. an unknown key inside a section).
            return _coerce(value, options[0], key, source, current)
        for option in options:
            try:
                return _coerce(value, option, key, source, current)
            except ConfigError:
                continue
        raise mismatch()
    if origin is Literal:
        choices = get_args(hint)
        # Compare types too: True == 1, but a bool is not a valid choice for Literal[1].
        if any(value == choice and type(value) is type(choice) for choice in choices):
            return value
        raise ConfigError(f"{source}: key {key!r}: must be {_describe_hint(hint)}, got {value!r}")
    if _is_enum(hint):
        if isinstance(value, hint):
            return value
        member = next((member for member in hint if member.value == value and type(member.value) is type(value)), None)
        if member is None:
            raise ConfigError(f"{source}: key {key!r}: must be {_describe_hint(hint)}, got {value!r}")
        return member
    if hint is type(None):
        if value is None:
            return None
        raise mismatch()
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise mismatch()
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise mismatch()
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            # PyYAML reads exponents without a dot (1e-4) as strings.
            try:
                return float(value)
            except ValueError:
                raise mismatch() from None
        raise mismatch()
    if hint is str:
        if isinstance(value, str):
            return value
        raise mismatch()
    if isinstance(hint, type) and issubclass(hint, PurePath):
        if isinstance(value, (str, PurePath)):
            return hint(value)
        raise mismatch()
    if hint is list or origin is list or origin is Sequence:
        if not isinstance(value, (list, tuple)):
            raise mismatch()
        item_hint = get_args(hint)[0] if get_args(hint) else Any
        return [_coerce(item, item_hint, f"{key}[{index}]", source, None) for index, item in enumerate(value)]
    if hint is tuple or origin is tuple:
        return _coerce_tuple(value, hint, key, source, mismatch)
    if hint is dict or origin is dict:
        if not isinstance(value, Mapping):
            raise mismatch()
        key_hint, item_hint = get_args(hint) or (Any, Any)
        return {
            _coerce(item_key, key_hint, key, source, None): _coerce(item, item_hint, f"{key}.{item_key}", source, None)
            for item_key, item in value.items()
        }
    if _is_schema(hint):
        if isinstance(value, hint):
            return value
        return _build(hint, value, source, key + ".", current if isinstance(current, hint) else None)
    raise TypeError(f"config key {key!r}: unsupported field type {hint!r}")


def _coerce_tuple(value: Any, hint: Any, key: str, source: str, mismatch: Callable[[], ConfigError]) -> tuple[Any, ...]:
    if not isinstance(value, (list, tuple)):
        raise mismatch()
    item_hints = get_args(hint)
    if not item_hints:
        return tuple(value)
    if len(item_hints) == 2 and item_hints[1] is Ellipsis:
        item_hints = (item_hints[0],) * len(value)
    elif len(item_hints) != len(value):
        raise ConfigError(f"{source}: key {key!r}: expected {len(item_hints)} items, got {len(value)}")
    return tuple(
        _coerce(item, item_hint, f"{key}[{index}]", source, None)
        for index, (item, item_hint) in enumerate(zip(value, item_hints, strict=True))
    )
