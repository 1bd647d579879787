"""tensorflow-io, used only where its native ops load (docs/install.md).

keras_dssdn decodes WAV and FLAC and resamples with its own TF ops; tensorflow-io's
native ops are a fallback for three things only:

* FLAC decoding when the native FLAC op of :mod:`keras_dssdn.audio.native_flac`
  cannot be built (no C++ compiler or TensorFlow headers) or
  ``KERAS_DSSDN_FLAC_DECODER=tfio``;
* ``resample(..., method="tfio")``;
* resampling between two rates whose polyphase filter would be too large
  (nearly coprime rates such as 44100 -> 44101 Hz; usual rates are fine).

tensorflow-io 0.37.1 (its last release) loads its native ops with TensorFlow 2.17
only (undefined symbol with 2.21) and has no Python 3.13 wheels, so the TF 2.21
stack does not install it. :func:`tfio` returns the module or ``None``; the first
time it is ``None`` one warning (:data:`UNAVAILABLE`) says what is not available,
and :func:`require` raises an error saying the same.
"""

from __future__ import annotations

import re
import threading
import warnings
from typing import Optional, Tuple

import tensorflow as tf

from keras_dssdn.errors import UnsupportedAudioError

#: What is missing without tensorflow-io's native ops (everything else uses keras_dssdn's own TF ops).
UNAVAILABLE = ("FLAC decoding when the native FLAC op cannot be built (no C++ compiler), "
               "resample(method='tfio'), and resampling between rates whose polyphase filter is too large "
               "(nearly coprime rates such as 44100 -> 44101 Hz)")

_lock = threading.Lock()
_state: Optional[Tuple[object, str]] = None
_warned = False


def _probe() -> Tuple[object, str]:
    try:
        with warnings.catch_warnings():  # tensorflow-io warns for each library it fails to load
            warnings.simplefilter("ignore")
            import tensorflow_io as tfio_module
            from tensorflow_io.python.ops import core_ops

            core_ops.io_audio_resample  # noqa: B018 - attribute access loads libtensorflow_io.so
    except ImportError:
        return None, "tensorflow-io is not installed"
    except Exception as e:  # NotImplementedError "undefined symbol" on TF >= 2.18, OSError...
        text = str(e).strip()
        cause = re.search(r"undefined symbol: \S+", text)  # the usual cause, on tensorflow-io's "caused by" line
        first = cause.group(0).rstrip("'\"]") if cause else (text.splitlines() or [type(e).__name__])[0][:300]
        return None, f"tensorflow-io's native ops do not load with TensorFlow {tf.__version__} ({first})"
    return tfio_module, f"tensorflow-io {getattr(tfio_module, '__version__', '?')} native ops loaded"


def status() -> Tuple[object, str]:
    """``(tensorflow_io module or None, one-line reason)``; probed once per process."""
    global _state
    with _lock:
        if _state is None:
            _state = _probe()
        return _state


def available() -> bool:
    """Whether tensorflow-io's native ops load here."""
    return status()[0] is not None


def describe() -> str:
    """One line for logs and tools/setup_env.sh: tensorflow-io's state and, if missing, what is unavailable."""
    mod, reason = status()
    if mod is not None:
        return f"{reason} (fallbacks available)"
    return f"{reason}; not available: {UNAVAILABLE}. Everything else uses keras_dssdn's own TF ops."


def tfio():
    """The ``tensorflow_io`` module if its native ops load, else ``None`` (with one warning per process)."""
    global _warned
    mod, _ = status()
    if mod is None:
        with _lock:
            first, _warned = not _warned, True
        if first:
            warnings.warn(f"keras_dssdn: {describe()}", RuntimeWarning, stacklevel=2)
    return mod


def require(purpose: str):
    """The ``tensorflow_io`` module, or :class:`~keras_dssdn.errors.UnsupportedAudioError` naming ``purpose``."""
    mod = tfio()
    if mod is None:
        raise UnsupportedAudioError(
            f"{purpose} needs tensorflow-io's native ops, which are unavailable: {status()[1]}. They load only "
            "with TensorFlow 2.17 (Python 3.10-3.12): STACK=tf217 bash tools/setup_env.sh (docs/install.md).")
    return mod


__all__ = ["UNAVAILABLE", "available", "describe", "require", "status", "tfio"]
