"""Evaluate a ``.keras`` or ``.tflite`` (float or int8) model on a labelled split.

:func:`evaluate_model` runs the model over :func:`keras_dssdn.data.pipeline.evaluation_dataset`
and returns :func:`keras_dssdn.analysis.metrics.classification_metrics` (accuracy,
class-wise and macro accuracy, log loss, device-wise table, confusion
matrix). A model whose input is shorter than the clips (e.g. 1-s segments
of 10-s clips) is run on every segment and its probabilities averaged per
clip; both segment-level and clip-level results are reported.
:func:`write_reports` writes ``metrics.json``, ``metrics.md`` and
``confusion.png`` into a folder, each atomically.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import numpy as np

from keras_dssdn.data.datasets import ClipList
from keras_dssdn.layers.labels import LabelVocabulary, vocabulary_from_model
from keras_dssdn.analysis.metrics import aggregate_clips, classification_metrics, markdown_report, plot_confusion
from keras_dssdn.errors import DataError, ModelFileError, UnknownLabelError
from keras_dssdn.fileio import write_json_atomic, write_text_atomic
from keras_dssdn.inference.loading import TFLiteClassifier, load_classifier  # noqa: F401 - re-exported
from keras_dssdn.params import DEFAULT_FRONTEND, FrontEndParams


def _input_frames(model) -> int:
    """Frames of the model's log-mel input: ``(n_mels, frames, 1)`` for TFLite, ``(B, n_mels, frames, 1)`` for Keras."""
    if isinstance(model, TFLiteClassifier):
        return model.input_shape[1]
    return int(model.input_shape[2])


def predict_probabilities(models, batches):
    """Run one model, or several in one pass, over labelled batches; the one evaluation loop of the package.

    ``models``: an object with ``predict(x, verbose=0) -> (B, K)`` (a Keras model, a
    :class:`TFLiteClassifier`) or a ``{name: model}`` dict of them. ``batches`` yields ``(x, y, metadata)``:
    ``x`` ``(B, n_mels, frames, 1)``, ``y`` ``(B,)`` class ids (or ``(B, K)``), ``metadata`` a dict of
    ``(B,)`` arrays (e.g. ``clip_index``, ``device``) or None. Returns ``(probs, labels, metadata)``, each
    concatenated over the batches: ``probs`` ``(N, K)`` (a ``{name: (N, K)}`` dict for a dict of models),
    ``labels`` ``(N,)`` / ``(N, K)``, ``metadata`` ``{key: (N,)}``.
    """
    named = models if isinstance(models, dict) else {None: models}
    probs = {name: [] for name in named}
    labels, meta = [], {}
    for x, y, m in batches:
        for name, model in named.items():
            probs[name].append(np.asarray(model.predict(x, verbose=0)))
        labels.append(np.asarray(y))
        for key, value in (m or {}).items():
            meta.setdefault(key, []).append(np.asarray(value))
    if not labels:
        raise DataError("The dataset is empty: there is no example to predict.")
    probs = {name: np.concatenate(p) for name, p in probs.items()}
    meta = {key: np.concatenate(v) for key, v in meta.items()}
    return (probs if isinstance(models, dict) else probs[None]), np.concatenate(labels), meta


def evaluate_model(
    model,
    clips: ClipList,
    *,
    vocabulary: Optional[LabelVocabulary] = None,
    frontend: Optional[FrontEndParams] = None,
    clip_seconds: Optional[float] = None,
    segment_seconds: Optional[float] = None,
    batch_size: int = 32,
    device: Optional[str] = None,
) -> dict:
    """Metrics of ``model`` (Keras model or :class:`TFLiteClassifier`) on labelled ``clips``.

    ``model`` may be a :class:`~keras_dssdn.inference.device_models.DeviceModels`: each clip is scored by its
    device's model (the general one for a device without). ``device``: the device of every clip (overrides the
    metadata column).

    The vocabulary comes from the model's ClassNames layer unless given.
    ``segment_seconds`` defaults to the model's input length when that is
    shorter than the clips. Raises ValueError when the clips carry labels the
    model does not know.
    """
    from keras_dssdn.data.pipeline import decoding_errors, evaluation_dataset
    from keras_dssdn.data.spec import PipelineSpec

    from keras_dssdn.inference.device_models import DeviceModels

    router = model if isinstance(model, DeviceModels) else None
    model = router.general if router is not None else model
    p = frontend or DEFAULT_FRONTEND
    vocab = vocabulary or vocabulary_from_model(model)
    if vocab is None:
        raise ModelFileError("The model carries no class names (ClassNames layer); pass vocabulary= (e.g. labels.json).")
    unknown = sorted({c.label for c in clips if c.label is not None} - set(vocab))
    if unknown:
        raise UnknownLabelError(f"{clips.name}: labels {unknown} are not among the model's classes {list(vocab)}; "
                         "evaluate on data with the classes the model was trained on.")
    clip_s = clip_seconds or p.clip_seconds
    frames = _input_frames(model)
    if segment_seconds is None and frames < p.num_frames(clip_s):
        segment_seconds = p.seconds_for_frames(frames)
    ds = evaluation_dataset(clips, PipelineSpec(frontend=p, clip_seconds=clip_s, segment_seconds=segment_seconds,
                                                batch_size=batch_size, vocabulary=vocab, cache=None), with_metadata=True)
    with decoding_errors():
        probs, labels, meta = predict_probabilities(router.models if router is not None else model, ds)
    clip_index, devices = meta["clip_index"], meta["device"].astype(str)
    devices = np.full(len(devices), device) if device is not None else devices
    probs = router.route(probs, devices) if router is not None else probs
    if segment_seconds is None:
        out = classification_metrics(labels, probs, vocab.names, devices)
        out["level"] = "clip"
        return out
    clip_probs, ids, clip_labels = aggregate_clips(probs, clip_index, labels)
    device_of = {int(i): d for i, d in zip(clip_index, devices)}
    out = classification_metrics(clip_labels, clip_probs, vocab.names, [device_of[int(i)] for i in ids])
    out["level"] = f"clip (mean of {segment_seconds:g}-s segment probabilities)"
    seg = classification_metrics(labels, probs, vocab.names, devices)
    out["segment"] = {k: seg[k] for k in ("examples", "accuracy", "macro_class_accuracy", "log_loss")}
    return out


def write_reports(metrics: dict, out_dir, title: str = "Evaluation", stem: str = "metrics") -> None:
    """``<stem>.json``, ``<stem>.md`` and ``confusion.png`` in ``out_dir`` (each written atomically)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out_dir / f"{stem}.json", metrics)
    write_text_atomic(out_dir / f"{stem}.md", markdown_report(metrics, title))
    plot_confusion(metrics, out_dir / ("confusion.png" if stem == "metrics" else f"{stem}_confusion.png"), title)
