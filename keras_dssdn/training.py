"""Training a DSSDN (or the DCASE baseline) on a DCASE-layout dataset, into one run folder.

:func:`train` takes a :class:`TrainConfig` (from a YAML/JSON file plus
``key=value`` overrides, see :func:`load_train_config`) and writes::

    <out_dir>/<name>/
        config.json          the resolved TrainConfig
        model_config.json    the DSSDN architecture (absent for the baseline)
        frontend.json        log-mel settings (keras_dssdn.params.FrontEndParams)
        labels.json          label vocabulary (class id order)
        normalization.json   log-mel statistics of the training split
        log.csv              per-epoch loss / accuracy / learning rate
        tensorboard/         TensorBoard logs
        checkpoint/last.keras, checkpoint/state.json   written atomically every epoch
        best.keras           best model on the evaluate split (normalisation and class names inside)
        metrics.json, metrics.md, confusion.png        final evaluation of best.keras

The saved models take raw log-mel maps ``(n_mels, frames, 1)`` from
:func:`keras_dssdn.pipeline.make_dataset` and normalise them inside
(:class:`~keras_dssdn.features.LogMelNormalization`); their last layer
(:class:`~keras_dssdn.labels.ClassNames`) carries the vocabulary.

Recipe (our choice for small ASC CNNs): AdamW, linear warm-up then cosine
decay, label smoothing, the pipeline's augmentation (mixup, SpecAugment,
Freq-MixStyle), early stopping on the evaluate split's accuracy,
mixed float16 when a GPU is present.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import os
import shutil
import time
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

import numpy as np

import keras
import tensorflow as tf

from keras_dssdn.augment import AugmentConfig
from keras_dssdn.datasets import ClipList, read_csv, read_dcase
from keras_dssdn import distribute
from keras_dssdn.distribute import LR_SCALINGS, STRATEGIES, local_batchnorm_config
from keras_dssdn.features import NormalizationStats, attach_front_end, compute_normalization_stats
from keras_dssdn.labels import LabelVocabulary
from keras_dssdn.params import FrontEndParams
from keras_dssdn.strict import from_dict_strict

CONFIG_DIR = Path(__file__).parent / "configs"


class ConfigError(ValueError):
    """A training configuration key or value that does not exist or does not fit."""


class ResumeError(RuntimeError):
    """A run folder that cannot be resumed (corrupt checkpoint, other labels, ...)."""


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
      (``TF_CONFIG``); see :mod:`keras_dssdn.distribute`. ``batch_size`` is per
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


# ----------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------


def _clips(source: str, split: str, cfg: TrainConfig) -> ClipList:
    if source is None:
        raise ConfigError("No dataset: set data=<DCASE folder or CSV> (or run the demo: python -m keras_dssdn).")
    if os.path.isdir(source):
        return read_dcase(source, split=split, fold=cfg.fold, skip_missing=cfg.skip_missing)
    return read_csv(source, skip_missing=cfg.skip_missing)


def training_data(cfg: TrainConfig, vocabulary: Optional[LabelVocabulary] = None):
    """``(train ClipList, evaluate ClipList, vocabulary)`` for a config; checks labels before any decoding."""
    train = _clips(cfg.data, "train", cfg)
    evaluate = _clips(cfg.eval_data or cfg.data, "evaluate", cfg) if (cfg.eval_data or os.path.isdir(cfg.data)) else None
    vocab = train.vocabulary()
    if vocabulary is not None and vocabulary != vocab:
        raise ResumeError(
            f"The training data's labels {list(vocab)} differ from the run's {list(vocabulary)}; "
            "resume with the dataset the run started on, or start a new run (another name=)."
        )
    if evaluate is not None:
        unknown = sorted(set(evaluate.labels) - set(vocab))
        if unknown:
            raise ConfigError(f"The evaluate split has labels the training split lacks: {unknown}.")
    return train, evaluate, vocab


def input_seconds(cfg: TrainConfig) -> float:
    p = cfg.frontend_params()
    return cfg.segment_seconds or cfg.clip_seconds or p.clip_seconds


# ----------------------------------------------------------------------------
# Model and optimiser
# ----------------------------------------------------------------------------


def build_network(cfg: TrainConfig, classes: int) -> keras.Model:
    """The bare network (log-mel in, probabilities out) a config names."""
    from keras_dssdn.baseline import DCASEBaseline
    from keras_dssdn.model import PRESETS, build_dssdn, resolve_config

    shape = cfg.frontend_params().input_shape(input_seconds(cfg))
    if cfg.model == "baseline":
        if cfg.widths:
            raise ConfigError("widths= applies to DSSDN models, not the baseline.")
        return DCASEBaseline(shape, classes)
    if cfg.model not in PRESETS and not os.path.isfile(cfg.model):
        raise ConfigError(f"model must be one of {sorted(PRESETS) + ['baseline']} or a DSSDN config JSON file; "
                          f"got {cfg.model!r}.")
    dssdn = resolve_config(cfg.model)
    changes = {"input_shape": list(shape), "classes": classes}
    if cfg.widths:
        if len(cfg.widths) != len(dssdn.widths):
            raise ConfigError(f"widths needs {len(dssdn.widths)} values, got {cfg.widths}.")
        changes["widths"] = list(cfg.widths)
    name = f"dssdn_{cfg.model}" if cfg.model in PRESETS else "dssdn"
    return build_dssdn(dssdn.replace(**changes), name=name)


class WarmupCosine(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up over ``warmup_steps`` to ``peak``, then cosine decay to ``peak * min_ratio`` at ``total_steps``."""

    def __init__(self, peak: float, total_steps: int, warmup_steps: int = 0, min_ratio: float = 0.01):
        self.peak = float(peak)
        self.total_steps = int(max(1, total_steps))
        self.warmup_steps = int(max(0, warmup_steps))
        self.min_ratio = float(min_ratio)

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        warm = tf.cast(max(self.warmup_steps, 1), tf.float32)
        decay_steps = tf.cast(max(self.total_steps - self.warmup_steps, 1), tf.float32)
        progress = tf.clip_by_value((step - self.warmup_steps) / decay_steps, 0.0, 1.0)
        cosine = self.min_ratio + (1.0 - self.min_ratio) * 0.5 * (1.0 + tf.cos(math.pi * progress))
        lr = tf.where(step < self.warmup_steps, (step + 1.0) / warm, cosine)
        return self.peak * lr

    def get_config(self):
        return {"peak": self.peak, "total_steps": self.total_steps, "warmup_steps": self.warmup_steps,
                "min_ratio": self.min_ratio}


