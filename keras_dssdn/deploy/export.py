"""Export a trained model to float / int8 TFLite and a verified TensorFlow Lite Micro bundle.

Library::

    from keras_dssdn.deploy.export import export_bundle
    result = export_bundle("run/best.keras", "bundle/", data="../shared/data/tut17-dev", fold=1)
    print(result.report["deployed"], result.path)

Command line (same options): ``python tools/export.py --model run/best.keras
--data ../shared/data/tut17-dev --fold 1 --out bundle/`` (or ``--run-dir run/``).

What an export does, in order; any failure raises (an :class:`ExportError`
subclass) and leaves no bundle behind:

1. **Model.** Load the ``.keras`` file (or the model in a run folder) and split
   off what TFLite Micro cannot run: a leading
   :class:`~keras_dssdn.layers.frontend.LogMel` layer (the STFT) and
   :class:`~keras_dssdn.layers.frontend.LogMelNormalization` layer, and a trailing
   :class:`~keras_dssdn.layers.labels.ClassNames` layer. The exported models take the
   *normalised* log-mel ``(1, n_mels, frames, 1)``; the front end (STFT, mel
   filterbank, log offset, normalisation statistics, input quantisation) is
   written to the bundle as constants instead. A free time axis is fixed to
   the segment length.
2. **Data** (``data=`` a DCASE folder, ``fold=``): the representative set for
   calibration is at most ``num_calibration`` (default 200) examples drawn
   evenly from the ``train`` split through
   :func:`keras_dssdn.data.pipeline.make_dataset` (``training=False``: no shuffling,
   no augmentation), the same front end and normalisation as training. The
   ``evaluate`` split is the evaluation set, and ``num_verify`` (default 16)
   of its examples, spread over it, are the real inputs of the bit-exactness
   check. Arrays / ``tf.data`` datasets may be passed instead.
3. **Convert**: float TFLite, and full-integer int8 TFLite by post-training
   quantisation (int8 input and output, ``TFLITE_BUILTINS_INT8``); optionally
   quantisation-aware training in a child process (:mod:`keras_dssdn.deploy.qat`).
4. **Verify** every int8 model: operators all in TFLM
   (:class:`UnsupportedOperatorError` naming the operator); the TFLM
   interpreter's int8 output equals the TFLite reference interpreter's
   (ai-edge-litert, reference kernels) bit for bit on the real inputs
   (:class:`VerificationError` otherwise); the tensor arena measured with TFLM;
   accuracy and log loss on the evaluation set next to the float model's.
5. **Bundle**: written to a temporary sibling folder and renamed into place
   only after everything passed. Contents: see docs/deployment.md.

Units: sizes in bytes, accuracies as fractions in JSON (percent in Markdown),
log loss in nats, durations in seconds.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import hashlib
import json
import math
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

import keras
import tensorflow as tf

from keras_dssdn.deploy import micro
from keras_dssdn.analysis.budgets import DCASE_MAX_INT8_BYTES, DCASE_MAX_PARAMS
from keras_dssdn.errors import (  # noqa: F401 (re-exported)
    BundleExistsError, ExportError, RepresentativeDataError, UnsupportedOperatorError, VerificationError)
from keras_dssdn.params import DEFAULT_FRONTEND, FrontEndParams

#: Default number of calibration examples (representative set) and of real inputs for bit-exactness.
DEFAULT_NUM_CALIBRATION = 200
DEFAULT_NUM_VERIFY = 16
#: DCASE 2022-2024 parameter memory limit: 128 K parameters of 8 bits = 128 KB.
#: Float TFLite outputs must match the Keras model's to this (probabilities).
FLOAT_TOLERANCE = 1e-3

MODEL_FILE_NAMES = ("best.keras", "model.keras", "final.keras", "last.keras")


# ---------------------------------------------------------------------------
# Model loading and front-end split
# ---------------------------------------------------------------------------


def _register_custom_objects():
    # Importing registers every serialisable keras_dssdn layer (model, features, labels).
    import keras_dssdn.layers.frontend  # noqa: F401
    import keras_dssdn.layers.labels  # noqa: F401
    import keras_dssdn.models.dssdn  # noqa: F401


def load_keras_model(path: Union[str, os.PathLike]) -> keras.Model:
    """Load a ``.keras`` model with the package's custom layers, without its optimizer."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Model file not found: {path}. Pass a .keras file saved by model.save().")
    if not path.endswith(".keras"):
        raise ExportError(f"{path} is not a .keras file; save the model with model.save('name.keras') "
                          "(Keras 3 format) and export that.")
    _register_custom_objects()
    try:
        return keras.models.load_model(path, compile=False)
    except Exception as e:  # noqa: BLE001 - report the file, keep the cause
        raise ExportError(f"Could not load {path}: {type(e).__name__}: {e}") from e


@dataclasses.dataclass
class RunFolder:
    """What was found in a training run folder."""

    model_path: str
    config: Optional[dict] = None  # the training run's config.json (data, fold, clip_seconds, segment_seconds)
    frontend: Optional[FrontEndParams] = None
    normalization: object = None
    class_names: Optional[List[str]] = None
    sources: Dict[str, str] = dataclasses.field(default_factory=dict)


def _classify_json(d, path, found: RunFolder):
    from keras_dssdn.layers.frontend import NormalizationStats

    if not isinstance(d, dict):
        return
    keys = set(d)
    if found.class_names is None and isinstance(d.get("class_names"), list):
        found.class_names = [str(c) for c in d["class_names"]]
        found.sources["class_names"] = path
    if found.normalization is None and {"mean", "std"} <= keys:
        try:
            found.normalization = NormalizationStats.from_dict({k: d[k] for k in ("mean", "std", "mode", "count") if k in d})
            found.sources["normalization"] = path
        except (TypeError, ValueError):
            pass
    if found.frontend is None and {"sample_rate", "n_fft", "hop_length", "n_mels"} <= keys:
        try:
            found.frontend = FrontEndParams.from_dict(d)
            found.sources["frontend"] = path
        except (TypeError, ValueError):
            pass
    if found.config is None and {"clip_seconds", "segment_seconds"} <= keys:
        found.config = {k: d[k] for k in ("data", "eval_data", "fold", "clip_seconds", "segment_seconds", "augment",
                                          "label_smoothing") if k in d}
        found.sources["config"] = path
    for key in ("frontend", "front_end", "normalization", "vocabulary", "labels", "data"):
        if isinstance(d.get(key), dict):
            _classify_json(d[key], f"{path}:{key}", found)


def read_run_dir(run_dir: Union[str, os.PathLike]) -> RunFolder:
    """Find the model (``best.keras``, ``model.keras``, ``final.keras``, ``last.keras`` or the only
    ``.keras`` file) and any front-end / normalisation / class-name JSON files in a run folder."""
    run_dir = os.fspath(run_dir)
    if not os.path.isdir(run_dir):
        raise FileNotFoundError(f"Run folder not found: {run_dir}")
    model_path = None
    for name in MODEL_FILE_NAMES:
        for sub in ("", "checkpoints"):
            candidate = os.path.join(run_dir, sub, name)
            if os.path.isfile(candidate):
                model_path = candidate
                break
        if model_path:
            break
    if model_path is None:
        candidates = sorted(p for p in Path(run_dir).glob("*.keras")) + sorted(Path(run_dir).glob("*/*.keras"))
        if len(candidates) == 1:
            model_path = str(candidates[0])
        elif not candidates:
            raise FileNotFoundError(f"No .keras model in run folder {run_dir}; pass --model FILE.keras.")
        else:
            raise ExportError(f"Run folder {run_dir} has several models ({', '.join(map(str, candidates[:6]))}); "
                              "pass the one to export with --model.")
    found = RunFolder(model_path)
    for path in sorted(Path(run_dir).glob("*.json")):
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue
        _classify_json(d, str(path), found)
    return found


