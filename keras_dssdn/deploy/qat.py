"""Quantisation-aware training (QAT) of a Keras 3 model with tensorflow-model-optimization, in a child process.

tensorflow-model-optimization 0.8.1 quantises tf_keras (Keras 2) models only,
and importing it switches the whole process to tf_keras (SPEC.md). So QAT runs
in its own process and the two sides talk through files in a work folder:

* parent (Keras 3, :func:`run_qat` here): describes the model as tf_keras
  built-in layers (:func:`keras_dssdn.deploy.qat_mirror.build_mirror_spec`:
  batch norms folded, SC / OSC / SPC / ECA / FrequencySplit as built-in
  layers, the classifier ``Dense`` as a 1x1 convolution), then writes the
  spec, the weights, the check inputs with the Keras 3 outputs for them, the
  calibration inputs and the training data as ``.npy`` chunks (normalised
  log-mel ``(N, n_mels, frames, 1)`` float32 and int class ids ``(N,)`` or soft
  labels ``(N, classes)``; one folder reused every epoch, or a fresh augmented
  pass per epoch);
* child (tf_keras, ``python -m keras_dssdn.deploy.qat_child WORKDIR``,
  :mod:`keras_dssdn.deploy.qat_child`): builds the mirror and fails unless it
  reproduces the Keras 3 outputs, quantises (8-bit default scheme, activation
  ranges calibrated), fine-tunes with Adam and converts to int8 TFLite.

The OSC orthonormality regulariser is not carried into the mirror: QAT
fine-tunes a trained model for a few epochs with the cross-entropy alone.
:func:`keras_dssdn.deploy.export.export_bundle` feeds it the training run's
augmentation and label smoothing (:func:`keras_dssdn.deploy.export_data.qat_training_data`).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import dataclasses
from dataclasses import dataclass
from typing import Callable, List, Mapping, Optional, Tuple

import numpy as np

from keras_dssdn.deploy import qat_child as child
from keras_dssdn.utils.arrays import check_examples, example_batches
from keras_dssdn.deploy.qat_mirror import build_mirror_spec
from keras_dssdn.errors import ConfigError, QATError
from keras_dssdn.fileio import write_atomic, write_json_atomic

#: Mirror outputs must match the Keras 3 model's to this (max absolute difference).
MIRROR_TOLERANCE = 1e-4
#: Examples per training chunk file.
CHUNK = 1024


def _save_npy(path: str, array: np.ndarray) -> None:
    write_atomic(path, lambda tmp: np.save(tmp, array))


def _write_chunks(folder: str, train, max_examples: Optional[int], input_shape) -> int:
    """Stream ``(x, y)`` training data into ``x_####.npy`` / ``y_####.npy`` chunks; returns the count."""
    os.makedirs(folder)
    n, idx, buf_x, buf_y = 0, 0, [], []

    def flush():
        nonlocal idx
        if buf_x:
            _save_npy(os.path.join(folder, f"x_{idx:04d}.npy"), np.concatenate(buf_x))
            _save_npy(os.path.join(folder, f"y_{idx:04d}.npy"), np.concatenate(buf_y))
            idx += 1
            buf_x.clear()
            buf_y.clear()

    for x, y, _ in example_batches(train):
        if y is None:
            raise QATError("QAT training data has no labels; pass (x, y) batches or arrays.")
        x = check_examples(x, input_shape, "The QAT training data")
        y = np.asarray(y)
        y = y.astype(np.float32) if y.ndim == 2 else y.astype(np.int32)  # soft (mixup) or class-id labels
        if max_examples is not None:
            x, y = x[: max_examples - n], y[: max_examples - n]
        buf_x.append(x)
        buf_y.append(y)
        n += len(x)
        if sum(len(v) for v in buf_x) >= CHUNK:
            flush()
        if max_examples is not None and n >= max_examples:
            break
    flush()
    if n == 0:
        raise QATError("The QAT training data is empty.")
    return n


