"""C source literals shared by the generated files of a bundle (``micro/``) and of the firmware: identifiers,
include guards, float32 literals that read back to the same float, comma-separated lists, string literals."""

from __future__ import annotations

import math
import re
from typing import Callable, Iterable


def c_ident(name: str) -> str:
    """``name`` as a C identifier (other characters -> ``_``, never starting with a digit)."""
    ident = re.sub(r"[^0-9A-Za-z_]", "_", name)
    if not ident or ident[0].isdigit():
        ident = "_" + ident
    return ident


def include_guard(filename: str) -> str:
    """The include guard of a header file (``dssdn_model_data.h`` -> ``DSSDN_MODEL_DATA_H_``)."""
    return c_ident(filename).upper() + "_"


def c_float(v: float) -> str:
    """A float literal that reads back to the same float32 (``1.0f``, ``2.5e-06f``); ValueError when not finite."""
    v = float(v)
    if not math.isfinite(v):
        raise ValueError(f"non-finite constant {v}")
    return f"{v:.9g}f" if ("e" in f"{v:.9g}" or "." in f"{v:.9g}") else f"{v:.9g}.0f"


def c_list(values: Iterable, fmt: Callable[[object], str], per_line: int = 8) -> str:
    """``values`` formatted by ``fmt``, ``per_line`` to an indented line, each line ending in a comma."""
    items = [fmt(v) for v in values]
    return "\n".join("  " + ", ".join(items[i:i + per_line]) + "," for i in range(0, len(items), per_line))


def c_string(s: str) -> str:
    """``s`` as a C string literal (backslashes and double quotes escaped)."""
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'
