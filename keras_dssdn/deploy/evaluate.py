"""Step 4 of an export: accuracy and log loss of the float model and of each int8 model, in one pass.

The float model is the Keras one; the int8 models run in TFLite's reference
kernels (:class:`keras_dssdn.inference.evaluate.TFLiteClassifier`), which
:mod:`keras_dssdn.deploy.verify` compares with TFLite Micro on every example
(bit-exact, or the counts of the rounding-tie differences and the decisions
they change), so their numbers are the device's up to those counts. The loop is
:func:`keras_dssdn.inference.evaluate.predict_probabilities`, the metrics
:func:`keras_dssdn.analysis.metrics.classification_metrics` (per example, and
per clip when clips have several segments). The same pass keeps a few
examples spread over the set: the real inputs of the bit-exactness check.

Accuracies are fractions, log loss in nats; accuracy drops in points (percent).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Callable, Dict, Iterator, Optional, Sequence

import keras
import numpy as np

from keras_dssdn.analysis.metrics import aggregate_clips, classification_metrics
from keras_dssdn.utils.arrays import check_examples, evenly_spaced, example_batches
from keras_dssdn.errors import ExportError, VerificationError

CLIP_KEYS = ("examples", "accuracy", "macro_class_accuracy", "log_loss")


class ThinnedSample:
    """Every ``stride``-th example seen, the stride doubling whenever more than ``4 * k`` are kept; :meth:`take`
    then gives ``k`` spread over them. Memory stays ``O(k)`` over a set of any size."""

    def __init__(self, k: int):
        self.k, self.stride, self.seen, self.kept = int(k), 1, 0, []

    def add(self, x: np.ndarray) -> None:
        for i in range(len(x) if self.k else 0):
            if (self.seen + i) % self.stride == 0:
                self.kept.append((self.seen + i, x[i]))
                if len(self.kept) > 4 * self.k:
                    self.stride *= 2
                    self.kept = [(g, v) for g, v in self.kept if g % self.stride == 0]
        self.seen += len(x)

    def take(self, example_shape) -> np.ndarray:
        """``(min(k, kept), *example_shape)`` float32."""
        x = np.stack([v for _, v in self.kept]) if self.kept else np.zeros((0, *example_shape), np.float32)
        return x[evenly_spaced(len(x), self.k)]


def _labelled_batches(evaluation, input_shape, sample: ThinnedSample) -> Iterator:
    """``(x, class ids, {"clip_index"})`` batches of ``evaluation``, checked, each example offered to ``sample``."""
    for x, y, clip in example_batches(evaluation):
        x = check_examples(x, input_shape, "The evaluation set")
        if y is None:
            raise ExportError("The evaluation set has no labels; pass (x, y) batches.")
        y = np.asarray(y)
        clip = clip if clip is not None else np.arange(sample.seen, sample.seen + len(x))
        sample.add(x)
        yield x, (y.argmax(axis=1) if y.ndim == 2 else y), {"clip_index": clip}


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _looks_like_probabilities(p: np.ndarray) -> bool:
    return bool(np.all(p >= -1e-6) and np.allclose(p.sum(axis=1), 1.0, atol=2e-2))


def model_metrics(probs: np.ndarray, labels: np.ndarray, clip_index: np.ndarray,
                  class_names: Optional[Sequence[str]]) -> dict:
    """Per-example metrics of ``probs`` ``(N, K)`` for ``labels`` ``(N,)`` (negative ids ignored), plus ``clip``
    (:data:`CLIP_KEYS` of the clip-averaged probabilities) when clips have several segments."""
    keep = np.asarray(labels) >= 0
    probs, labels, clip_index = np.asarray(probs, np.float64)[keep], np.asarray(labels)[keep], clip_index[keep]
    names = list(class_names) if class_names else [str(i) for i in range(probs.shape[1])]
    out = classification_metrics(labels, probs, names)
    if len(np.unique(clip_index)) < len(clip_index):
        clip_probs, _, clip_labels = aggregate_clips(probs, clip_index, labels)
        clip = classification_metrics(clip_labels, clip_probs, names)
        out["clip"] = {k: clip[k] for k in CLIP_KEYS}
    return out


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """``metrics`` per model (``"float"``, ``"ptq"``, ``"qat"``) and ``verify_inputs``: examples spread over the
    evaluation set, ``(k, n_mels, frames, 1)`` float32."""

    metrics: Dict[str, dict]
    verify_inputs: np.ndarray


def evaluate_models(core: keras.Model, int8_models: Dict[str, bytes], evaluation, *, class_names=None,
                    verify_count: int = 0, log: Callable = print) -> Evaluation:
    """Float (Keras) and int8 (TFLite reference kernels) metrics over one pass of ``evaluation``.

    ``evaluation`` yields ``(x, y)`` or ``(x, y, metadata)`` batches (or is an
    ``(x, y[, clip_index])`` tuple). Outputs that are not probabilities
    (logits) are soft-maxed. Each model's metrics also hold
    ``top1_agreement_with_float``.
    """
    from keras_dssdn.inference.evaluate import TFLiteClassifier, predict_probabilities

    t0 = time.time()
    shape = tuple(core.inputs[0].shape[1:])
    models = {"float": core, **{name: TFLiteClassifier(fb, reference=True) for name, fb in int8_models.items()}}
    sample = ThinnedSample(verify_count)
    probs, labels, meta = predict_probabilities(models, _labelled_batches(evaluation, shape, sample))
    if not _looks_like_probabilities(probs["float"]):
        probs = {name: _softmax(p) for name, p in probs.items()}
    metrics = {}
    for name, p in probs.items():
        metrics[name] = model_metrics(p, labels, meta["clip_index"], class_names)
        metrics[name]["top1_agreement_with_float"] = float(np.mean(p.argmax(axis=1) == probs["float"].argmax(axis=1)))
    log(f"  evaluated {sample.seen} examples with {len(probs)} models in {time.time() - t0:.1f} s")
    return Evaluation(metrics, sample.take(shape))


def choose_deployed(deploy: str, int8_models: Dict[str, bytes], metrics: Optional[Dict[str, dict]]) -> str:
    """The int8 model of the device files: ``deploy`` itself, or for ``"best"`` QAT when it is more accurate
    than PTQ on the evaluation set (PTQ on ties, without QAT or without an evaluation)."""
    if deploy != "best":
        return deploy
    if "qat" in int8_models and metrics is not None and metrics["qat"]["accuracy"] > metrics["ptq"]["accuracy"]:
        return "qat"
    return "ptq"


def accuracy_drop(metrics: Optional[Dict[str, dict]], chosen: str, max_drop: Optional[float]) -> Optional[float]:
    """Points (percent) the deployed int8 model is below float (None without an evaluation);
    :class:`VerificationError` when more than ``max_drop``."""
    if metrics is None:
        return None
    drop = 100.0 * (metrics["float"]["accuracy"] - metrics[chosen]["accuracy"])
    if max_drop is not None and drop > max_drop:
        raise VerificationError(
            f"The deployed int8 model ({chosen.upper()}) is {drop:.2f} points below the float model "
            f"({100 * metrics[chosen]['accuracy']:.2f} % vs {100 * metrics['float']['accuracy']:.2f} %), more "
            f"than the allowed {max_drop:g}; run quantisation-aware training (--qat-epochs) or raise --max-drop.")
    return drop