def _write_check(work: str, spec: dict, weights: dict, check_x: np.ndarray, check_y: np.ndarray) -> None:
    """The mirror spec, its weights, and the inputs / Keras 3 outputs it must reproduce."""
    write_json_atomic(os.path.join(work, child.SPEC), spec)
    write_atomic(os.path.join(work, child.WEIGHTS), lambda tmp: np.savez(tmp, **weights))
    _save_npy(os.path.join(work, child.CHECK_X), check_x)
    _save_npy(os.path.join(work, child.CHECK_Y), check_y)


def _write_training_data(work: str, train, epochs: int, max_examples: Optional[int], input_shape) -> int:
    """One chunk folder per epoch for ``epoch -> dataset``, else one reused every epoch; examples per epoch."""
    if not callable(train):
        return _write_chunks(child.epoch_folder(work, 0), train, max_examples, input_shape)
    counts = [_write_chunks(child.epoch_folder(work, e), train(e), max_examples, input_shape) for e in range(epochs)]
    return counts[0]


@dataclass(frozen=True)
class QATRun:
    """The settings of one quantisation-aware training run (:func:`run_qat`).

    ``epochs``; ``batch_size``; ``learning_rate``; ``label_smoothing`` of the cross-entropy; ``max_examples``:
    at most this many training examples per epoch (None: all); ``tolerance``: the largest absolute difference
    allowed between the tf_keras mirror's outputs and the Keras 3 model's; ``timeout``: seconds the child process
    may take; ``workdir``: where its files go (None: a temporary folder, removed afterwards); ``seed``.
    """

    epochs: int = 2
    batch_size: int = 32
    learning_rate: float = 1e-4
    label_smoothing: float = 0.0
    max_examples: Optional[int] = None
    tolerance: float = MIRROR_TOLERANCE
    timeout: float = 3 * 3600
    workdir: Optional[str] = None
    seed: int = 0

    def __post_init__(self):
        if int(self.epochs) < 1:
            raise ConfigError(f"QAT epochs must be >= 1, got {self.epochs}.")

    @classmethod
    def from_options(cls, epochs: int, options: Mapping) -> "QATRun":
        """From an export's QAT epochs and options (:class:`~keras_dssdn.deploy.settings.QATSettings`):
        :class:`ConfigError` naming an option that is not a field."""
        known = {f.name for f in dataclasses.fields(cls)} - {"epochs"}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ConfigError(f"QAT option(s) {unknown} are not known; use {sorted(known)} (and augment / distill).")
        return cls(epochs=int(epochs), **dict(options))


def run_qat(model, train, calibration: np.ndarray, check_inputs: np.ndarray, settings: QATRun = QATRun(),
            log: Callable = print) -> Tuple[bytes, dict]:
    """Quantisation-aware training of a Keras 3 log-mel classifier; returns ``(int8 flatbuffer, info)``.

    ``model`` takes normalised log-mel (no front-end layers: see
    :func:`keras_dssdn.deploy.prepare.prepare_model`). ``train``: ``(x, y)`` arrays, a
    ``tf.data`` dataset of ``(x, y[, metadata])`` batches (class ids or soft /
    one-hot labels), used every epoch, or a function ``epoch -> dataset``
    giving a fresh (e.g. augmented) pass per epoch; at most ``settings.max_examples``
    per epoch. ``calibration``: float inputs for the converter; ``check_inputs``:
    a few inputs on which the tf_keras mirror must reproduce ``model``'s
    outputs within ``settings.tolerance``. ``settings``: :class:`QATRun`. Runs
    ``python -m keras_dssdn.deploy.qat_child`` with ``TF_USE_LEGACY_KERAS=1``;
    its output is passed to ``log``.
    """
    s = settings
    epochs, max_examples, workdir = s.epochs, s.max_examples, s.workdir
    input_shape = tuple(int(d) for d in model.inputs[0].shape[1:])
    spec, weights = build_mirror_spec(model)
    check_inputs = np.asarray(check_inputs, np.float32)
    check_outputs = np.asarray(model(check_inputs, training=False))
    probabilities = bool(np.all(check_outputs >= -1e-6) and np.allclose(check_outputs.sum(axis=1), 1.0, atol=1e-3))
    own = workdir is None
    work = workdir or tempfile.mkdtemp(prefix="dssdn_qat_")
    os.makedirs(work, exist_ok=True)
    try:
        n = _write_training_data(work, train, epochs, max_examples, input_shape)
        spec.update({"epochs": int(epochs), "batch_size": int(s.batch_size), "learning_rate": float(s.learning_rate),
                     "label_smoothing": float(s.label_smoothing), "tolerance": float(s.tolerance),
                     "probabilities": probabilities, "seed": int(s.seed), "examples": n,
                     "fresh_data_per_epoch": callable(train), "classes": int(check_outputs.shape[-1])})
        _write_check(work, spec, weights, check_inputs, check_outputs)
        _save_npy(os.path.join(work, child.CALIBRATION), np.asarray(calibration, np.float32))
        log(f"  QAT: mirror of {len(spec['nodes'])} tf_keras layers, {n} training examples"
            f"{' (a fresh pipeline pass per epoch)' if callable(train) else ''}, {epochs} epochs "
            f"(child process, work folder {work})")
        result = _run_child(work, s.timeout, log)
        with open(os.path.join(work, child.OUTPUT), "rb") as f:
            return f.read(), result
    finally:
        if own:
            shutil.rmtree(work, ignore_errors=True)


