"""Long recordings read in blocks, so that classifying an hour of audio takes as much memory as a minute.

:class:`WavSource` reads the mono samples ``[a, b)`` of a PCM / float WAV from disk (NumPy, only those bytes),
scaled as :func:`keras_dssdn.audio.decode.decode_audio` scales them and down-mixed as
:func:`keras_dssdn.audio.decode.to_mono` does. :class:`Resampled` gives the samples ``[a, b)`` of that signal at
another rate with the polyphase filter of :func:`keras_dssdn.audio.resample.resample` (the same matrix, applied to
just the input blocks those outputs need), so a window cut from it equals the window cut from the whole file
resampled at once (to float32 rounding). Units: samples (per channel) and Hz.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np

from keras_dssdn.audio.probe import AudioInfo
from keras_dssdn.errors import AudioFormatError

#: ``encoding -> (NumPy dtype or None for 24-bit, bytes per sample)`` of the WAV encodings read here.
_WAV = {"wav_u8": ("u1", 1), "wav_s16": ("<i2", 2), "wav_s24": (None, 3), "wav_s32": ("<i4", 4),
        "wav_f32": ("<f4", 4), "wav_f64": ("<f8", 8)}


def _scale(raw: np.ndarray, encoding: str) -> np.ndarray:
    """Stored samples -> float32 in [-1, 1] as the TF decoder scales them (24-bit: ``raw`` is bytes ``(n, 3)``)."""
    if encoding == "wav_u8":
        return (raw.astype(np.float32) - 128.0) / 128.0
    if encoding == "wav_s16":
        return raw.astype(np.float32) / 32768.0
    if encoding == "wav_s24":
        b = raw.astype(np.int32)
        return ((b[:, 0] << 8 | b[:, 1] << 16 | b[:, 2] << 24) >> 8).astype(np.float32) / 8388608.0
    if encoding == "wav_s32":
        return (raw.astype(np.float64) / 2147483648.0).astype(np.float32)
    return raw.astype(np.float32)


class WavSource:
    """Mono float32 samples of a WAV file (``info`` from :func:`keras_dssdn.audio.probe.probe_audio`), read on
    demand: ``read(a, b)`` -> ``(b - a,)``, zeros outside ``[0, frames)``."""

    def __init__(self, info: AudioInfo):
        self.info = info
        self.dtype, self.width = _WAV[info.encoding]
        self.frames = int(info.frames)
        self.rate = int(info.sample_rate)

    def read(self, a: int, b: int) -> np.ndarray:
        out = np.zeros(b - a, np.float32)
        lo, hi = max(a, 0), min(b, self.frames)
        if hi <= lo:
            return out
        c = self.info.channels
        offset = self.info.data_offset + lo * c * self.width
        if self.dtype is None:
            raw = np.fromfile(self.info.path, np.uint8, (hi - lo) * c * 3, offset=offset).reshape(-1, 3)
        else:
            raw = np.fromfile(self.info.path, self.dtype, (hi - lo) * c, offset=offset)
        x = _scale(raw, self.info.encoding)
        if x.size != (hi - lo) * c:
            raise AudioFormatError(f"{self.info.path}: the file ends before the {self.frames} samples its header "
                                   "states (truncated); re-export or remove the file.")
        if not np.all(np.isfinite(x)):
            raise AudioFormatError(f"{self.info.path}: {int(np.sum(~np.isfinite(x)))} samples between {lo / self.rate:.1f}"
                                   f" and {hi / self.rate:.1f} s are NaN or infinite (a corrupt float WAV); re-export "
                                   "or remove the file.")
        out[lo - a:hi - a] = x.reshape(-1, c).mean(axis=1, dtype=np.float32) if c > 1 else x
        return out


class Resampled:
    """``source`` (anything with ``frames``, ``rate`` and ``read(a, b)``) at ``rate``: ``length`` samples,
    ``read(a, b)`` for ``0 <= a < b <= length``, each computed from the input blocks it depends on only."""

    def __init__(self, source, rate: int):
        from keras_dssdn.audio.resample import resampled_length, resampling_matrix

        self.source, self.rate = source, int(rate)
        self.length = resampled_length(source.frames, source.rate, self.rate)
        self.same = int(source.rate) == self.rate
        if not self.same:
            self.up, self.down, self.p, self.w = resampling_matrix(int(source.rate), self.rate)

    def read(self, a: int, b: int) -> np.ndarray:
        if self.same:
            return self.source.read(a, b)
        up, down, p = self.up, self.down, self.p
        j0, j1 = a // up, -(-b // up)  # output blocks covering [a, b)
        x = self.source.read((j0 - p) * down, (j1 + p) * down)
        frames = np.lib.stride_tricks.sliding_window_view(x, (2 * p + 1) * down)[::down]
        y = (frames @ self.w).reshape(-1)
        return y[a - j0 * up:b - j0 * up].astype(np.float32)


def open_stream(path: str, rate: int) -> Optional[Resampled]:
    """A :class:`Resampled` reader of the WAV file ``path`` at ``rate``, or None where the file is read whole
    instead (FLAC; a WAV whose length the header does not give; a rate pair whose filter the package leaves to
    tensorflow-io). Raises the probe's errors for an unreadable file."""
    from keras_dssdn.audio.probe import probe_audio
    from keras_dssdn.audio.resample import _MAX_RESAMPLE_MATRIX, RESAMPLE_ROLLOFF, RESAMPLE_ZEROS

    info = probe_audio(path)
    if info.encoding not in _WAV or info.frames is None:
        return None
    g = math.gcd(int(rate), int(info.sample_rate))
    up, down = int(rate) // g, int(info.sample_rate) // g
    p = int(math.ceil(RESAMPLE_ZEROS / (min(1.0, up / down) * RESAMPLE_ROLLOFF) / down))
    if up != down and (2 * p + 1) * down * up > _MAX_RESAMPLE_MATRIX:  # resample() hands these to tensorflow-io
        return None
    return Resampled(WavSource(info), rate)
