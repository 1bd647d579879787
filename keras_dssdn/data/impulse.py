"""Device impulse responses (DIR): load, generate, and convolve clips with them as TF ops.

Recordings made with another microphone sound as if filtered by that device's impulse response.
DIR augmentation (CP-Mobile, DCASE 2023: 66 MicIRP responses, probability 0.6) convolves training
clips with measured responses so that a model sees many "devices":

* :func:`load_impulse_responses` reads a folder of WAV / FLAC responses (any rate, mono or
  stereo; resampled once, to the front end's rate, with the package's resampler) and refuses an
  empty folder, a response longer than the clip, and non-finite or silent responses, naming the
  file. Leading and trailing near-silence (below :data:`SILENCE_RATIO` of the peak) is trimmed,
  so a response that starts late does not delay the clip.
* :func:`synthetic_impulse_responses` generates band-limited responses (a direct impulse plus an
  exponentially decaying noise burst, filtered by a random band-pass with resonances and a
  spectral tilt; seeded) for the tests, the demo and the unseen-device simulation;
  :func:`write_impulse_responses` saves them as a folder of WAVs.
* :func:`convolve` is the FFT convolution (``tf.signal.rfft`` / ``irfft``: runs in ``tf.data``
  and on a GPU): the causal part, trimmed to the clip length, rescaled to the clip's RMS level.
  :func:`random_response` applies a random response with probability ``prob`` per clip.
* :func:`convolve_dataset` writes a DCASE-layout copy of a split with every clip convolved (the
  response name becomes the device, ``source_label``): an evaluate split "recorded" by unseen
  devices, or paired recordings (every clip through every response, plus the original as the
  reference device) for the spectrum differences of :mod:`keras_dssdn.data.device_spectra`.

Units: samples at ``sample_rate`` Hz; responses are float32 ``(length,)``.
"""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np
import tensorflow as tf

from keras_dssdn.errors import ImpulseResponseError

#: File suffixes read as responses.
RESPONSE_SUFFIXES = (".wav", ".flac")
#: Leading / trailing samples below this fraction of the peak magnitude are trimmed.
SILENCE_RATIO = 1e-3
#: A response whose peak magnitude is below this is refused as silent.
SILENT_PEAK = 1e-6


@dataclasses.dataclass(frozen=True)
class ImpulseResponses:
    """A set of responses at one sample rate: ``names[i]`` (file stems) and ``responses[i]`` float32 ``(L_i,)``."""

    names: List[str]
    responses: List[np.ndarray]
    sample_rate: int

    def __len__(self) -> int:
        return len(self.responses)

    @property
    def max_length(self) -> int:
        return max(len(h) for h in self.responses)

    def as_array(self) -> np.ndarray:
        """All responses zero-padded to the longest: float32 ``(R, max_length)``."""
        out = np.zeros((len(self), self.max_length), np.float32)
        for i, h in enumerate(self.responses):
            out[i, :len(h)] = h
        return out


# --------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------


