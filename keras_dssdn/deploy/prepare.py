"""Step 1 of an export: load the model and split off what TensorFlow Lite Micro cannot run.

:func:`prepare_model` takes a ``keras.Model``, a ``.keras`` file or a training
run folder and returns a :class:`PreparedModel`: the log-mel classifier
(``core``: normalised log-mel ``(B, n_mels, frames, 1)`` float32 in,
``(B, classes)`` out, time axis fixed) and the front end split off it. A
leading :class:`~keras_dssdn.layers.frontend.LogMel` layer (the STFT) and
:class:`~keras_dssdn.layers.frontend.LogMelNormalization` layer, and a trailing
:class:`~keras_dssdn.layers.labels.ClassNames` layer, are taken off the graph;
the bundle carries the front end as constants instead.

Front end, normalisation and class names come from, in order: the model's
own layers, the arguments, the run folder (read with
:class:`keras_dssdn.runs.RunFolder`: ``frontend.json``, ``normalization.json``,
``labels.json``), a default; ``PreparedModel.sources`` names where each came
from. A run folder is the folder itself or the one a ``.keras`` file lies in
(:func:`keras_dssdn.runs.find_run`); its ``config.json`` gives the segment
length and, later, the data (:meth:`keras_dssdn.deploy.settings.ExportSettings.with_run_defaults`).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import keras

from keras_dssdn import runs
from keras_dssdn.deploy.settings import ModelOverrides
from keras_dssdn.errors import ExportError, ModelFileError, RunFolderError
from keras_dssdn.params import DEFAULT_FRONTEND, FrontEndParams


@dataclasses.dataclass(frozen=True)
class PreparedModel:
    """A model ready to convert: the log-mel classifier and the front end split off it.

    ``core`` takes normalised log-mel ``(B, n_mels, frames, 1)`` float32 and
    returns ``(B, classes)``; ``segment_seconds`` is the audio per inference.
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
    run_config: Optional[dict] = None  # the training run's config.json, when the model comes from a run

    @property
    def input_shape(self) -> tuple:
        """``(n_mels, frames, 1)``."""
        return tuple(int(d) for d in self.core.inputs[0].shape[1:])

    @property
    def num_classes(self) -> int:
        return int(self.core.outputs[0].shape[-1])


# ---------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------


def _register_custom_objects():
    # Importing registers every serialisable keras_dssdn layer (model, features, labels).
    import keras_dssdn.layers.frontend  # noqa: F401
    import keras_dssdn.layers.labels  # noqa: F401
    import keras_dssdn.models.dssdn  # noqa: F401


