"""Typed config sections: dataclasses with their defaults in one place, read from the
`ml_collections.ConfigDict` sections that config files and `--config.x.y=` flags edit.

Each section (`DataConfig`, `TrainConfig`, `MeshConfig`, `SampleConfig`, and `ModelConfig`)
is a frozen dataclass whose `validate()` checks every field. `from_any(cls, config, section)`
turns a ConfigDict, a mapping or an instance into the dataclass, with a one-line ConfigError for
an unknown field or a value of the wrong type, so a typo never falls back to a default silently.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import numbers
import typing
from typing import Any, TypeVar

import ml_collections

from llp_jax.errors import ConfigError

T = TypeVar("T")
_SCALARS = {"int": int, "float": float, "str": str, "bool": bool}
_ARTICLE = {"int": "an", "float": "a", "str": "a", "bool": "a"}


def _accepts(kind: str, value: Any) -> bool:
    if kind == "float":  # numbers.Real/Integral: numpy scalars too
        return isinstance(value, numbers.Real) and not isinstance(value, bool)
    if kind == "int":
        return isinstance(value, numbers.Integral) and not isinstance(value, bool)
    return isinstance(value, _SCALARS[kind])


def from_any(cls: type[T], config: Any, section: str) -> T:
    """A validated `cls` from an instance, a mapping or a ConfigDict (None = the defaults).

    Raises:
      ConfigError: `section` is not a mapping, has an unknown field, or a field of the wrong type.
    """
    if isinstance(config, cls):
        return config.validate()
    if config is None:
        return cls().validate()
    if hasattr(config, "to_dict"):
        config = config.to_dict()
    if not isinstance(config, typing.Mapping):
        raise ConfigError(f"config.{section} must be a section of fields, not {config!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    check_known(config, fields, f"config.{section}")
    values = {}
    for name, value in config.items():
        if field_kind(fields[name]) == "float" and _accepts("float", value):
            value = float(value)
        values[name] = value
    instance = cls(**values)
    check_types(instance, section)
    return instance.validate()


def check_known(given, fields, section: str) -> None:
    """One line for names in `given` that are not among `fields` (a typo gets a suggestion)."""
    unknown = sorted(set(given) - set(fields))
    if unknown:
        raise ConfigError(f"{section} has no field(s) {unknown}{hint(unknown[0], fields)}")


def hint(name: str, fields) -> str:
    """'; did you mean ...?' for a field name that is not among `fields`, else the known ones.

    A field whose words hold the name (steps -> num_steps, heads -> num_heads) comes before one
    merely spelt like it (difflib would offer eps for steps)."""
    holds = [f for f in fields if name in f.split("_")]
    close = difflib.get_close_matches(name, holds or list(fields), n=1,
                                      cutoff=0.0 if holds else 0.6)  # fmt: skip
    return f"; did you mean {close[0]!r}?" if close else f"; known fields: {sorted(fields)}"


def field_kind(field: dataclasses.Field) -> str:
    kind = field.type
    return kind if isinstance(kind, str) else getattr(kind, "__name__", str(kind))


def check_types(instance: Any, section: str) -> None:
    """One line for a scalar field holding a value of the wrong type (a float layer count, a
    string width), before any check compares it."""
    for field in dataclasses.fields(instance):
        kind, value = field_kind(field), getattr(instance, field.name)
        if kind in _SCALARS and not _accepts(kind, value):
            raise ConfigError(f"{section}.{field.name}={value!r} must be {_ARTICLE[kind]} {kind}")


def to_configdict(instance: Any) -> ml_collections.ConfigDict:
    """The ConfigDict form of a section (what config files start from and flags override)."""
    return ml_collections.ConfigDict(dataclasses.asdict(instance))


class Checker:
    """One-line checks for one section: `check(ok, 'field', 'must be ...')` raises
    `ConfigError('<section>.<field>=<value> must be ...')`."""

    def __init__(self, section: str, instance: Any):
        self.section, self.instance = section, instance

    def __call__(self, ok: bool, field: str, constraint: str) -> None:
        if not ok:
            value = getattr(self.instance, field)
            raise ConfigError(f"{self.section}.{field}={value!r} {constraint}")

    def at_least(self, field: str, low: float) -> None:
        value = getattr(self.instance, field)
        self(math.isfinite(value) and value >= low, field, f"must be >= {low}")

    def one_of(self, field: str, allowed) -> None:
        self(getattr(self.instance, field) in allowed, field, f"must be one of {tuple(allowed)}")