@dataclasses.dataclass
class PreparedModel:
    """A model ready to convert: the log-mel classifier and the front end split off it.

    ``core`` takes normalised log-mel ``(B, n_mels, frames, 1)`` float32 and
    returns ``(B, classes)``.
    """

    core: keras.Model
    frontend: FrontEndParams
    normalization: object  # NormalizationStats or None
    class_names: Optional[List[str]]
    segment_seconds: float
    source: str = "<in memory>"
    split_off: List[str] = dataclasses.field(default_factory=list)
    notes: List[str] = dataclasses.field(default_factory=list)
    sources: Dict[str, str] = dataclasses.field(default_factory=dict)
    run_config: Optional[dict] = None  # data / fold / clip_seconds of the training run, when known

    @property
    def input_shape(self) -> tuple:
        return tuple(int(d) for d in self.core.inputs[0].shape[1:])

    @property
    def num_classes(self) -> int:
        return int(self.core.outputs[0].shape[-1])


def _inbound_layers(layer) -> list:
    if not layer._inbound_nodes:
        return []
    return [t._keras_history[0] for t in layer._inbound_nodes[0].input_tensors]


def _split_front_end(model: keras.Model):
    """(core, LogMel layer or None, LogMelNormalization layer or None, ClassNames layer or None)."""
    from keras_dssdn.layers.frontend import LogMel, LogMelNormalization
    from keras_dssdn.layers.labels import ClassNames

    if not isinstance(model, keras.Model) or not hasattr(model, "inputs") or model.inputs is None:
        raise ExportError(f"Expected a functional Keras model, got {type(model).__name__}.")
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ExportError(f"{model.name} has {len(model.inputs)} inputs and {len(model.outputs)} outputs; "
                          "export supports one log-mel input and one class-score output.")
    layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    log_mel = next((layer for layer in layers if isinstance(layer, LogMel)), None)
    norm = next((layer for layer in layers if isinstance(layer, LogMelNormalization)), None)
    names = next((layer for layer in layers if isinstance(layer, ClassNames)), None)
    # Front-end layers must sit at the start of the graph, one after the other.
    tensor = model.inputs[0]
    for layer in (log_mel, norm):
        if layer is None:
            continue
        src = layer._inbound_nodes[0].input_tensors[0]
        if src is not tensor:
            raise ExportError(
                f"{model.name}: layer {layer.name} ({type(layer).__name__}) is not at the start of the model; "
                "TFLite Micro cannot run the front end, so it must come first to be split off. Rebuild the model "
                "with keras_dssdn.layers.frontend.attach_front_end.")
        tensor = layer.output
    nested = [layer for layer in layers if isinstance(layer, keras.Model)]
    rest = [layer for layer in layers if layer not in (log_mel, norm, names)]
    if len(rest) == 1 and nested and rest[0] is nested[0]:
        core = nested[0]  # attach_front_end(model): input -> [LogMel] -> [norm] -> model -> [ClassNames]
    elif log_mel is None and norm is None and names is None:
        core = model
    else:
        if nested:
            raise ExportError(f"{model.name} nests model(s) {[m.name for m in nested]} among other layers; "
                              "export supports a flat model or attach_front_end(model).")
        out = model.outputs[0]
        if names is not None:
            out = names._inbound_nodes[0].input_tensors[0]
        core = keras.Model(tensor, out, name=f"{model.name}_core")
    return core, log_mel, norm, names


def _fixed_input(core: keras.Model, shape) -> keras.Model:
    from keras_dssdn.analysis.complexity import _with_input_shape

    return _with_input_shape(core, tuple(shape))


def prepare_model(model, *, segment_seconds: Optional[float] = None, frontend: Optional[FrontEndParams] = None,
                  normalization=None, class_names: Optional[Sequence[str]] = None) -> PreparedModel:
    """Load (if a path) and split a model into a log-mel classifier + front end; see the module doc.

    ``model``: a ``keras.Model``, a ``.keras`` path or a run folder.
    ``segment_seconds``: audio per inference; required when the model's time
    axis is free, else read off the input and checked.
    ``frontend`` / ``normalization`` / ``class_names``: used when the model (or
    run folder) does not carry them; the model's own layers win.
    """
    from keras_dssdn.layers.frontend import NormalizationStats

    sources: Dict[str, str] = {}
    notes: List[str] = []
    source = "<in memory>"
    run = None
    if isinstance(model, (str, os.PathLike)) and os.path.isdir(os.fspath(model)):
        run = read_run_dir(model)
        if segment_seconds is None and run.config is not None and run.config.get("segment_seconds"):
            segment_seconds = float(run.config["segment_seconds"])
    if isinstance(model, (str, os.PathLike)):
        source = os.fspath(model)
        if run is not None:
            model = load_keras_model(run.model_path)
            source = run.model_path
        else:
            model = load_keras_model(source)
    core, log_mel_layer, norm_layer, names_layer = _split_front_end(model)
    split_off = [layer.name for layer in (log_mel_layer, norm_layer, names_layer) if layer is not None]

    if log_mel_layer is not None:
        fe = log_mel_layer.params
        sources["frontend"] = f"LogMel layer {log_mel_layer.name} in the model"
        if frontend is not None and frontend != fe:
            notes.append("The frontend= argument was ignored: the model's LogMel layer defines the front end.")
    elif frontend is not None:
        fe, sources["frontend"] = frontend, "given"
    elif run is not None and run.frontend is not None:
        fe, sources["frontend"] = run.frontend, run.sources["frontend"]
    else:
        fe, sources["frontend"] = DEFAULT_FRONTEND, "keras_dssdn.DEFAULT_FRONTEND (assumed: the model does not record its front end)"

    if norm_layer is not None:
        stats = norm_layer.stats
        sources["normalization"] = f"LogMelNormalization layer {norm_layer.name} in the model"
    elif normalization is not None:
        stats = normalization if isinstance(normalization, NormalizationStats) else NormalizationStats.from_dict(normalization)
        sources["normalization"] = "given"
    elif run is not None and run.normalization is not None:
        stats, sources["normalization"] = run.normalization, run.sources["normalization"]
    else:
        stats, sources["normalization"] = None, "none (the model takes raw log-mel)"

    if names_layer is not None:
        names, sources["class_names"] = list(names_layer.class_names), f"ClassNames layer {names_layer.name}"
    elif class_names is not None:
        names, sources["class_names"] = [str(c) for c in class_names], "given"
    elif run is not None and run.class_names is not None:
        names, sources["class_names"] = run.class_names, run.sources["class_names"]
    else:
        names = None

    shape = tuple(core.inputs[0].shape[1:])
    if len(shape) != 3 or shape[0] is None or shape[2] != 1:
        raise ExportError(f"{source}: the model input (after the front end) has shape {shape}; export expects "
                          "log-mel maps (n_mels, frames, 1).")
    if shape[0] != fe.n_mels:
        raise ExportError(f"{source}: the model takes {shape[0]} mel bands but the front end "
                          f"({sources['frontend']}) makes {fe.n_mels}; pass the training front end (frontend=).")
    if len(core.outputs[0].shape) != 2:
        raise ExportError(f"{source}: the model output has shape {tuple(core.outputs[0].shape)}; export expects "
                          "(batch, classes) scores.")
    frames = shape[1]
    if frames is None:
        if segment_seconds is None:
            raise ExportError(f"{source}: the model's time axis is free; pass the segment length it should take "
                              "(--segment SECONDS, e.g. 1 or 10).")
        frames = fe.num_frames(segment_seconds)
        core = _fixed_input(core, (shape[0], frames, 1))
        notes.append(f"Time axis fixed to {frames} frames ({segment_seconds:g} s).")
    else:
        if segment_seconds is None:
            seg = fe.seconds_for_frames(frames)
        else:
            seg = float(segment_seconds)
        if fe.num_frames(seg) != frames:
            raise ExportError(
                f"{source}: the model takes {frames} frames but {seg:g} s make {fe.num_frames(seg)} with hop "
                f"{fe.hop_length} at {fe.sample_rate} Hz; pass the segment length the model was trained on (--segment).")
        segment_seconds = seg
    if names is not None and len(names) != int(core.outputs[0].shape[-1]):
        raise ExportError(f"{source}: {len(names)} class names ({sources.get('class_names')}) but the model has "
                          f"{core.outputs[0].shape[-1]} outputs.")
    return PreparedModel(core, fe, stats, names, float(segment_seconds), source, split_off, notes, sources,
                         run.config if run is not None else None)


