"""What a device needs to turn audio into the model's int8 input: the front-end constants of a bundle.

:class:`FrontEndConstants` gathers, frozen, the STFT / mel settings, the periodic Hann window, the sparse
Slaney mel filterbank (:func:`sparse_filterbank`; :func:`dense_filterbank` is its inverse), the normalisation
statistics and the fused per-band map that normalises and quantises a log-mel value in one step, and owns their
file: the bundle writes them as ``frontend.json`` (:meth:`FrontEndConstants.to_json`, read back with
:meth:`FrontEndConstants.from_json`), ``frontend.npz`` and, with the code that uses them,
``micro/dssdn_frontend.h/.c`` (:func:`keras_dssdn.deploy.cfrontend.frontend_c_sources`).

Units: Hz, samples, seconds; flash sizes in bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import numpy as np

from keras_dssdn.errors import ExportError
from keras_dssdn.params import FrontEndParams


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


@dataclass(frozen=True)
class Quantization:
    """An int8 tensor's affine map: ``real = scale * (q - zero_point)``."""

    scale: float
    zero_point: int

    def to_json(self) -> dict:
        return {"scale": float(self.scale), "zero_point": int(self.zero_point)}

    @classmethod
    def from_json(cls, d: Optional[dict]) -> Optional["Quantization"]:
        return None if d is None else cls(float(d["scale"]), int(d["zero_point"]))


#: The fixed choices of the front end that frontend.json states for a reader (not settings: the C code and the
#: training front end have no other).
FIXED = {"pad_mode": "reflect", "power": 2, "mel_scale": "slaney", "mel_norm": "slaney", "log": "natural"}


@dataclass(frozen=True)
class FrontEndConstants:
    """Everything a device needs to turn audio into the model's int8 input; owns a bundle's ``frontend.json``.

    Built once by the export (:meth:`build`), written with :meth:`to_json`, read back with :meth:`from_json`
    (the firmware, ``dssdn-evaluate`` on a bundle), and handed whole to the C generator
    (:func:`keras_dssdn.deploy.cfrontend.frontend_c_sources`) and the host check. Besides the training front end
    (:attr:`params`, :attr:`normalization`) it holds what the device computes with: the periodic Hann
    :attr:`window` (``n_fft`` floats), the sparse Slaney :attr:`mel_filterbank` (:func:`sparse_filterbank`), the
    int8 input and output quantisation, and (derived) the fused per-band map :attr:`logmel_to_int8`
    ``q = clamp(round(logmel * scale[m] + offset[m]), -128, 127)`` that normalises and quantises in one step.
    """

    params: FrontEndParams
    frames: int  # model input frames per inference
    seconds: float  # audio per inference
    window: Tuple[float, ...]
    mel_filterbank: dict  # sparse_filterbank(...) runs
    input_quantization: Quantization
    normalization: object = None  # NormalizationStats or None
    output_quantization: Optional[Quantization] = None
    class_names: Optional[Tuple[str, ...]] = None

    @classmethod
    def build(cls, frontend: FrontEndParams, input_shape: Sequence[int], input_quantization: Quantization,
              normalization=None, class_names: Optional[Sequence[str]] = None,
              output_quantization: Optional[Quantization] = None, seconds: Optional[float] = None):
        """The constants of a model with int8 input ``input_shape`` ``(1, n_mels, frames, 1)``; ``seconds``: audio
        per inference (default: read off ``frames``). :class:`ExportError` when the front end does not make
        ``(n_mels, frames)``."""
        from keras_dssdn.layers.frontend import mel_filterbank, stft_window

        n_mels, frames = int(input_shape[1]), int(input_shape[2])
        seconds = _check_input(frontend, n_mels, frames, seconds)
        return cls(frontend, frames, float(seconds), tuple(float(v) for v in stft_window(frontend)),
                   sparse_filterbank(mel_filterbank(frontend)), input_quantization, normalization,
                   output_quantization, tuple(class_names) if class_names else None)

    @property
    def num_samples(self) -> int:
        """Samples per inference at ``params.sample_rate``."""
        return int(self.params.num_samples(self.seconds))

    @property
    def input_shape(self) -> Tuple[int, int]:
        """``(n_mels, frames)`` of the model input."""
        return int(self.params.n_mels), int(self.frames)

    @property
    def logmel_to_int8(self) -> Tuple[np.ndarray, np.ndarray]:
        """Per-band ``(scale, offset)`` float64 ``(n_mels,)`` of the fused normalise-and-quantise map."""
        q = self.input_quantization
        return logmel_to_int8(self.normalization, self.params.n_mels, q.scale, q.zero_point)

    def to_json(self) -> dict:
        """``frontend.json`` (plain JSON values; the layout of every bundle since round 2)."""
        p, n_mels, scale, offset = self.params, self.params.n_mels, *self.logmel_to_int8
        norm = self.normalization
        return {
            "sample_rate": p.sample_rate, "n_fft": p.n_fft, "win_length": p.win_length, "hop_length": p.hop_length,
            "n_mels": n_mels, "fmin": float(p.fmin), "fmax": float(p.effective_fmax), "center": bool(p.center),
            **FIXED, "log_offset": float(p.log_offset), "frames": self.frames, "num_samples": self.num_samples,
            "seconds": float(self.seconds),
            "input_layout": f"int8 [1, {n_mels}, {self.frames}, 1] row-major: log-mel (band m, frame t) at "
                            f"m * {self.frames} + t; band 0 is the lowest frequency",
            "window": list(self.window),
            "mel_filterbank": self.mel_filterbank,
            "normalization": None if norm is None else {
                "mode": norm.mode, "mean": [float(v) for v in norm.mean], "std": [float(v) for v in norm.std]},
            "input_quantization": self.input_quantization.to_json(),
            "logmel_to_int8": {"scale": [float(v) for v in scale], "offset": [float(v) for v in offset]},
            "output_quantization": None if self.output_quantization is None else self.output_quantization.to_json(),
            "class_names": list(self.class_names) if self.class_names else None,
        }

    @classmethod
    def from_json(cls, d: dict, source: str = "frontend.json") -> "FrontEndConstants":
        """The constants of a ``frontend.json`` (:class:`ExportError` naming ``source`` and the key when one is
        missing or holds another fixed choice than this package computes with)."""
        from keras_dssdn.layers.frontend import NormalizationStats

        try:
            params = FrontEndParams(sample_rate=int(d["sample_rate"]), n_fft=int(d["n_fft"]),
                                    win_length=int(d["win_length"]), hop_length=int(d["hop_length"]),
                                    n_mels=int(d["n_mels"]), fmin=float(d["fmin"]), fmax=float(d["fmax"]),
                                    log_offset=float(d["log_offset"]), center=bool(d["center"]))
            wrong = [k for k, v in FIXED.items() if d.get(k, v) != v]
            if wrong:
                raise ExportError(f"{source}: {wrong[0]}={d[wrong[0]]!r}, but this package computes with "
                                  f"{FIXED[wrong[0]]!r}; export the bundle again with keras_dssdn.")
            norm = d.get("normalization")
            return cls(params, int(d["frames"]), float(d["seconds"]), tuple(float(v) for v in d["window"]),
                       d["mel_filterbank"], Quantization.from_json(d["input_quantization"]),
                       NormalizationStats.from_dict(norm) if norm else None,
                       Quantization.from_json(d.get("output_quantization")),
                       tuple(d["class_names"]) if d.get("class_names") else None)
        except KeyError as e:
            raise ExportError(f"{source} has no {e.args[0]!r} entry: it is not a keras_dssdn bundle's front-end "
                              "file; export the bundle again.") from None
