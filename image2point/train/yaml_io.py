"""Configs as YAML: a file's key mapping, read with errors that name the file, and a config written
atomically as plain nested values (what YAML and JSON can hold)."""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from pathlib import Path, PurePath
from typing import Any

import yaml

from image2point.checkpoint import atomic_write
from image2point.errors import ConfigError


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
    return read_yaml_mapping(Path(path))


def read_yaml_mapping(path: Path) -> Mapping[Any, Any]:
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