# ---------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------


def _spread(n: int, k: int) -> np.ndarray:
    """``min(n, k)`` indices spread evenly over ``range(n)``."""
    if n <= 0 or k <= 0:
        return np.zeros(0, np.int64)
    if k >= n:
        return np.arange(n)
    return np.unique(np.round(np.linspace(0, n - 1, k)).astype(np.int64))


def _batches(data):
    """Yield ``(x, y or None, clip_index or None)`` numpy batches from a dataset, array or tuple."""
    if isinstance(data, tf.data.Dataset):
        for item in data:
            if isinstance(item, (tuple, list)):
                x = np.asarray(item[0])
                y = np.asarray(item[1]) if len(item) > 1 else None
                meta = item[2] if len(item) > 2 else None
                clip = np.asarray(meta["clip_index"]) if isinstance(meta, dict) and "clip_index" in meta else None
            elif isinstance(item, dict):
                raise ExportError("Dataset elements are dicts; pass (x, y) or (x, y, metadata) tuples.")
            else:
                x, y, clip = np.asarray(item), None, None
            yield x, y, clip
        return
    if isinstance(data, (tuple, list)) and len(data) in (2, 3) and not np.isscalar(data[0]):
        x = np.asarray(data[0])
        y = np.asarray(data[1])
        clip = np.asarray(data[2]) if len(data) == 3 else None
        for i in range(0, len(x), 64):
            yield x[i:i + 64], y[i:i + 64], None if clip is None else clip[i:i + 64]
        return
    x = np.asarray(data)
    yield x, None, None


def _check_examples(x: np.ndarray, input_shape, what: str) -> np.ndarray:
    x = np.asarray(x)
    if x.dtype == object:
        raise RepresentativeDataError(f"{what}: could not read the data as an array.")
    if x.ndim == len(input_shape):  # a single example
        x = x[None]
    if x.ndim == len(input_shape) + 1 and x.shape[0] == 0:
        raise RepresentativeDataError(f"{what} is empty: it needs at least one example of shape {tuple(input_shape)}.")
    if tuple(x.shape[1:]) != tuple(input_shape):
        raise RepresentativeDataError(
            f"{what} has examples of shape {tuple(x.shape[1:])} (array {tuple(x.shape)}), but the model takes "
            f"{tuple(input_shape)} (n_mels, frames, 1). Build it with keras_dssdn.data.pipeline.make_dataset(..., "
            f"training=False) and the model's front end and segment length.")
    if not np.all(np.isfinite(x)):
        raise RepresentativeDataError(f"{what} contains NaN or infinite values.")
    return x.astype(np.float32)


def representative_array(data, input_shape, max_examples: int = DEFAULT_NUM_CALIBRATION,
                         what: str = "The representative dataset") -> np.ndarray:
    """Calibration examples ``(N, *input_shape)`` float32 from an array, a tf.data dataset or a tuple.

    A dataset may yield batches or single examples, as ``x`` or ``(x, y, ...)``.
    At most ``max_examples`` are kept, spread evenly over what is given.
    Raises :class:`RepresentativeDataError` when it is empty or of the wrong shape.
    """
    if data is None:
        raise RepresentativeDataError(f"{what} is missing: pass data= (a DCASE folder) or representative= (arrays).")
    parts = []
    for x, _, _ in _batches(data):
        if x.ndim == len(input_shape):
            x = x[None]
        parts.append(x)
    if not parts:
        raise RepresentativeDataError(f"{what} is empty: the dataset yielded nothing.")
    x = np.concatenate(parts) if len(parts) > 1 else parts[0]
    x = _check_examples(x, input_shape, what)
    return x[_spread(len(x), max_examples)]


def _pipeline_dataset(prep: PreparedModel, data, vocabulary, clip_seconds: Optional[float], indices=None,
                      batch_size: int = 32, split: str = "train", fold: int = 1, augment=None, seed: int = 0):
    from keras_dssdn.data.datasets import read_clips
    from keras_dssdn.data.pipeline import make_dataset

    clips = read_clips(data, split=split, fold=fold)
    if indices is not None:
        clips = clips.subset(list(indices))
    clip_s = prep.frontend.clip_seconds if clip_seconds is None else float(clip_seconds)
    seg = prep.segment_seconds
    if seg > clip_s + 1e-9:
        raise ExportError(f"The model takes {seg:g} s but clips are cut to {clip_s:g} s; pass --seconds >= {seg:g}.")
    segment = None if abs(seg - clip_s) < 1e-9 else seg
    if augment is None:
        ds = make_dataset(clips, prep.frontend, batch_size=batch_size, training=False, vocabulary=vocabulary,
                          clip_seconds=clip_s, segment_seconds=segment, cache=None, with_metadata=True,
                          normalization=prep.normalization, label_mode="int")
    else:  # shuffled and augmented like training (QAT); soft labels when mixup is on
        ds = make_dataset(clips, prep.frontend, batch_size=batch_size, training=True, augment=augment,
                          vocabulary=vocabulary, clip_seconds=clip_s, segment_seconds=segment, cache=None,
                          normalization=prep.normalization, seed=seed)
    per_clip = 1 if segment is None else prep.frontend.num_samples(clip_s) // prep.frontend.num_samples(segment)
    return ds, clips, per_clip


def _qat_augment(choice, run_config: dict):
    """AugmentConfig for QAT: ``"run"`` = the training run's (when known), ``"none"``, a dict or an AugmentConfig."""
    from keras_dssdn.data.augment import AugmentConfig

    if choice is None or choice == "none":
        return None
    if isinstance(choice, AugmentConfig):
        return choice if choice.any else None
    if isinstance(choice, dict):
        aug = AugmentConfig(**choice)
        return aug if aug.any else None
    if choice == "run":
        if "augment" not in run_config:
            return None
        aug = AugmentConfig(**(run_config.get("augment") or {}))
        return aug if aug.any else None
    raise ValueError(f"QAT augment must be 'run', 'none', a dict or an AugmentConfig, got {choice!r}.")


# ---------------------------------------------------------------------------
# Conversion and running TFLite
# ---------------------------------------------------------------------------


def convert_float(core: keras.Model) -> bytes:
    """Float32 TFLite flatbuffer of a Keras model (no optimisation)."""
    converter = tf.lite.TFLiteConverter.from_keras_model(core)
    return converter.convert()


