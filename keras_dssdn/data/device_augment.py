"""Device augmentation in the training pipeline: impulse responses (DIR) and spectrum differences (DSMN).

:func:`keras_dssdn.data.pipeline.training_dataset` takes a :class:`DeviceAugment` (``TrainingOptions.devices``) and, for a
training set, calls its two stages::

    decode -> resample -> crop  -> [cache waveforms -> DIR, new draws every epoch]   (waveform_stage)
           -> segments -> log-mel -> [cache log-mel unless DIR is on] -> shuffle -> batch
           -> [add a device's spectrum difference]                                  (batch_stage)

How DIR coexists with the log-mel cache: the response must filter the waveform before the STFT and
differ every epoch, so with DIR on the cache holds the decoded, resampled clips (decoding and
resampling still happen once) and every epoch convolves (FFT), segments and computes log-mel again.
Its cost against the log-mel cache is measured by ``tools/benchmark_dir.py`` (docs/devices.md). The
cache holds 4 bytes per sample: 1.76 MB per 10-s clip at 44.1 kHz (445 MB for TUT 2017's 252
training clips; for TAU 2020's 14 k clips use a file cache, ``cache=<path>``). DSMN works on log-mel
batches and keeps the log-mel cache.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import tensorflow as tf

from keras_dssdn.data.device_spectra import DeviceSpectra, add_device_spectra
from keras_dssdn.data.impulse import ImpulseResponses, apply_to_dataset


@dataclasses.dataclass(frozen=True)
class DeviceAugment:
    """Which device augmentations a training set gets: ``responses`` with ``dir_prob`` per clip, ``spectra`` with
    ``dsmn_prob`` per clip (None: off)."""

    responses: Optional[ImpulseResponses] = None
    dir_prob: float = 0.6
    spectra: Optional[DeviceSpectra] = None
    dsmn_prob: float = 0.6

    @property
    def on_waveforms(self) -> bool:
        """True when the pipeline must cache waveforms instead of log-mel (DIR is on)."""
        return self.responses is not None and self.dir_prob > 0

    def waveform_stage(self, ds: tf.data.Dataset, cache, cached, seed: int, num_parallel_calls: int):
        """``(clips (waveform (N,), metadata), log-mel cache setting)``: with DIR on, the clips cached by ``cached(ds,
        cache)`` and convolved every epoch, and no log-mel cache; else both unchanged."""
        if not self.on_waveforms:
            return ds, cache
        return apply_to_dataset(cached(ds, cache), self.responses, self.dir_prob, seed + 2, num_parallel_calls), None

    def batch_stage(self, ds: tf.data.Dataset, seed: int, num_parallel_calls: int) -> tf.data.Dataset:
        """Batches ``(x (B, n_mels, T, 1), y, metadata)`` with DSMN offsets added (unchanged when it is off)."""
        if self.spectra is None or self.dsmn_prob <= 0:
            return ds
        from keras_dssdn.data.augment import batch_seeds

        offsets = tf.constant(self.spectra.as_array())
        ds = tf.data.Dataset.zip((ds, batch_seeds(seed + 3)))
        return ds.map(lambda b, s: (add_device_spectra(b[0], offsets, self.dsmn_prob, s),) + tuple(b[1:]),
                      num_parallel_calls=num_parallel_calls)


def device_augment(cfg) -> Optional[DeviceAugment]:
    """The :class:`DeviceAugment` of a :class:`~keras_dssdn.train.config.TrainConfig` (None when ``dir_folder`` and
    ``dsmn_file`` are unset): responses loaded (resampled once to the front end's rate, none longer than the
    segment or clip they filter) and spectra checked against the front end, before any training starts."""
    if not cfg.dir_folder and not cfg.dsmn_file:
        return None
    from keras_dssdn.data.impulse import load_impulse_responses

    p = cfg.frontend_params()
    responses = spectra = None
    if cfg.dir_folder:
        clip = cfg.clip_seconds or p.clip_seconds
        responses = load_impulse_responses(cfg.dir_folder, p.sample_rate, p.num_samples(clip))
        if cfg.verbose:
            print(f"DIR: {len(responses)} impulse responses from {cfg.dir_folder} (longest "
                  f"{responses.max_length / p.sample_rate * 1000:.1f} ms), probability {cfg.dir_prob:g} per clip")
    if cfg.dsmn_file:
        spectra = DeviceSpectra.load(cfg.dsmn_file)
        spectra.check_frontend(p, cfg.dsmn_file)
        if cfg.verbose:
            print(f"DSMN: spectrum differences of devices {sorted(spectra.devices)} (reference "
                  f"{spectra.reference}), probability {cfg.dsmn_prob:g} per clip")
    return DeviceAugment(responses, cfg.dir_prob, spectra, cfg.dsmn_prob)


def check_device_keys(cfg) -> None:
    """Validate the device keys of a TrainConfig (probabilities, subset size, paths exist) before any data is
    read; raises :class:`~keras_dssdn.errors.ConfigError` naming the key."""
    import os

    from keras_dssdn.data.impulse import check_probability
    from keras_dssdn.data.subsets import check_train_subset
    from keras_dssdn.errors import ConfigError

    check_probability("dir_prob", cfg.dir_prob)
    check_probability("dsmn_prob", cfg.dsmn_prob)
    check_train_subset(cfg.train_subset)
    if cfg.dir_folder and not os.path.isdir(cfg.dir_folder):
        raise ConfigError(f"dir_folder={cfg.dir_folder!r} is not a folder; give a folder of impulse-response WAVs.")
    if cfg.dsmn_file and not os.path.isfile(cfg.dsmn_file):
        raise ConfigError(f"dsmn_file={cfg.dsmn_file!r} does not exist; make it with dssdn-devices spectra.")
