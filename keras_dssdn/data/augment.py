"""Training-time augmentation of log-mel batches, reproducible under a seed.

All functions take a batch of log-mel maps ``x`` of shape ``(B, F, T, 1)``
(natural-log mel power, frequency on axis 1, lowest band first, time on
axis 2) and a stateless seed (int tensor of shape ``(2,)``). The same seed
gives the same result; :func:`keras_dssdn.data.pipeline.training_dataset` draws one
seed per batch from its ``seed`` argument and applies :func:`augment_batch`
only when ``training=True``.

* :func:`random_gain` -- per-clip gain in dB, applied as the exact additive
  shift ``2 ln(g)`` of log-power (exact up to ``log_offset``).
* :func:`time_shift` -- per-clip random shift along time, wrapping around
  (``roll``) or filling with the clip mean (a random crop of a padded map).
* :func:`freq_mixstyle` -- Freq-MixStyle (Schmid et al., DCASE 2022): mixes
  per-frequency-band mean / std between clips (device generalisation).
* :func:`spec_augment` -- SpecAugment time and frequency masks, filled with
  the clip mean.
* :func:`mixup` -- mixes clips and their one-hot labels with Beta(a, a)
  weights: the labels become soft.
"""

from __future__ import annotations

import dataclasses
import math

import tensorflow as tf

from keras_dssdn.utils.dataclass_dicts import dataclass_from_dict


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
    """Which augmentations run, and how strongly (0 turns each one off).

    Units: ``gain_db`` in dB (uniform in +-gain_db), widths in mel bands
    and STFT frames, probabilities per batch (Freq-MixStyle, as in its
    reference code) or per clip (mixup).
    """

    mixup_alpha: float = 0.3
    mixup_prob: float = 1.0
    freq_masks: int = 2
    freq_mask_bands: int = 16
    time_masks: int = 2
    time_mask_frames: int = 40
    mixstyle_alpha: float = 0.3
    mixstyle_prob: float = 0.4
    time_shift_frames: int = 0
    time_shift_wrap: bool = True
    gain_db: float = 0.0

    @classmethod
    def off(cls) -> "AugmentConfig":
        """A config with every augmentation off."""
        return cls(mixup_alpha=0.0, freq_masks=0, time_masks=0, mixstyle_prob=0.0, time_shift_frames=0, gain_db=0.0)

    @property
    def uses_mixup(self) -> bool:
        return self.mixup_alpha > 0 and self.mixup_prob > 0

    @property
    def any(self) -> bool:
        return bool(
            self.uses_mixup
            or (self.freq_masks and self.freq_mask_bands)
            or (self.time_masks and self.time_mask_frames)
            or (self.mixstyle_prob > 0 and self.mixstyle_alpha > 0)
            or self.time_shift_frames
            or self.gain_db
        )

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "AugmentConfig":
        return dataclass_from_dict(cls, d, "augmentation option")


def _split(seed, n):
    return tf.unstack(tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), n))


def _beta(shape, alpha, seed):
    s1, s2 = _split(seed, 2)
    a = tf.random.stateless_gamma(shape, s1, alpha=alpha)
    b = tf.random.stateless_gamma(shape, s2, alpha=alpha)
    return a / tf.maximum(a + b, 1e-12)


def _permutation(n, seed):
    return tf.argsort(tf.random.stateless_uniform([n], seed))


def _clip_mean(x):
    return tf.reduce_mean(x, axis=[1, 2, 3], keepdims=True)


def random_gain(x, max_db: float, seed):
    """Add ``g * ln(10) / 10`` (a gain of ``g`` dB, ``g ~ U(-max_db, max_db)`` per clip)."""
    g = tf.random.stateless_uniform([tf.shape(x)[0], 1, 1, 1], seed, -max_db, max_db)
    return x + g * (math.log(10.0) / 10.0)


def time_shift(x, max_frames: int, seed, wrap: bool = True):
    """Shift each clip by ``s ~ U{-max_frames..max_frames}`` frames along time.

    ``wrap=True`` rolls the map; ``wrap=False`` fills the frames shifted in
    with the clip mean.
    """
    b, t = tf.shape(x)[0], tf.shape(x)[2]
    shift = tf.random.stateless_uniform([b, 1], seed, -max_frames, max_frames + 1, dtype=tf.int32)
    src = tf.range(t)[None, :] - shift  # (B, T): source frame of each output frame
    shifted = tf.gather(x, tf.math.floormod(src, t), axis=2, batch_dims=1)
    if wrap:
        return shifted
    inside = tf.logical_and(src >= 0, src < t)[:, None, :, None]
    return tf.where(inside, shifted, _clip_mean(x))


def _band_mask(size, count: int, max_width: int, batch, seed):
    """(B, size) bool: True inside any of ``count`` random bands of width <= max_width."""
    s1, s2 = _split(seed, 2)
    width = tf.random.stateless_uniform([batch, count, 1], s1, 0, max_width + 1, dtype=tf.int32)
    width = tf.minimum(width, size)
    start = tf.cast(tf.random.stateless_uniform([batch, count, 1], s2) * tf.cast(size - width + 1, tf.float32), tf.int32)
    pos = tf.range(size)[None, None, :]
    return tf.reduce_any(tf.logical_and(pos >= start, pos < start + width), axis=1)