def response_files(folder) -> List[Path]:
    """The WAV / FLAC files below ``folder`` (recursive), sorted by path."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ImpulseResponseError(f"{folder}: the impulse-response folder does not exist (dir_folder=). Give a "
                                   "folder of WAV / FLAC responses, e.g. MicIRP (docs/devices.md).")
    files = sorted(f for f in folder.rglob("*") if f.is_file() and f.suffix.lower() in RESPONSE_SUFFIXES)
    if not files:
        raise ImpulseResponseError(f"{folder}: no impulse responses (.wav or .flac files) in the folder. Put the "
                                   "responses there, or make synthetic ones: dssdn-devices responses --out DIR.")
    return files


def trim_silence(h: np.ndarray, ratio: float = SILENCE_RATIO) -> np.ndarray:
    """``h`` without the leading and trailing samples whose magnitude is below ``ratio`` times its peak."""
    loud = np.flatnonzero(np.abs(h) >= ratio * np.max(np.abs(h)))
    return h[loud[0]:loud[-1] + 1]


def _load_one(path: Path, sample_rate: int, max_samples: Optional[int]) -> np.ndarray:
    from keras_dssdn.audio import load_waveform
    from keras_dssdn.errors import DataError

    try:
        h = np.asarray(load_waveform(str(path), sample_rate=sample_rate, mono=True), np.float64)
    except DataError as e:
        raise ImpulseResponseError(f"impulse response {path}: {e}") from None
    if h.size == 0:
        raise ImpulseResponseError(f"impulse response {path}: the file holds no samples. Remove it.")
    bad = int(np.sum(~np.isfinite(h)))
    if bad:
        raise ImpulseResponseError(f"impulse response {path}: {bad} samples are NaN or infinite (after resampling "
                                   f"to {sample_rate} Hz). Re-export the response or remove it from the folder.")
    peak = float(np.max(np.abs(h)))
    if peak < SILENT_PEAK:
        raise ImpulseResponseError(f"impulse response {path}: silent (peak magnitude {peak:.3g}). Remove it from "
                                   "the folder.")
    h = trim_silence(h)
    if max_samples is not None and len(h) > max_samples:
        raise ImpulseResponseError(
            f"impulse response {path}: {len(h) / sample_rate:.3f} s ({len(h)} samples at {sample_rate} Hz) after "
            f"trimming silence, longer than the {max_samples / sample_rate:.3f}-s clips it would filter. A device "
            "response is a few milliseconds long: is this a room response? Shorten it or remove it.")
    return (h / peak).astype(np.float32)


def load_impulse_responses(folder, sample_rate: int, max_samples: Optional[int] = None) -> ImpulseResponses:
    """Every response of ``folder`` resampled to ``sample_rate`` (once), trimmed and scaled to peak 1.

    ``max_samples``: the clip length the responses will filter (a longer response is refused).
    Raises :class:`~keras_dssdn.errors.ImpulseResponseError` naming the folder or file.
    """
    files = response_files(folder)
    return ImpulseResponses([f.stem for f in files], [_load_one(f, int(sample_rate), max_samples) for f in files],
                            int(sample_rate))


# --------------------------------------------------------------------------
# Synthetic responses
# --------------------------------------------------------------------------


def _band_shape(f: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random device-like magnitude response on frequencies ``f`` (Hz): band-pass, tilt, resonances."""
    low = rng.uniform(80.0, 600.0)
    high = rng.uniform(3000.0, 0.45 * f[-1] * 2)
    fz = np.maximum(f, 1.0)
    shape = 1.0 / np.sqrt(1.0 + (low / fz) ** 4) / np.sqrt(1.0 + (fz / high) ** 8)
    shape *= (fz / 1000.0) ** rng.uniform(-0.3, 0.3)
    for _ in range(rng.integers(1, 4)):
        centre, gain_db = rng.uniform(np.log2(300.0), np.log2(min(12000.0, f[-1]))), rng.uniform(-9.0, 9.0)
        shape *= 10.0 ** (gain_db / 20.0 * np.exp(-0.5 * ((np.log2(fz) - centre) / rng.uniform(0.15, 0.6)) ** 2))
    return shape


def synthetic_impulse_responses(count: int, sample_rate: int = 44100, seed: int = 0, seconds: float = 0.02,
                                prefix: str = "ir") -> ImpulseResponses:
    """``count`` band-limited device-like responses of ``seconds`` each (deterministic for a seed).

    Each is a direct impulse plus a noise burst decaying in 1-6 ms, filtered by a random band-pass
    (low cut 80-600 Hz, high cut from 3 kHz up), a spectral tilt and 1-3 resonances of +-9 dB; scaled
    to peak 1. Names are ``<prefix>_s<seed>_<i>``, so sets of other seeds never share a name.
    """
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}.")
    rng = np.random.default_rng(seed)
    n = max(8, int(round(seconds * sample_rate)))
    t = np.arange(n) / sample_rate
    f = np.fft.rfftfreq(2 * n, 1.0 / sample_rate)
    names, responses = [], []
    for i in range(count):
        burst = np.zeros(n)
        burst[0] = 1.0
        burst += 0.3 * rng.standard_normal(n) * np.exp(-t / rng.uniform(0.001, 0.006))
        h = np.fft.irfft(np.fft.rfft(burst, 2 * n) * _band_shape(f, rng), 2 * n)
        h = np.roll(h, 32)[:n]  # the filter is zero-phase: keep 32 samples of its pre-ringing
        h *= np.minimum(1.0, np.linspace(4.0, 0.0, n))  # fade out the last quarter
        names.append(f"{prefix}_s{seed}_{i:02d}")
        responses.append((h / np.max(np.abs(h))).astype(np.float32))
    return ImpulseResponses(names, responses, int(sample_rate))


