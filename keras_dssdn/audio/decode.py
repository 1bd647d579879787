"""Audio decoding, down-mixing, crop/pad and segmenting as TF ops.

Everything that runs per clip inside ``tf.data`` is a TensorFlow op (no Python
audio library is called in the pipeline):

* WAV (PCM 8/16/24/32-bit, IEEE float 32/64-bit, plain or WAVE_FORMAT_EXTENSIBLE)
  is decoded with ``tf.io.decode_raw`` on the ``data`` chunk;
* FLAC (16- and 24-bit) with the native op of :mod:`keras_dssdn.audio.native_flac`
  (a TF op compiled on first use; falls back to ``tensorflow_io``'s
  ``decode_flac``, 8x slower, where no C++ compiler is available).

Decoded audio is float32 in [-1, 1] with shape ``(frames, channels)``, scaled
exactly as ``soundfile.read(dtype="float32")`` scales it (integer / 2**(bits-1),
8-bit: (u - 128) / 128). :func:`to_mono` averages the channels (as
``librosa.to_mono``). A dataset may mix encodings, rates and channel counts:
each clip carries its own encoding code and the decoder picks the branch per
clip.

Units: samples (per channel) and Hz; durations in seconds.
"""

from __future__ import annotations

import functools
from typing import Optional, Tuple

import numpy as np
import tensorflow as tf

from keras_dssdn.audio.probe import ENCODINGS, probe_audio
from keras_dssdn.audio.resample import resample

# --------------------------------------------------------------------------
# Decoding (TF ops)
# --------------------------------------------------------------------------


def _wav_branch(encoding: str):
    def decode(contents, offset, nbytes, channels, source):
        data = tf.strings.substr(contents, offset, nbytes)
        if encoding == "wav_u8":
            x = (tf.cast(tf.io.decode_raw(data, tf.uint8), tf.float32) - 128.0) / 128.0
        elif encoding == "wav_s16":
            x = tf.cast(tf.io.decode_raw(data, tf.int16, little_endian=True), tf.float32) / 32768.0
        elif encoding == "wav_s24":
            b = tf.cast(tf.reshape(tf.io.decode_raw(data, tf.uint8), [-1, 3]), tf.int32)
            shl = tf.bitwise.left_shift
            v = tf.bitwise.bitwise_or(shl(b[:, 0], 8), tf.bitwise.bitwise_or(shl(b[:, 1], 16), shl(b[:, 2], 24)))
            v = tf.bitwise.right_shift(v, 8)  # arithmetic shift: sign-extended 24-bit value
            x = tf.cast(v, tf.float32) / 8388608.0
        elif encoding == "wav_s32":
            x = tf.cast(tf.io.decode_raw(data, tf.int32, little_endian=True), tf.float64) / 2147483648.0
            x = tf.cast(x, tf.float32)
        elif encoding == "wav_f32":
            x = tf.io.decode_raw(data, tf.float32, little_endian=True)
        else:  # wav_f64
            x = tf.cast(tf.io.decode_raw(data, tf.float64, little_endian=True), tf.float32)
        return tf.reshape(x, [-1, channels])

    return decode


def _flac_branch(encoding: str):
    def decode(contents, offset, nbytes, channels, source):
        from keras_dssdn.audio import native_flac

        x = native_flac.decode_flac(contents, source)
        if x is not None:
            return tf.reshape(x, [-1, channels])
        from keras_dssdn.audio import tfio_compat  # fallback; tensorflow-io's native ops load with TF 2.17 only

        tfio = tfio_compat.require(f"Decoding FLAC without the native FLAC op ({native_flac.failure_reason()})")
        if encoding == "flac_s16":
            x = tf.cast(tfio.audio.decode_flac(contents, dtype=tf.int16), tf.float32) / 32768.0
        else:  # tfio returns 24-bit samples left-aligned in int32
            x = tf.cast(tfio.audio.decode_flac(contents, dtype=tf.int32), tf.float64) / 2147483648.0
            x = tf.cast(x, tf.float32)
        return tf.reshape(x, [-1, channels])

    return decode


