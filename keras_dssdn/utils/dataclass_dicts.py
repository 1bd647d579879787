"""Strict construction of the package's config dataclasses from plain dicts (JSON / YAML)."""

from __future__ import annotations

import dataclasses
import math
import typing

_NAMES = {int: "an integer", float: "a number", bool: "true or false", str: "a string", list: "a list",
          dict: "a mapping", tuple: "a list"}


def _accepts(hint, value) -> bool:
    """Whether ``value`` (parsed from YAML/JSON) fits the simple type ``hint``; unknown hints accept anything."""
    origin = typing.get_origin(hint)
    if origin is typing.Union:
        return any(_accepts(h, value) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is typing.Any:
        return True
    base = origin or hint
    if base is bool:
        return isinstance(value, bool)
    if base is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if base is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if base in (str, list, dict):
        return isinstance(value, base)
    if base is tuple:
        return isinstance(value, (list, tuple))
    return True


def _expected(hint) -> str:
    args = [h for h in typing.get_args(hint) if h is not type(None)] if typing.get_origin(hint) is typing.Union else [hint]
    names = [_NAMES.get(typing.get_origin(h) or h, str(h)) for h in args]
    optional = typing.get_origin(hint) is typing.Union and type(None) in typing.get_args(hint)
    return " or ".join(names) + (" (or null)" if optional else "")


def dataclass_from_dict(cls, d: dict, what: str, error=ValueError):
    """``cls(**d)``, but an unknown key raises ``error`` naming it and listing the valid keys, and a value of the
    wrong type (``epochs=abc``, a NaN learning rate) raises ``error`` naming the key, the value and the type."""
    if not isinstance(d, dict):
        raise error(f"{what} must be a mapping of keys to values, got {type(d).__name__}: {d!r}.")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise error(f"Unknown {what} key(s) {unknown}; valid keys are {sorted(known)}.")
    try:
        hints = typing.get_type_hints(cls)
    except Exception:  # noqa: BLE001 - a hint that cannot be resolved is simply not checked
        hints = {}
    for key, value in d.items():
        if key in hints and not _accepts(hints[key], value):
            raise error(f"{what} key {key!r}: {value!r} is not {_expected(hints[key])}.")
    return cls(**d)
