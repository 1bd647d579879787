"""Augmentations: reproducible under a seed, soft labels from mixup, off at evaluation."""

import math

import numpy as np
import pytest
import tensorflow as tf

from keras_dssdn.data import augment as A

SEED = tf.constant([7, 11], tf.int64)


def _batch(b=6, f=16, t=24, classes=4, seed=0):
    x = tf.random.stateless_normal([b, f, t, 1], [seed, 1]) + tf.reshape(tf.range(f, dtype=tf.float32), [1, f, 1, 1])
    y = tf.one_hot(tf.range(b) % classes, classes)
    return x, y


def test_same_seed_same_result_other_seed_other_result():
    x, y = _batch()
    cfg = A.AugmentConfig(gain_db=6.0, time_shift_frames=4, mixstyle_prob=1.0)
    a = A.augment_batch(x, y, cfg, SEED)
    b = A.augment_batch(x, y, cfg, SEED)
    c = A.augment_batch(x, y, cfg, tf.constant([8, 11], tf.int64))
    np.testing.assert_array_equal(a[0].numpy(), b[0].numpy())
    np.testing.assert_array_equal(a[1].numpy(), b[1].numpy())
    assert not np.allclose(a[0].numpy(), c[0].numpy())


def test_mixup_makes_convex_soft_labels():
    x, y = _batch()
    mx, my = A.mixup(x, y, SEED, alpha=0.4)
    my = my.numpy()
    np.testing.assert_allclose(my.sum(axis=1), 1.0, rtol=1e-6)
    assert (my >= 0).all() and ((my > 0) & (my < 1)).any()
    # x mixed with the same weights: recover the weight from a label row
    lam_rows = my.max(axis=1)
    assert mx.shape == x.shape and np.all(lam_rows <= 1.0)


def test_mixup_prob_zero_is_identity():
    x, y = _batch()
    mx, my = A.mixup(x, y, SEED, alpha=0.4, prob=0.0)
    np.testing.assert_array_equal(mx.numpy(), x.numpy())
    np.testing.assert_array_equal(my.numpy(), y.numpy())


def test_spec_augment_masks_bands_with_clip_mean():
    x, _ = _batch(b=4)
    out = A.spec_augment(x, SEED, freq_masks=1, freq_mask_bands=4, time_masks=1, time_mask_frames=5).numpy()
    xin = x.numpy()
    mean = xin.mean(axis=(1, 2, 3))
    changed = out != xin
    for i in range(4):
        assert np.allclose(out[i][changed[i]], mean[i])
        rows = changed[i, :, :, 0].all(axis=1).sum()  # masked frequency rows span all frames
        cols = changed[i, :, :, 0].all(axis=0).sum()
        assert rows <= 4 and cols <= 5


def test_freq_mixstyle_probability_and_statistics():
    x, _ = _batch()
    same = A.freq_mixstyle(x, SEED, alpha=0.3, prob=0.0)
    np.testing.assert_array_equal(same.numpy(), x.numpy())
    mixed = A.freq_mixstyle(x, SEED, alpha=0.3, prob=1.0).numpy()
    assert mixed.shape == x.shape and not np.allclose(mixed, x.numpy())
    # per-band means become convex mixtures of band means: they stay within the batch's range
    mu = x.numpy().mean(axis=(2, 3))
    mu_mixed = mixed.mean(axis=(2, 3))
    assert np.all(mu_mixed >= mu.min(axis=0) - 1e-4) and np.all(mu_mixed <= mu.max(axis=0) + 1e-4)


def test_gain_is_log_power_shift():
    x, _ = _batch()
    out = A.random_gain(x, 6.0, SEED).numpy()
    shift = (out - x.numpy()).reshape(len(out), -1)
    assert np.allclose(shift, shift[:, :1], atol=1e-5)  # one gain per clip
    assert np.all(np.abs(shift) <= 6.0 * math.log(10) / 10 + 1e-6)


def test_time_shift_roll_and_fill():
    x, _ = _batch(b=3, t=10)
    rolled = A.time_shift(x, 3, SEED, wrap=True).numpy()
    for i in range(3):  # a roll keeps every frame
        assert np.allclose(np.sort(rolled[i].ravel()), np.sort(x.numpy()[i].ravel()))
    filled = A.time_shift(x, 3, SEED, wrap=False).numpy()
    assert filled.shape == x.shape


def test_config_off_and_dict():
    assert not A.AugmentConfig.off().any
    cfg = A.AugmentConfig(mixup_alpha=0.2)
    assert A.AugmentConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="Unknown augmentation"):
        A.AugmentConfig.from_dict({"mixupalpha": 1})


def test_mixup_needs_one_hot():
    x, _ = _batch()
    with pytest.raises(ValueError, match="one-hot"):
        A.augment_batch(x, tf.range(6), A.AugmentConfig(), SEED)


def test_batch_seeds_reproducible_and_new_each_epoch():
    ds = A.batch_seeds(3)
    e1 = [s.numpy().tolist() for s in ds.take(3)]
    e2 = [s.numpy().tolist() for s in ds.take(3)]
    again = [s.numpy().tolist() for s in A.batch_seeds(3).take(3)]
    assert e1 == again and e1 != e2
