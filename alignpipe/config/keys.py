"""Dotted config keys such as `train.steps`.

Sets them on a `Config`, and types the values of `key=value` overrides and of JSON by
each field's type hint.
"""

from __future__ import annotations

import dataclasses
import typing

from alignpipe.errors import ConfigError

if typing.TYPE_CHECKING:
    from alignpipe.config.schema import Config


def _apply(cfg: Config, dotted: dict[str, object]) -> Config:
    sections: dict[str, dict[str, object]] = {}
    top: dict[str, object] = {}
    for key, value in dotted.items():
        _field_type(cfg, key)  # raises on unknown keys
        section, _, name = key.partition(".")
        if name:
            sections.setdefault(section, {})[name] = value
        else:
            top[section] = value
    for section, values in sections.items():
        top[section] = dataclasses.replace(getattr(cfg, section), **values)
    return dataclasses.replace(cfg, **top)


def _field_type(cfg: Config, key: str) -> object:
    section, _, name = key.partition(".")
    hints = typing.get_type_hints(type(cfg))
    if section not in hints:
        raise ConfigError(f"unknown config key {key!r}; sections are {sorted(hints)}")
    section_type = hints[section]
    if not name:
        if dataclasses.is_dataclass(section_type):
            raise ConfigError(f"config key {key!r} is a section; set one of its keys, e.g. {key}.<name>")
        return section_type
    if not dataclasses.is_dataclass(section_type):
        raise ConfigError(f"unknown config key {key!r}")
    sub = typing.get_type_hints(section_type)
    if name not in sub:
        raise ConfigError(f"unknown config key {key!r}; {section} has {sorted(sub)}")
    return sub[name]


def _parse(key: str, kind: object, text: str) -> object:
    origin = typing.get_origin(kind)
    if origin is tuple:
        item_type = typing.get_args(kind)[0]
        items = [t.strip() for t in text.split(",") if t.strip()] if text else []
        return tuple(_parse(key, item_type, t) for t in items)
    try:
        if kind is bool:
            if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError
            return text.lower() in ("true", "1", "yes")
        if kind is int:
            return int(text.replace("_", ""))
        if kind is float:
            return float(text)
    except ValueError:
        raise ConfigError(f"{key}={text!r} is not a valid {kind.__name__}") from None
    return text


def _build(kind: type, raw: object, prefix: str) -> object:
    """Rebuilds a dataclass from `json.loads` output, checking keys and types."""
    if not isinstance(raw, dict):
        raise ConfigError(f"config {prefix or 'root'} must be a JSON object")
    hints = typing.get_type_hints(kind)
    unknown = sorted(set(raw) - set(hints))
    if unknown:
        raise ConfigError(f"unknown config key {prefix + unknown[0]!r}")
    values = {}
    for name, value in raw.items():
        hint = hints[name]
        key = prefix + name
        if dataclasses.is_dataclass(hint):
            values[name] = _build(hint, value, key + ".")
        elif typing.get_origin(hint) is tuple:
            if not isinstance(value, list):
                raise ConfigError(f"{key}={value!r} must be a list")
            values[name] = tuple(_coerce(key, typing.get_args(hint)[0], v) for v in value)
        else:
            values[name] = _coerce(key, hint, value)
    return kind(**values)


def _coerce(key: str, kind: object, value: object) -> object:
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):  # type: ignore[arg-type]
        name = getattr(kind, "__name__", str(kind))
        raise ConfigError(f"{key}={value!r} must be of type {name}")
    return value
