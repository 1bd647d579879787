"""Native FLAC decoding op for tf.data: build, load, call.

tensorflow-io's ``decode_flac`` kernel costs about 80 ns per sample (it
rebuilds an Eigen tensor map for every sample it writes), 8x slower than
libFLAC itself, which made the first pass over a FLAC dataset slower than a
plain soundfile + librosa loop. This module holds a small self-contained FLAC
decoder written as a TensorFlow op (C++ source in ``flac_op.cc`` beside this module, no libFLAC), compiled
once with the machine's C++ compiler against the installed TensorFlow's
headers and cached (``$KERAS_DSSDN_OP_CACHE`` or ``~/.cache/keras_dssdn``):

* output float32 ``(frames, channels)`` = integer sample / 2**(bits - 1),
  bit-exact with ``soundfile.read(dtype="float32")`` (tests/test_audio.py);
* checks every frame's CRC-8 / CRC-16 and the sample count, so a corrupt or
  truncated file fails with an ``InvalidArgumentError`` whose message names
  the file (the op takes the path as a second input for that);
* thread-safe, runs in tf.data's parallel maps.

If no compiler is available (or ``KERAS_DSSDN_FLAC_DECODER=tfio``) the
pipeline falls back to ``tfio.audio.decode_flac`` with a warning; set
``KERAS_DSSDN_FLAC_DECODER=native`` to make that an error instead. Where
tensorflow-io's native ops do not load (TensorFlow 2.21, see
:mod:`keras_dssdn.audio.tfio_compat`) there is no fallback: decoding FLAC then
raises an error that names both causes.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import threading
import warnings
from typing import Optional

import tensorflow as tf

_lock = threading.Lock()
_module = None
_failure: Optional[str] = None


#: The op's C++ source, shipped as package data beside this module.
SOURCE_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "flac_op.cc")
LIBRARY_NAME = "keras_dssdn_flac.so"


class UnsafeOpFolderError(RuntimeError):
    """The folder (or library) the op would be loaded from is not owned by this user or is writable by others."""


def _source() -> str:
    with open(SOURCE_PATH, encoding="utf-8") as f:
        return f.read()


def _build_key() -> str:
    """Hash of what the library is built from: the source, TensorFlow's version and the platform."""
    return hashlib.sha256((_source() + tf.__version__ + sys.platform).encode()).hexdigest()[:16]


