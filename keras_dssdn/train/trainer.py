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
:func:`keras_dssdn.data.pipeline.make_dataset` and normalise them inside
(:class:`~keras_dssdn.layers.frontend.LogMelNormalization`); their last layer
(:class:`~keras_dssdn.layers.labels.ClassNames`) carries the vocabulary.

Recipe (our choice for small ASC CNNs): AdamW, linear warm-up then cosine
decay, label smoothing, the pipeline's augmentation (mixup, SpecAugment,
Freq-MixStyle), early stopping on the evaluate split's accuracy,
mixed float16 when a GPU is present.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import time
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

import keras

from keras_dssdn import runs
from keras_dssdn.errors import ConfigError, ResumeError
from keras_dssdn.fileio import save_model_atomic, write_json_atomic
from keras_dssdn.runs import RunFolder
import keras_dssdn.train.distribute as distribute
from keras_dssdn.train.config import RESUME_MAY_CHANGE, TrainConfig, config_changes
from keras_dssdn.train.distribute import local_batchnorm_config
from keras_dssdn.train.recipe import (use_mixed_precision, build_network, compile_for_training, dataset_options,
                                      normalization_stats, training_data, wrap_network)

# ----------------------------------------------------------------------------
# Run folder, checkpoints
# ----------------------------------------------------------------------------


