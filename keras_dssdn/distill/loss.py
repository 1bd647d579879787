"""The knowledge-distillation loss (Hinton et al., 2015) and the training targets it reads.

Targets: a training batch with a teacher carries ``y`` of shape ``(B, 2K)``: the (one-hot or mixed) labels in
columns ``[0, K)`` and the teacher's softened distribution ``q = softmax(teacher logits / T)`` in ``[K, 2K)``
(:func:`pack_targets`). Built that way by :func:`keras_dssdn.data.pipeline.training_dataset`, the two halves are mixed
by mixup with the *same* coefficient (mixup mixes whole rows of ``y``); the other augmentations leave ``y`` alone,
so an augmented clip keeps its clean clip's teacher targets. Evaluation batches carry ``(B, K)`` labels only.

Loss per example, with the student's probabilities ``p`` (the models end in a softmax; ``z = log p`` are its
logits up to a constant):

    (1 - kd_weight) * CE(labels, p)  +  kd_weight * T^2 * KL(q || softmax(z / T))

``CE`` is the categorical cross-entropy (with the recipe's label smoothing), ``KL`` summed over the classes; the
``T^2`` keeps the gradient scale of the soft term independent of ``T``. With ``(B, K)`` targets (evaluation)
the loss is the label term alone, unweighted, so ``val_loss`` stays comparable with runs without a teacher.
"""

from __future__ import annotations

import keras
import tensorflow as tf

#: Student probabilities are clipped to [EPSILON, 1] before the log (as Keras' cross-entropy does).
EPSILON = 1e-7


def pack_targets(labels, teacher_probs):
    """``(B, 2K)`` targets from labels ``(B, K)`` and the teacher's softened distribution ``(B, K)``."""
    return tf.concat([tf.cast(labels, tf.float32), tf.cast(teacher_probs, tf.float32)], axis=-1)


def kd_divergence(teacher_probs, student_probs, temperature: float):
    """``T^2 * KL(q || softmax(log p / T))`` per example ``(B,)``; ``q``, ``p`` ``(B, K)`` probabilities."""
    t = float(temperature)
    z = tf.math.log(tf.clip_by_value(tf.cast(student_probs, tf.float32), EPSILON, 1.0))
    log_s = tf.nn.log_softmax(z / t, axis=-1)
    q = tf.cast(teacher_probs, tf.float32)
    return t * t * tf.reduce_sum(tf.math.xlogy(q, q) - q * log_s, axis=-1)


@keras.saving.register_keras_serializable(package="keras_dssdn")
class DistillationLoss(keras.losses.Loss):
    """Label cross-entropy mixed with the KD term (see the module docstring); ``y_pred`` are probabilities."""

    def __init__(self, temperature: float = 2.0, kd_weight: float = 0.5, label_smoothing: float = 0.0,
                 name: str = "distillation", **kwargs):
        super().__init__(name=name, **kwargs)
        self.temperature = float(temperature)
        self.kd_weight = float(kd_weight)
        self.label_smoothing = float(label_smoothing)

    def call(self, y_true, y_pred):
        p = tf.cast(y_pred, tf.float32)
        k = p.shape[-1]
        width = y_true.shape[-1]
        labels = tf.cast(y_true[..., :k], tf.float32)
        ce = keras.losses.categorical_crossentropy(labels, p, label_smoothing=self.label_smoothing)
        if width == k:
            return ce
        if width != 2 * k:
            raise ValueError(f"DistillationLoss: targets have {width} columns; expected {k} (labels) or {2 * k} "
                             "(labels + teacher distribution).")
        kd = kd_divergence(y_true[..., k:], p, self.temperature)
        return (1.0 - self.kd_weight) * ce + self.kd_weight * kd

    def get_config(self):
        return {**super().get_config(), "temperature": self.temperature, "kd_weight": self.kd_weight,
                "label_smoothing": self.label_smoothing}


def _label_accuracy(y_true, y_pred):
    k = y_pred.shape[-1]
    return keras.metrics.categorical_accuracy(y_true[..., :k], y_pred)


@keras.saving.register_keras_serializable(package="keras_dssdn")
class LabelAccuracy(keras.metrics.MeanMetricWrapper):
    """Categorical accuracy against the label half of ``(B, 2K)`` targets (or ``(B, K)`` labels)."""

    def __init__(self, name: str = "accuracy", dtype=None):
        super().__init__(_label_accuracy, name=name, dtype=dtype)

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype}
