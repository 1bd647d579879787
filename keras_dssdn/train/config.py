"""Training configuration: :class:`TrainConfig` and the packaged presets in ``keras_dssdn/configs``.

A run is configured by a YAML/JSON file (or the name of a packaged one:
``small``, ``middle``, ``large``, ``dcase_small_1s``, ``dcase_mcu_1s``, ``baseline``) plus
``key=value`` overrides (:func:`load_train_config`).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

from keras_dssdn.data.augment import AugmentConfig
from keras_dssdn.errors import ConfigError
from keras_dssdn.params import FrontEndParams
from keras_dssdn.utils.dataclass_dicts import dataclass_from_dict
from keras_dssdn.train.distribute import LR_SCALINGS, STRATEGIES

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"


@dataclasses.dataclass
class TrainConfig:
    """Everything a training run needs; every field can be overridden as ``key=value``.

    model: ``small`` / ``middle`` / ``large`` / ``dcase_small_1s`` / ``dcase_mcu_1s`` / ``baseline``,
      or a path to a DSSDN config JSON (e.g. one written by ``tools/tune.py``).
    data: dataset folder (DCASE layout) or a ``path,label`` CSV; ``eval_data``
      the evaluate split (default: the same folder's fold ``fold`` evaluate list).
    monitor: what chooses ``best.keras``: ``val_accuracy`` / ``val_loss`` on the evaluate split (model
      selection on data that is then reported: optimistic), or ``last`` (the final epoch; no selection).
    pad_short: zero-pad clips shorter than the clip length instead of refusing them.
    segment_seconds: cut clips into segments of this length (1.0: the DCASE
      2022-2024 setting); evaluation averages segment predictions per clip.
    strategy: ``default`` (one device), ``mirrored`` (all local GPUs, or the
      logical CPU devices of ``KERAS_DSSDN_CPU_DEVICES``) or ``multiworker``
      (``TF_CONFIG``); see :mod:`keras_dssdn.train.distribute`. ``batch_size`` is per
      replica; ``lr_scaling`` (``linear`` / ``sqrt`` / ``none``) scales
      ``learning_rate`` with the replica count; ``sync_batchnorm`` normalises
      with the global batch's statistics.
    ema_momentum: weight averaging (0: off): the optimizer keeps an exponential moving average of the trainable
      weights, ``avg = m * avg + (1 - m) * w`` after every step (``keras.optimizers.Optimizer(use_ema=True)``);
      the evaluate split is scored with the averaged weights each epoch and ``best.keras`` holds them (batch-norm
      statistics are the running ones); ``checkpoint/last.keras`` keeps the raw weights and the average, so a
      resumed run continues both. One device only (``strategy=default``).
    swa_epochs: stochastic weight averaging (0: off): ``best.keras`` holds the mean of the weights at the end of
      the last ``swa_epochs`` epochs, its batch-norm statistics re-estimated in one pass over the training data
      (:mod:`keras_dssdn.train.weight_average`); needs ``monitor=last`` and one device, excludes ``ema_momentum``.
    run_eagerly: Keras runs each training and prediction step as plain Python instead of a traced graph
      (``model.compile(run_eagerly=True)``): slower per step, but no tracing, which costs 20-40 s per new model
      on a 2-core CPU. For debugging a step, and for tiny runs of a few steps (the test-suite's).
    """

    model: str = "small"
    widths: Optional[list] = None
    data: Optional[str] = None
    eval_data: Optional[str] = None
    fold: int = 1
    skip_missing: bool = False
    pad_short: bool = False
    clip_seconds: Optional[float] = None
    segment_seconds: Optional[float] = None
    frontend: FrontEndParams = dataclasses.field(default_factory=FrontEndParams)  # in YAML / JSON: a mapping
    epochs: int = 60
    batch_size: int = 32
    optimizer: str = "adamw"
    learning_rate: float = 3e-3
    weight_decay: float = 1e-3
    warmup_epochs: int = 3
    min_lr_ratio: float = 0.01
    ema_momentum: float = 0.0  # weight averaging: 0 = off; e.g. 0.99 = an exponential average over ~100 steps
    swa_epochs: int = 0  # stochastic weight averaging over the last N epochs, batch norm re-estimated; 0 = off
    label_smoothing: float = 0.1
    # knowledge distillation (docs/distillation.md): a teacher-logits .npz (dssdn-teacher), or teacher run folders /
    # .keras / .tflite models (a path, a glob pattern or a list); loss = (1 - kd_weight) * label cross-entropy
    # + kd_weight * kd_temperature^2 * KL(teacher || student), both softened by kd_temperature
    teacher: Optional[Any] = None
    kd_temperature: float = 2.0
    kd_weight: float = 0.5
    normalization: str = "global"
    augment: AugmentConfig = dataclasses.field(default_factory=AugmentConfig)  # in YAML / JSON: a mapping
    early_stopping_patience: int = 15
    monitor: str = "val_accuracy"
    seed: int = 0
    mixed_precision: str = "auto"
    cache: Optional[str] = "memory"
    strategy: str = "default"
    lr_scaling: str = "linear"
    sync_batchnorm: bool = True
    out_dir: str = "runs"
    name: Optional[str] = None
    verbose: int = 1
    run_eagerly: bool = False
    # devices (docs/devices.md): impulse-response folder and probability per clip, spectrum-difference file
    # (dssdn-devices spectra) and probability, training subset in percent (5, 10, 25, 50, 100)
    dir_folder: Optional[str] = None
    dir_prob: float = 0.6
    dsmn_file: Optional[str] = None
    dsmn_prob: float = 0.6
    train_subset: int = 100

    def __post_init__(self):
        self._type_mappings()
        if self.optimizer not in ("adamw", "adam", "sgd"):
            raise ConfigError(f"optimizer must be adamw, adam or sgd, got {self.optimizer!r}.")
        if self.normalization not in ("global", "per_band", "per_input", "none"):
            raise ConfigError("normalization must be global, per_band, per_input or none, got "
                              f"{self.normalization!r}.")
        if self.mixed_precision not in ("auto", "on", "off"):
            raise ConfigError(f"mixed_precision must be auto, on or off, got {self.mixed_precision!r}.")
        if self.monitor not in ("val_accuracy", "val_loss", "last"):
            raise ConfigError(f"monitor must be val_accuracy, val_loss or last, got {self.monitor!r}.")
        if self.strategy not in STRATEGIES:
            raise ConfigError(f"strategy must be one of {', '.join(STRATEGIES)}, got {self.strategy!r}.")
        if self.lr_scaling not in LR_SCALINGS:
            raise ConfigError(f"lr_scaling must be one of {', '.join(LR_SCALINGS)}, got {self.lr_scaling!r}.")
        if self.epochs < 1 or self.batch_size < 1:
            raise ConfigError(f"epochs and batch_size must be >= 1, got epochs={self.epochs}, "
                              f"batch_size={self.batch_size}.")
        self._check_ranges()
        if self.ema_momentum and self.strategy != "default":
            raise ConfigError(f"ema_momentum={self.ema_momentum:g} (weight averaging) runs on one device; use "
                              f"strategy=default, or ema_momentum=0 with strategy={self.strategy}.")
        self._check_weight_average()
        self._check_model()
        from keras_dssdn.data.device_augment import check_device_keys
        check_device_keys(self)
        frontend = self.frontend
        clip = self.clip_seconds or frontend.clip_seconds
        if self.segment_seconds is not None and frontend.num_samples(self.segment_seconds) > frontend.num_samples(clip):
            raise ConfigError(f"segment_seconds={self.segment_seconds:g} is longer than the clips "
                              f"(clip_seconds={clip:g}); choose a segment of at most {clip:g} s.")
        for key, seconds in (("clip_seconds", self.clip_seconds), ("segment_seconds", self.segment_seconds)):
            if seconds is not None and frontend.num_samples(seconds) < frontend.n_fft:
                raise ConfigError(f"{key}={seconds:g} is shorter than one STFT window "
                                  f"({frontend.n_fft / frontend.sample_rate:.3f} s at frontend.n_fft={frontend.n_fft}).")

    def _check_weight_average(self) -> None:
        if not self.swa_epochs:
            return
        if not 0 < self.swa_epochs <= self.epochs:
            raise ConfigError(f"swa_epochs={self.swa_epochs} must be between 0 (off) and epochs ({self.epochs}).")
        clash = [f"ema_momentum={self.ema_momentum:g}"] if self.ema_momentum else []
        clash += [f"monitor={self.monitor}"] if self.monitor != "last" else []
        clash += [f"strategy={self.strategy}"] if self.strategy != "default" else []
        if clash:
            raise ConfigError(f"swa_epochs={self.swa_epochs} (weight averaging over the last epochs) needs "
                              f"ema_momentum=0, monitor=last and strategy=default; got {', '.join(clash)}.")

    def _check_ranges(self) -> None:
        checks = [
            ("learning_rate", self.learning_rate > 0, "> 0"), ("weight_decay", self.weight_decay >= 0, ">= 0"),
            ("warmup_epochs", 0 <= self.warmup_epochs <= self.epochs, f"between 0 and epochs ({self.epochs})"),
            ("min_lr_ratio", 0 <= self.min_lr_ratio <= 1, "between 0 and 1"),
            ("ema_momentum", 0 <= self.ema_momentum < 1, "in [0, 1) (0: no weight averaging)"),
            ("label_smoothing", 0 <= self.label_smoothing < 1, "in [0, 1)"), ("fold", self.fold >= 1, ">= 1"),
            ("early_stopping_patience", self.early_stopping_patience >= 0, ">= 0 (0: off)"),
            ("clip_seconds", self.clip_seconds is None or self.clip_seconds > 0, "> 0 (or null)"),
            ("segment_seconds", self.segment_seconds is None or self.segment_seconds > 0, "> 0 (or null)"),
        ]
        for key, ok, rule in checks:
            if not ok:
                raise ConfigError(f"{key}={getattr(self, key)!r} must be {rule}.")
        self._check_teacher()

    def _check_teacher(self) -> None:
        """``teacher`` names existing sources (not read yet); the kd_* keys are in range and used only with it."""
        from keras_dssdn.distill.teacher import check_sources

        if not self.kd_temperature > 0 or not 0 <= self.kd_weight <= 1:
            raise ConfigError(f"kd_temperature={self.kd_temperature!r} must be > 0 and kd_weight={self.kd_weight!r} "
                              "in [0, 1].")
        if self.teacher is None:
            if (self.kd_temperature, self.kd_weight) != (2.0, 0.5):
                raise ConfigError(f"kd_temperature / kd_weight are set (to {self.kd_temperature!r} / "
                                  f"{self.kd_weight!r}) but teacher= is not: give the teacher logits file or runs.")
            return
        if not isinstance(self.teacher, (str, list)) or (isinstance(self.teacher, list) and not all(
                isinstance(t, str) for t in self.teacher)):
            raise ConfigError(f"teacher={self.teacher!r}: give a path, a glob pattern or a list of paths.")
        check_sources(self.teacher)

    def _check_model(self) -> None:
        """The model names a preset, ``baseline`` or an existing DSSDN config file (checked before any data is read)."""
        import os

        from keras_dssdn.models.presets import PRESETS

        if self.model != "baseline" and self.model not in PRESETS and not os.path.isfile(self.model):
            raise ConfigError(f"model must be one of {sorted(PRESETS) + ['baseline']} or a DSSDN config JSON file "
                              f"(e.g. best_config.json from dssdn-tune); got {self.model!r}.")
        if self.widths is not None and (self.model == "baseline" or not all(
                isinstance(w, int) and not isinstance(w, bool) and w >= 1 for w in self.widths)):
            raise ConfigError(f"widths={self.widths!r}: give positive integers, one per DSSDN block "
                              "(widths does not apply to the baseline).")

    def _type_mappings(self) -> None:
        """``frontend`` and ``augment`` as given in YAML / JSON (a mapping of some of their fields; an old run
        folder's ``config.json`` holds only the keys it set) -> :class:`FrontEndParams` / :class:`AugmentConfig`,
        ConfigError naming the key that is not a field or a value that is wrong."""
        if isinstance(self.frontend, dict):
            try:
                self.frontend = FrontEndParams.from_dict(self.frontend)
            except (ValueError, TypeError) as e:
                raise ConfigError(f"frontend: {e}") from None
        if isinstance(self.augment, dict):
            self.augment = dataclass_from_dict(AugmentConfig, self.augment, "augment", ConfigError)
        if not isinstance(self.frontend, FrontEndParams) or not isinstance(self.augment, AugmentConfig):
            raise ConfigError(f"frontend and augment must be mappings of their fields, got frontend="
                              f"{self.frontend!r}, augment={self.augment!r}.")

    def augment_config(self) -> AugmentConfig:
        """The augmentation (``augment``), typed."""
        return self.augment

    def frontend_params(self) -> FrontEndParams:
        """The log-mel front end (``frontend``), typed."""
        return self.frontend

    def to_dict(self) -> dict:
        """Plain JSON values (``frontend`` and ``augment`` as mappings of every field)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        return dataclass_from_dict(cls, d, "training config", ConfigError)


def _parse_value(item: str, text: str):
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        raise ConfigError(f"Override {item!r}: {text!r} is not a valid value (write lists as [a, b], "
                          "strings with special characters in quotes).") from None


def apply_overrides(d: dict, overrides: Sequence[str]) -> dict:
    """``d`` (a config dict, changed in place and returned) with ``key=value`` overrides applied.

    Dotted keys reach into dict fields: ``augment.mixup_alpha=0.2``, ``frontend.n_mels=64``. Values are parsed
    as YAML (``widths=[8,16,24,32,32]``, ``segment_seconds=null``).
    """
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"Override {item!r} is not key=value.")
        key, value = item.split("=", 1)
        parts = key.strip().split(".")
        target = d
        for p in parts[:-1]:
            target = target.setdefault(p, {})
            if not isinstance(target, dict):
                raise ConfigError(f"Override {item!r}: {p!r} is not a mapping.")
        target[parts[-1]] = _parse_value(item, value)
    return d


def _read_config_file(path_or_name: str) -> dict:
    import yaml

    path = Path(path_or_name)
    if not path.is_file():
        for ext in (".yaml", ".yml", ".json"):
            if (CONFIG_DIR / f"{path_or_name}{ext}").is_file():
                path = CONFIG_DIR / f"{path_or_name}{ext}"
                break
        else:
            names = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))
            raise ConfigError(f"Training config {path_or_name!r} is neither a file nor one of {names}.")
    try:
        d = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: not valid YAML/JSON: {e}") from None
    if not isinstance(d, dict):
        raise ConfigError(f"{path}: expected a mapping of config keys, got {type(d).__name__}.")
    return d


