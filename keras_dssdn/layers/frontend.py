"""Log-mel front end and its normalisation, as TF ops and Keras layers.

``LogMel`` maps waveforms ``(B, samples)`` float32 in [-1, 1] at
``params.sample_rate`` to log-mel maps ``(B, n_mels, frames, 1)``: lowest mel
band at row 0, time on axis 2 (see :mod:`keras_dssdn.params`). Definition, the
same as ``librosa.feature.melspectrogram(power=2, center=True,
pad_mode="reflect", htk=False, norm="slaney")`` followed by
``log(mel + log_offset)``:

1. reflect-pad ``n_fft // 2`` samples each side (``center=True``);
2. frames of ``n_fft`` samples every ``hop_length``, periodic Hann window of
   ``win_length`` centred in the frame;
3. power spectrum ``|rfft|**2`` (``n_fft // 2 + 1`` bins);
4. Slaney mel filterbank (:func:`mel_filterbank`), natural log.

Matches librosa within 1e-4 in natural-log units (0.0004 dB; measured maximum
1.1e-5 on the real clips of ../shared/data, tests/test_features.py).

The same function runs as a ``tf.data`` map on the CPU
(:func:`log_mel_spectrogram`) or as the first layer of a model, on the GPU
when there is one (:class:`LogMel`, :func:`attach_front_end`).

``LogMelNormalization`` standardises log-mel maps with statistics computed on
training data (:func:`compute_normalization_stats`), global (one mean / std)
or per mel band; the statistics live in the layer config, so they are saved
in the ``.keras`` file.
"""

from __future__ import annotations

import dataclasses
from typing import Optional, Sequence, Union

import keras
import numpy as np
import tensorflow as tf

from keras_dssdn.params import DEFAULT_FRONTEND, FrontEndParams


def _as_params(params) -> FrontEndParams:
    if params is None:
        return DEFAULT_FRONTEND
    if isinstance(params, FrontEndParams):
        return params
    if isinstance(params, dict):
        return FrontEndParams.from_dict(params)
    raise TypeError(f"Expected FrontEndParams or dict, got {type(params).__name__}.")


# --------------------------------------------------------------------------
# Mel filterbank (numpy, Slaney scale and area normalisation)
# --------------------------------------------------------------------------


def hz_to_mel(hz):
    """Slaney mel scale: linear below 1 kHz (3 / 200 mel per Hz), logarithmic above."""
    hz = np.asanyarray(hz, dtype=np.float64)
    f_sp, min_log_hz, min_log_mel, logstep = 200.0 / 3, 1000.0, 15.0, np.log(6.4) / 27.0
    mel = hz / f_sp
    return np.where(hz >= min_log_hz, min_log_mel + np.log(np.maximum(hz, 1e-10) / min_log_hz) / logstep, mel)


def mel_to_hz(mel):
    """Inverse of :func:`hz_to_mel`."""
    mel = np.asanyarray(mel, dtype=np.float64)
    f_sp, min_log_hz, min_log_mel, logstep = 200.0 / 3, 1000.0, 15.0, np.log(6.4) / 27.0
    return np.where(mel >= min_log_mel, min_log_hz * np.exp(logstep * (mel - min_log_mel)), f_sp * mel)


def mel_filterbank(params: Optional[FrontEndParams] = None) -> np.ndarray:
    """Slaney-normalised triangular filters, float32 ``(n_fft // 2 + 1, n_mels)``.

    Same definition as ``librosa.filters.mel(htk=False, norm="slaney")``
    (transposed): band edges equally spaced on the Slaney mel scale between
    ``fmin`` and ``fmax``, each triangle scaled by ``2 / (f_high - f_low)``.
    """
    p = _as_params(params)
    n_freq = p.n_fft // 2 + 1
    fft_freqs = np.linspace(0.0, p.sample_rate / 2.0, n_freq)
    edges = mel_to_hz(np.linspace(hz_to_mel(p.fmin), hz_to_mel(p.effective_fmax), p.n_mels + 2))
    # The outer edges are fmin / fmax exactly: the mel round trip lands an ulp off them, above fmax with
    # numpy 2's exp/log, which gave the Nyquist bin a 1e-17 weight there and not with numpy 1.26. Pinned,
    # both stacks (docs/install.md) build the same float32 filterbank, bit for bit.
    edges[0], edges[-1] = p.fmin, p.effective_fmax
    widths = np.diff(edges)
    ramps = edges[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (edges[2:] - edges[:-2]))[:, None]
    return weights.T.astype(np.float32)


def stft_window(params: Optional[FrontEndParams] = None) -> np.ndarray:
    """Periodic Hann window of ``win_length`` centred in ``n_fft`` samples (float32)."""
    p = _as_params(params)
    n = np.arange(p.win_length)
    w = 0.5 - 0.5 * np.cos(2.0 * np.pi * n / p.win_length)
    left = (p.n_fft - p.win_length) // 2
    return np.pad(w, (left, p.n_fft - p.win_length - left)).astype(np.float32)


