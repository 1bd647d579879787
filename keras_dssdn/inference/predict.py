"""Classify audio files with a trained model: sliding windows, per-window and aggregated top-k.

:func:`load_predictor` opens any of

* a ``.keras`` model from a training run (raw log-mel in; normalisation and
  class names inside) -- ``frontend.json`` beside it is used if present;
* a run folder (its ``best.keras``);
* an export bundle folder (its ``model_int8.tflite`` with ``frontend.json``:
  front-end settings, normalisation, class names), or any ``.tflite`` with
  such a ``frontend.json``, or with ``labels.json`` / ``normalization.json`` /
  ``frontend.json`` of a run folder beside it.

:func:`predict_file` decodes a file (WAV / FLAC, any rate, mono or stereo;
the package's TF decoders), resamples it to the model's rate, cuts it into
windows of the model's input length (hop = window length unless given; the
last window is aligned to the end so the tail is covered; a file shorter
than one window is zero-padded and flagged), computes log-mel, runs the model
and averages the window probabilities.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np

from keras_dssdn.layers.frontend import NormalizationStats, log_mel_spectrogram
from keras_dssdn.layers.labels import vocabulary_from_model
from keras_dssdn.errors import AudioFormatError, ModelFileError
from keras_dssdn.params import DEFAULT_FRONTEND, FrontEndParams

AUDIO_SUFFIXES = (".wav", ".flac")


@dataclasses.dataclass
class Predictor:
    """A model plus what it needs to turn audio into its input.

    ``model.predict(x)``: raw log-mel ``(B, n_mels, frames, 1)`` -> probabilities ``(B, K)``.
    """

    model: object
    frontend: FrontEndParams
    class_names: List[str]
    frames: int
    source: str
    devices: Optional[object] = None  # DeviceModels of a run with fine-tuned device models (dssdn-finetune)

    def model_for(self, device: Optional[str]):
        """The model answering for ``device``: its fine-tuned one, else the general one (said once per device)."""
        return self.devices.model_for(device) if self.devices is not None else self.model

    @property
    def window_seconds(self) -> float:
        """The clip length the model was trained on (1 s for 44 frames, 10 s for 431)."""
        return self.frontend.seconds_for_frames(self.frames)

    @property
    def window_samples(self) -> int:
        return self.frontend.num_samples(self.window_seconds)


def read_bundle_settings(folder):
    """The :class:`~keras_dssdn.frontend_constants.FrontEndConstants` of the export bundle ``folder`` (what
    its ``frontend.json`` tells a reader of its ``.tflite``: ``params``, the ``normalization`` the model expects and
    the ``class_names``), read only after its manifest checks out (:func:`keras_dssdn.manifest.verify_bundle`: a
    bundle changed after export is refused); :class:`ModelFileError` naming the file otherwise."""
    from keras_dssdn.frontend_constants import FrontEndConstants
    from keras_dssdn.errors import ExportError
    from keras_dssdn.fileio import read_json
    from keras_dssdn.manifest import verify_bundle

    folder = Path(folder)
    verify_bundle(folder)
    path = folder / "frontend.json"
    try:
        constants = FrontEndConstants.from_json(read_json(path, "bundle front-end file", "re-export the bundle",
                                                          ModelFileError), str(path))
    except ExportError as e:
        raise ModelFileError(str(e)) from None
    if not constants.class_names:
        raise ModelFileError(f"{path}: no class_names; re-export the bundle.")
    return constants


def _tflite_predictor(path: Path) -> Predictor:
    """A bundle's ``.tflite`` (front end, normalisation and class names from the bundle's ``frontend.json``, after
    the bundle's manifest is checked), or a loose ``.tflite`` in a run folder (the run's files)."""
    from keras_dssdn.manifest import bundle_folder
    from keras_dssdn.inference.evaluate import TFLiteClassifier
    from keras_dssdn.runs import find_run

    if bundle_folder(path) is not None:
        b = read_bundle_settings(path.parent)
        frontend, stats, names = b.params, b.normalization, list(b.class_names)
    else:
        run = find_run(path)
        if run is None:
            raise ModelFileError(f"{path}: no class names (the frontend.json of an export bundle beside it, or the "
                                 "labels.json of its run folder).")
        frontend, stats, names = run.frontend(), run.normalization(), list(run.vocabulary().names)
    model = TFLiteClassifier(path, reference=True, normalization=stats)
    return Predictor(model, frontend, list(names), int(model.input_shape[1]), str(path))


def _keras_predictor(path: Path) -> Predictor:
    """A ``.keras`` model: class names from its ClassNames layer (else its run's labels.json), front end from
    its run folder (else the package default)."""
    from keras_dssdn.inference.loading import load_classifier
    from keras_dssdn.runs import find_run

    run = find_run(path)
    model = load_classifier(path)
    vocab = vocabulary_from_model(model) or (run.vocabulary() if run else None)
    if vocab is None:
        raise ModelFileError(f"{path}: the model carries no class names and it is not inside a run folder.")
    if len(model.input_shape) != 4:
        raise ModelFileError(f"{path}: expected a log-mel model with input (n_mels, frames, 1), got "
                             f"{model.input_shape}.")
    frames = model.input_shape[2]
    if frames is None:
        raise ModelFileError(f"{path}: the model's input length is not fixed; cannot choose a window.")
    from keras_dssdn.inference.device_models import load_device_models

    import sys

    devices = load_device_models(run, log=lambda m: print(m, file=sys.stderr)) if run and path.name == "best.keras" \
        else None
    return Predictor(model, run.frontend() if run else DEFAULT_FRONTEND, list(vocab.names), int(frames), str(path),
                     devices)


def load_predictor(path) -> Predictor:
    """A :class:`Predictor` for a ``.keras`` / ``.tflite`` file, a run folder or an export bundle folder."""
    from keras_dssdn.manifest import MANIFEST, verify_bundle

    path = Path(path)
    if path.is_dir():
        if (path / MANIFEST).is_file():
            verify_bundle(path)  # names a missing model_int8.tflite too
        for candidate in ("model_int8.tflite", "best.keras"):
            if (path / candidate).is_file():
                return load_predictor(path / candidate)
        raise ModelFileError(f"{path}: neither an export bundle (model_int8.tflite) nor a run folder (best.keras).")
    if not path.is_file():
        raise ModelFileError(f"Model not found: {path}")
    return _tflite_predictor(path) if path.suffix == ".tflite" else _keras_predictor(path)


def _windows(x: np.ndarray, size: int, hop: int):
    """``(starts, windows (N, size), padded)`` covering ``x`` in memory (:func:`window_starts`)."""
    starts = window_starts(len(x), size, hop)
    return starts, np.stack([np.pad(x[s:s + size], (0, max(0, s + size - len(x)))) for s in starts]), len(x) < size


def top_k(probs: np.ndarray, names: Sequence[str], k: int) -> list:
    order = np.argsort(-probs)[:k]
    return [{"label": names[i], "probability": float(probs[i])} for i in order]


def _whole_file(path, rate: int):
    """A reader over the whole decoded file (FLAC, and WAV files :func:`~keras_dssdn.inference.stream.open_stream`
    does not stream): ``(length, read(a, b))`` at ``rate``."""
    from keras_dssdn.audio import load_waveform

    x = load_waveform(str(path), sample_rate=rate, mono=True)
    if not np.all(np.isfinite(x)):
        raise AudioFormatError(f"{path}: {int(np.sum(~np.isfinite(x)))} samples are NaN or infinite (a corrupt float "
                               "WAV); re-export or remove the file.")
    return len(x), lambda a, b: np.pad(x[max(a, 0):b], (max(0, -a), max(0, b - len(x))))


def _reader(path, rate: int):
    """``(length, read(a, b))``: the file's mono samples at ``rate``, read block by block from disk for a WAV
    (:mod:`keras_dssdn.inference.stream`: memory stays flat whatever the length), decoded whole otherwise."""
    from keras_dssdn.inference.stream import open_stream

    stream = open_stream(str(path), rate)
    if stream is None:
        return _whole_file(path, rate)
    return stream.length, stream.read


def window_starts(length: int, size: int, hop: int) -> np.ndarray:
    """Start samples of the windows covering ``length`` samples; the last window ends at the end (a signal no
    longer than one window gives one window at 0, zero-padded)."""
    if length <= size:
        return np.array([0])
    starts = list(range(0, length - size + 1, hop))
    if starts[-1] + size < length:
        starts.append(length - size)
    return np.array(starts)


def predict_file(predictor: Predictor, path, *, hop_seconds: Optional[float] = None, k: int = 3,
                 batch_size: int = 16, device: Optional[str] = None) -> dict:
    """Predictions for one audio file: ``{"file", "seconds", "windows": [...], "top": [...], "padded"}``.

    Windows are read ``batch_size`` at a time (a WAV straight from disk), so memory does not grow with the
    file's length. ``device``: the recording device, choosing a fine-tuned model when the run has one
    (``"auto"``: the last ``-`` field of the file name, TAU 2020's naming).

    Raises the decoder's error (naming the file) for unreadable audio.
    """
    p = predictor.frontend
    length, read = _reader(path, p.sample_rate)
    if length == 0:
        raise AudioFormatError(f"{path}: the file holds no audio samples.")
    size = predictor.window_samples
    hop = size if hop_seconds is None else max(1, int(round(hop_seconds * p.sample_rate)))
    starts = window_starts(length, size, hop)
    if device == "auto":
        from keras_dssdn.inference.device_models import device_from_filename

        device = device_from_filename(path)
    model = predictor.model_for(device)
    probs = []
    for i in range(0, len(starts), batch_size):
        block = starts[i:i + batch_size]
        x = read(int(block[0]), int(block[-1]) + size)
        wins = np.stack([x[s - block[0]:s - block[0] + size] for s in block])
        logmel = np.asarray(log_mel_spectrogram(wins, p))
        probs.append(np.asarray(model.predict(logmel, verbose=0)))
    probs = np.concatenate(probs)
    windows = [{"index": j, "start": float(s / p.sample_rate), "end": float(min(s + size, length) / p.sample_rate),
                "top": top_k(pr, predictor.class_names, k)} for j, (s, pr) in enumerate(zip(starts, probs))]
    mean = probs.mean(axis=0)
    return {"file": str(path), "seconds": float(length / p.sample_rate), "padded": bool(length < size),
            "device": device, "windows": windows, "top": top_k(mean, predictor.class_names, k),
            "probabilities": mean.tolist()}


def audio_files(inputs: Sequence) -> List[Path]:
    """Files named in ``inputs``, and the WAV / FLAC files below any folder among them, sorted."""
    out = []
    for item in inputs:
        item = Path(item)
        if item.is_dir():
            out += sorted(f for f in item.rglob("*") if f.suffix.lower() in AUDIO_SUFFIXES and f.is_file())
        else:
            out.append(item)
    return out


def predict_files(predictor: Predictor, inputs: Sequence, **kwargs) -> List[dict]:
    """:func:`predict_file` for every file; an unreadable file gives ``{"file", "error"}`` and the rest go on."""
    results = []
    for f in audio_files(inputs):
        try:
            results.append(predict_file(predictor, f, **kwargs))
        except Exception as e:  # noqa: BLE001 - reported per file, the others still run
            message = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            results.append({"file": str(f), "error": f"{type(e).__name__}: {message}"})
    return results