def convert_int8(core: keras.Model, representative: np.ndarray) -> bytes:
    """Full-integer int8 TFLite (int8 input and output, builtin int8 kernels only) by post-training quantisation.

    ``representative``: ``(N, *input_shape)`` float32 calibration inputs
    (see :func:`representative_array`).
    """
    rep = _check_examples(representative, tuple(core.inputs[0].shape[1:]), "The representative dataset")

    def gen():
        for x in rep:
            yield [x[None]]

    converter = tf.lite.TFLiteConverter.from_keras_model(core)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = gen
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    try:
        return converter.convert()
    except Exception as e:  # noqa: BLE001
        raise ExportError(f"int8 conversion of {core.name} failed: {type(e).__name__}: {str(e)[:2000]}. An operator "
                          "without an int8 builtin kernel is the usual cause; replace that layer.") from e


def quantize_input(x: np.ndarray, scale: float, zero_point: int, dtype=np.int8) -> np.ndarray:
    """``clamp(round(x / scale) + zero_point)`` with rounding half away from zero (C ``roundf``), as TFLite does."""
    v = np.asarray(x, np.float64) / scale
    q = np.sign(v) * np.floor(np.abs(v) + 0.5) + zero_point
    info = np.iinfo(dtype)
    return np.clip(q, info.min, info.max).astype(dtype)


