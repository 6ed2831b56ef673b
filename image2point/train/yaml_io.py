"""Configs as YAML: a file's key mapping, read with errors that name the file, and a config written
atomically as plain nested values (what YAML and JSON can hold)."""

from __future__ import annotations

import contextlib
import dataclasses
import enum
from collections.abc import Mapping
from pathlib import Path, PurePath
from typing import Any

import yaml

from image2point.checkpoint import atomic_write
from image2point.errors import ConfigError, RuntimeFault

# A YAML file expanding (through aliases) to more values than this is refused: no config comes close,
# and an alias bomb's 10**9 values would take the memory and fill the error line.
MAX_YAML_VALUES = 100_000


def config_to_dict(config: Any) -> dict[str, Any]:
    """Plain nested dicts, lists and scalars (what YAML and JSON can hold) in field order."""
    if not dataclasses.is_dataclass(config) or isinstance(config, type):
        raise TypeError(f"expected a dataclass instance, got {type(config).__name__}")
    return {field.name: _to_plain(getattr(config, field.name)) for field in dataclasses.fields(config)}


def save_config(config: Any, path: str | Path) -> None:
    """Write ``config`` as YAML atomically; :func:`image2point.train.schema.load_schema` reads it back to an equal config."""
    text = yaml.safe_dump(config_to_dict(config), sort_keys=False, default_flow_style=False)
    try:
        with atomic_write(path, "w") as handle:
            handle.write(text)
    except OSError as error:
        raise RuntimeFault(f"{path}: cannot write config: {error.strerror or error}") from error


def flatten(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested sections as dotted keys: {"optim": {"lr": 0.1}} -> {"optim.lr": 0.1}."""
    flat: dict[str, Any] = {}
    for key, value in mapping.items():
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


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
    return read_yaml_mapping(Path(path))


def read_yaml_mapping(path: Path) -> Mapping[Any, Any]:
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file")
    try:
        loaded = yaml.load(path.read_text(encoding="utf-8"), Loader=_StrictLoader)  # noqa: S506 - a SafeLoader
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: cannot read config: {error}") from error
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: invalid YAML: {' '.join(str(error).split())}") from error
    if loaded is None:
        return {}
    if _count_values(loaded, MAX_YAML_VALUES) > MAX_YAML_VALUES:
        raise ConfigError(f"{path}: expands to more than {MAX_YAML_VALUES} values (YAML aliases nested into "
                          "each other?); no config is that large")
    if not isinstance(loaded, Mapping):
        raise ConfigError(f"{path}: expected a mapping of keys at the top level, got {type(loaded).__name__}")
    return loaded


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key given twice in one mapping (PyYAML keeps the last silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            with contextlib.suppress(TypeError):  # unhashable keys: left to PyYAML's own error
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key!r} (first on line {seen[key] + 1}, again on line "
                        f"{key_node.start_mark.line + 1}); remove one", key_node.start_mark)
                seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


def _count_values(loaded: Any, limit: int) -> int:
    """The values (scalars and containers) of a loaded document as if its aliases were copied, up to ``limit + 1``."""
    count, pending = 0, [loaded]
    while pending and count <= limit:
        value = pending.pop()
        count += 1
        if isinstance(value, Mapping):
            pending.extend(value.values())
        elif isinstance(value, (list, tuple)):
            pending.extend(value)
    return count