def write_impulse_responses(folder, responses: ImpulseResponses) -> Path:
    """Write ``responses`` as ``<folder>/<name>.wav`` (16-bit PCM) into a new folder (atomically)."""
    from keras_dssdn.data.synthetic import write_wav16
    from keras_dssdn.fileio import atomic_folder

    folder = Path(folder)
    if folder.exists():
        raise FileExistsError(f"{folder} already exists; choose another folder for the responses.")
    folder.parent.mkdir(parents=True, exist_ok=True)
    with atomic_folder(folder) as tmp:
        for name, h in zip(responses.names, responses.responses):
            write_wav16(tmp / f"{name}.wav", h, responses.sample_rate)
    return folder


# --------------------------------------------------------------------------
# Convolution (TF ops)
# --------------------------------------------------------------------------


def _fft_length(n: int) -> int:
    return 1 << max(0, int(n) - 1).bit_length()


def convolve(x, h):
    """Causal convolution of ``x`` ``(..., N)`` with ``h`` ``(..., L)`` (broadcast), trimmed to ``N`` samples and
    rescaled to ``x``'s RMS level (a silent ``x`` stays silent). FFT length: the power of two >= ``N + L - 1``.
    ``N`` and ``L`` must be static."""
    x = tf.convert_to_tensor(x, tf.float32)
    h = tf.convert_to_tensor(h, tf.float32)
    n, length = int(x.shape[-1]), int(h.shape[-1])
    fft = _fft_length(n + length - 1)
    y = tf.signal.irfft(tf.signal.rfft(x, [fft]) * tf.signal.rfft(h, [fft]), [fft])[..., :n]
    rms_x = tf.sqrt(tf.reduce_mean(tf.square(x), axis=-1, keepdims=True))
    rms_y = tf.sqrt(tf.reduce_mean(tf.square(y), axis=-1, keepdims=True))
    return y * (rms_x / tf.maximum(rms_y, 1e-12))


def random_response(x, responses, prob: float, seed):
    """One clip ``x`` ``(N,)`` convolved (:func:`convolve`) with a response drawn uniformly from ``responses``
    ``(R, L)``, with probability ``prob``; else ``x`` unchanged. ``seed``: stateless seed ``(2,)``."""
    s_pick, s_apply = tf.unstack(tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 2))
    responses = tf.convert_to_tensor(responses, tf.float32)
    index = tf.random.stateless_uniform([], s_pick, 0, int(responses.shape[0]), dtype=tf.int32)
    use = tf.random.stateless_uniform([], s_apply) < prob
    return tf.cond(use, lambda: convolve(x, tf.gather(responses, index)), lambda: tf.identity(x))


def apply_to_dataset(ds: tf.data.Dataset, responses: ImpulseResponses, prob: float, seed: int,
                     num_parallel_calls: Optional[int] = None) -> tf.data.Dataset:
    """Map ``(waveform (N,), metadata)`` elements through :func:`random_response`, new draws every epoch
    (reproducible from ``seed``)."""
    from keras_dssdn.data.augment import batch_seeds

    table = tf.constant(responses.as_array())
    ds = tf.data.Dataset.zip((ds, batch_seeds(seed)))
    return ds.map(lambda e, s: (random_response(e[0], table, prob, s),) + tuple(e[1:]),
                  num_parallel_calls=num_parallel_calls or tf.data.AUTOTUNE)


