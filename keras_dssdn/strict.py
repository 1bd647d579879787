"""Strict construction of the package's config dataclasses from plain dicts (JSON / YAML)."""

from __future__ import annotations

import dataclasses


def from_dict_strict(cls, d: dict, what: str, error=ValueError):
    """``cls(**d)``, but an unknown key raises ``error`` naming it and listing the valid keys."""
    if not isinstance(d, dict):
        raise error(f"{what} must be a mapping of keys to values, got {type(d).__name__}: {d!r}.")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise error(f"Unknown {what} key(s) {unknown}; valid keys are {sorted(known)}.")
    return cls(**d)