class RunCheckpoint(keras.callbacks.Callback):
    """Every epoch: ``checkpoint/last.keras`` (model + optimizer state) and ``state.json``,
    ``best.keras`` when the monitored value improves (every epoch for ``monitor="last"``: no model selection on
    the evaluate split), and early stopping whose counters survive a resume. All writes are atomic."""

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
        if self.best is None or self.monitor == "last":
            return True
        return value > self.best if self.mode == "max" else value < self.best

    def on_epoch_end(self, epoch, logs=None):
        logs = dict(logs or {})
        value = float(epoch + 1) if self.monitor == "last" else logs.get(self.monitor)
        if value is None:
            raise KeyError(f"Early stopping monitors {self.monitor!r} but the epoch logs have {sorted(logs)}.")
        improved = self._improved(value)
        if improved:
            self.best, self.best_epoch, self.wait = float(value), epoch + 1, 0
            with local_batchnorm_config(self.model):
                save_model_atomic(self.model, self.run_dir / runs.BEST)
        else:
            self.wait += 1
        entry = {k: float(v) for k, v in logs.items()}
        entry.update(epoch=epoch + 1, seconds=time.perf_counter() - self._start)
        self.history.append(entry)
        with local_batchnorm_config(self.model):
            save_model_atomic(self.model, self.run_dir / runs.CHECKPOINT)
        stop = self.patience > 0 and self.wait >= self.patience
        write_json_atomic(self.run_dir / runs.STATE, {
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
    ckpt = Path(run_dir) / runs.CHECKPOINT
    state_path = Path(run_dir) / runs.STATE
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
        if not RunFolder(run_dir).exists:
            raise ResumeError(f"{run_dir}: not a run folder (no config.json); check out_dir= and name=.")
        record = run_dir / runs.DISTRIBUTION
        trained = json.loads(record.read_text()) if record.is_file() else {"strategy": "default", "replicas": 1}
        if int(trained["replicas"]) != dist.replicas:
            raise ResumeError(
                f"{run_dir} was trained on {trained['replicas']} replica(s) (strategy {trained['strategy']}); this "
                f"process has {dist.replicas} ({dist.describe()}). The global batch and the learning-rate schedule "
                f"depend on the replica count: resume with --strategy {trained['strategy']} on as many devices.")
        saved = TrainConfig.from_dict(RunFolder(run_dir).config())
        changes = config_changes(saved, cfg)
        if changes:  # a resumed run continues the experiment as it was configured
            raise ResumeError(f"{run_dir} was configured otherwise; resuming it with " + "; ".join(changes)
                              + " would change the experiment. Resume with the run's own settings (dssdn-train "
                              "--resume name=... reads them from its config.json) or start a new run (another name=).")
        cfg = dataclasses.replace(saved, **{k: getattr(cfg, k) for k in RESUME_MAY_CHANGE})
        vocabulary = RunFolder(run_dir).vocabulary()
    else:
        if dist.is_chief and run_dir.exists() and any(run_dir.iterdir()):
            if not RunFolder(run_dir).clear_unstarted():
                raise FileExistsError(f"{run_dir} already exists; resume it with --resume, or choose another name=.")
            if cfg.verbose:
                print(f"{run_dir}: an earlier run of this name stopped before its first epoch ended; starting again.")
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

    ``cfg.strategy`` other than ``default`` trains with ``tf.distribute`` (:mod:`keras_dssdn.train.distribute`):
    ``batch_size`` per replica, the learning rate scaled by ``cfg.lr_scaling``, the model built (or loaded)
    in ``strategy.scope()``; with several workers only the chief writes the run folder. A file that fails to
    decode in the middle of training raises :class:`~keras_dssdn.errors.AudioFormatError` naming it; the
    checkpoints written so far are kept (``resume=True`` continues once the file is fixed).
    """
    from keras_dssdn.data.pipeline import decoding_errors

    with decoding_errors():
        return _train(cfg, resume, callbacks)


def _train(cfg: TrainConfig, resume: bool, callbacks: Sequence[keras.callbacks.Callback]) -> RunResult:
    from keras_dssdn.inference.evaluate import evaluate_model, write_reports
    from keras_dssdn.data.pipeline import make_dataset

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

    if use_mixed_precision(cfg):
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
            stats = RunFolder(run_dir).normalization() if cfg.normalization != "none" else None
        else:
            state, initial_epoch = None, 0
            stats = normalization_stats(run_cfg, train_clips, vocab)
            with dist.scope():
                net = build_network(cfg, len(vocab))
                model = compile_for_training(wrap_network(net, cfg, stats, vocab), run_cfg, steps)
            RunFolder(out_dir).write_setup(cfg.to_dict(), frontend, vocab, stats, getattr(net, "dssdn_config", None))
        if dist.distributed:
            (out_dir / "checkpoint").mkdir(parents=True, exist_ok=True)
            write_json_atomic(out_dir / runs.DISTRIBUTION, record)
            if dist.replicas > 1 and cfg.sync_batchnorm:
                distribute.synchronize_batchnorm(model)
            if dist.workers > 1:
                distribute.patch_for_multiworker(model)

        if initial_epoch >= cfg.epochs or (state or {}).get("stopped_early"):
            if verbose:
                print(f"{run_dir}: already trained to epoch {initial_epoch}; evaluating.")
        else:
            monitor = cfg.monitor if eval_ds is not None or cfg.monitor == "last" else cfg.monitor.replace("val_", "")
            checkpoint = RunCheckpoint(out_dir, monitor, cfg.early_stopping_patience if eval_ds is not None else 0,
                                       state)
            cbs = [_LearningRateLogger(), checkpoint,
                   keras.callbacks.CSVLogger(str(out_dir / runs.LOG), append=resume),
                   keras.callbacks.TensorBoard(str(out_dir / runs.TENSORBOARD), write_graph=False),
                   *callbacks]
            model.fit(train_ds, validation_data=eval_ds, epochs=cfg.epochs, initial_epoch=initial_epoch,
                      callbacks=cbs, verbose=verbose)
            state = json.loads((out_dir / runs.STATE).read_text())

        seconds = float(np.median([h["seconds"] for h in state["history"] if "seconds" in h] or [0.0]))
        if not dist.is_chief:  # the chief evaluates and writes the reports; leave the cluster together
            dist.agree(None)
            return RunResult(run_dir, int(state["epoch"]), state.get("best_epoch"), {}, seconds, chief=False)
        best = keras.models.load_model(run_dir / runs.BEST, compile=False)
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
