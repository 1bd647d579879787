"""Shared by the firmware tests: the skip reasons, small front ends, real clips."""

import dataclasses

import numpy as np
import pytest

from keras_dssdn.firmware import toolchain

_ABSENT = toolchain.missing()
needs_arm = pytest.mark.skipif(
    bool(_ABSENT), reason=f"{', '.join(_ABSENT)} not installed (Debian: {toolchain.INSTALL_LINE.split('install ')[1]})")


def small_frontend():
    """A small 16-kHz front end (FFT 256, 24 bands) with per-band normalisation: (params, stats, constants)."""
    from keras_dssdn.layers.frontend import NormalizationStats
    from keras_dssdn.params import FrontEndParams

    fe = FrontEndParams(sample_rate=16000, n_fft=256, win_length=200, hop_length=128, n_mels=24, fmin=50.0)
    return _constants(fe, NormalizationStats([-8.0 + 0.02 * m for m in range(24)], [3.5] * 24, mode="per_band"))


def mcu_frontend():
    """The dcase_mcu_1s front end (44.1 kHz, FFT 2048, hop 1024, 64 bands, 1-s segments), global normalisation."""
    from keras_dssdn.layers.frontend import NormalizationStats
    from keras_dssdn.params import DEFAULT_FRONTEND

    fe = dataclasses.replace(DEFAULT_FRONTEND, n_mels=64)
    return _constants(fe, NormalizationStats([-7.0], [4.0]))


def _constants(fe, stats, seconds=1.0):
    from keras_dssdn.frontend_constants import FrontEndConstants, Quantization

    consts = FrontEndConstants.build(fe, [1, fe.n_mels, fe.num_frames(seconds), 1], Quantization(8.0 / 255, -1), stats,
                                     seconds=seconds)
    return fe, stats, consts


def evaluate_clips(shared_data, n):
    """``n`` clips spread over TUT 2017 fold-1 evaluate (skips without the data)."""
    from keras_dssdn.data.datasets import read_clips

    root = shared_data / "tut17-dev"
    if not root.is_dir():
        pytest.skip(f"{root} not found")
    evaluate = read_clips(root, split="evaluate", fold=1)
    return evaluate.subset(list(np.linspace(0, len(evaluate) - 1, n).round().astype(int)))