keras.saving.register_keras_serializable(package="keras_dssdn")(WarmupCosine)


def make_optimizer(cfg: TrainConfig, steps_per_epoch: int) -> keras.optimizers.Optimizer:
    schedule = WarmupCosine(cfg.learning_rate, cfg.epochs * steps_per_epoch, cfg.warmup_epochs * steps_per_epoch,
                            cfg.min_lr_ratio)
    if cfg.optimizer == "adamw":
        return keras.optimizers.AdamW(schedule, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adam":
        return keras.optimizers.Adam(schedule)
    return keras.optimizers.SGD(schedule, momentum=0.9, nesterov=True)


def dataset_options(cfg: TrainConfig, vocabulary: LabelVocabulary) -> dict:
    """The :func:`~keras_dssdn.pipeline.make_dataset` keyword arguments shared by a config's train and evaluate
    datasets (front end, vocabulary, clip/segment length, one-hot labels, batch size, cache)."""
    return dict(frontend=cfg.frontend_params(), vocabulary=vocabulary, clip_seconds=cfg.clip_seconds,
                segment_seconds=cfg.segment_seconds, label_mode="one_hot", batch_size=cfg.batch_size,
                cache=cfg.cache)


def normalization_stats(cfg: TrainConfig, train_clips: ClipList,
                        vocabulary: LabelVocabulary) -> Optional[NormalizationStats]:
    """Log-mel statistics of the training clips for ``cfg.normalization`` (None when it is ``"none"``);
    decodes the clips once more, uncached."""
    from keras_dssdn.pipeline import make_dataset

    if cfg.normalization == "none":
        return None
    stats_ds = make_dataset(train_clips, training=False, **{**dataset_options(cfg, vocabulary), "cache": None})
    return compute_normalization_stats(stats_ds, mode=cfg.normalization)


def wrap_network(net: keras.Model, cfg: TrainConfig, stats: Optional[NormalizationStats],
                 vocabulary: LabelVocabulary) -> keras.Model:
    """``net`` (log-mel in) with the normalisation and class names inside, as the run folders save it."""
    return attach_front_end(net, cfg.frontend_params(), stats, vocabulary.names, waveform_input=False,
                            seconds=input_seconds(cfg), name=net.name)


def compile_for_training(model: keras.Model, cfg: TrainConfig, steps_per_epoch: int) -> keras.Model:
    """Compile with the recipe: :func:`make_optimizer` over ``cfg.epochs``, label-smoothed cross-entropy,
    accuracy. Returns ``model``."""
    model.compile(
        optimizer=make_optimizer(cfg, steps_per_epoch),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=cfg.label_smoothing),
        metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
    )
    return model


