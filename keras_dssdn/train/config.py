"""Training configuration: :class:`TrainConfig` and the packaged presets in ``keras_dssdn/configs``.

A run is configured by a YAML/JSON file (or the name of a packaged one:
``small``, ``middle``, ``large``, ``dcase_small_1s``, ``baseline``) plus
``key=value`` overrides (:func:`load_train_config`).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

from keras_dssdn.data.augment import AugmentConfig
from keras_dssdn.errors import ConfigError
from keras_dssdn.params import FrontEndParams
from keras_dssdn.strict import from_dict_strict
from keras_dssdn.train.distribute import LR_SCALINGS, STRATEGIES

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"


@dataclasses.dataclass
class TrainConfig:
    """Everything a training run needs; every field can be overridden as ``key=value``.

    model: ``small`` / ``middle`` / ``large`` / ``dcase_small_1s`` / ``baseline``,
      or a path to a DSSDN config JSON (e.g. one written by ``tools/tune.py``).
    data: dataset folder (DCASE layout) or a ``path,label`` CSV; ``eval_data``
      the evaluate split (default: the same folder's fold ``fold`` evaluate list).
    segment_seconds: cut clips into segments of this length (1.0: the DCASE
      2022-2024 setting); evaluation averages segment predictions per clip.
    strategy: ``default`` (one device), ``mirrored`` (all local GPUs, or the
      logical CPU devices of ``KERAS_DSSDN_CPU_DEVICES``) or ``multiworker``
      (``TF_CONFIG``); see :mod:`keras_dssdn.train.distribute`. ``batch_size`` is per
      replica; ``lr_scaling`` (``linear`` / ``sqrt`` / ``none``) scales
      ``learning_rate`` with the replica count; ``sync_batchnorm`` normalises
      with the global batch's statistics.
    """

    model: str = "small"
    widths: Optional[list] = None
    data: Optional[str] = None
    eval_data: Optional[str] = None
    fold: int = 1
    skip_missing: bool = False
    clip_seconds: Optional[float] = None
    segment_seconds: Optional[float] = None
    frontend: Dict[str, Any] = dataclasses.field(default_factory=dict)
    epochs: int = 60
    batch_size: int = 32
    optimizer: str = "adamw"
    learning_rate: float = 3e-3
    weight_decay: float = 1e-3
    warmup_epochs: int = 3
    min_lr_ratio: float = 0.01
    label_smoothing: float = 0.1
    normalization: str = "global"
    augment: Dict[str, Any] = dataclasses.field(default_factory=dict)
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

    def __post_init__(self):
        if self.optimizer not in ("adamw", "adam", "sgd"):
            raise ConfigError(f"optimizer must be adamw, adam or sgd, got {self.optimizer!r}.")
        if self.normalization not in ("global", "per_band", "none"):
            raise ConfigError(f"normalization must be global, per_band or none, got {self.normalization!r}.")
        if self.mixed_precision not in ("auto", "on", "off"):
            raise ConfigError(f"mixed_precision must be auto, on or off, got {self.mixed_precision!r}.")
        if self.monitor not in ("val_accuracy", "val_loss"):
            raise ConfigError(f"monitor must be val_accuracy or val_loss, got {self.monitor!r}.")
        if self.strategy not in STRATEGIES:
            raise ConfigError(f"strategy must be one of {', '.join(STRATEGIES)}, got {self.strategy!r}.")
        if self.lr_scaling not in LR_SCALINGS:
            raise ConfigError(f"lr_scaling must be one of {', '.join(LR_SCALINGS)}, got {self.lr_scaling!r}.")
        if self.epochs < 1 or self.batch_size < 1:
            raise ConfigError("epochs and batch_size must be >= 1.")
        self.augment_config()  # validates augment keys
        self.frontend_params()

    def augment_config(self) -> AugmentConfig:
        return from_dict_strict(AugmentConfig, self.augment, "augment", ConfigError)

    def frontend_params(self) -> FrontEndParams:
        try:
            return FrontEndParams.from_dict(self.frontend)
        except (ValueError, TypeError) as e:
            raise ConfigError(f"frontend: {e}") from None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        return from_dict_strict(cls, d, "training config", ConfigError)


def _parse_value(text: str):
    import yaml

    return yaml.safe_load(text)


def load_train_config(path_or_name: Optional[str] = None, overrides: Sequence[str] = ()) -> TrainConfig:
    """A TrainConfig from a YAML/JSON file (or a name in ``keras_dssdn/configs``) plus ``key=value`` overrides.

    Dotted keys reach into dict fields: ``augment.mixup_alpha=0.2``,
    ``frontend.n_mels=64``. Values are parsed as YAML (``widths=[8,16,24,32,32]``).
    """
    import yaml

    d: Dict[str, Any] = {}
    if path_or_name:
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
            d = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: not valid YAML/JSON: {e}") from None
        if not isinstance(d, dict):
            raise ConfigError(f"{path}: expected a mapping of config keys, got {type(d).__name__}.")
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
        target[parts[-1]] = _parse_value(value)
    return TrainConfig.from_dict(d)
