"""The run folder: the one module that writes and reads it.

Training (:mod:`keras_dssdn.train.trainer`) writes one folder per run; every
other tool (evaluate, export, predict, tune, teacher logits) reads it through
:class:`RunFolder`, so a run's clip length, segment length, front end,
normalisation and class names reach them without the user repeating them::

    <run>/
        config.json          the resolved training configuration (TrainConfig as a dict)
        model_config.json    the DSSDN architecture (absent for the baseline)
        frontend.json        log-mel settings (keras_dssdn.params.FrontEndParams)
        labels.json          label vocabulary, {"class_names": [...]} in class-id order
        normalization.json   log-mel statistics of the training split (absent with normalization=none)
        distribution.json    tf.distribute strategy and replica count (distributed runs)
        log.csv              per-epoch loss / accuracy / learning rate
        tensorboard/         TensorBoard logs
        checkpoint/last.keras, checkpoint/state.json   every epoch, with the optimizer state
        checkpoint/weight_average.npz   running mean of the weights of the last swa_epochs epochs (swa_epochs > 0)
        best.keras           best epoch (or the weight average, swa_epochs > 0): raw log-mel in, probabilities out
                             (normalisation, class names inside)
        metrics.json, metrics.md, confusion.png        evaluation of best.keras on the evaluate split
        subset.csv           the training clips of a train_subset run (filename, scene_label, identifier, source_label)
        teacher_logits.npz   the teacher logits a distilled run trains on (keras_dssdn.distill.logits): a resumed
                             run reads this copy, so a changed or moved teacher file cannot change it half-way
        devices/index.json   device-specific models (dssdn-finetune): {device: {"folder", "clips", ...}}
        devices/<folder>/best.keras                     one fine-tuned model per device

:func:`find_run` turns what a user passes (the folder, ``best.keras`` or
``checkpoint/last.keras``) into the run it belongs to.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Union

from keras_dssdn.errors import RunFolderError
from keras_dssdn.fileio import write_json_atomic
from keras_dssdn.params import FrontEndParams

PathLike = Union[str, os.PathLike]

CONFIG = "config.json"
MODEL_CONFIG = "model_config.json"
FRONTEND = "frontend.json"
LABELS = "labels.json"
NORMALIZATION = "normalization.json"
DISTRIBUTION = "distribution.json"
LOG = "log.csv"
TENSORBOARD = "tensorboard"
CHECKPOINT = "checkpoint/last.keras"
STATE = "checkpoint/state.json"
WEIGHT_AVERAGE = "checkpoint/weight_average.npz"
BEST = "best.keras"
METRICS = "metrics.json"
SUBSET = "subset.csv"
TEACHER_LOGITS = "teacher_logits.npz"
DEVICES = "devices"
DEVICE_INDEX = "devices/index.json"


class RunFolder:
    """A training run folder (see the module docstring for its files)."""

    def __init__(self, path: PathLike):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    def file(self, name: str) -> Path:
        """The path of one of the run's files (``runs.BEST``, ``runs.STATE``, ...)."""
        return self.path / name

    # ---- state ----
    @property
    def exists(self) -> bool:
        """True when the folder holds a run (its ``config.json``)."""
        return self.file(CONFIG).is_file()

    @property
    def has_checkpoint(self) -> bool:
        return self.file(CHECKPOINT).is_file() and self.file(STATE).is_file()

    @property
    def finished(self) -> bool:
        """True when training ended and the evaluation was written."""
        return self.file(METRICS).is_file()

    # ---- reading ----
    def _json(self, name: str, required: bool = True):
        path = self.file(name)
        if not path.is_file():
            if required:
                raise RunFolderError(f"{path} is missing: {self.path} is not a complete run folder "
                                     "(train it with dssdn-train / tools/train.py).")
            return None
        from keras_dssdn.fileio import read_json

        return read_json(path, "run folder file", "restore it or train the run again", RunFolderError)

    def config(self) -> dict:
        """The resolved training configuration as saved (a dict of :class:`~keras_dssdn.train.config.TrainConfig`)."""
        d = self._json(CONFIG)
        if not isinstance(d, dict):
            raise RunFolderError(f"{self.file(CONFIG)} is not a JSON object; restore it or train the run again.")
        return d

    def frontend(self) -> FrontEndParams:
        d = self._json(FRONTEND)
        try:
            return FrontEndParams.from_dict(d)
        except (TypeError, ValueError) as e:
            raise RunFolderError(f"{self.file(FRONTEND)}: {e}") from None

    def vocabulary(self):
        from keras_dssdn.layers.labels import LabelVocabulary

        try:
            return LabelVocabulary.from_dict(self._json(LABELS))
        except (TypeError, ValueError, AttributeError) as e:
            raise RunFolderError(f"{self.file(LABELS)}: {e}") from None

    def normalization(self):
        """The saved :class:`~keras_dssdn.layers.frontend.NormalizationStats`, or None when the run has none."""
        from keras_dssdn.layers.frontend import NormalizationStats

        d = self._json(NORMALIZATION, required=False)
        if d is None:
            return None
        try:
            return NormalizationStats.from_dict(d)
        except (TypeError, ValueError) as e:
            raise RunFolderError(f"{self.file(NORMALIZATION)}: {e}") from None

    def clip_seconds(self) -> Optional[float]:
        """The clip length the run cropped to (None: the front end's default)."""
        return self.config().get("clip_seconds")

    def segment_seconds(self) -> Optional[float]:
        """The segment length the run trained on (None: whole clips)."""
        return self.config().get("segment_seconds")

    def model_path(self) -> Path:
        """``best.keras``, else ``checkpoint/last.keras`` (a run killed before its evaluation)."""
        for name in (BEST, CHECKPOINT):
            if self.file(name).is_file():
                return self.file(name)
        raise RunFolderError(f"{self.path} holds no model yet ({BEST} or {CHECKPOINT}); train or resume the run.")

    def state(self) -> Optional[dict]:
        return self._json(STATE, required=False)

    def subset_filenames(self) -> Optional[list]:
        """The file names of ``subset.csv`` (the clips a ``train_subset`` run trained on), or None without one."""
        path = self.file(SUBSET)
        if not path.is_file():
            return None
        from keras_dssdn.data.datasets import read_csv

        return [c.filename for c in read_csv(path, root=str(self.path), check_files=False)]

    def teacher_logits(self):
        """The run's copy of its teacher logits (a :class:`~keras_dssdn.distill.logits.TeacherLogits`), or None."""
        path = self.file(TEACHER_LOGITS)
        if not path.is_file():
            return None
        from keras_dssdn.distill.logits import TeacherLogits

        return TeacherLogits.load(path)

    def device_models(self) -> dict:
        """``{device: path of its fine-tuned best.keras}`` from ``devices/index.json`` (empty without one)."""
        index = self._json(DEVICE_INDEX, required=False) or {}
        models = {}
        for device, entry in index.items():
            path = self.path / DEVICES / entry["folder"] / BEST
            if not path.is_file():
                raise RunFolderError(f"{self.file(DEVICE_INDEX)} lists device {device!r} but {path} is missing; run "
                                     "dssdn-finetune again.")
            models[device] = path
        return models

    def device_index(self) -> dict:
        """The saved ``devices/index.json`` (empty without one)."""
        return self._json(DEVICE_INDEX, required=False) or {}

    # ---- writing ----
    def write_subset(self, clips) -> None:
        """``subset.csv``: the training clips of a ``train_subset`` run (tab-separated, with a header)."""
        from keras_dssdn.fileio import write_text_atomic

        self.path.mkdir(parents=True, exist_ok=True)
        rows = ["filename\tscene_label\tidentifier\tsource_label"] + [
            "\t".join([c.filename, c.label or "", c.identifier or "", c.device or ""]) for c in clips]
        write_text_atomic(self.file(SUBSET), "\n".join(rows) + "\n")

    def write_teacher_logits(self, logits) -> None:
        """``teacher_logits.npz``: the :class:`~keras_dssdn.distill.logits.TeacherLogits` the run trains on."""
        self.path.mkdir(parents=True, exist_ok=True)
        logits.save(self.file(TEACHER_LOGITS))

    def device_folder(self, device: str, position: int) -> Path:
        """The folder of one device's fine-tuned model: ``devices/<position>_<device, file-safe>``."""
        import re

        return self.path / DEVICES / f"{position:02d}_{re.sub(r'[^A-Za-z0-9_.-]', '_', device)[:40]}"

    def write_device_index(self, index: dict) -> None:
        """``devices/index.json``: ``{device: {"folder": <name under devices/>, ...}}`` (written last)."""
        (self.path / DEVICES).mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.file(DEVICE_INDEX), index)

    def write_setup(self, config: dict, frontend: FrontEndParams, vocabulary, normalization=None,
                    model_config=None) -> None:
        """Write the files a run starts with (each atomically); ``config.json`` last, so that a folder with a
        ``config.json`` always has the others."""
        self.path.mkdir(parents=True, exist_ok=True)
        (self.path / "checkpoint").mkdir(exist_ok=True)
        write_json_atomic(self.file(FRONTEND), frontend.to_dict())
        vocabulary.save(self.file(LABELS))
        if normalization is not None:
            normalization.save(self.file(NORMALIZATION))
        if model_config is not None:
            model_config.save(self.file(MODEL_CONFIG))
        write_json_atomic(self.file(CONFIG), config)


    def clear_unstarted(self) -> bool:
        """Remove a run of ours that died before its first epoch ended (set-up files, no checkpoint), so that the
        same name can start again; True when cleared. Nothing else is touched: a folder holding a checkpoint or
        any file a run does not write is left as it is (False)."""
        import shutil

        if not self.exists or self.has_checkpoint:
            return False
        ours = {CONFIG, MODEL_CONFIG, FRONTEND, LABELS, NORMALIZATION, DISTRIBUTION, LOG, TENSORBOARD, "checkpoint",
                SUBSET, TEACHER_LOGITS}
        entries = list(self.path.iterdir())
        if any(e.name not in ours for e in entries) or any(
                e.name == "checkpoint" and any(not c.name.startswith(".") for c in e.iterdir()) for e in entries):
            return False
        for e in entries:
            shutil.rmtree(e) if e.is_dir() else e.unlink()
        return True


def find_run(path: PathLike) -> Optional[RunFolder]:
    """The run a path belongs to: the run folder itself, its ``best.keras`` or ``checkpoint/last.keras``;
    None when the path is not inside a run folder."""
    path = Path(path)
    candidates = [path] if path.is_dir() else [path.parent, path.parent.parent]
    for folder in candidates:
        run = RunFolder(folder)
        if run.exists:
            return run
    return None
