"""Device spectrum differences (DSMN-style): measured from paired recordings, added to log-mel maps.

TAU Urban Acoustic Scenes 2020 Mobile recorded the same 10-s segments with several devices at once
(devices a, b, c; the file name ends in ``-<device>``: ``airport-lisbon-1000-40000-a.wav``). For each
device ``d``, :func:`compute_device_spectra` averages over the paired segments

    diff_d[m] = mean over pairs ( mean over frames logmel_d[m, t]  -  mean over frames logmel_ref[m, t] )

per mel band ``m`` (natural-log power, as the front end computes it), ``ref`` being the reference
device (``a`` in TAU 2020). :func:`add_device_spectra` adds a randomly chosen ``diff_d`` to a training
clip's log-mel map with probability ``prob``: the clip now "sounds" as if recorded by ``d`` (to first
order: a device's frequency response is a per-band gain, an additive offset of log power).

The file (one owner: this module writes and reads it) is JSON::

    {"reference": "a", "n_mels": 128, "frontend": {...}, "devices": {"b": [128 floats], ...},
     "pairs": {"b": 1234, ...}, "source": "<dataset folder>"}

A dataset without the TAU naming can be made paired with
:func:`keras_dssdn.data.impulse.convolve_dataset` (``paired=True``).
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections import defaultdict
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import tensorflow as tf

from keras_dssdn.errors import ConfigError, DataError
from keras_dssdn.params import DEFAULT_FRONTEND, FrontEndParams


@dataclasses.dataclass(frozen=True)
class DeviceSpectra:
    """Per-device log-mel offsets ``devices[d]`` ``(n_mels,)`` relative to ``reference``; ``pairs[d]``: how many
    paired recordings measured it."""

    reference: str
    devices: Dict[str, np.ndarray]
    pairs: Dict[str, int]
    frontend: FrontEndParams
    source: str = ""

    @property
    def n_mels(self) -> int:
        return self.frontend.n_mels

    def as_array(self) -> np.ndarray:
        """float32 ``(devices, n_mels)`` in sorted device order."""
        return np.stack([self.devices[d] for d in sorted(self.devices)]).astype(np.float32)

    def save(self, path) -> None:
        from keras_dssdn.fileio import write_json_atomic

        write_json_atomic(path, {"reference": self.reference, "n_mels": self.n_mels,
                                 "frontend": self.frontend.to_dict(), "source": self.source,
                                 "devices": {d: [float(v) for v in self.devices[d]] for d in sorted(self.devices)},
                                 "pairs": {d: int(self.pairs[d]) for d in sorted(self.pairs)}})

    @classmethod
    def load(cls, path) -> "DeviceSpectra":
        """Read a file :meth:`save` wrote; :class:`~keras_dssdn.errors.ConfigError` naming it when it is not one."""
        from keras_dssdn.fileio import reading

        if not Path(path).is_file():
            raise ConfigError(f"dsmn_file={path}: no such file; make it with dssdn-devices spectra.")
        with reading(f"dsmn_file={path}", "device-spectra file", "make it again with dssdn-devices spectra",
                     ConfigError):
            d = json.loads(Path(path).read_text(encoding="utf-8"))
            frontend = FrontEndParams.from_dict(d["frontend"])
            devices = {k: np.asarray(v, np.float32) for k, v in d["devices"].items()}
            spectra = cls(str(d["reference"]), devices, {k: int(v) for k, v in d.get("pairs", {}).items()},
                          frontend, str(d.get("source", "")))
        if not devices or any(v.shape != (frontend.n_mels,) or not np.all(np.isfinite(v)) for v in devices.values()):
            raise ConfigError(f"dsmn_file={path}: every device needs {frontend.n_mels} finite values (one per mel "
                              "band); make the file again with dssdn-devices spectra.")
        return spectra

    def check_frontend(self, frontend: FrontEndParams, path="") -> None:
        """Refuse offsets measured with another front end (other mel bands mean other numbers)."""
        if dataclasses.replace(self.frontend, clip_seconds=frontend.clip_seconds) != frontend:
            raise ConfigError(f"dsmn_file={path}: measured with front end {self.frontend.to_dict()}, but the run uses "
                              f"{frontend.to_dict()}; measure it again with the run's front end.")


# --------------------------------------------------------------------------
# Measuring
# --------------------------------------------------------------------------


def pairing_key(filename: str, device: str) -> Optional[str]:
    """The recording a file belongs to: its name without the ``-<device>`` suffix (None without one)."""
    stem, _ = os.path.splitext(filename)
    suffix = f"-{device}"
    return stem[: -len(suffix)] if device and stem.endswith(suffix) else None


def paired_groups(clips) -> Dict[str, Dict[str, int]]:
    """``{recording: {device: clip index}}`` for recordings heard by at least two devices."""
    groups: Dict[str, Dict[str, int]] = defaultdict(dict)
    for i, c in enumerate(clips):
        key = pairing_key(c.filename, c.device or "")
        if key is not None:
            groups[key][c.device] = i
    return {k: v for k, v in groups.items() if len(v) > 1}


def _clip_mean_logmel(clips, frontend: FrontEndParams, clip_seconds: Optional[float], batch_size: int) -> np.ndarray:
    """Mean over frames of each clip's log-mel map: ``(clips, n_mels)``."""
    from keras_dssdn.data.pipeline import decoding_errors, evaluation_dataset
    from keras_dssdn.data.spec import PipelineSpec

    spec = PipelineSpec(frontend=frontend, clip_seconds=clip_seconds, batch_size=batch_size, label_mode="int",
                        cache=None, pad_short=True)
    ds = evaluation_dataset(clips, spec, with_metadata=True)
    means = np.zeros((len(clips), frontend.n_mels))
    with decoding_errors():
        for x, _, m in ds:
            means[m["clip_index"].numpy()] = tf.reduce_mean(x[..., 0], axis=2).numpy()
    return means