# --------------------------------------------------------------------------
# Log-mel (TF ops)
# --------------------------------------------------------------------------


def log_mel_spectrogram(waveform, params: Optional[FrontEndParams] = None):
    """Log-mel map of ``(..., samples)`` float32 -> ``(..., n_mels, frames, 1)``.

    Works for one clip ``(samples,)`` (a tf.data map) or a batch ``(B, samples)``.
    ``frames = params.num_frames(samples / sample_rate)``.
    """
    p = _as_params(params)
    x = tf.convert_to_tensor(waveform, tf.float32)
    if p.center:
        pad = p.n_fft // 2
        paddings = [[0, 0]] * (x.shape.rank - 1) + [[pad, pad]]
        x = tf.pad(x, paddings, mode="REFLECT")
    frames = tf.signal.frame(x, p.n_fft, p.hop_length)  # (..., frames, n_fft)
    spec = tf.signal.rfft(frames * tf.constant(stft_window(p)), fft_length=[p.n_fft])
    power = tf.math.square(tf.math.real(spec)) + tf.math.square(tf.math.imag(spec))
    mel = tf.linalg.matmul(power, tf.constant(mel_filterbank(p)))  # (..., frames, n_mels)
    logmel = tf.math.log(mel + p.log_offset)
    perm = list(range(logmel.shape.rank - 2)) + [logmel.shape.rank - 1, logmel.shape.rank - 2]
    return tf.transpose(logmel, perm)[..., None]


@keras.saving.register_keras_serializable(package="keras_dssdn")
class LogMel(keras.layers.Layer):
    """Waveform ``(B, samples)`` -> log-mel ``(B, n_mels, frames, 1)``.

    ``params``: a :class:`~keras_dssdn.params.FrontEndParams` (or its dict);
    the input must already be at ``params.sample_rate``. No weights.
    """

    def __init__(self, params: Union[FrontEndParams, dict, None] = None, **kwargs):
        kwargs.setdefault("trainable", False)
        super().__init__(**kwargs)
        self.params = _as_params(params)

    def call(self, waveform):
        return log_mel_spectrogram(waveform, self.params)

    def compute_output_shape(self, input_shape):
        n = input_shape[-1]
        frames = None if n is None else self.params.num_frames(n / self.params.sample_rate)
        return tuple(input_shape[:-1]) + (self.params.n_mels, frames, 1)

    def get_config(self):
        return {**super().get_config(), "params": self.params.to_dict()}


# --------------------------------------------------------------------------
# Normalisation
# --------------------------------------------------------------------------

NORMALIZATION_MODES = ("global", "per_band", "per_input")
#: Smallest standard deviation ``per_input`` divides by (log-mel units): a constant input maps to zeros.
PER_INPUT_STD_FLOOR = 1e-5


@dataclasses.dataclass(frozen=True)
class NormalizationStats:
    """Mean and standard deviation of log-mel values over training data.

    ``mode="global"``: one value each; ``"per_band"``: one per mel band
    (``n_mels`` values, lowest band first). ``count`` is the number of values
    averaged per statistic. ``"per_input"``: no stored statistics (``mean`` and
    ``std`` empty); each model input (one 1-s segment for the 1-s models, the
    "per clip" normalisation of the literature) is standardised by its own mean
    and standard deviation over all its bands and frames. Training and Keras
    inference support it; the C front end does not (export refuses it).
    """

    mean: tuple
    std: tuple
    mode: str = "global"
    count: int = 0

    def __post_init__(self):
        if self.mode not in NORMALIZATION_MODES:
            raise ValueError(f"mode must be one of {NORMALIZATION_MODES}, got {self.mode!r}.")
        object.__setattr__(self, "mean", tuple(float(v) for v in np.ravel(self.mean)))
        object.__setattr__(self, "std", tuple(float(v) for v in np.ravel(self.std)))
        if len(self.mean) != len(self.std) or (self.mode == "global" and len(self.mean) != 1) \
                or ((self.mode == "per_input") != (len(self.mean) == 0)):
            raise ValueError("NormalizationStats: mean / std sizes do not match the mode.")

    def to_dict(self) -> dict:
        return {"mean": list(self.mean), "std": list(self.std), "mode": self.mode, "count": int(self.count)}

    @classmethod
    def from_dict(cls, d: dict) -> "NormalizationStats":
        return cls(**d)

    def save(self, path: str) -> None:
        """Write the statistics as JSON (atomically)."""
        from keras_dssdn.fileio import write_json_atomic

        write_json_atomic(path, self.to_dict())

    @classmethod
    def load(cls, path: str) -> "NormalizationStats":
        from keras_dssdn.fileio import read_json, reading

        advice = "restore it from the run folder it came from"
        d = read_json(path, "normalisation file", advice)
        with reading(path, "normalisation file", advice):
            return cls.from_dict(d)

    def apply(self, x):
        """Standardise ``(..., n_mels, frames, 1)`` log-mel maps (TF ops)."""
        if self.mode == "per_input":
            mean, variance = tf.nn.moments(x, axes=[-3, -2, -1], keepdims=True)
            return (x - mean) / tf.maximum(tf.sqrt(variance), PER_INPUT_STD_FLOOR)
        mean = tf.constant(np.reshape(self.mean, (-1, 1, 1)), tf.float32)
        std = tf.constant(np.reshape(self.std, (-1, 1, 1)), tf.float32)
        return (x - mean) / std


