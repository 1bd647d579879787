"""Front-end hyper-parameters shared by the data pipeline, the models and export.

The paper does not publish its front end. The defaults below are our choice
(documented in the README): TAU / TUT recordings are 44.1 kHz, so we keep that
rate (no resampling for the paper's data), a 2048-point (46 ms) window, a
1024-sample (23 ms) hop and 128 mel bands. A 10-s clip then gives a
128 x 431 log-mel map; a 1-s segment gives 128 x 44.

Layout convention used everywhere in the package: a log-mel map is
``(n_mels, frames, 1)`` -- frequency on the height axis with the *lowest* mel
band at index 0, time on the width axis, one channel.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Optional

from keras_dssdn.utils.dataclass_dicts import dataclass_from_dict


@dataclasses.dataclass(frozen=True)
class FrontEndParams:
    """Log-mel front-end settings (units: Hz, samples, seconds)."""

    sample_rate: int = 44100
    n_fft: int = 2048
    win_length: int = 2048
    hop_length: int = 1024
    n_mels: int = 128
    fmin: float = 0.0
    fmax: Optional[float] = None  # None -> sample_rate / 2
    log_offset: float = 1e-6  # log(mel_power + log_offset)
    center: bool = True  # reflect-pad n_fft // 2 on both sides, as librosa does
    clip_seconds: float = 10.0  # length the models are sized for by default

    def __post_init__(self):
        def need(ok: bool, what: str):
            if not ok:
                raise ValueError(f"front end: {what} (sample_rate={self.sample_rate}, n_fft={self.n_fft}, "
                                 f"win_length={self.win_length}, hop_length={self.hop_length}, n_mels={self.n_mels}, "
                                 f"fmin={self.fmin}, fmax={self.fmax}).")

        for key in ("sample_rate", "n_fft", "win_length", "hop_length", "n_mels"):
            value = getattr(self, key)
            need(isinstance(value, int) and not isinstance(value, bool) and value >= 1,
                 f"{key} must be a positive integer, got {value!r}")
        need(self.win_length <= self.n_fft, "win_length must be at most n_fft")
        need(self.n_mels <= self.n_fft // 2 + 1, "n_mels must be at most n_fft // 2 + 1 (the FFT bins)")
        need(0 <= self.fmin < self.effective_fmax <= self.sample_rate / 2,
             "0 <= fmin < fmax <= sample_rate / 2 must hold")
        need(self.log_offset > 0, f"log_offset must be > 0, got {self.log_offset!r}")
        need(self.clip_seconds > 0, f"clip_seconds must be > 0, got {self.clip_seconds!r}")

    def num_samples(self, seconds: Optional[float] = None) -> int:
        """Samples in a clip of ``seconds`` (default ``clip_seconds``)."""
        seconds = self.clip_seconds if seconds is None else seconds
        return int(round(seconds * self.sample_rate))

    def num_frames(self, seconds: Optional[float] = None) -> int:
        """STFT frames in a clip of ``seconds`` (431 for 10 s, 44 for 1 s)."""
        n = self.num_samples(seconds)
        if self.center:
            return 1 + n // self.hop_length
        return 1 + (n - self.n_fft) // self.hop_length

    def seconds_for_frames(self, frames: int) -> float:
        """The clip length in seconds that makes ``frames`` STFT frames (inverse of :meth:`num_frames`).

        The value on a 0.1-s grid when one fits (1 s for 44 frames, 10 s for 431), else the shortest exact
        length: ``(frames - 1) * hop_length`` samples (plus ``n_fft`` without centring). Raises ValueError for
        ``frames < 1``.
        """
        frames = int(frames)
        if frames < 1:
            raise ValueError(f"frames must be >= 1, got {frames}.")
        exact = ((frames - 1) * self.hop_length + (0 if self.center else self.n_fft)) / self.sample_rate
        for seconds in (round(exact, 1), round(exact + self.hop_length / self.sample_rate, 1) ):
            if seconds > 0 and self.num_frames(seconds) == frames:
                return seconds
        return exact

    def input_shape(self, seconds: Optional[float] = None) -> tuple:
        """Model input shape ``(n_mels, frames, 1)`` for a clip of ``seconds``."""
        return (self.n_mels, self.num_frames(seconds), 1)

    @property
    def effective_fmax(self) -> float:
        return self.sample_rate / 2.0 if self.fmax is None else float(self.fmax)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict) -> "FrontEndParams":
        return dataclass_from_dict(cls, d, "front-end parameter")


DEFAULT_FRONTEND = FrontEndParams()

#: Batch-norm moving-average momentum for every model in the package. Keras'
#: default (0.99) needs thousands of steps before its statistics settle, far
#: more than an ASC development set gives per run (TUT 2017 fold 1: 8 steps per
#: epoch); 0.9 is PyTorch's default (its momentum=0.1), used by the DCASE systems.
BN_MOMENTUM = 0.9

