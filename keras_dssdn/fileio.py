"""Atomic file writes: every file the package writes appears whole or not at all.

Each writer writes a temporary sibling (``.<name>.tmp-<pid>``, same folder, so
the rename stays on one file system) and renames it over the target with
:func:`os.replace`; a crash leaves the old file (or none) and at most a
temporary file that the next write replaces. :func:`atomic_folder` does the
same for a whole folder.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
from pathlib import Path
from typing import Callable, Iterator, Union

PathLike = Union[str, os.PathLike]


def _temporary(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def write_atomic(path: PathLike, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)`` then rename ``tmp_path`` to ``path``; the temporary is removed on failure.

    The temporary keeps ``path``'s suffix (writers such as Keras and Matplotlib choose the format by it).
    """
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def write_text_atomic(path: PathLike, text: str) -> Path:
    return write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_bytes_atomic(path: PathLike, data: bytes) -> Path:
    return write_atomic(path, lambda tmp: tmp.write_bytes(data))


def finite_json(obj):
    """``obj`` with every non-finite float (NaN, +-inf) replaced by None, so that JSON holds no NaN."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_json(v) for v in obj]
    return obj


def write_json_atomic(path: PathLike, obj) -> Path:
    """``obj`` as indented UTF-8 JSON; NaN and infinities are written as null (never as invalid JSON)."""
    return write_text_atomic(path, json.dumps(finite_json(obj), indent=2, ensure_ascii=False, allow_nan=False) + "\n")


def save_model_atomic(model, path: PathLike) -> Path:
    """``model.save`` (a ``.keras`` archive) to a temporary sibling, then rename."""
    return write_atomic(path, lambda tmp: model.save(tmp))


def save_figure_atomic(fig, path: PathLike, **kwargs) -> Path:
    """``fig.savefig`` to a temporary sibling, then rename."""
    return write_atomic(path, lambda tmp: fig.savefig(tmp, **kwargs))


@contextlib.contextmanager
def atomic_folder(path: PathLike, replace: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling folder to fill; on success it becomes ``path``, on any exception it is removed
    and ``path`` is left untouched.

    ``path`` must not exist unless ``replace`` is true; then the old folder is moved aside, the new one renamed
    in, and the old one removed (the caller decides that the old folder is its own to replace).
    """
    path = Path(path)
    tmp = path.parent / f".{path.name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        yield tmp
        if path.exists() and replace:
            old = path.parent / f".{path.name}.old-{os.getpid()}"
            os.rename(path, old)
            os.rename(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