def compute_device_spectra(data, reference: str = "a", frontend: Optional[FrontEndParams] = None, *,
                           split: str = "all", fold: int = 1, clip_seconds: Optional[float] = None,
                           batch_size: int = 16) -> DeviceSpectra:
    """Measure :class:`DeviceSpectra` from the paired recordings of ``data`` (a DCASE folder or a ClipList).

    Raises :class:`~keras_dssdn.errors.DataError` when the data has no device column or no paired
    recordings, and :class:`~keras_dssdn.errors.ConfigError` when ``reference`` is not among its devices.
    """
    from keras_dssdn.data.datasets import ClipList, read_clips

    p = frontend or DEFAULT_FRONTEND
    clips = read_clips(data, split=split, fold=fold)
    devices = sorted({c.device for c in clips if c.device})
    if not devices:
        raise DataError(f"{clips.name or data}: no device column (source_label) in the metadata; paired recordings "
                        "need one.")
    if reference not in devices:
        raise ConfigError(f"reference device {reference!r} is not in {clips.name or data} (devices {devices}).")
    groups = {k: g for k, g in paired_groups(clips).items() if reference in g}
    if not groups:
        raise DataError(f"{clips.name or data}: no recording is heard by {reference!r} and another device. Paired "
                        "files share a name up to a '-<device>' suffix (TAU 2020: ...-a.wav, ...-b.wav).")
    used = sorted({i for g in groups.values() for i in g.values()})
    means = dict(zip(used, _clip_mean_logmel(ClipList([clips[i] for i in used], clips.name, clips.root), p,
                                             clip_seconds, batch_size)))
    diffs: Dict[str, List[np.ndarray]] = defaultdict(list)
    for g in groups.values():
        for device, i in g.items():
            if device != reference:
                diffs[device].append(means[i] - means[g[reference]])
    return DeviceSpectra(reference, {d: np.mean(v, axis=0).astype(np.float32) for d, v in diffs.items()},
                         {d: len(v) for d, v in diffs.items()}, p, str(getattr(clips, "root", "")))


# --------------------------------------------------------------------------
# Augmentation (TF ops)
# --------------------------------------------------------------------------


def add_device_spectra(x, offsets, prob: float, seed):
    """Add a random row of ``offsets`` ``(D, n_mels)`` to each map of ``x`` ``(B, n_mels, T, 1)`` with probability
    ``prob`` per clip (else nothing). ``seed``: stateless seed ``(2,)``."""
    s_pick, s_apply = tf.unstack(tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 2))
    offsets = tf.convert_to_tensor(offsets, tf.float32)
    b = tf.shape(x)[0]
    pick = tf.random.stateless_uniform([b], s_pick, 0, tf.shape(offsets)[0], dtype=tf.int32)
    use = tf.cast(tf.random.stateless_uniform([b], s_apply) < prob, x.dtype)
    return x + tf.cast(tf.gather(offsets, pick), x.dtype)[:, :, None, None] * use[:, None, None, None]
