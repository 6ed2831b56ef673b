"""Typed configurations: nested dataclasses filled from a YAML file and ``key=value`` overrides.

A schema is any dataclass whose fields are plain types (int, float, bool, str, Path), ``Literal``,
``Enum`` (written as its members' values),
``Optional``/unions, ``list``/``tuple``/``dict`` of those, or nested schema dataclasses. A YAML file
may set any subset of the fields; overrides use dotted keys (``optim.lr=0.01``) and YAML values
(``model.pretrained=null``; lists and tuples as ``[1,2]``). Every value is checked against the
field's type hint, and every error names its source (the file, or the override) and the dotted key.
The run schema itself is :mod:`image2point.train.config`.
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

from image2point.errors import ConfigError
from image2point.train.yaml_io import read_yaml_mapping

SchemaT = TypeVar("SchemaT")


class FieldValueError(ValueError):
    """A field value of the right type outside its valid range, raised by a schema's ``__post_init__``."""

    def __init__(self, field_name: str, message: str):
        self.field_name = field_name
        super().__init__(message)


def require(condition: bool, field_name: str, requirement: str, value: Any) -> None:
    """Range checks for ``__post_init__``; the loader prefixes the section and the source."""
    if not condition:
        raise FieldValueError(field_name, f"{field_name} must be {requirement}, got {value!r}")


def load_schema(path: str | Path | None, overrides: Sequence[str], schema: type[SchemaT]) -> SchemaT:
    """Build ``schema`` from its defaults, updated by the YAML file at ``path`` (if any), then ``overrides`` in order.

    Overrides are merged before the dataclasses are built, so they can also supply fields the schema
    leaves without a default.
    """
    if isinstance(overrides, str):
        raise TypeError("overrides must be a sequence of 'key=value' strings, not a single string")
    if path is None:
        source, mapping = f"{schema.__name__} defaults", {}
    else:
        source, mapping = str(path), copy.deepcopy(dict(read_yaml_mapping(Path(path))))
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


def schema_from_mapping(mapping: Mapping[str, Any], source: str, schema: type[SchemaT]) -> SchemaT:
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