_BRANCHES = {name: (_flac_branch(name) if name.startswith("flac") else _wav_branch(name)) for name in ENCODINGS}


def decode_audio(contents, encoding, data_offset=0, data_bytes=-1, channels=1, source="", encodings=None):
    """Decode file bytes to float32 ``(frames, channels)`` in [-1, 1] (TF ops).

    ``encoding`` is a code from :data:`ENCODING_CODE` (a Python int or a scalar
    int tensor); ``data_offset`` / ``data_bytes`` / ``channels`` come from
    :func:`probe_audio` (needed for WAV); ``source`` (the path) names the
    file in decoding errors. ``encodings`` optionally restricts the branches
    built into the graph to those codes (the pipeline passes the set it found
    in the dataset), which keeps traced graphs small. FLAC goes through the
    native op of :mod:`keras_dssdn.audio.native_flac` (tensorflow-io as fallback).
    """
    channels = tf.cast(channels, tf.int32)
    data_offset = tf.cast(data_offset, tf.int32)
    data_bytes = tf.cast(data_bytes, tf.int32)
    source = tf.convert_to_tensor(source, tf.string)
    args = (contents, data_offset, data_bytes, channels, source)
    if isinstance(encoding, (int, np.integer)):
        return _BRANCHES[ENCODINGS[int(encoding)]](*args)
    codes = sorted(set(int(c) for c in (encodings if encodings is not None else range(len(ENCODINGS)))))
    if len(codes) == 1:
        return _BRANCHES[ENCODINGS[codes[0]]](*args)
    # tf.switch_case wants branches 0..n-1: look the clip's code up in the (sorted) codes of the dataset
    branch = tf.argmax(tf.cast(tf.equal(tf.constant(codes, tf.int32), tf.cast(encoding, tf.int32)), tf.int32))
    return tf.switch_case(tf.cast(branch, tf.int32), [functools.partial(_BRANCHES[ENCODINGS[c]], *args) for c in codes])


def read_audio(path: str) -> Tuple[tf.Tensor, int]:
    """Eagerly read one file: ``(float32 tensor (frames, channels), sample_rate)``."""
    info = probe_audio(path)
    x = decode_audio(
        tf.io.read_file(info.path), info.encoding_code, info.data_offset, info.data_bytes, info.channels, info.path
    )
    return x, info.sample_rate


def to_mono(x):
    """Average the channels: ``(frames, channels)`` -> ``(frames,)``."""
    return tf.reduce_mean(x, axis=-1)


# --------------------------------------------------------------------------
# Fixed length and segments (TF ops)
# --------------------------------------------------------------------------


def fix_length(x, num_samples: int, offset=0):
    """Crop ``x[offset:offset + num_samples]`` and zero-pad the end to ``num_samples``.

    ``x`` is ``(frames,)``; returns ``(num_samples,)`` with a static shape.
    """
    x = x[offset: offset + num_samples]
    x = tf.pad(x, [[0, num_samples - tf.shape(x)[0]]])
    return tf.ensure_shape(x, [num_samples])


def split_segments(x, segment_samples: int):
    """Cut ``(frames,)`` into ``(frames // segment_samples, segment_samples)``.

    A remainder shorter than one segment is dropped (a 10-s clip at 44.1 kHz
    gives ten 1-s segments).
    """
    count = tf.shape(x)[0] // segment_samples
    return tf.reshape(x[: count * segment_samples], [count, segment_samples])


def load_waveform(path: str, sample_rate: Optional[int] = None, mono: bool = True) -> np.ndarray:
    """Eager convenience: decode (TF ops), down-mix and resample one file to numpy.

    Returns float32 ``(frames,)`` if ``mono`` else ``(frames, channels)``.
    """
    x, rate = read_audio(path)
    if mono:
        x = to_mono(x)
    if sample_rate is not None and int(sample_rate) != rate:
        x = resample(x, rate, int(sample_rate))
    return x.numpy()