def _use_mixed_precision(cfg: TrainConfig) -> bool:
    if cfg.mixed_precision == "auto":
        return bool(tf.config.list_physical_devices("GPU"))
    return cfg.mixed_precision == "on"


# ----------------------------------------------------------------------------
# Run folder, checkpoints
# ----------------------------------------------------------------------------


def write_json_atomic(path, obj) -> None:
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def save_model_atomic(model: keras.Model, path) -> None:
    """``model.save`` to a temporary file in the same folder, then rename."""
    path = Path(path)
    tmp = path.with_name(path.stem + ".tmp.keras")
    model.save(tmp)
    os.replace(tmp, path)


class RunCheckpoint(keras.callbacks.Callback):
    """Every epoch: ``checkpoint/last.keras`` (model + optimizer state) and ``state.json``,
    ``best.keras`` when the monitored value improves, and early stopping whose
    counters survive a resume. All writes are atomic."""

    def __init__(self, run_dir: Path, monitor: str, patience: int, state: Optional[dict] = None):
        super().__init__()
        self.run_dir = Path(run_dir)
        self.monitor = monitor
        self.patience = patience
        self.mode = "max" if "acc" in monitor else "min"
        state = state or {}
        self.best = state.get("best")
        self.best_epoch = state.get("best_epoch")
        self.wait = state.get("wait", 0)
        self.history = state.get("history", [])

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def _improved(self, value) -> bool:
        if self.best is None:
            return True
        return value > self.best if self.mode == "max" else value < self.best

    def on_epoch_end(self, epoch, logs=None):
        logs = dict(logs or {})
        value = logs.get(self.monitor)
        if value is None:
            raise KeyError(f"Early stopping monitors {self.monitor!r} but the epoch logs have {sorted(logs)}.")
        improved = self._improved(value)
        if improved:
            self.best, self.best_epoch, self.wait = float(value), epoch + 1, 0
            with local_batchnorm_config(self.model):
                save_model_atomic(self.model, self.run_dir / "best.keras")
        else:
            self.wait += 1
        entry = {k: float(v) for k, v in logs.items()}
        entry.update(epoch=epoch + 1, seconds=time.perf_counter() - self._start)
        self.history.append(entry)
        with local_batchnorm_config(self.model):
            save_model_atomic(self.model, self.run_dir / "checkpoint" / "last.keras")
        stop = self.patience > 0 and self.wait >= self.patience
        write_json_atomic(self.run_dir / "checkpoint" / "state.json", {
            "epoch": epoch + 1, "best": self.best, "best_epoch": self.best_epoch, "wait": self.wait,
            "monitor": self.monitor, "stopped_early": stop, "history": self.history,
            "optimizer_iterations": int(self.model.optimizer.iterations.numpy()),
        })
        if stop:
            self.model.stop_training = True


