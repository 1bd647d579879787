"""Long recordings read in blocks, so that classifying an hour of audio takes about as much memory as a minute.

:class:`WavSource` reads the mono samples ``[a, b)`` of a PCM / float WAV from disk (NumPy, only those bytes),
scaled as :func:`keras_dssdn.audio.decode.decode_audio` scales them and down-mixed as
:func:`keras_dssdn.audio.decode.to_mono` does; :class:`FlacSource` decodes a FLAC file a few MiB of frames at a
time with the package's FLAC op. :class:`Resampled` gives the samples ``[a, b)`` of that signal at
another rate with the polyphase filter of :func:`keras_dssdn.audio.resample.resample` (the same matrix, applied to
just the input blocks those outputs need), so a window cut from it equals the window cut from the whole file
resampled at once (to float32 rounding). Units: samples (per channel) and Hz.
"""

from __future__ import annotations

import math
import os
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


def _flac_stream_header(path: str):
    """``(header, audio_start)``: ``fLaC`` and the file's STREAMINFO as the only metadata block with the total
    sample count set to 0 (unknown: the decoder then reads frames to the end of what it is given), and the byte
    offset of the first frame."""
    with open(path, "rb") as f:
        head = f.read(10)
        pos = 0
        if head[:3] == b"ID3":
            pos = 10 + ((head[6] & 0x7F) << 21 | (head[7] & 0x7F) << 14 | (head[8] & 0x7F) << 7 | head[9] & 0x7F)
        pos += 4  # fLaC
        info, last = None, False
        while not last:
            f.seek(pos)
            block = f.read(4)
            last, length = bool(block[0] & 0x80), int.from_bytes(block[1:4], "big")
            if block[0] & 0x7F == 0:
                info = bytearray(f.read(34))
            pos += 4 + length
    info[13] &= 0xF0  # the 36-bit total sample count: bits 4..0 of byte 13 and bytes 14..17
    info[14:18] = b"\0\0\0\0"
    return b"fLaC" + bytes([0x80, 0, 0, 34]) + bytes(info), pos


class FlacSource:
    """Mono float32 samples of a FLAC file read in order: :data:`CHUNK` bytes of whole frames at a time go through
    the package's FLAC op (``fLaC`` + STREAMINFO + those frames), so memory holds a few chunks, not the file.
    ``read(a, b)`` as :class:`WavSource`; successive reads must not go back (a read that does starts over)."""

    #: Compressed bytes decoded per step (about 25 s of 44.1 kHz stereo 16-bit FLAC).
    CHUNK = 1 << 22

    def __init__(self, info: AudioInfo):
        self.info, self.path = info, info.path
        self.frames, self.rate = int(info.frames), int(info.sample_rate)
        self.header, self.audio_start = _flac_stream_header(info.path)
        self._restart()

    def _restart(self) -> None:
        self.pos, self.buf, self.buf_start = self.audio_start, np.zeros(0, np.float32), 0

    def _frames_end(self, data: bytes, eof: bool) -> list:
        """Byte offsets in ``data`` where a frame may start (a sync code and a frame header whose CRC-8 holds),
        last first; at the end of the file, the end of ``data`` itself."""
        from keras_dssdn.audio.probe import _parse_flac_frame_header

        cuts, i = ([len(data)] if eof else []), len(data)
        while len(cuts) < 8:
            i = max(data.rfind(b"\xff\xf8", 0, i), data.rfind(b"\xff\xf9", 0, i))
            if i <= 0:
                break
            if _parse_flac_frame_header(data, i) is not None:
                cuts.append(i)
        return cuts

    def _decode_next(self) -> None:
        import tensorflow as tf

        from keras_dssdn.audio.native_flac import decode_flac

        with open(self.path, "rb") as f:
            f.seek(self.pos)
            data = f.read(self.CHUNK)
        eof = self.pos + len(data) >= os.path.getsize(self.path)
        error = None
        for cut in self._frames_end(data, eof):
            try:
                x = decode_flac(tf.constant(self.header + data[:cut]), self.path).numpy()
            except tf.errors.InvalidArgumentError as e:  # a sync code inside a frame: try the one before it
                error = e
                continue
            mono = x.mean(axis=1, dtype=np.float32) if x.shape[1] > 1 else x[:, 0]
            self.buf, self.pos = np.concatenate([self.buf, mono]), self.pos + cut
            return
        raise AudioFormatError(f"{self.path}: corrupt FLAC frames after byte {self.pos} "
                               f"({str(error).splitlines()[0][:200] if error else 'no frame boundary'}); "
                               "re-download or re-encode the file.")

    def read(self, a: int, b: int) -> np.ndarray:
        out = np.zeros(b - a, np.float32)
        lo, hi = max(a, 0), min(b, self.frames)
        if hi <= lo:
            return out
        if lo < self.buf_start:
            self._restart()
        while self.buf_start + len(self.buf) < hi:
            self._decode_next()
        self.buf, self.buf_start = self.buf[lo - self.buf_start:], lo  # drop what no later read needs
        out[lo - a:hi - a] = self.buf[:hi - lo]
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
        frames = np.ascontiguousarray(np.lib.stride_tricks.sliding_window_view(x, (2 * p + 1) * down)[::down])
        y = (frames @ self.w).reshape(-1)
        return y[a - j0 * up:b - j0 * up].astype(np.float32)


def open_stream(path: str, rate: int) -> Optional[Resampled]:
    """A :class:`Resampled` reader of the WAV or FLAC file ``path`` at ``rate``, or None where the file is read
    whole instead (a file whose length the header does not give; FLAC without the package's FLAC op; a rate pair
    whose filter the package leaves to tensorflow-io). Raises the probe's errors for an unreadable file."""
    from keras_dssdn.audio.probe import probe_audio
    from keras_dssdn.audio.resample import _MAX_RESAMPLE_MATRIX, RESAMPLE_ROLLOFF, RESAMPLE_ZEROS

    info = probe_audio(path)
    if info.frames is None:
        return None
    if info.encoding.startswith("flac"):
        from keras_dssdn.audio.native_flac import flac_op_module

        if flac_op_module() is None:  # tensorflow-io's decoder reads whole files only
            return None
        source = FlacSource(info)
    else:
        source = WavSource(info)
    g = math.gcd(int(rate), int(info.sample_rate))
    up, down = int(rate) // g, int(info.sample_rate) // g
    p = int(math.ceil(RESAMPLE_ZEROS / (min(1.0, up / down) * RESAMPLE_ROLLOFF) / down))
    if up != down and (2 * p + 1) * down * up > _MAX_RESAMPLE_MATRIX:  # resample() hands these to tensorflow-io
        return None
    return Resampled(source, rate)