class TFLiteRunner:
    """The ai-edge-litert interpreter on one model; ``reference=True`` uses TFLite's reference kernels."""

    def __init__(self, flatbuffer: bytes, reference: bool = True):
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        kind = OpResolverType.BUILTIN_REF if reference else OpResolverType.AUTO
        self.interpreter = Interpreter(model_content=bytes(flatbuffer), experimental_op_resolver_type=kind)
        self.interpreter.allocate_tensors()
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]
        self.input_dtype = self.input["dtype"]
        self.input_scale, self.input_zero_point = self.input["quantization"]
        self.output_scale, self.output_zero_point = self.output["quantization"]

    @property
    def quantized(self) -> bool:
        return self.input_dtype != np.float32

    def to_input(self, x: np.ndarray) -> np.ndarray:
        """Float examples -> what the input tensor takes (quantised for an int8 model)."""
        if not self.quantized:
            return np.asarray(x, np.float32)
        return quantize_input(x, self.input_scale, self.input_zero_point, self.input_dtype)

    def run_raw(self, xq: np.ndarray) -> np.ndarray:
        """Raw outputs (int8 for an int8 model) for input-typed examples, one invoke each."""
        outs = []
        for x in xq:
            self.interpreter.set_tensor(self.input["index"], np.ascontiguousarray(x[None]))
            self.interpreter.invoke()
            outs.append(np.array(self.interpreter.get_tensor(self.output["index"])).reshape(-1))
        return np.stack(outs)

    def dequantize(self, raw: np.ndarray) -> np.ndarray:
        if self.output["dtype"] == np.float32:
            return raw.astype(np.float32)
        return ((raw.astype(np.float32) - self.output_zero_point) * self.output_scale).astype(np.float32)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Float outputs for float examples."""
        return self.dequantize(self.run_raw(self.to_input(x)))


def verify_bit_exact(flatbuffer: bytes, inputs: np.ndarray, arena_size: int, name: str = "int8 model") -> dict:
    """TFLM vs TFLite reference kernels on ``inputs`` (float, quantised here); raises on any difference."""
    ref = TFLiteRunner(flatbuffer, reference=True)
    xq = ref.to_input(inputs)
    expected = ref.run_raw(xq)
    got = micro.micro_invoke(flatbuffer, xq, arena_size)
    diff = np.abs(got.astype(np.int64) - expected.astype(np.int64))
    result = {"inputs": int(len(xq)), "bit_exact": bool(np.array_equal(got, expected)),
              "mismatching_inputs": int(np.sum(diff.max(axis=1) > 0)), "max_abs_diff": int(diff.max()),
              "interpreters": "tflite-micro (TFLM) vs ai-edge-litert BUILTIN_REF"}
    if not result["bit_exact"]:
        ops = micro.model_operators(flatbuffer)
        hints = [f"{op}: {hint}" for op, hint in micro.KNOWN_MISMATCH_HINTS.items() if op in ops]
        raise VerificationError(
            f"{name}: TFLite Micro's int8 output differs from the TFLite reference interpreter's on "
            f"{result['mismatching_inputs']} of {len(xq)} real inputs (up to {result['max_abs_diff']} quantisation "
            f"steps). The model would not behave on a device as measured here. "
            + (" Known cause: " + "; ".join(hints) + "." if hints else
               f" Operators used: {', '.join(ops)}; simplify the layer that introduces the mismatch."))
    return result


# ---------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------


def _looks_like_probabilities(p: np.ndarray) -> bool:
    return bool(np.all(p >= -1e-6) and np.allclose(p.sum(axis=1), 1.0, atol=2e-2))


def _softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def classification_metrics(probs: np.ndarray, labels: np.ndarray, clip_index: Optional[np.ndarray] = None,
                           class_names: Optional[Sequence[str]] = None) -> dict:
    """:func:`keras_dssdn.analysis.metrics.classification_metrics` of the examples (accuracy, class-wise and macro
    accuracy, log loss in nats, confusion matrix), plus ``clip``: the same for clips (segment probabilities
    averaged per ``clip_index``) when clips have several segments."""
    from keras_dssdn.analysis import metrics as M

    probs = np.asarray(probs, np.float64)
    labels = np.asarray(labels).astype(np.int64)
    keep = labels >= 0
    probs, labels = probs[keep], labels[keep]
    names = list(class_names) if class_names else [str(i) for i in range(probs.shape[1])]
    out = M.classification_metrics(labels, probs, names)
    if clip_index is not None:
        clip_index = np.asarray(clip_index)[keep]
        if len(np.unique(clip_index)) < len(clip_index):
            clip_probs, _, clip_labels = M.aggregate_clips(probs, clip_index, labels)
            clip = M.classification_metrics(clip_labels, clip_probs, names)
            out["clip"] = {k: clip[k] for k in ("examples", "accuracy", "macro_class_accuracy", "log_loss")}
    return out


def evaluate_models(core: keras.Model, int8_models: Dict[str, bytes], evaluation, *, class_names=None,
                    verify_count: int = 0, log: Callable = print) -> Tuple[dict, np.ndarray]:
    """Float (Keras) and int8 (TFLite reference kernels) predictions over one pass of ``evaluation``.

    ``evaluation`` yields ``(x, y)`` or ``(x, y, metadata)`` batches (or is an
    ``(x, y[, clip_index])`` tuple). Returns ``(metrics, verify_inputs)``:
    metrics per model (``"float"`` and each key of ``int8_models``), and
    ``verify_count`` examples spread over the set (the real inputs for the
    bit-exactness check). The int8 models run with the reference kernels, which
    TFLM matches bit for bit (checked separately), so their numbers are the
    device's.
    """
    runners = {name: TFLiteRunner(fb, reference=True) for name, fb in int8_models.items()}
    probs = {name: [] for name in ["float", *runners]}
    labels, clips = [], []
    pool, stride = [], 1  # evenly thinned examples for the bit-exactness check
    seen = 0
    t0 = time.time()
    is_prob = None
    for x, y, clip in _batches(evaluation):
        x = _check_examples(x, tuple(core.inputs[0].shape[1:]), "The evaluation set")
        if y is None:
            raise ExportError("The evaluation set has no labels; pass (x, y) batches.")
        y = np.asarray(y)
        if y.ndim == 2:
            y = y.argmax(axis=1)
        p = np.asarray(core(x, training=False))
        if is_prob is None:
            is_prob = _looks_like_probabilities(p)
        probs["float"].append(p if is_prob else _softmax(p))
        for name, runner in runners.items():
            q = runner.predict(x)
            probs[name].append(q if is_prob else _softmax(q))
        labels.append(y)
        clips.append(clip if clip is not None else np.arange(seen, seen + len(x)))
        for i in range(len(x)):
            if verify_count and (seen + i) % stride == 0:
                pool.append((seen + i, x[i]))
                if len(pool) > 4 * verify_count:
                    stride *= 2
                    pool = [(g, v) for g, v in pool if g % stride == 0]
        seen += len(x)
    if not seen:
        raise ExportError("The evaluation set is empty.")
    labels = np.concatenate(labels)
    clips = np.concatenate(clips)
    results = {}
    for name, parts in probs.items():
        p = np.concatenate(parts)
        results[name] = classification_metrics(p, labels, clips, class_names)
        results[name]["top1_agreement_with_float"] = float(np.mean(
            p.argmax(axis=1) == np.concatenate(probs["float"]).argmax(axis=1)))
    pool_x = np.stack([v for _, v in pool]) if pool else np.zeros((0, *core.inputs[0].shape[1:]), np.float32)
    verify = pool_x[_spread(len(pool_x), verify_count)]
    log(f"  evaluated {seen} examples with {len(probs)} models in {time.time() - t0:.1f} s")
    return results, verify


# ---------------------------------------------------------------------------
# The export
# ---------------------------------------------------------------------------


@dataclasses.dataclass
class ExportResult:
    """Where the bundle is and what the export measured (``report`` = report.json)."""

    path: str
    report: dict
    files: List[str]


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _versions() -> dict:
    from importlib import metadata

    out = {"tensorflow": tf.__version__, "keras": keras.__version__}
    for dist in ("ai-edge-litert", "tflite-micro", "tensorflow-model-optimization", "tf-keras"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out


def _tensor_quant(flatbuffer: bytes):
    r = TFLiteRunner(flatbuffer, reference=True)
    return (float(r.input_scale), int(r.input_zero_point), float(r.output_scale), int(r.output_zero_point),
            [int(d) for d in r.input["shape"]])


def _check_int8(name: str, flatbuffer: bytes, verify_inputs: np.ndarray, log: Callable) -> dict:
    """Operator check, arena measurement and bit-exactness for one int8 model."""
    from keras_dssdn.analysis.complexity import tflite_constant_bytes

    ops = micro.check_micro_operators(flatbuffer, where=f"The {name} int8 model")
    runner = TFLiteRunner(flatbuffer)
    if runner.input_dtype != np.int8 or runner.output["dtype"] != np.int8:
        raise VerificationError(f"The {name} model has {runner.input_dtype.__name__} input / "
                                f"{runner.output['dtype'].__name__} output; a full-integer int8 model was expected.")
    t = time.time()
    arena = micro.measure_arena(flatbuffer)
    log(f"  {name}: TFLM arena {arena['min_bytes']:,} B (recommended {arena['recommended_bytes']:,} B) "
        f"in {time.time() - t:.1f} s")
    t = time.time()
    exact = verify_bit_exact(flatbuffer, verify_inputs, arena["recommended_bytes"], name=f"The {name} int8 model")
    log(f"  {name}: TFLM == TFLite reference kernels on {exact['inputs']} real inputs (bit-exact) "
        f"in {time.time() - t:.1f} s")
    sizes = tflite_constant_bytes(flatbuffer)
    return {"operators": ops, "arena": arena, "bit_exactness": exact,
            "bytes": {"file": len(flatbuffer), "int8_weights": sizes["int8"], "int32": sizes["int32"],
                      "other_constants": sizes["other"]}}


def export_bundle(
    model,
    out_dir: Union[str, os.PathLike],
    *,
    data=None,
    fold: int = 1,
    train_data=None,
    eval_data=None,
    representative=None,
    evaluation=None,
    verify_inputs=None,
    clip_seconds: Optional[float] = None,
    segment_seconds: Optional[float] = None,
    num_calibration: int = DEFAULT_NUM_CALIBRATION,
    num_verify: int = DEFAULT_NUM_VERIFY,
    eval_limit: Optional[int] = None,
    qat_epochs: int = 0,
    qat_train=None,
    qat_options: Optional[dict] = None,
    deploy: str = "best",
    max_accuracy_drop: Optional[float] = None,
    frontend: Optional[FrontEndParams] = None,
    normalization=None,
    class_names: Optional[Sequence[str]] = None,
    force: bool = False,
    command: Optional[str] = None,
    log: Callable = print,
) -> ExportResult:
    """Export ``model`` to a verified TFLite Micro bundle in ``out_dir`` (see the module doc).

    Args:
      model: a ``keras.Model``, a ``.keras`` file or a run folder.
      out_dir: the bundle folder; must not exist unless ``force``.
      data: a DCASE dataset folder (or ``path,label`` CSV); ``fold`` picks
        ``fold<N>_train`` (calibration, QAT) and ``fold<N>_evaluate``
        (evaluation, bit-exactness inputs). ``train_data`` / ``eval_data``
        (ClipList or path) override one split each.
      representative / evaluation / verify_inputs: arrays or ``tf.data``
        datasets used instead of the pipeline (normalised log-mel, the model's
        input shape; ``evaluation`` yields ``(x, y[, metadata])``).
      clip_seconds: length clips are cropped to (default the front end's, 10 s);
      segment_seconds: audio per inference (default: read off the model input).
      num_calibration: at most this many calibration examples (default 200).
      num_verify: real inputs for the TFLM bit-exactness check (default 16).
      eval_limit: evaluate on this many clips spread over the split (smoke
        tests; the report says so).
      qat_epochs: > 0 also runs quantisation-aware training for that many epochs
        in a child process, on ``qat_train`` (``(x, y)`` arrays) or the train split.
      qat_options: extra :func:`keras_dssdn.deploy.qat.run_qat` arguments
        (``learning_rate``, ``batch_size``, ``label_smoothing``, ``max_examples``,
        ``timeout``) and ``augment``: ``"run"`` (default: the training run's
        augmentation and label smoothing from its config.json, a freshly
        augmented pass of the train split per epoch), ``"none"``, or an
        AugmentConfig / dict.
      deploy: which int8 model goes to the device files: ``"ptq"``, ``"qat"``
        or ``"best"`` (higher int8 accuracy on the evaluation set; PTQ on ties
        or without QAT).
      max_accuracy_drop: fail if the deployed int8 accuracy is more than this
        many points (percent) below the float model's.
      frontend / normalization / class_names: used when the model and run
        folder do not record them.
      force: replace an existing bundle folder.
    """
    t_start = time.time()
    out = Path(out_dir).resolve()
    if out.exists() and not force:
        raise BundleExistsError(f"Bundle folder {out} exists; pass force=True (--force) to replace it, or choose "
                                "another --out.")
    if out.exists() and not out.is_dir():
        raise BundleExistsError(f"{out} exists and is not a folder; remove it or choose another --out.")
    if not out.parent.is_dir():
        raise FileNotFoundError(f"The parent folder of the bundle, {out.parent}, does not exist; create it first.")
    if deploy not in ("best", "ptq", "qat"):
        raise ValueError(f"deploy must be 'best', 'ptq' or 'qat', got {deploy!r}.")
    if deploy == "qat" and qat_epochs <= 0:
        raise ValueError("deploy='qat' needs qat_epochs > 0.")
    if num_verify < 1:
        raise ValueError(f"num_verify must be >= 1, got {num_verify}.")

    log(f"Exporting {model if isinstance(model, (str, os.PathLike)) else getattr(model, 'name', 'model')} -> {out}")
    prep = prepare_model(model, segment_seconds=segment_seconds, frontend=frontend, normalization=normalization,
                         class_names=class_names)
    shape = prep.input_shape
    if prep.run_config:
        rc = prep.run_config
        if data is None and train_data is None and eval_data is None and rc.get("data"):
            data = rc["data"]
            if rc.get("eval_data"):
                eval_data = rc["eval_data"]
            fold = int(rc.get("fold") or fold)
            log(f"  data from the run's config: {data} (fold {fold})")
        if clip_seconds is None and rc.get("clip_seconds"):
            clip_seconds = float(rc["clip_seconds"])
    log(f"  model input {shape} ({prep.segment_seconds:g} s), {prep.num_classes} classes; split off: "
        f"{prep.split_off or 'nothing'}")

    # ---- data ----
    train_src = train_data if train_data is not None else data
    eval_src = eval_data if eval_data is not None else data
    vocab = None
    data_report = {"calibration": None, "evaluation": None, "verification": None}
    if train_src is not None or eval_src is not None:
        from keras_dssdn.layers.labels import LabelVocabulary
        from keras_dssdn.data.datasets import read_clips

        if prep.class_names is not None:
            vocab = LabelVocabulary(prep.class_names)
        else:
            train_clips = read_clips(train_src if train_src is not None else eval_src, split="train", fold=fold)
            vocab = train_clips.vocabulary()
            prep.class_names = list(vocab.names)
            prep.sources["class_names"] = f"labels of {train_clips.name or 'the training split'}"
        if len(vocab) != prep.num_classes:
            raise ExportError(f"The data has {len(vocab)} classes {list(vocab.names)} but the model has "
                              f"{prep.num_classes} outputs; export with the dataset the model was trained on.")

    rep_source = "given"
    if representative is None:
        if train_src is None:
            raise RepresentativeDataError("No representative data: pass data= (a DCASE folder, e.g. "
                                          "../shared/data/tut17-dev) or representative= (an array or tf.data dataset).")
        from keras_dssdn.data.datasets import read_clips

        n_clips = len(read_clips(train_src, split="train", fold=fold))
        clip_s = prep.frontend.clip_seconds if clip_seconds is None else clip_seconds
        segmented = abs(prep.segment_seconds - clip_s) > 1e-9
        take = _spread(n_clips, max(1, num_calibration // 2) if segmented else num_calibration)
        ds, clips, _ = _pipeline_dataset(prep, train_src, vocab, clip_seconds, take, split="train", fold=fold)
        representative = ds
        rep_source = (f"{len(take)} of {n_clips} clips of {clips.name or 'the train split'} spread evenly, "
                      f"keras_dssdn.data.pipeline.make_dataset(training=False)")
    rep = representative_array(representative, shape, num_calibration)
    data_report["calibration"] = {"examples": int(len(rep)), "source": rep_source}
    log(f"  calibration: {len(rep)} examples ({rep_source})")

    if evaluation is None and eval_src is not None:
        from keras_dssdn.data.datasets import read_clips

        n_eval = len(read_clips(eval_src, split="evaluate", fold=fold))
        take = _spread(n_eval, eval_limit) if eval_limit else None
        evaluation, eclips, per_clip = _pipeline_dataset(prep, eval_src, vocab, clip_seconds, take,
                                                         split="evaluate", fold=fold)
        data_report["evaluation"] = {
            "source": f"{eclips.name or 'evaluate split'}", "clips": len(eclips), "segments_per_clip": per_clip,
            "limited": bool(eval_limit), "of_clips": n_eval}
    elif evaluation is not None:
        data_report["evaluation"] = {"source": "given"}

    # ---- float ----
    t = time.time()
    float_fb = convert_float(prep.core)
    log(f"  float TFLite: {len(float_fb):,} B in {time.time() - t:.1f} s")

    # ---- int8 by post-training quantisation ----
    t = time.time()
    ptq_fb = convert_int8(prep.core, rep)
    log(f"  int8 TFLite (PTQ): {len(ptq_fb):,} B in {time.time() - t:.1f} s")
    micro.check_micro_operators(ptq_fb, where="The int8 (post-training quantised) model")
    int8_models = {"ptq": ptq_fb}

    # ---- int8 by quantisation-aware training ----
    qat_info = None
    if qat_epochs > 0:
        from keras_dssdn.deploy import qat as qat_mod

        t = time.time()
        options = dict(qat_options or {})
        rc = prep.run_config or {}
        if qat_train is None:
            if train_src is None:
                raise ExportError("QAT needs training data: pass data= (a DCASE folder) or qat_train=(x, y).")
            augment = _qat_augment(options.pop("augment", "run"), rc)
            if augment is None:
                ds, _, _ = _pipeline_dataset(prep, train_src, vocab, clip_seconds, None, split="train", fold=fold)
                qat_train = ds
            else:  # a freshly augmented pass of the train split per epoch, as in training

                def qat_train(epoch, _aug=augment):
                    return _pipeline_dataset(prep, train_src, vocab, clip_seconds, None, split="train", fold=fold,
                                             augment=_aug, seed=1000 + epoch)[0]
            options.setdefault("label_smoothing", float(rc.get("label_smoothing") or 0.0))
        else:
            options.pop("augment", None)
        check_x = rep[_spread(len(rep), 8)]
        qat_fb, qat_info = qat_mod.run_qat(prep.core, qat_train, calibration=rep, check_inputs=check_x,
                                           epochs=qat_epochs, log=log, **options)
        log(f"  int8 TFLite (QAT, {qat_epochs} epochs): {len(qat_fb):,} B in {time.time() - t:.1f} s")
        micro.check_micro_operators(qat_fb, where="The int8 (quantisation-aware trained) model")
        int8_models["qat"] = qat_fb

    # ---- evaluation (and the real inputs for the bit-exactness check) ----
    metrics = None
    if evaluation is not None:
        metrics, pool = evaluate_models(prep.core, int8_models, evaluation, class_names=prep.class_names,
                                        verify_count=num_verify, log=log)
        if verify_inputs is None:
            verify_inputs = pool
            data_report["verification"] = {"source": f"{len(pool)} examples spread over the evaluation set"}
    if verify_inputs is None:
        verify_inputs = rep[_spread(len(rep), num_verify)]
        data_report["verification"] = {"source": f"{len(verify_inputs)} examples of the calibration set "
                                                 "(no evaluation set given)"}
    elif data_report["verification"] is None:
        data_report["verification"] = {"source": "given"}
    verify_inputs = _check_examples(verify_inputs, shape, "The verification inputs")

    # ---- float TFLite parity ----
    float_runner = TFLiteRunner(float_fb, reference=False)
    float_diff = float(np.max(np.abs(float_runner.predict(verify_inputs) - np.asarray(prep.core(verify_inputs)))))
    if float_diff > FLOAT_TOLERANCE:
        raise VerificationError(f"The float TFLite model differs from the Keras model by {float_diff:.2e} "
                                f"(> {FLOAT_TOLERANCE:g}) on the verification inputs; the conversion is wrong.")

    # ---- TFLM checks per int8 model ----
    variants = {}
    for name, fb in int8_models.items():
        variants[name] = _check_int8(name.upper(), fb, verify_inputs, log)
        if metrics is not None:
            variants[name]["metrics"] = metrics[name]

    if deploy == "best":
        chosen = "ptq"
        if "qat" in int8_models and metrics is not None and metrics["qat"]["accuracy"] > metrics["ptq"]["accuracy"]:
            chosen = "qat"
    else:
        chosen = deploy
    deployed_fb = int8_models[chosen]

    drop = None
    if metrics is not None:
        drop = 100.0 * (metrics["float"]["accuracy"] - metrics[chosen]["accuracy"])
        if max_accuracy_drop is not None and drop > max_accuracy_drop:
            raise VerificationError(
                f"The deployed int8 model ({chosen.upper()}) is {drop:.2f} points below the float model "
                f"({100 * metrics[chosen]['accuracy']:.2f} % vs {100 * metrics['float']['accuracy']:.2f} %), more "
                f"than the allowed {max_accuracy_drop:g}; run quantisation-aware training (--qat-epochs) or "
                "raise --max-drop.")

    in_scale, in_zp, out_scale, out_zp, in_shape = _tensor_quant(deployed_fb)
    consts = micro.frontend_constants(prep.frontend, in_shape, in_scale, in_zp, prep.normalization,
                                      prep.class_names, out_scale, out_zp, seconds=prep.segment_seconds)
    params = int(prep.core.count_params())
    report = {
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": command,
        "model": {"source": prep.source, "name": prep.core.name, "input_shape": list(shape),
                  "segment_seconds": prep.segment_seconds, "classes": prep.num_classes,
                  "class_names": prep.class_names, "parameters": params, "split_off": prep.split_off,
                  "sources": prep.sources, "notes": prep.notes},
        "data": data_report,
        "float": {"bytes": len(float_fb), "max_abs_diff_vs_keras": float_diff,
                  "metrics": None if metrics is None else metrics["float"]},
        "int8": variants,
        "deployed": chosen,
        "deployed_accuracy_drop_points": drop,
        "qat": qat_info,
        "dcase_budget": {"parameters": params, "parameters_limit": DCASE_MAX_PARAMS,
                         "int8_weight_bytes": variants[chosen]["bytes"]["int8_weights"],
                         "int8_bytes_limit": DCASE_MAX_INT8_BYTES,
                         "fits": bool(params <= DCASE_MAX_PARAMS
                                      and variants[chosen]["bytes"]["int8_weights"] <= DCASE_MAX_INT8_BYTES)},
        "flash_bytes": len(deployed_fb),
        "frontend_flash_bytes": micro.frontend_constant_bytes(consts),
        "arena_bytes": variants[chosen]["arena"]["recommended_bytes"],
        "arena_min_bytes": variants[chosen]["arena"]["min_bytes"],
        "versions": _versions(),
        "bundle": str(out),
    }

    # ---- write the bundle atomically ----
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    try:
        files = _write_bundle(tmp, prep, float_fb, int8_models, chosen, consts, report)
        # Re-read what a device gets and run it once more in TFLM from the written files.
        written = (tmp / "model_int8.tflite").read_bytes()
        c_bytes = micro.parse_c_array((tmp / "micro" / "dssdn_model_data.cc").read_text())
        if written != deployed_fb or c_bytes != deployed_fb:
            raise VerificationError("The written model files do not match the verified model bytes.")
        report["seconds"] = round(time.time() - t_start, 1)
        (tmp / "report.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        (tmp / "report.md").write_text(report_markdown(report), encoding="utf-8")
        files += ["report.json", "report.md"]
        _write_manifest(tmp, files)
        if out.exists():
            old = out.parent / f".{out.name}.old-{os.getpid()}"
            os.rename(out, old)
            os.rename(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log(f"  bundle written: {out} ({chosen.upper()} deployed, {report['flash_bytes']:,} B flash, "
        f"{report['arena_bytes']:,} B arena) in {report['seconds']:.0f} s")
    return ExportResult(str(out), report, files + ["manifest.json"])


def _write_bundle(folder: Path, prep: PreparedModel, float_fb: bytes, int8_models: Dict[str, bytes], chosen: str,
                  consts: dict, report: dict) -> List[str]:
    folder.mkdir(parents=True)
    (folder / "micro").mkdir()
    files = {}
    files["model_float.tflite"] = float_fb
    files["model_int8.tflite"] = int8_models[chosen]
    for name, fb in int8_models.items():
        files[f"model_int8_{name}.tflite"] = fb
    for name, data in files.items():
        (folder / name).write_bytes(data)
    deployed = report["int8"][chosen]
    in_scale = consts["input_quantization"]["scale"]
    out_q = consts["output_quantization"]
    settings = {"arena_bytes": deployed["arena"]["recommended_bytes"], "arena_min_bytes": deployed["arena"]["min_bytes"],
                "model_bytes": len(int8_models[chosen]), "input_shape": [1, *prep.input_shape],
                "input_scale": in_scale, "input_zero_point": consts["input_quantization"]["zero_point"],
                "output_scale": out_q["scale"], "output_zero_point": out_q["zero_point"],
                "class_names": prep.class_names or [f"class_{i}" for i in range(prep.num_classes)]}
    sources = {}
    sources.update(micro.c_array_source(int8_models[chosen], "g_dssdn_model_data", "dssdn_model_data.h",
                                        comment=f"model_int8.tflite ({chosen.upper()}), sha256 "
                                                f"{_sha256(int8_models[chosen])}"))
    sources["dssdn_op_resolver.h"] = micro.op_resolver_header(deployed["operators"])
    sources.update(micro.model_settings_sources(settings))
    sources.update(micro.frontend_sources(consts))
    sources["dssdn_example.cc"] = micro.EXAMPLE_SOURCE
    for name, text in sources.items():
        (folder / "micro" / name).write_text(text, encoding="utf-8")
    (folder / "frontend.json").write_text(json.dumps(consts, indent=1) + "\n", encoding="utf-8")
    from keras_dssdn.layers.frontend import mel_filterbank, stft_window

    with open(folder / "frontend.npz", "wb") as f:
        extra = {}
        if prep.normalization is not None:
            extra = {"norm_mean": np.asarray(prep.normalization.mean, np.float32),
                     "norm_std": np.asarray(prep.normalization.std, np.float32)}
        np.savez(f, window=stft_window(prep.frontend), mel_filterbank=mel_filterbank(prep.frontend),
                 logmel_to_int8_scale=np.asarray(consts["logmel_to_int8"]["scale"], np.float32),
                 logmel_to_int8_offset=np.asarray(consts["logmel_to_int8"]["offset"], np.float32), **extra)
    return sorted(files) + [f"micro/{n}" for n in sorted(sources)] + ["frontend.json", "frontend.npz"]


def _write_manifest(folder: Path, files: Sequence[str]):
    entries = {}
    for name in files:
        data = (folder / name).read_bytes()
        entries[name] = {"bytes": len(data), "sha256": _sha256(data)}
    (folder / "manifest.json").write_text(json.dumps(entries, indent=2) + "\n", encoding="utf-8")


def _pct(v):
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.2f} %"


def _num(v, fmt="{:.3f}"):
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else fmt.format(v)


def report_markdown(report: dict) -> str:
    """report.md: the numbers of report.json as tables."""
    m = report["model"]
    lines = [f"# Export report: {m['name']}", "",
             f"- source: `{m['source']}`",
             f"- input: int8 log-mel {m['input_shape']} ({m['segment_seconds']:g} s), {m['classes']} classes, "
             f"{m['parameters']:,} parameters",
             f"- split off (run on the device as front-end constants): {', '.join(m['split_off']) or 'nothing'}",
             f"- front end: {m['sources'].get('frontend')}; normalisation: {m['sources'].get('normalization')}",
             f"- deployed int8 model: **{report['deployed'].upper()}**, flash {report['flash_bytes']:,} B, "
             f"tensor arena {report['arena_bytes']:,} B (measured minimum {report['arena_min_bytes']:,} B); "
             f"front-end constants {report.get('frontend_flash_bytes', 0):,} B flash",
             ]
    if report.get("command"):
        lines.append(f"- command: `{report['command']}`")
    for note in m.get("notes") or []:
        lines.append(f"- note: {note}")
    d = report["data"]
    lines += ["", "## Data", ""]
    for key in ("calibration", "evaluation", "verification"):
        if d.get(key):
            lines.append(f"- {key}: " + ", ".join(f"{k} {v}" for k, v in d[key].items()))
    lines += ["", "## Accuracy and size", "",
              "| model | accuracy | log loss | clip accuracy | clip log loss | file bytes | int8 weight bytes | "
              "arena bytes (min / recommended) | TFLM bit-exact |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    fm = report["float"].get("metrics") or {}
    lines.append(f"| float (Keras) | {_pct(fm.get('accuracy'))} | {_num(fm.get('log_loss'))} | "
                 f"{_pct((fm.get('clip') or {}).get('accuracy'))} | {_num((fm.get('clip') or {}).get('log_loss'))} | "
                 f"{report['float']['bytes']:,} (float TFLite) | - | - | - |")
    for name, v in report["int8"].items():
        mm = v.get("metrics") or {}
        be = v["bit_exactness"]
        lines.append(
            f"| int8 {name.upper()}{' (deployed)' if name == report['deployed'] else ''} | {_pct(mm.get('accuracy'))} | "
            f"{_num(mm.get('log_loss'))} | {_pct((mm.get('clip') or {}).get('accuracy'))} | "
            f"{_num((mm.get('clip') or {}).get('log_loss'))} | {v['bytes']['file']:,} | {v['bytes']['int8_weights']:,} | "
            f"{v['arena']['min_bytes']:,} / {v['arena']['recommended_bytes']:,} | "
            f"{'yes' if be['bit_exact'] else 'NO'} ({be['inputs']} inputs) |")
    if report.get("deployed_accuracy_drop_points") is not None:
        lines.append("")
        lines.append(f"Deployed int8 accuracy is {report['deployed_accuracy_drop_points']:+.2f} points below float "
                     "(negative: above). int8 numbers come from TFLite's reference kernels, which TFLM matched bit "
                     "for bit on the verification inputs.")
    b = report["dcase_budget"]
    lines += ["", "## DCASE budget", "",
              f"- parameters {b['parameters']:,} (limit {b['parameters_limit']:,}); int8 weights "
              f"{b['int8_weight_bytes']:,} B (limit {b['int8_bytes_limit']:,} B): "
              f"{'fits' if b['fits'] else 'does NOT fit'}"]
    dep = report["int8"][report["deployed"]]
    lines += ["", "## Operators (TFLM resolver)", "", ", ".join(dep["operators"])]
    if report.get("qat"):
        q = report["qat"]
        lines += ["", "## Quantisation-aware training", "",
                  f"- epochs {q.get('epochs')}, learning rate {q.get('learning_rate')}, examples {q.get('examples')}, "
                  f"mirror max |diff| vs Keras 3 {_num(q.get('mirror_max_abs_diff'), '{:.2e}')}",
                  f"- history: {json.dumps(q.get('history'))}"]
    lines += ["", f"Versions: {json.dumps(report['versions'])}", ""]
    return "\n".join(lines)


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tools/export.py",
        description="Export a trained model to float / int8 TFLite and a verified TensorFlow Lite Micro bundle.")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", help="a trained .keras model")
    src.add_argument("--run-dir", help="a training run folder (best.keras / model.keras and its JSON files)")
    p.add_argument("--out", required=True, help="bundle folder to create (must not exist unless --force)")
    p.add_argument("--data", help="DCASE dataset folder (e.g. ../shared/data/tut17-dev): train split -> "
                                  "calibration and QAT, evaluate split -> accuracy and bit-exactness inputs")
    p.add_argument("--fold", type=int, default=1, help="evaluation-setup fold (default 1)")
    p.add_argument("--seconds", type=float, default=None, help="clip length the pipeline reads (default: the "
                                                                "front end's clip_seconds, 10)")
    p.add_argument("--segment", type=float, default=None, help="audio per inference in seconds (default: read off "
                                                                "the model input, e.g. 1 for a 44-frame model)")
    p.add_argument("--num-calibration", type=int, default=DEFAULT_NUM_CALIBRATION,
                   help=f"calibration examples (default {DEFAULT_NUM_CALIBRATION})")
    p.add_argument("--num-verify", type=int, default=DEFAULT_NUM_VERIFY,
                   help=f"real inputs for the TFLM bit-exactness check (default {DEFAULT_NUM_VERIFY})")
    p.add_argument("--eval-limit", type=int, default=None, help="evaluate on this many clips only (smoke tests)")
    p.add_argument("--qat-epochs", type=int, default=0, help="epochs of quantisation-aware training (0: PTQ only)")
    p.add_argument("--qat-lr", type=float, default=None, help="QAT learning rate (default 1e-4)")
    p.add_argument("--qat-batch-size", type=int, default=None, help="QAT batch size (default 32)")
    p.add_argument("--qat-augment", choices=("run", "none"), default="run",
                   help="QAT data augmentation: the training run's (config.json; default) or none")
    p.add_argument("--deploy", choices=("best", "ptq", "qat"), default="best",
                   help="int8 model for the device files (default: best accuracy on the evaluation set)")
    p.add_argument("--max-drop", type=float, default=None,
                   help="fail if deployed int8 accuracy is more than this many points below float")
    p.add_argument("--force", action="store_true", help="replace an existing bundle folder")
    p.add_argument("--quiet", action="store_true", help="print only the final summary")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    command = "python tools/export.py " + " ".join(sys.argv[1:] if argv is None else list(argv))
    qat_options = {k: v for k, v in (("learning_rate", args.qat_lr), ("batch_size", args.qat_batch_size),
                                     ("augment", args.qat_augment)) if v is not None}
    log = (lambda *a, **k: None) if args.quiet else (lambda *a, **k: print(*a, **k, flush=True))
    if args.data is not None and not os.path.exists(args.data):
        print(f"error: --data {args.data} does not exist (expected a DCASE folder with evaluation_setup/).",
              file=sys.stderr)
        return 2
    try:
        result = export_bundle(
            args.model or args.run_dir, args.out, data=args.data, fold=args.fold, clip_seconds=args.seconds,
            segment_seconds=args.segment, num_calibration=args.num_calibration, num_verify=args.num_verify,
            eval_limit=args.eval_limit, qat_epochs=args.qat_epochs, qat_options=qat_options, deploy=args.deploy,
            max_accuracy_drop=args.max_drop, force=args.force, command=command, log=log)
    except (ExportError, FileNotFoundError, ValueError) as e:
        print(f"error: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    r = result.report
    print(summary_line(r))
    return 0


def summary_line(r: dict) -> str:
    parts = [f"bundle {r.get('bundle') or ''}".strip()]
    fm = r["float"].get("metrics")
    if fm:
        parts.append(f"float acc {_pct(fm['accuracy'])}")
    for name, v in r["int8"].items():
        mm = v.get("metrics")
        acc = f" acc {_pct(mm['accuracy'])}" if mm else ""
        parts.append(f"{name.upper()}{acc} bit-exact {'yes' if v['bit_exactness']['bit_exact'] else 'NO'}")
    parts.append(f"deployed {r['deployed'].upper()}: {r['flash_bytes']:,} B flash, {r['arena_bytes']:,} B arena")
    return "; ".join(p for p in parts if p)


if __name__ == "__main__":
    sys.exit(main())