def _cache_root() -> str:
    return os.environ.get("KERAS_DSSDN_OP_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "keras_dssdn")


def _cache_dir() -> str:
    return os.path.join(_cache_root(), f"ops-tf{tf.__version__}-{_build_key()}")


def _check_private(path: str) -> None:
    """Refuse ``path`` unless it is owned by this user and not writable by group or others (no symlink)."""
    st = os.lstat(path)

    if stat.S_ISLNK(st.st_mode):
        raise UnsafeOpFolderError(f"{path} is a symbolic link; the FLAC op is only loaded from a real folder.")
    if hasattr(os, "getuid") and st.st_uid != os.getuid():
        raise UnsafeOpFolderError(f"{path} belongs to user id {st.st_uid}, not to you ({os.getuid()}); "
                                  "remove it or set KERAS_DSSDN_OP_CACHE to a folder of your own.")
    if st.st_mode & 0o022:
        raise UnsafeOpFolderError(f"{path} is writable by group or others (mode {oct(st.st_mode & 0o777)}); "
                                  f"run chmod go-w {path}, or set KERAS_DSSDN_OP_CACHE to a private folder.")


def _private_dir(path: str) -> str:
    """Create ``path`` (and missing parents) with mode 0700 and check it and its parent; return it."""
    os.makedirs(path, mode=0o700, exist_ok=True)
    _check_private(path)
    _check_private(os.path.dirname(path))
    return path


def _digest(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def _verified_library(out_dir: str) -> Optional[str]:
    """The cached library when it and its recorded SHA-256 are ours and match, else None."""
    lib, record = os.path.join(out_dir, LIBRARY_NAME), os.path.join(out_dir, LIBRARY_NAME + ".sha256")
    if not (os.path.isfile(lib) and os.path.isfile(record)):
        return None
    for path in (lib, record):
        _check_private(path)
    with open(record, encoding="ascii") as f:
        expected = f.read().strip()
    return lib if expected == _digest(lib) else None


def build_flac_op(force: bool = False) -> str:
    """Compile the op if needed; return the path of the shared library.

    The library lives in a folder that must belong to this user and be closed to others (created with mode
    0700; checked before every load, raising :class:`UnsafeOpFolderError` otherwise), and it is loaded only
    when its SHA-256 equals the one recorded when it was built.
    """
    try:
        out_dir = _private_dir(_cache_dir())
    except OSError:  # read-only home: build in a private folder under the temp folder instead
        out_dir = _private_dir(os.path.join(tempfile.gettempdir(), f"keras_dssdn-{os.getuid()}",
                                            os.path.basename(_cache_dir())))
    lib = _verified_library(out_dir) if not force else None
    if lib:
        return lib
    cxx = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++") or shutil.which("clang++")
    if not cxx:
        raise RuntimeError("no C++ compiler found (install g++ or set CXX)")
    lib = os.path.join(out_dir, LIBRARY_NAME)
    with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
        tmp_lib = os.path.join(tmp, LIBRARY_NAME)
        cmd = [cxx, "-std=c++17", "-shared", "-fPIC", "-O2", SOURCE_PATH, "-o", tmp_lib]
        cmd += tf.sysconfig.get_compile_flags() + tf.sysconfig.get_link_flags()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"compiling the FLAC op failed: {' '.join(cmd)}\n{proc.stderr[-2000:]}")
        os.chmod(tmp_lib, 0o700)
        digest = os.path.join(tmp, LIBRARY_NAME + ".sha256")
        with open(digest, "w", encoding="ascii") as f:
            f.write(_digest(tmp_lib) + "\n")
        os.replace(tmp_lib, lib)  # atomic: concurrent builders are harmless
        os.replace(digest, lib + ".sha256")
    return _verified_library(out_dir) or lib


@tf.autograph.experimental.do_not_convert
def flac_op_module():
    """The loaded op module, or None (fallback to tensorflow-io) with a warning once."""
    global _module, _failure
    mode = os.environ.get("KERAS_DSSDN_FLAC_DECODER", "auto").lower()
    if mode == "tfio":
        return None
    with _lock:
        if _module is None and _failure is None:
            try:
                _module = tf.load_op_library(build_flac_op())
            except Exception as e:  # no compiler, no headers, ABI trouble...
                _failure = str(e)
                from keras_dssdn.audio import tfio_compat

                if mode != "native" and tfio_compat.available():
                    warnings.warn(
                        f"keras_dssdn: using tensorflow-io's FLAC decoder (about 8x slower) because the "
                        f"native FLAC op is unavailable: {_failure.splitlines()[0]}",
                        stacklevel=2,
                    )
    if _module is None and mode == "native":
        raise RuntimeError(f"KERAS_DSSDN_FLAC_DECODER=native but the FLAC op is unavailable: {_failure}")
    return _module


def failure_reason() -> str:
    """Why the native op is not used: its build/load error, or the environment variable that turned it off."""
    if os.environ.get("KERAS_DSSDN_FLAC_DECODER", "auto").lower() == "tfio":
        return "KERAS_DSSDN_FLAC_DECODER=tfio"
    return (_failure or "not loaded").splitlines()[0][:300]


def flac_decoder_name() -> str:
    """``"native"``, ``"tfio"`` or ``"none"`` (neither loads): which FLAC decoder the pipeline uses."""
    if flac_op_module() is not None:
        return "native"
    from keras_dssdn.audio import tfio_compat

    return "tfio" if tfio_compat.available() else "none"


@tf.autograph.experimental.do_not_convert
def decode_flac(contents, source=""):
    """FLAC bytes -> float32 ``(frames, channels)`` (native op; None if unavailable)."""
    module = flac_op_module()
    if module is None:
        return None
    samples, _ = module.keras_dssdn_decode_flac(contents, tf.cast(source, tf.string))
    return samples