class _LearningRateLogger(keras.callbacks.Callback):
    """Adds the current learning rate to the epoch logs (CSV and TensorBoard)."""

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            opt = self.model.optimizer
            logs["learning_rate"] = float(opt.learning_rate.numpy() if hasattr(opt.learning_rate, "numpy")
                                          else opt.learning_rate)


def load_checkpoint(run_dir: Path):
    """``(model, state)`` from ``run_dir/checkpoint``; ResumeError naming the file if absent or corrupt."""
    ckpt = Path(run_dir) / "checkpoint" / "last.keras"
    state_path = Path(run_dir) / "checkpoint" / "state.json"
    if not ckpt.is_file() or not state_path.is_file():
        raise ResumeError(f"{run_dir}: no checkpoint to resume from (expected {ckpt} and {state_path}); "
                          "the run died before its first epoch ended: start it again without --resume.")
    try:
        state = json.loads(state_path.read_text())
        model = keras.models.load_model(ckpt, compile=True)
    except Exception as e:  # noqa: BLE001 - any failure here means a corrupt checkpoint
        raise ResumeError(f"{ckpt} (or {state_path.name}) is corrupt and cannot be loaded ({type(e).__name__}: "
                          f"{str(e)[:200]}); delete {run_dir} and train again, or restore the files.") from None
    return model, state


# ----------------------------------------------------------------------------
# Train
# ----------------------------------------------------------------------------


@dataclasses.dataclass
class RunResult:
    run_dir: Path
    epochs_run: int
    best_epoch: Optional[int]
    metrics: dict
    seconds_per_epoch: float
    chief: bool = True  # False: a non-chief worker of a multi-worker run (no run folder, no metrics)


def run_folder(cfg: TrainConfig) -> Path:
    name = cfg.name or f"{Path(cfg.model).stem}-{datetime.datetime.now():%Y%m%d-%H%M%S}"
    return Path(cfg.out_dir) / name


def _open_run_folder(cfg: TrainConfig, run_dir: Path, resume: bool, dist: "distribute.Distribution"):
    """``(cfg, vocabulary)`` for a new run (the folder must be free) or a resumed one (its saved recipe and
    labels; the same replica count)."""
    if resume:
        if not (run_dir / "config.json").is_file():
            raise ResumeError(f"{run_dir}: not a run folder (no config.json); check out_dir= and name=.")
        saved = TrainConfig.from_dict(json.loads((run_dir / "config.json").read_text()))
        # a resumed run keeps its recipe; only the epoch budget, verbosity and the strategy may change
        cfg = dataclasses.replace(saved, epochs=cfg.epochs, verbose=cfg.verbose, strategy=cfg.strategy)
        vocabulary = LabelVocabulary.load(run_dir / "labels.json")
        record = run_dir / "distribution.json"
        trained = json.loads(record.read_text()) if record.is_file() else {"strategy": "default", "replicas": 1}
        if int(trained["replicas"]) != dist.replicas:
            raise ResumeError(
                f"{run_dir} was trained on {trained['replicas']} replica(s) (strategy {trained['strategy']}); this "
                f"process has {dist.replicas} ({dist.describe()}). The global batch and the learning-rate schedule "
                f"depend on the replica count: resume with --strategy {trained['strategy']} on as many devices.")
    else:
        if dist.is_chief and run_dir.exists() and any(run_dir.iterdir()):
            raise FileExistsError(f"{run_dir} already exists; resume it with --resume, or choose another name=.")
        vocabulary = None
    return cfg, vocabulary


