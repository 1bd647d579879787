"""``manifest.json`` of an export bundle: the one owner of its contract (written, read, checked here only).

At the top of the package (like :mod:`keras_dssdn.runs` for run folders) so that inference, the CLI and the
export all use it without inference depending on ``deploy``.

The manifest maps every file of the bundle but itself (relative POSIX path, e.g. ``micro/dssdn_model_data.cc``)
to ``{"bytes": size, "sha256": hex digest}``. :func:`keras_dssdn.deploy.bundle.write_bundle` writes it with
:func:`build_manifest`; every reader of a bundle (``dssdn-predict``, ``dssdn-evaluate``, ``dssdn-export --check``,
the firmware build) calls :func:`verify_bundle` before it uses a file, so a bundle edited or damaged after export
is refused with the files that changed named. A folder with a readable manifest is one the package wrote:
:func:`check_replaceable` lets ``--force`` replace only such a folder (or an empty one).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Union

from keras_dssdn.errors import BundleIntegrityError, OutputPathError

PathLike = Union[str, os.PathLike]

#: The manifest's file name inside a bundle.
MANIFEST = "manifest.json"
_ADVICE = "re-export the bundle (dssdn-export ... --force) or restore it from the copy you exported"


def file_entry(data: bytes) -> Dict[str, object]:
    """``{"bytes": len(data), "sha256": hex}`` of one file's content."""
    return {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def build_manifest(folder: PathLike, names: Iterable[str]) -> Dict[str, dict]:
    """The manifest of the files ``names`` (paths relative to ``folder``) as they are on disk."""
    folder = Path(folder)
    return {name: file_entry((folder / name).read_bytes()) for name in sorted(names)}


def read_manifest(folder: PathLike) -> Dict[str, dict]:
    """The manifest of the bundle ``folder``; :class:`BundleIntegrityError` when it is missing or damaged."""
    from keras_dssdn.fileio import read_json

    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise BundleIntegrityError(f"{folder}: no {MANIFEST}, so the bundle's files cannot be checked; {_ADVICE}.")
    manifest = read_json(path, "bundle manifest", _ADVICE, BundleIntegrityError)
    ok = isinstance(manifest, dict) and manifest and all(
        isinstance(v, dict) and isinstance(v.get("bytes"), int) and isinstance(v.get("sha256"), str)
        for v in manifest.values())
    if not ok:
        raise BundleIntegrityError(f"{path}: damaged bundle manifest (not a map of file -> bytes, sha256); {_ADVICE}.")
    return manifest


def changed_files(folder: PathLike, manifest: Dict[str, dict]) -> List[str]:
    """``"name (why)"`` for every file of ``manifest`` that is missing, of another size or another SHA-256."""
    folder = Path(folder)
    bad = []
    for name, want in sorted(manifest.items()):
        path = folder / name
        if not path.is_file():
            bad.append(f"{name} (missing)")
            continue
        data = path.read_bytes()
        if len(data) != want["bytes"]:
            bad.append(f"{name} ({len(data)} bytes, {want['bytes']} at export)")
        elif hashlib.sha256(data).hexdigest() != want["sha256"]:
            bad.append(f"{name} (SHA-256 differs from the manifest)")
    return bad


def verify_bundle(path: PathLike) -> Dict[str, dict]:
    """Check the bundle folder ``path`` against its manifest before anything in it is used; returns the manifest.

    Raises :class:`~keras_dssdn.errors.BundleIntegrityError` (exit status 4) naming every file that is missing,
    or whose size or SHA-256 differs from ``manifest.json``, and when the manifest itself is missing or damaged.
    Files that are not in the manifest are ignored (they are not part of the bundle).
    """
    folder = Path(path)
    manifest = read_manifest(folder)
    bad = changed_files(folder, manifest)
    if bad:
        raise BundleIntegrityError(f"{folder}: the bundle changed after export: {', '.join(bad)}; refusing to use "
                                   f"it: {_ADVICE}.")
    return manifest


def bundle_folder(path: PathLike) -> Optional[Path]:
    """The export bundle ``path`` is or is a file of (its folder), or None. A bundle is a folder with a
    ``manifest.json``, or (a bundle whose manifest was lost, refused by :func:`verify_bundle`) one with the bundle's
    ``frontend.json`` and ``model_int8.tflite`` that is not a training run folder (no ``config.json``)."""
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    if (folder / MANIFEST).is_file():
        return folder
    lost = (folder / "frontend.json").is_file() and (folder / "model_int8.tflite").is_file()
    return folder if lost and not (folder / "config.json").is_file() else None


def check_replaceable(folder: PathLike, what: str = "--out") -> None:
    """Allow ``--force`` to replace ``folder`` only when the package wrote it: an empty folder or a bundle whose
    every file is listed in its manifest. Raises :class:`~keras_dssdn.errors.OutputPathError` naming the folder
    (and the files that are not the bundle's) otherwise; nothing is deleted."""
    folder = Path(folder)
    entries = [p for p in folder.rglob("*") if p.is_file() or p.is_symlink()]
    if not entries:
        return
    if not (folder / MANIFEST).is_file():
        raise OutputPathError(f"{what} {folder} exists and is not a bundle (no {MANIFEST}); --force replaces only a "
                              "bundle the package wrote: choose another --out, or move the folder yourself.")
    try:
        listed = set(read_manifest(folder)) | {MANIFEST}
    except BundleIntegrityError as e:
        raise OutputPathError(f"{what} {folder}: {e}; --force replaces only an intact bundle: move it "
                              "yourself.") from None
    foreign = sorted(p.relative_to(folder).as_posix() for p in entries if p.relative_to(folder).as_posix()
                     not in listed)
    if foreign:
        raise OutputPathError(f"{what} {folder} holds files that are not the bundle's ({', '.join(foreign[:5])}"
                              f"{', ...' if len(foreign) > 5 else ''}); --force would delete them: move them or "
                              "choose another --out.")
