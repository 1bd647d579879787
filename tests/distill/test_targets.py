"""Teacher targets in the training pipeline: keyed lookup after shuffling and segmenting, mixup-consistent
targets, clean targets under the other augmentations, labels only for evaluation sets."""

import numpy as np
import pytest
import tensorflow as tf

from keras_dssdn.data.augment import AugmentConfig, augment_batch
from keras_dssdn.data.pipeline import evaluation_dataset, training_dataset
from keras_dssdn.data.spec import PipelineSpec, TrainingOptions
from keras_dssdn.distill.logits import softened
from keras_dssdn.distill.teacher import TeacherTargets
from keras_dssdn.errors import TeacherLogitsError

from conftest import made_up_logits

T = 2.0
OFF = dict(mixup_alpha=0.0, freq_masks=0, time_masks=0, mixstyle_prob=0.0)


def _examples(ds):
    """(y (N, 2K), file names, segment indices) of every example."""
    ys, files, segs = [], [], []
    for _, y, m in ds:
        ys.append(y.numpy())
        files += [f.decode() for f in m["file"].numpy()]
        segs.append(m["segment_index"].numpy())
    return np.concatenate(ys), files, np.concatenate(segs)


def test_targets_follow_their_clip_and_segment_through_shuffling_segmenting_and_masks(train_clips):
    tl = made_up_logits(train_clips)
    shuffled = train_clips.subset(np.random.default_rng(2).permutation(len(train_clips)))
    spec = AugmentConfig(**{**OFF, "freq_masks": 2, "time_masks": 2, "gain_db": 3.0})  # x changes, targets do not
    ds = training_dataset(shuffled, PipelineSpec(clip_seconds=2.0, segment_seconds=1.0, batch_size=5, cache=None),
                          TrainingOptions(teacher=TeacherTargets(tl, T), augment=spec, seed=3), with_metadata=True)
    y, files, segs = _examples(ds)
    assert y.shape == (36, 6) and sorted(set(segs)) == [0, 1]
    assert files != sorted(files)  # shuffled
    k = 3
    for row, f, s in zip(y, files, segs):
        np.testing.assert_allclose(row[k:], softened(tl.lookup(f, s), T), atol=1e-6)
        assert row[:k].argmax() == tl.class_names.index(train_clips[[c.filename for c in train_clips].index(f)].label)
    # whole clips: one row per clip
    whole = made_up_logits(train_clips, segments=1, segment_seconds=None)
    y, files, _ = _examples(training_dataset(train_clips, PipelineSpec(clip_seconds=2.0, batch_size=4),
                                             TrainingOptions(teacher=TeacherTargets(whole, T)), with_metadata=True))
    for row, f in zip(y, files):
        np.testing.assert_allclose(row[k:], softened(whole.lookup(f, 0), T), atol=1e-6)


def test_mixup_mixes_labels_and_teacher_targets_with_the_same_weights(train_clips):
    tl = made_up_logits(train_clips)
    mix = AugmentConfig(**{**OFF, "mixup_alpha": 1.0})
    ds = training_dataset(train_clips, PipelineSpec(clip_seconds=2.0, segment_seconds=1.0, batch_size=6),
                          TrainingOptions(teacher=TeacherTargets(tl, T), augment=mix, seed=5), with_metadata=True)
    label_of = {c.filename: tl.class_names.index(c.label) for c in train_clips}
    checked = 0
    for x, y, m in ds:
        y = y.numpy()
        files = [f.decode() for f in m["file"].numpy()]
        clean = [softened(tl.lookup(f, s), T) for f, s in zip(files, m["segment_index"].numpy())]
        for i, f in enumerate(files):
            lam = y[i, label_of[f]]
            if not 0.05 < lam < 0.95 or np.count_nonzero(y[i, :3] > 1e-6) != 2:
                continue  # mixed with an example of its own class, or lam ~ 1: nothing to tell apart
            # the partner's teacher row, recovered with the labels' weight, is one of the batch's clean rows
            partner = (y[i, 3:] - lam * clean[i]) / (1.0 - lam)
            assert min(np.abs(partner - c).max() for c in clean) < 1e-4
            checked += 1
    assert checked >= 5
    # and as one operation: the two halves of a packed batch are mixed exactly as each would be alone
    seed = tf.constant([7, 11], tf.int64)
    x = tf.random.normal([8, 16, 10, 1])
    a, b = tf.one_hot(tf.range(8) % 3, 3), tf.nn.softmax(tf.random.normal([8, 3]))
    _, packed = augment_batch(x, tf.concat([a, b], 1), mix, seed)
    np.testing.assert_allclose(packed[:, :3], augment_batch(x, a, mix, seed)[1], atol=1e-6)
    np.testing.assert_allclose(packed[:, 3:], augment_batch(x, b, mix, seed)[1], atol=1e-6)


def test_evaluation_sets_carry_labels_only_and_bad_logits_fail_when_the_set_is_built(train_clips):
    tl = made_up_logits(train_clips)
    _, y = next(iter(evaluation_dataset(train_clips, PipelineSpec(clip_seconds=2.0, segment_seconds=1.0,
                                                                  label_mode="one_hot", batch_size=4))))
    assert y.shape == (4, 3)
    with pytest.raises(TeacherLogitsError, match="lack 1 of the 18"):
        training_dataset(train_clips, PipelineSpec(clip_seconds=2.0, segment_seconds=1.0),
                         TrainingOptions(teacher=TeacherTargets(made_up_logits(train_clips.subset(range(17))), T)))
    with pytest.raises(ValueError, match="one-hot"):
        training_dataset(train_clips, PipelineSpec(label_mode="int", clip_seconds=2.0, segment_seconds=1.0),
                         TrainingOptions(teacher=TeacherTargets(tl, T)))
