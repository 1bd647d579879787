"""The KD loss against a NumPy reference; label-only targets; the label accuracy; serialisation."""

import numpy as np
import keras
import pytest

from keras_dssdn.distill.loss import EPSILON, DistillationLoss, LabelAccuracy


def _softmax(z):
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def reference(labels, teacher_logits, student_probs, temperature, weight, smoothing):
    """Hinton et al.: (1 - w) CE(labels, p) + w T^2 KL(softmax(t/T) || softmax(log p / T)), mean over the batch."""
    k = labels.shape[1]
    smooth = labels * (1 - smoothing) + smoothing / k
    p = np.clip(student_probs, EPSILON, 1.0)
    ce = -(smooth * np.log(p / p.sum(axis=1, keepdims=True))).sum(axis=1)
    q = _softmax(teacher_logits / temperature)
    s = _softmax(np.log(p) / temperature)
    kl = (q * (np.log(q) - np.log(s))).sum(axis=1)
    return float(np.mean((1 - weight) * ce + weight * temperature ** 2 * kl))


@pytest.mark.parametrize("temperature,weight,smoothing", [(1.0, 0.5, 0.0), (2.0, 0.98, 0.0), (4.0, 0.3, 0.1)])
def test_kd_loss_matches_numpy_reference(temperature, weight, smoothing):
    rng = np.random.default_rng(int(temperature * 10))
    b, k = 16, 5
    labels = np.eye(k)[rng.integers(0, k, b)]
    labels[:4] = 0.7 * labels[:4] + 0.3 * labels[4:8]  # mixed (soft) labels too
    teacher = rng.normal(0, 3, (b, k))
    student = _softmax(rng.normal(0, 2, (b, k)))
    y = np.concatenate([labels, _softmax(teacher / temperature)], axis=1).astype(np.float32)
    got = float(DistillationLoss(temperature, weight, smoothing)(y, student.astype(np.float32)))
    assert got == pytest.approx(reference(labels, teacher, student, temperature, weight, smoothing), rel=1e-4)


def test_student_equal_to_teacher_has_no_kd_term_and_label_only_targets_give_cross_entropy():
    rng = np.random.default_rng(3)
    k = 4
    teacher = rng.normal(0, 2, (8, k))
    labels = np.eye(k)[rng.integers(0, k, 8)]
    q = _softmax(teacher)
    y = np.concatenate([labels, q], axis=1).astype(np.float32)
    # a student whose probabilities are the teacher's: KL = 0 at T = 1, so only (1 - w) CE remains
    kd = float(DistillationLoss(1.0, 1.0)(y, q.astype(np.float32)))
    assert abs(kd) < 1e-5
    ce = float(keras.losses.CategoricalCrossentropy()(labels, q))
    assert float(DistillationLoss(2.0, 0.7)(labels.astype(np.float32), q.astype(np.float32))) == pytest.approx(ce, rel=1e-5)
    with pytest.raises(ValueError, match="targets have 5 columns"):
        DistillationLoss()(np.zeros((8, 5), np.float32), q.astype(np.float32))


def test_label_accuracy_reads_the_label_half_and_both_serialise():
    p = np.array([[0.8, 0.1, 0.1], [0.2, 0.7, 0.1]], np.float32)
    y = np.array([[1, 0, 0, 0.0, 0.0, 1.0], [0, 0, 1, 0.0, 1.0, 0.0]], np.float32)  # teacher half disagrees
    m = LabelAccuracy()
    m.update_state(y, p)
    assert float(m.result()) == 0.5
    loss = keras.losses.deserialize(keras.losses.serialize(DistillationLoss(3.0, 0.9, 0.1)))
    assert (loss.temperature, loss.kd_weight, loss.label_smoothing) == (3.0, 0.9, 0.1)
    assert keras.metrics.deserialize(keras.metrics.serialize(LabelAccuracy())).name == "accuracy"
