"""Choosing a model by recording device: a run's general model plus its fine-tuned device models.

:class:`DeviceModels` holds the general model and ``{device: model}`` (written by
:func:`keras_dssdn.train.finetune.finetune_devices`). :func:`load_device_models` opens them from a run
folder. Evaluation runs every model over each batch once the audio is decoded and keeps, per example, the
probabilities of its device's model (:meth:`DeviceModels.route`); prediction picks one model per file
(:meth:`DeviceModels.model_for`). A device without a model of its own gets the general model, and the
choice is said once per device (``log``).
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Dict, Optional, Sequence

import numpy as np

GENERAL = "general"


@dataclasses.dataclass
class DeviceModels:
    """``general``: the run's model; ``by_device``: ``{device: fine-tuned model}``; ``log`` says fallbacks."""

    general: object
    by_device: Dict[str, object]
    source: str = ""
    log: Callable = print
    _told: set = dataclasses.field(default_factory=set)

    @property
    def models(self) -> dict:
        """``{"general": model, "device:<d>": model, ...}`` (for one pass of several models over the data)."""
        return {GENERAL: self.general, **{f"device:{d}": m for d, m in self.by_device.items()}}

    def name_for(self, device: Optional[str], count: int = 1) -> str:
        """The :attr:`models` key answering for ``device`` (the general model when it has none; said once)."""
        if device in self.by_device:
            return f"device:{device}"
        if device not in self._told:
            self._told.add(device)
            what = f"device {device!r}" if device else "clips without a device"
            self.log(f"{what} has no fine-tuned model in {self.source or 'the run'}: using the general model "
                     f"({count} example(s); fine-tuned: {sorted(self.by_device) or 'none'})")
        return GENERAL

    def model_for(self, device: Optional[str]):
        return self.models[self.name_for(device)]

    def route(self, probs: Dict[str, np.ndarray], devices: Sequence[str]) -> np.ndarray:
        """Per example, the row of ``probs[name_for(its device)]``: ``{name: (N, K)}`` -> ``(N, K)``."""
        devices = np.asarray(devices).astype(str)
        out = np.empty_like(probs[GENERAL])
        for device in sorted(set(devices.tolist())):
            rows = devices == device
            out[rows] = probs[self.name_for(device, int(rows.sum()))][rows]
        return out


def load_device_models(run, log: Callable = print) -> Optional[DeviceModels]:
    """The :class:`DeviceModels` of a :class:`~keras_dssdn.runs.RunFolder`, or None when it has no fine-tuned
    model (``dssdn-finetune`` not run)."""
    from keras_dssdn.inference.loading import load_classifier

    paths = run.device_models()
    if not paths:
        return None
    return DeviceModels(load_classifier(run.model_path()), {d: load_classifier(p) for d, p in paths.items()},
                        str(run.path), log)


def device_from_filename(path) -> str:
    """The device of a file named the TAU 2020 way (``...-<device>.wav``): its last ``-`` field."""
    from pathlib import Path

    return Path(path).stem.rsplit("-", 1)[-1]