def _child_env() -> dict:
    env = dict(os.environ)
    env["TF_USE_LEGACY_KERAS"] = "1"
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # holds keras_dssdn/
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def _stream_child(proc: subprocess.Popen, timeout: float, started: float, log: Callable) -> List[str]:
    """Pass the child's ``[qat]`` lines to ``log`` until it exits; the last 60 lines of its output."""
    tail: List[str] = []
    try:
        for line in proc.stdout:
            line = line.rstrip()
            tail = (tail + [line])[-60:]
            if line.startswith("[qat]"):
                log("    " + line)
            if time.time() - started > timeout:
                raise subprocess.TimeoutExpired(proc.args, timeout)
        proc.wait(timeout=max(1.0, timeout - (time.time() - started)))
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise QATError(f"QAT did not finish within {timeout:.0f} s; lower --qat-epochs or the data size.") from None
    return tail


def _run_child(work: str, timeout: float, log: Callable) -> dict:
    """Run ``python -m keras_dssdn.deploy.qat_child WORK`` with tf_keras; its ``result.json`` without ``ok``,
    plus ``seconds``."""
    import json

    started = time.time()
    proc = subprocess.Popen([sys.executable, "-m", "keras_dssdn.deploy.qat_child", work], env=_child_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    tail = _stream_child(proc, timeout, started, log)
    result_path = os.path.join(work, child.RESULT)
    result = {}
    if os.path.isfile(result_path):
        with open(result_path, encoding="utf-8") as f:
            result = json.load(f)
    if proc.returncode != 0 or not result.get("ok"):
        msg = result.get("error") or " | ".join(line for line in tail[-25:] if line.strip())  # one line
        raise QATError(f"Quantisation-aware training failed (exit code {proc.returncode}): {msg}")
    result.pop("ok", None)
    result["seconds"] = round(time.time() - started, 1)
    return result


def check_mirror(model, inputs: np.ndarray, tolerance: float = MIRROR_TOLERANCE, timeout: float = 600,
                 log: Callable = print) -> dict:
    """Build the tf_keras mirror of ``model`` in a child process and compare its outputs on ``inputs``.

    Raises :class:`QATError` if it differs by more than ``tolerance``; returns
    ``{"mirror_layers", "mirror_max_abs_diff", ...}``. No training, no conversion.
    """
    spec, weights = build_mirror_spec(model)
    inputs = np.asarray(inputs, np.float32)
    with tempfile.TemporaryDirectory(prefix="dssdn_mirror_") as work:
        spec.update({"check_only": True, "tolerance": float(tolerance)})
        _write_check(work, spec, weights, inputs, np.asarray(model(inputs, training=False)))
        return _run_child(work, timeout, log)