def spec_augment(x, seed, freq_masks: int = 2, freq_mask_bands: int = 16, time_masks: int = 2, time_mask_frames: int = 40):
    """SpecAugment: ``freq_masks`` bands of up to ``freq_mask_bands`` mel rows and
    ``time_masks`` bands of up to ``time_mask_frames`` frames per clip, set to the clip mean."""
    b, f, t = tf.shape(x)[0], tf.shape(x)[1], tf.shape(x)[2]
    s1, s2 = _split(seed, 2)
    mask = tf.zeros([b, f, t], tf.bool)
    if freq_masks and freq_mask_bands:
        mask = tf.logical_or(mask, _band_mask(f, freq_masks, freq_mask_bands, b, s1)[:, :, None])
    if time_masks and time_mask_frames:
        mask = tf.logical_or(mask, _band_mask(t, time_masks, time_mask_frames, b, s2)[:, None, :])
    return tf.where(mask[..., None], _clip_mean(x), x)


def freq_mixstyle(x, seed, alpha: float = 0.3, prob: float = 0.4, eps: float = 1e-6):
    """Freq-MixStyle: with probability ``prob`` (per batch), renormalise each clip's
    frequency bands to a Beta(alpha, alpha) mix of its own and another clip's
    per-band mean / std (statistics over time)."""
    s_apply, s_lam, s_perm = _split(seed, 3)
    b = tf.shape(x)[0]
    mu = tf.reduce_mean(x, axis=[2, 3], keepdims=True)  # (B, F, 1, 1)
    sig = tf.sqrt(tf.math.reduce_variance(x, axis=[2, 3], keepdims=True) + eps)
    lam = _beta([b, 1, 1, 1], alpha, s_lam)
    perm = _permutation(b, s_perm)
    mu_mix = lam * mu + (1.0 - lam) * tf.gather(mu, perm)
    sig_mix = lam * sig + (1.0 - lam) * tf.gather(sig, perm)
    mixed = (x - mu) / sig * sig_mix + mu_mix
    apply = tf.random.stateless_uniform([], s_apply) < prob
    return tf.where(apply, mixed, x)


def mixup(x, y, seed, alpha: float = 0.3, prob: float = 1.0):
    """Mix each clip with another of the batch: ``lam x + (1 - lam) x[perm]``, same for
    the one-hot / soft labels ``y`` ``(B, classes)``; ``lam ~ Beta(alpha, alpha)``
    for a fraction ``prob`` of the clips, 1 for the others."""
    s_lam, s_perm, s_apply = _split(seed, 3)
    b = tf.shape(x)[0]
    lam = _beta([b], alpha, s_lam)
    lam = tf.where(tf.random.stateless_uniform([b], s_apply) < prob, lam, tf.ones_like(lam))
    perm = _permutation(b, s_perm)
    y = tf.cast(y, tf.float32)
    lx = tf.reshape(lam, [-1, 1, 1, 1])
    ly = tf.reshape(lam, [-1, 1])
    return lx * x + (1.0 - lx) * tf.gather(x, perm), ly * y + (1.0 - ly) * tf.gather(y, perm)


def augment_batch(x, y, config: AugmentConfig, seed):
    """Apply the augmentations of ``config`` in order gain, time shift,
    Freq-MixStyle, SpecAugment masks, mixup.

    ``x``: ``(B, F, T, 1)`` float32; ``y``: one-hot ``(B, classes)`` (needed
    for mixup; may be int ids when mixup is off), or labels and teacher targets
    side by side ``(B, 2 * classes)`` (knowledge distillation): mixup mixes
    every column of a row with the same weight, so labels and teacher targets
    are mixed alike; the other augmentations change ``x`` only, so an
    augmented clip keeps its clean clip's targets. Returns ``(x, y)``.
    """
    seeds = _split(seed, 5)
    x = tf.convert_to_tensor(x, tf.float32)
    if config.gain_db:
        x = random_gain(x, config.gain_db, seeds[0])
    if config.time_shift_frames:
        x = time_shift(x, config.time_shift_frames, seeds[1], config.time_shift_wrap)
    if config.mixstyle_prob > 0 and config.mixstyle_alpha > 0:
        x = freq_mixstyle(x, seeds[2], config.mixstyle_alpha, config.mixstyle_prob)
    if (config.freq_masks and config.freq_mask_bands) or (config.time_masks and config.time_mask_frames):
        x = spec_augment(x, seeds[3], config.freq_masks, config.freq_mask_bands, config.time_masks, config.time_mask_frames)
    if config.uses_mixup:
        if y.shape.rank != 2:
            raise ValueError("mixup needs one-hot labels (B, classes); use label_mode='one_hot'.")
        x, y = mixup(x, y, seeds[4], config.mixup_alpha, config.mixup_prob)
    return x, y


def batch_seeds(seed: int):
    """Endless dataset of per-batch stateless seeds ``(2,)`` int64, reproducible
    from ``seed`` and different in every epoch."""
    return tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2, drop_remainder=True)