def compute_normalization_stats(logmels, mode: str = "global", max_batches: Optional[int] = None) -> NormalizationStats:
    """Mean / std of log-mel maps ``(B, n_mels, frames, 1)`` over an iterable.

    ``logmels`` yields batches, or tuples whose first element is the batch
    (e.g. ``evaluation_dataset(train, spec)``); accumulates in float64.
    Compute it on the training split without augmentation.
    """
    if mode not in NORMALIZATION_MODES:
        raise ValueError(f"mode must be one of {NORMALIZATION_MODES}, got {mode!r}.")
    if mode == "per_input":  # nothing to learn from the data: each input brings its own statistics
        return NormalizationStats((), (), mode)
    total = total_sq = None
    count = 0
    for i, batch in enumerate(logmels):
        if max_batches is not None and i >= max_batches:
            break
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 4:
            raise ValueError(f"Expected batches of log-mel maps (B, n_mels, frames, 1), got shape {x.shape}.")
        axes = (0, 1, 2, 3) if mode == "global" else (0, 2, 3)
        s, s2 = x.sum(axis=axes), np.square(x).sum(axis=axes)
        total = s if total is None else total + s
        total_sq = s2 if total_sq is None else total_sq + s2
        count += x.size // (1 if mode == "global" else x.shape[1])
    if not count:
        raise ValueError("compute_normalization_stats: the dataset yielded no batches.")
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean**2, 0.0))
    return NormalizationStats(np.atleast_1d(mean), np.maximum(np.atleast_1d(std), 1e-5), mode, count)


@keras.saving.register_keras_serializable(package="keras_dssdn")
class LogMelNormalization(keras.layers.Layer):
    """``(x - mean) / std`` on ``(B, n_mels, frames, 1)``; statistics in the config.

    Build it from :class:`NormalizationStats`: ``LogMelNormalization(stats)``
    or ``LogMelNormalization(mean=[...], std=[...], mode="per_band")``.
    """

    def __init__(self, stats: Union[NormalizationStats, dict, None] = None, mean=None, std=None,
                 mode: str = "global", **kwargs):
        kwargs.setdefault("trainable", False)
        super().__init__(**kwargs)
        if stats is None:
            if mean is None or std is None:
                raise ValueError("LogMelNormalization needs stats or mean and std.")
            stats = NormalizationStats(mean, std, mode)
        elif isinstance(stats, dict):
            stats = NormalizationStats.from_dict(stats)
        self.stats = stats

    def call(self, x):
        return self.stats.apply(x)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "stats": self.stats.to_dict()}


# --------------------------------------------------------------------------
# Front end on the model
# --------------------------------------------------------------------------


def attach_front_end(
    model,
    params: Optional[FrontEndParams] = None,
    normalization: Optional[NormalizationStats] = None,
    class_names: Optional[Sequence[str]] = None,
    waveform_input: bool = True,
    seconds: Optional[float] = None,
    name: Optional[str] = None,
):
    """Wrap a model whose input is a log-mel map into one that carries its front end.

    Input: waveforms ``(B, num_samples(seconds))`` when ``waveform_input``
    (the :class:`LogMel` layer then runs on the GPU if there is one), else
    log-mel maps ``(B, n_mels, frames, 1)``. Then the optional
    :class:`LogMelNormalization`, ``model``, and an optional
    :class:`~keras_dssdn.layers.labels.ClassNames` layer, so the front-end settings,
    normalisation statistics and label vocabulary are all saved in the
    ``.keras`` file.
    """
    from keras_dssdn.layers.labels import ClassNames

    p = _as_params(params)
    if waveform_input:
        inputs = keras.Input((p.num_samples(seconds),), name="waveform")
        x = LogMel(p, name="log_mel")(inputs)
    else:
        inputs = keras.Input(p.input_shape(seconds), name="log_mel")
        x = inputs
    if normalization is not None:
        x = LogMelNormalization(normalization, name="log_mel_normalization")(x)
    x = model(x)
    if class_names is not None:
        x = ClassNames(list(class_names), name="class_names")(x)
    return keras.Model(inputs, x, name=name or f"{model.name}_with_front_end")