def load_keras_model(path: Union[str, os.PathLike]) -> keras.Model:
    """Load a ``.keras`` model with the package's custom layers, without its optimizer.

    Raises :class:`~keras_dssdn.errors.ModelFileError` for a missing file, another format or a file Keras
    cannot load.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ModelFileError(f"Model file not found: {path}. Pass a .keras file saved by model.save().")
    if not path.endswith(".keras"):
        raise ModelFileError(f"{path} is not a .keras file; save the model with model.save('name.keras') "
                             "(Keras 3 format) and export that.")
    _register_custom_objects()
    try:
        return keras.models.load_model(path, compile=False)
    except Exception as e:  # noqa: BLE001 - report the file, keep the cause
        raise ModelFileError(f"Could not load {path}: {type(e).__name__}: {e}") from e


def _load(model) -> Tuple[keras.Model, str, Optional[runs.RunFolder]]:
    """``(model, source, run folder or None)`` for a model, a ``.keras`` path or a run folder."""
    if not isinstance(model, (str, os.PathLike)):
        return model, "<in memory>", None
    path = Path(model)
    if path.is_dir():
        run = runs.RunFolder(path)
        if not run.exists:
            raise RunFolderError(f"{path} is not a training run folder (no {runs.CONFIG}); pass a run folder "
                                 "(--run-dir) or a .keras file (--model).")
        path = run.model_path()
    else:
        run = runs.find_run(path)
    return load_keras_model(path), os.fspath(path), run


# ---------------------------------------------------------------------------
# Splitting the front end off
# ---------------------------------------------------------------------------


def _check_functional(model) -> None:
    if not isinstance(model, keras.Model) or not hasattr(model, "inputs") or model.inputs is None:
        raise ExportError(f"Expected a functional Keras model, got {type(model).__name__}.")
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ExportError(f"{model.name} has {len(model.inputs)} inputs and {len(model.outputs)} outputs; "
                          "export supports one log-mel input and one class-score output.")


def _front_end_output(model: keras.Model, log_mel, norm):
    """The tensor after the front-end layers, which must follow the input one after the other."""
    tensor = model.inputs[0]
    for layer in (log_mel, norm):
        if layer is None:
            continue
        if layer._inbound_nodes[0].input_tensors[0] is not tensor:
            raise ExportError(
                f"{model.name}: layer {layer.name} ({type(layer).__name__}) is not at the start of the model; "
                "TFLite Micro cannot run the front end, so it must come first to be split off. Rebuild the model "
                "with keras_dssdn.layers.frontend.attach_front_end.")
        tensor = layer.output
    return tensor


def split_front_end(model: keras.Model):
    """``(core, LogMel layer or None, LogMelNormalization layer or None, ClassNames layer or None)``.

    ``core`` is the nested model of ``attach_front_end(model)``, ``model`` itself
    when there is nothing to split, or a new functional model between the
    front end's output and the class scores.
    """
    from keras_dssdn.layers.frontend import LogMel, LogMelNormalization
    from keras_dssdn.layers.labels import ClassNames

    _check_functional(model)
    layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    log_mel, norm, names = (next((layer for layer in layers if isinstance(layer, kind)), None)
                            for kind in (LogMel, LogMelNormalization, ClassNames))
    tensor = _front_end_output(model, log_mel, norm)
    nested = [layer for layer in layers if isinstance(layer, keras.Model)]
    rest = [layer for layer in layers if layer not in (log_mel, norm, names)]
    if len(rest) == 1 and nested and rest[0] is nested[0]:
        return nested[0], log_mel, norm, names  # input -> [LogMel] -> [norm] -> model -> [ClassNames]
    if log_mel is None and norm is None and names is None:
        return model, log_mel, norm, names
    if nested:
        raise ExportError(f"{model.name} nests model(s) {[m.name for m in nested]} among other layers; "
                          "export supports a flat model or attach_front_end(model).")
    out = model.outputs[0] if names is None else names._inbound_nodes[0].input_tensors[0]
    return keras.Model(tensor, out, name=f"{model.name}_core"), log_mel, norm, names


# ---------------------------------------------------------------------------
# Front end, normalisation, class names: first known source wins
# ---------------------------------------------------------------------------


def _first_known(candidates: Sequence[Tuple[str, object]]) -> Tuple[object, Optional[str]]:
    """``(value, source)`` of the first candidate whose value is not None; a callable value is called first
    (so run-folder files are read only when needed). ``(None, None)`` when none is known."""
    for source, value in candidates:
        if callable(value):
            value = value()
        if value is not None:
            return value, source
    return None, None


def _run_file(run: Optional[runs.RunFolder], name: str, read: Callable) -> Tuple[str, Optional[Callable]]:
    if run is None:
        return "run folder", None
    return str(run.file(name)), lambda: read(run)


def _as_stats(normalization):
    from keras_dssdn.layers.frontend import NormalizationStats

    if normalization is None or isinstance(normalization, NormalizationStats):
        return normalization
    return NormalizationStats.from_dict(normalization)


def _resolve(log_mel, norm, names, run, overrides: ModelOverrides):
    """``(front end, normalisation or None, class names or None, {what: where it came from})``."""
    fe, fe_src = _first_known([
        (f"LogMel layer {log_mel.name} in the model" if log_mel else "", log_mel.params if log_mel else None),
        ("given", overrides.frontend),
        _run_file(run, runs.FRONTEND, runs.RunFolder.frontend),
        ("keras_dssdn.DEFAULT_FRONTEND (assumed: the model does not record its front end)", DEFAULT_FRONTEND)])
    stats, stats_src = _first_known([
        (f"LogMelNormalization layer {norm.name} in the model" if norm else "", norm.stats if norm else None),
        ("given", _as_stats(overrides.normalization)),
        _run_file(run, runs.NORMALIZATION, runs.RunFolder.normalization)])
    labels, labels_src = _first_known([
        (f"ClassNames layer {names.name}" if names else "", list(names.class_names) if names else None),
        ("given", [str(c) for c in overrides.class_names] if overrides.class_names is not None else None),
        _run_file(run, runs.LABELS, lambda r: list(r.vocabulary().names))])
    if stats is not None and stats.mode == "per_input":
        raise ExportError(f"{stats_src}: normalization per_input (each input standardised by its own mean and std) "
                          "cannot be exported: the bundle and the C front end (micro/dssdn_frontend.c) apply fixed "
                          "statistics. Train with normalization=global or per_band to deploy.")
    sources = {"frontend": fe_src, "normalization": stats_src or "none (the model takes raw log-mel)"}
    if labels_src:
        sources["class_names"] = labels_src
    return fe, stats, labels, sources


# ---------------------------------------------------------------------------
# Shapes
# ---------------------------------------------------------------------------


def _check_core(core: keras.Model, fe: FrontEndParams, source: str, fe_source: str) -> None:
    shape = tuple(core.inputs[0].shape[1:])
    if len(shape) != 3 or shape[0] is None or shape[2] != 1:
        raise ExportError(f"{source}: the model input (after the front end) has shape {shape}; export expects "
                          "log-mel maps (n_mels, frames, 1).")
    if shape[0] != fe.n_mels:
        raise ExportError(f"{source}: the model takes {shape[0]} mel bands but the front end "
                          f"({fe_source}) makes {fe.n_mels}; pass the training front end (frontend=).")
    if len(core.outputs[0].shape) != 2:
        raise ExportError(f"{source}: the model output has shape {tuple(core.outputs[0].shape)}; export expects "
                          "(batch, classes) scores.")


def _fix_time_axis(core: keras.Model, fe: FrontEndParams, segment_seconds: Optional[float], source: str,
                   notes: List[str]) -> Tuple[keras.Model, float]:
    """``(core with a fixed number of frames, segment seconds)``; a free time axis needs ``segment_seconds``."""
    from keras_dssdn.models.resize import with_input_shape

    n_mels, frames = core.inputs[0].shape[1], core.inputs[0].shape[2]
    if frames is None:
        if segment_seconds is None:
            raise ExportError(f"{source}: the model's time axis is free; pass the segment length it should take "
                              "(--segment SECONDS, e.g. 1 or 10).")
        frames = fe.num_frames(segment_seconds)
        notes.append(f"Time axis fixed to {frames} frames ({segment_seconds:g} s).")
        return with_input_shape(core, (n_mels, frames, 1)), float(segment_seconds)
    seg = fe.seconds_for_frames(frames) if segment_seconds is None else float(segment_seconds)
    if fe.num_frames(seg) != frames:
        raise ExportError(
            f"{source}: the model takes {frames} frames but {seg:g} s make {fe.num_frames(seg)} with hop "
            f"{fe.hop_length} at {fe.sample_rate} Hz; pass the segment length the model was trained on (--segment).")
    return core, seg


def prepare_model(model, *, segment_seconds: Optional[float] = None, frontend: Optional[FrontEndParams] = None,
                  normalization=None, class_names: Optional[Sequence[str]] = None) -> PreparedModel:
    """Load (if a path) and split a model into a log-mel classifier + front end; see the module doc.

    ``model``: a ``keras.Model``, a ``.keras`` path or a run folder.
    ``segment_seconds``: audio per inference; required when the model's time
    axis is free (a run folder's ``config.json`` gives it), else read off the input and checked.
    ``frontend`` / ``normalization`` / ``class_names``: used when the model does not carry them.
    """
    overrides = ModelOverrides(segment_seconds, frontend, normalization, class_names)
    model, source, run = _load(model)
    run_config = run.config() if run is not None else None
    if segment_seconds is None and run_config and run_config.get("segment_seconds"):
        segment_seconds = float(run_config["segment_seconds"])
    core, log_mel, norm, names = split_front_end(model)
    fe, stats, labels, sources = _resolve(log_mel, norm, names, run, overrides)
    notes = []
    if log_mel is not None and frontend is not None and frontend != fe:
        notes.append("The frontend= argument was ignored: the model's LogMel layer defines the front end.")
    _check_core(core, fe, source, sources["frontend"])
    core, seg = _fix_time_axis(core, fe, segment_seconds, source, notes)
    if labels is not None and len(labels) != int(core.outputs[0].shape[-1]):
        raise ExportError(f"{source}: {len(labels)} class names ({sources.get('class_names')}) but the model has "
                          f"{core.outputs[0].shape[-1]} outputs.")
    split_off = [layer.name for layer in (log_mel, norm, names) if layer is not None]
    return PreparedModel(core, fe, stats, labels, seg, source, split_off, notes, sources, run_config)
