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
from typing import Callable, Iterable, Iterator, Optional, Sequence, Tuple, Union

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


# ---------------------------------------------------------------------------- reading what a user gives


@contextlib.contextmanager
def reading(path: PathLike, kind: str, advice: str, error=None) -> Iterator[None]:
    """The one place where a file that cannot be parsed becomes a user's error: any exception inside the block
    (a JSON syntax error, a bad zip, a flatbuffer the interpreter refuses, a failed tensor allocation...) is
    raised again as one ``error`` (default :class:`~keras_dssdn.errors.DamagedFileError`, exit status 4) saying
    ``"<path>: damaged <kind> (<why>); <advice>."``. A missing file (``FileNotFoundError``, exit 2) and the
    package's own errors pass unchanged.

    ``kind``: what the file should be (``"TFLite model"``); ``advice``: what to do (``"re-export it"``).
    """
    from keras_dssdn.errors import DamagedFileError, DSSDNError

    try:
        yield
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError, DSSDNError, KeyboardInterrupt,
            MemoryError):
        raise
    except Exception as e:  # noqa: BLE001 - whatever the parser raises, the file is damaged
        why = (str(e).strip().splitlines() or [""])[0][:160]
        why = f"{type(e).__name__}: {why}" if why else type(e).__name__
        raise (error or DamagedFileError)(f"{path}: damaged {kind} ({why}); {advice}.") from None


def read_json(path: PathLike, kind: str = "JSON file", advice: str = "restore it or write it again", error=None):
    """The value of the JSON file ``path`` (UTF-8), through :func:`reading`."""
    with reading(path, kind, advice, error):
        return json.loads(Path(path).read_text(encoding="utf-8"))


def read_npz(path: PathLike, kind: str = "NPZ file", advice: str = "restore it or write it again",
             error=None) -> dict:
    """``{name: array}`` of the NumPy ``.npz`` archive ``path`` (read whole, no pickles), through :func:`reading`."""
    import numpy as np

    with reading(path, kind, advice, error):
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}


# ---------------------------------------------------------------------------- where a command may write

#: Suffixes of the files a command's output may replace when they already exist (reports, tables, logits...);
#: anything else (audio, models, code) is a file of another kind that an output never replaces.
REPLACEABLE_SUFFIXES = ("", ".json", ".csv", ".tsv", ".txt", ".md", ".log", ".out")


def _file_above(path: Path) -> Optional[Path]:
    """The first existing regular file among ``path``'s parents (a path "under a file"), or None."""
    for parent in reversed(path.parents):
        if parent.exists() and not parent.is_dir():
            return parent
    return None


def check_output(out: PathLike, inputs: Iterable[Tuple[str, Optional[PathLike]]] = (), *, what: str = "--out",
                 folder: bool = False, suffixes: Sequence[str] = REPLACEABLE_SUFFIXES, replaces: bool = True) -> Path:
    """Refuse (:class:`~keras_dssdn.errors.OutputPathError`, exit status 2) an output path that would overwrite one
    of the command's own ``inputs`` (``(option, path)`` pairs; None skipped) or a folder holding one, that lies
    under a regular file, or that would replace something of another kind: a file where a ``folder`` output goes,
    a folder where a file goes, an existing file whose suffix is not in ``suffixes``. Messages name the path the
    user gave. ``replaces=False``: a folder output that is written into, not replaced whole, may hold an input
    (only being one is refused). Returns ``Path(out)``."""
    from keras_dssdn.errors import OutputPathError

    given = Path(out)
    target = given.resolve()
    for option, p in inputs:
        if not isinstance(p, (str, os.PathLike)):
            continue
        source = Path(p).resolve()
        if target == source or (replaces and target in source.parents):
            verb = "is" if target == source else "holds"
            raise OutputPathError(f"{what} {out} {verb} the input {option} {p}; writing there would overwrite what "
                                  f"the command reads: choose another {what}.")
    above = _file_above(given.absolute())
    if above is not None:
        raise OutputPathError(f"{what} {out}: {above} is a file, not a folder; choose another {what}.")
    if folder and given.exists() and not given.is_dir():
        raise OutputPathError(f"{what} {out} is a file; {what} names a folder here: choose another.")
    if not folder and given.is_dir():
        raise OutputPathError(f"{what} {out} is a folder; {what} names a file here: choose another.")
    if not folder and given.is_file() and given.suffix.lower() not in suffixes:
        raise OutputPathError(f"{what} {out} exists and is not a file this command writes (a {given.suffix} file); "
                              f"choose another {what}.")
    return given