# --------------------------------------------------------------------------
# Convolved copies of a dataset
# --------------------------------------------------------------------------


def device_filename(filename: str, device: str) -> str:
    """``audio/x.flac`` -> ``audio/x-<device>.wav`` (TAU 2020's naming: the device is the last ``-`` field)."""
    stem, _ = os.path.splitext(filename)
    return f"{stem}-{device}.wav"


def convolve_dataset(data, out, responses: ImpulseResponses, *, split: str = "evaluate", fold: int = 1,
                     paired: bool = False, reference_device: str = "ref", seed: int = 0,
                     clip_seconds: Optional[float] = None) -> Path:
    """Write a DCASE-layout folder ``out`` whose audio is ``split`` of ``data`` through the responses.

    ``paired=False``: every clip through one response (a seeded shuffle, dealt round-robin, so every
    response filters about the same number of clips); ``source_label`` = the response name.
    ``paired=True``: every clip through every response, plus the unfiltered clip as device
    ``reference_device`` (paired recordings, as TAU 2020 Mobile's devices a/b/c). The clips are read at
    ``responses.sample_rate`` (resampled), cut to ``clip_seconds`` (default: their own length) and written as
    16-bit WAV ``<stem>-<device>.wav``; ``meta.csv`` and ``evaluation_setup/fold<fold>_<split>.csv`` list them
    (for ``paired``, ``fold<fold>_train.csv`` too). Written atomically; ``out`` must not exist.
    """
    from keras_dssdn.audio import load_waveform
    from keras_dssdn.data.datasets import read_clips
    from keras_dssdn.data.synthetic import write_wav16
    from keras_dssdn.fileio import atomic_folder

    out = Path(out)
    if out.exists():
        raise FileExistsError(f"{out} already exists; choose another output folder.")
    clips = read_clips(data, split=split, fold=fold)
    rate = responses.sample_rate
    order = np.random.default_rng(seed).permutation(len(clips))
    assigned = {int(c): int(k) % len(responses) for k, c in enumerate(order)}
    table = [tf.constant(h[None]) for h in responses.responses]
    rows = []
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_folder(out) as tmp:
        for i, clip in enumerate(clips):
            x = load_waveform(clip.path, sample_rate=rate, mono=True)
            if clip_seconds is not None:
                x = x[: int(round(clip_seconds * rate))]
            chosen = range(len(responses)) if paired else [assigned[i]]
            versions = [(reference_device, x)] if paired else []
            versions += [(responses.names[r], convolve(x[None], table[r]).numpy()[0]) for r in chosen]
            for device, audio in versions:
                name = device_filename(clip.filename, device)
                (tmp / name).parent.mkdir(parents=True, exist_ok=True)
                write_wav16(tmp / name, audio / max(1.0, float(np.max(np.abs(audio)))), rate)
                rows.append((name, clip.label or "", clip.identifier or Path(clip.filename).stem, device))
        _write_layout(tmp, rows, split, fold, paired)
    return out


def _write_layout(folder: Path, rows, split: str, fold: int, paired: bool) -> None:
    (folder / "evaluation_setup").mkdir()
    head = "filename\tscene_label\tidentifier\tsource_label\n"
    (folder / "meta.csv").write_text(head + "".join("\t".join(r) + "\n" for r in rows))
    splits = {split, "train"} if paired else {split}
    for s in splits:
        (folder / "evaluation_setup" / f"fold{fold}_{s}.csv").write_text(
            "filename\tscene_label\n" + "".join(f"{r[0]}\t{r[1]}\n" for r in rows))


def check_probability(key: str, value: float) -> None:
    """Refuse a probability outside [0, 1] (a :class:`~keras_dssdn.errors.ConfigError` naming the key)."""
    from keras_dssdn.errors import ConfigError

    if not (isinstance(value, (int, float)) and 0.0 <= value <= 1.0 and not math.isnan(value)):
        raise ConfigError(f"{key}={value!r} must be a probability in [0, 1].")