def _distribution_record(cfg: TrainConfig, run_cfg: TrainConfig, dist: "distribute.Distribution", steps: int) -> dict:
    return {"strategy": dist.name, "replicas": dist.replicas, "workers": dist.workers, "devices": list(dist.devices),
            "per_replica_batch_size": cfg.batch_size, "global_batch_size": run_cfg.batch_size,
            "lr_scaling": cfg.lr_scaling, "base_learning_rate": cfg.learning_rate,
            "learning_rate": run_cfg.learning_rate, "sync_batchnorm": bool(cfg.sync_batchnorm and dist.replicas > 1),
            "steps_per_epoch": steps}


def train(cfg: TrainConfig, *, resume: bool = False, callbacks: Sequence[keras.callbacks.Callback] = ()) -> RunResult:
    """Train per ``cfg`` into its run folder; ``resume=True`` continues a killed run from its last checkpoint.

    ``cfg.strategy`` other than ``default`` trains with ``tf.distribute`` (:mod:`keras_dssdn.distribute`):
    ``batch_size`` per replica, the learning rate scaled by ``cfg.lr_scaling``, the model built (or loaded)
    in ``strategy.scope()``; with several workers only the chief writes the run folder.
    """
    from keras_dssdn.evaluation import evaluate_model, write_reports
    from keras_dssdn.pipeline import make_dataset

    if cfg.strategy == "multiworker" and not cfg.name and distribute.cluster_workers() > 1:
        raise ConfigError("Multi-worker training needs name=<run name>: every worker must use the same run folder.")
    run_dir = run_folder(cfg)
    # before any other TensorFlow work: MultiWorkerMirroredStrategy joins its cluster here
    dist = distribute.setup(cfg.strategy)
    error = None
    try:
        cfg, vocabulary = _open_run_folder(cfg, run_dir, resume, dist)
    except Exception as e:  # noqa: BLE001 - re-raised by agree(), after every worker has heard of it
        error = e
    dist.agree(error)
    verbose = cfg.verbose if dist.is_chief else 0
    # the run folder is written by the chief; other workers write the same files, in lockstep, to a temporary one
    out_dir = run_dir if dist.is_chief else distribute.worker_dir(dist)
    run_cfg = cfg  # what one optimizer step sees: the global batch and the scaled learning rate
    if dist.distributed:
        run_cfg = dataclasses.replace(cfg, batch_size=cfg.batch_size * dist.replicas,
                                      learning_rate=cfg.learning_rate * distribute.lr_scale(dist.replicas,
                                                                                             cfg.lr_scaling))
    keras.utils.set_random_seed(cfg.seed)
    frontend = cfg.frontend_params()
    train_clips, eval_clips, vocab = training_data(cfg, vocabulary)
    if verbose:
        print(train_clips.summary())
        if eval_clips is not None:
            print(eval_clips.summary())

    if _use_mixed_precision(cfg):
        keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        common = dataset_options(run_cfg, vocab)
        train_ds = make_dataset(train_clips, training=True, augment=cfg.augment_config(), seed=cfg.seed, **common)
        eval_ds = make_dataset(eval_clips, training=False, **common) if eval_clips is not None else None
        steps = int(train_ds.cardinality().numpy())
        if dist.distributed:
            train_ds = distribute.shard_by_data(train_ds)
            eval_ds = distribute.shard_by_data(eval_ds) if eval_ds is not None else None
            record = _distribution_record(cfg, run_cfg, dist, steps)
            if verbose:
                print(f"Training with {dist.describe()}: batch {cfg.batch_size} per replica = {run_cfg.batch_size} "
                      f"global, learning rate {cfg.learning_rate:g} x {run_cfg.learning_rate / cfg.learning_rate:g} "
                      f"({cfg.lr_scaling}) = {run_cfg.learning_rate:g}"
                      + (", batch norm synchronised across replicas" if record["sync_batchnorm"] else "") + ".")

        if resume:
            with dist.scope():
                model, state = load_checkpoint(run_dir)
            initial_epoch = int(state["epoch"])
            stats = NormalizationStats.load(run_dir / "normalization.json") if cfg.normalization != "none" else None
        else:
            state, initial_epoch = None, 0
            out_dir.mkdir(parents=True, exist_ok=True)
            (out_dir / "checkpoint").mkdir(exist_ok=True)
            stats = normalization_stats(run_cfg, train_clips, vocab)
            with dist.scope():
                net = build_network(cfg, len(vocab))
                model = compile_for_training(wrap_network(net, cfg, stats, vocab), run_cfg, steps)
            write_json_atomic(out_dir / "config.json", cfg.to_dict())
            write_json_atomic(out_dir / "frontend.json", frontend.to_dict())
            vocab.save(out_dir / "labels.json")
            if stats is not None:
                write_json_atomic(out_dir / "normalization.json", stats.to_dict())
            if getattr(net, "dssdn_config", None) is not None:
                net.dssdn_config.save(out_dir / "model_config.json")
        if dist.distributed:
            (out_dir / "checkpoint").mkdir(parents=True, exist_ok=True)
            write_json_atomic(out_dir / "distribution.json", record)
            if dist.replicas > 1 and cfg.sync_batchnorm:
                distribute.synchronize_batchnorm(model)
            if dist.workers > 1:
                distribute.patch_for_multiworker(model)

        if initial_epoch >= cfg.epochs or (state or {}).get("stopped_early"):
            if verbose:
                print(f"{run_dir}: already trained to epoch {initial_epoch}; evaluating.")
        else:
            monitor = cfg.monitor if eval_ds is not None else cfg.monitor.replace("val_", "")
            checkpoint = RunCheckpoint(out_dir, monitor, cfg.early_stopping_patience if eval_ds is not None else 0,
                                       state)
            cbs = [_LearningRateLogger(), checkpoint,
                   keras.callbacks.CSVLogger(str(out_dir / "log.csv"), append=resume),
                   keras.callbacks.TensorBoard(str(out_dir / "tensorboard"), write_graph=False),
                   *callbacks]
            model.fit(train_ds, validation_data=eval_ds, epochs=cfg.epochs, initial_epoch=initial_epoch,
                      callbacks=cbs, verbose=verbose)
            state = json.loads((out_dir / "checkpoint" / "state.json").read_text())

        seconds = float(np.median([h["seconds"] for h in state["history"] if "seconds" in h] or [0.0]))
        if not dist.is_chief:  # the chief evaluates and writes the reports; leave the cluster together
            dist.agree(None)
            return RunResult(run_dir, int(state["epoch"]), state.get("best_epoch"), {}, seconds, chief=False)
        best = keras.models.load_model(run_dir / "best.keras", compile=False)
        metrics = {}
        if eval_clips is not None:
            metrics = evaluate_model(best, eval_clips, frontend=frontend, clip_seconds=cfg.clip_seconds,
                                     segment_seconds=cfg.segment_seconds, batch_size=cfg.batch_size)
            history = state.get("history", [])
            times = [h["seconds"] for h in history if "seconds" in h]
            metrics["training"] = {
                "epochs_run": state["epoch"], "best_epoch": state.get("best_epoch"),
                "stopped_early": state.get("stopped_early", False),
                "median_seconds_per_epoch": float(np.median(times)) if times else None,
            }
            write_reports(metrics, run_dir, title=f"{best.name} on {eval_clips.name}")
        if dist.workers > 1:
            dist.agree(None)
        return RunResult(run_dir, int(state["epoch"]), state.get("best_epoch"), metrics, seconds)
    finally:
        keras.mixed_precision.set_global_policy("float32")
        if out_dir != run_dir:
            distribute.remove_worker_dir(out_dir)