def load_train_config(path_or_name: Optional[str] = None, overrides: Sequence[str] = ()) -> TrainConfig:
    """A TrainConfig from a YAML/JSON file (or a name in ``keras_dssdn/configs``) plus ``key=value`` overrides
    (see :func:`apply_overrides`)."""
    d: Dict[str, Any] = _read_config_file(path_or_name) if path_or_name else {}
    return TrainConfig.from_dict(apply_overrides(d, overrides))


#: Keys that a resumed run may change: they do not alter the experiment.
RESUME_MAY_CHANGE = ("verbose", "strategy", "cache", "data", "eval_data", "out_dir", "name", "run_eagerly")


def config_changes(saved: TrainConfig, new: TrainConfig, allowed: Sequence[str] = RESUME_MAY_CHANGE) -> list:
    """``["key: saved -> new", ...]`` for the fields that differ, other than ``allowed``."""
    return [f"{f.name}: {getattr(saved, f.name)!r} -> {getattr(new, f.name)!r}" for f in dataclasses.fields(saved)
            if f.name not in allowed and getattr(saved, f.name) != getattr(new, f.name)]


def resume_train_config(saved: dict, overrides: Sequence[str] = ()) -> TrainConfig:
    """The configuration of a run being resumed: its saved ``config.json`` with ``overrides`` applied.

    A resumed run continues the experiment as it was configured (its epochs, learning-rate schedule, recipe):
    an override that would change it raises ConfigError naming the keys; only :data:`RESUME_MAY_CHANGE` may
    differ (``data``/``eval_data``/``out_dir``/``name`` let moved folders be found again; labels are checked).
    """
    base = TrainConfig.from_dict(dict(saved))
    cfg = TrainConfig.from_dict(apply_overrides(json_copy(saved), overrides))
    changes = config_changes(base, cfg)
    if changes:
        raise ConfigError("--resume continues the run as it was configured, but these overrides change it: "
                          + "; ".join(changes) + ". Drop them, or start a new run (another name=) with them.")
    return cfg


def json_copy(d: dict) -> dict:
    import json

    return json.loads(json.dumps(d))
