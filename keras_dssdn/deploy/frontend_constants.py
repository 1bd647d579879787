"""What a device needs to turn audio into the model's int8 input: the front-end constants of a bundle.

:func:`frontend_constants` gathers, as plain JSON values, the STFT / mel
settings, the periodic Hann window, the sparse Slaney mel filterbank
(:func:`sparse_filterbank`; :func:`dense_filterbank` is its inverse), the
normalisation statistics and the fused per-band map that normalises and
quantises a log-mel value in one step. The bundle writes them as
``frontend.json``, ``frontend.npz`` and, with the code that uses them,
``micro/dssdn_frontend.h/.c`` (:func:`keras_dssdn.deploy.cfrontend.frontend_c_sources`).

Units: Hz, samples, seconds; flash sizes in bytes.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from keras_dssdn.errors import ExportError


def sparse_filterbank(weights: np.ndarray) -> dict:
    """Compress a ``(n_freq, n_mels)`` mel filterbank to per-band runs of non-zero weights.

    Returns ``start_bin``, ``num_bins`` and ``offset`` (into ``weights``) per
    band and the concatenated ``weights``: band ``m`` is
    ``sum_k power[start_bin[m] + k] * weights[offset[m] + k]`` for
    ``k < num_bins[m]``.
    """
    weights = np.asarray(weights, np.float32)
    starts, counts, offsets, flat = [], [], [], []
    for m in range(weights.shape[1]):
        nz = np.nonzero(weights[:, m])[0]
        start = int(nz[0]) if nz.size else 0
        stop = int(nz[-1]) + 1 if nz.size else 0
        starts.append(start)
        counts.append(stop - start)
        offsets.append(len(flat))
        flat.extend(weights[start:stop, m].tolist())
    return {"n_freq_bins": int(weights.shape[0]), "start_bin": starts, "num_bins": counts, "offset": offsets,
            "weights": flat}


def dense_filterbank(sparse: dict, n_mels: Optional[int] = None) -> np.ndarray:
    """Inverse of :func:`sparse_filterbank`: ``(n_freq, n_mels)`` float32."""
    n_mels = n_mels or len(sparse["start_bin"])
    out = np.zeros((sparse["n_freq_bins"], n_mels), np.float32)
    w = np.asarray(sparse["weights"], np.float32)
    for m in range(n_mels):
        s, n, o = sparse["start_bin"][m], sparse["num_bins"][m], sparse["offset"][m]
        out[s:s + n, m] = w[o:o + n]
    return out


def _check_input(p, n_mels: int, frames: int, seconds: Optional[float]) -> float:
    """The audio seconds per inference; ExportError when the front end does not make ``(n_mels, frames)``."""
    if n_mels != p.n_mels:
        raise ExportError(f"The model takes {n_mels} mel bands but the front end makes {p.n_mels}; "
                          "pass the front-end parameters the model was trained with.")
    if seconds is None:
        seconds = p.seconds_for_frames(frames)
    if p.num_frames(seconds) != frames:
        raise ExportError(f"{seconds:g} s of audio make {p.num_frames(seconds)} frames, but the model takes {frames}; "
                          "pass the segment length the model was trained on (--segment).")
    return seconds


def logmel_to_int8(normalization, n_mels: int, input_scale: float, input_zero_point: int):
    """Per-band ``(scale, offset)``, each ``(n_mels,)`` float64: ``logmel * scale + offset`` equals
    ``((logmel - mean) / std) / input_scale + input_zero_point`` (normalise, then quantise)."""
    if normalization is not None:
        mean = np.broadcast_to(np.asarray(normalization.mean, np.float64), (n_mels,))
        std = np.broadcast_to(np.asarray(normalization.std, np.float64), (n_mels,))
    else:
        mean, std = np.zeros(n_mels), np.ones(n_mels)
    scale = 1.0 / (std * float(input_scale))
    return scale, float(input_zero_point) - mean * scale


def frontend_constants(frontend, input_shape: Sequence[int], input_scale: float, input_zero_point: int,
                       normalization=None, class_names: Optional[Sequence[str]] = None,
                       output_scale: Optional[float] = None, output_zero_point: Optional[int] = None,
                       seconds: Optional[float] = None) -> dict:
    """Everything a device needs to turn audio into the model's int8 input, as plain JSON values.

    ``frontend``: :class:`~keras_dssdn.params.FrontEndParams`; ``input_shape``
    ``(1, n_mels, frames, 1)``; ``seconds``: audio per inference (default:
    read off ``frames``); ``normalization``:
    :class:`~keras_dssdn.layers.frontend.NormalizationStats` or None. Besides the
    STFT / mel settings, the periodic Hann window, the sparse Slaney mel
    filterbank and the normalisation statistics, it holds the fused per-band
    affine map ``q = clamp(round(logmel * logmel_to_int8.scale[m] +
    logmel_to_int8.offset[m]), -128, 127)`` that normalises and quantises in
    one step.
    """
    from keras_dssdn.layers.frontend import mel_filterbank, stft_window

    p = frontend
    n_mels, frames = int(input_shape[1]), int(input_shape[2])
    seconds = _check_input(p, n_mels, frames, seconds)
    scale, offset = logmel_to_int8(normalization, n_mels, input_scale, input_zero_point)
    return {
        "sample_rate": p.sample_rate,
        "n_fft": p.n_fft,
        "win_length": p.win_length,
        "hop_length": p.hop_length,
        "n_mels": p.n_mels,
        "fmin": float(p.fmin),
        "fmax": float(p.effective_fmax),
        "center": bool(p.center),
        "pad_mode": "reflect",
        "power": 2,
        "mel_scale": "slaney",
        "mel_norm": "slaney",
        "log": "natural",
        "log_offset": float(p.log_offset),
        "frames": frames,
        "num_samples": int(p.num_samples(seconds)),
        "seconds": float(seconds),
        "input_layout": f"int8 [1, {n_mels}, {frames}, 1] row-major: log-mel (band m, frame t) at m * {frames} + t; "
                        "band 0 is the lowest frequency",
        "window": [float(v) for v in stft_window(p)],
        "mel_filterbank": sparse_filterbank(mel_filterbank(p)),
        "normalization": None if normalization is None else {
            "mode": normalization.mode, "mean": [float(v) for v in normalization.mean],
            "std": [float(v) for v in normalization.std]},
        "input_quantization": {"scale": float(input_scale), "zero_point": int(input_zero_point)},
        "logmel_to_int8": {"scale": [float(v) for v in scale], "offset": [float(v) for v in offset]},
        "output_quantization": None if output_scale is None else
        {"scale": float(output_scale), "zero_point": int(output_zero_point)},
        "class_names": list(class_names) if class_names else None,
    }
