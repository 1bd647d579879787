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
        checkpoint/weight_average.npz   the running mean of the last epochs' weights (swa_epochs > 0)
        best.keras           best model on the evaluate split, the last epoch (monitor=last) or the weight
                             average (swa_epochs > 0); normalisation and class names inside
        metrics.json, metrics.md, confusion.png        final evaluation of best.keras

The saved models take raw log-mel maps ``(n_mels, frames, 1)`` from
:func:`keras_dssdn.data.pipeline.training_dataset` and normalise them inside
(:class:`~keras_dssdn.layers.frontend.LogMelNormalization`); their last layer
(:class:`~keras_dssdn.layers.labels.ClassNames`) carries the vocabulary.

Recipe (our choice for small ASC CNNs): AdamW, linear warm-up then cosine
decay, label smoothing, the pipeline's augmentation (mixup, SpecAugment,
Freq-MixStyle), early stopping on the evaluate split's accuracy,
mixed float16 when a GPU is present.
"""

from __future__ import annotations

import contextlib
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
from keras_dssdn.fileio import read_json, save_model_atomic, write_json_atomic
from keras_dssdn.runs import RunFolder
import keras_dssdn.train.distribute as distribute
from keras_dssdn.train.config import RESUME_MAY_CHANGE, TrainConfig, config_changes
from keras_dssdn.train.distribute import local_batchnorm_config
from keras_dssdn.train.recipe import (use_mixed_precision, build_network, compile_for_training, normalization_stats,
                                      pipeline_spec, teacher_targets, training_data, training_options, wrap_network)
from keras_dssdn.train.weight_average import WeightAverage, finish_weight_average

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
            with local_batchnorm_config(self.model), averaged_weights(self.model):
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


@contextlib.contextmanager
def averaged_weights(model: keras.Model):
    """Inside the block the model holds its optimizer's moving average of the trainable weights (``ema_momentum``;
    ``Optimizer.finalize_variable_values``), afterwards its raw weights again; nothing changes without one."""
    optimizer = getattr(model, "optimizer", None)
    optimizer = getattr(optimizer, "inner_optimizer", optimizer)  # under a LossScaleOptimizer (mixed precision)
    if not getattr(optimizer, "use_ema", False):
        yield model
        return
    raw = [v.numpy() for v in model.trainable_variables]
    optimizer.finalize_variable_values(model.trainable_variables)
    try:
        yield model
    finally:
        for variable, value in zip(model.trainable_variables, raw):
            variable.assign(value)


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
        trained = read_json(record, "run folder file", "restore it from a copy of the run", ResumeError) \
            if record.is_file() else {"strategy": "default", "replicas": 1}
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


@dataclasses.dataclass
class _Session:
    """What one training process works with: the configuration (as given and as one optimizer step sees it:
    global batch, scaled learning rate), the strategy, the run folder and the clips."""

    cfg: TrainConfig
    run_cfg: TrainConfig
    dist: "distribute.Distribution"
    run_dir: Path
    out_dir: Path  # the run folder on the chief; a temporary folder on other workers
    verbose: int
    train_clips: object
    eval_clips: object
    vocab: object


def _start(cfg: TrainConfig, resume: bool) -> _Session:
    """Join the strategy's cluster, open the run folder (new or resumed) and list the clips (labels checked)."""
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
    run_cfg = cfg
    if dist.distributed:
        run_cfg = dataclasses.replace(cfg, batch_size=cfg.batch_size * dist.replicas,
                                      learning_rate=cfg.learning_rate * distribute.lr_scale(dist.replicas,
                                                                                             cfg.lr_scaling))
    keras.utils.set_random_seed(cfg.seed)
    train_clips, eval_clips, vocab = training_data(cfg, vocabulary)
    from keras_dssdn.data.subsets import run_subset  # train_subset=5|10|25|50|100 (docs/devices.md)
    train_clips = run_subset(cfg, train_clips, RunFolder(run_dir) if resume else None, cfg.verbose)
    session = _Session(cfg, run_cfg, dist, run_dir, run_dir if dist.is_chief else distribute.worker_dir(dist),
                       cfg.verbose if dist.is_chief else 0, train_clips, eval_clips, vocab)
    if session.verbose:
        print(train_clips.summary())
        if eval_clips is not None:
            print(eval_clips.summary())
    return session


def _run_teacher(s: _Session, targets, resume: bool):
    """The teacher targets of a distilled run: a resumed run reads its own copy of the logits
    (``teacher_logits.npz``, when it has one), so a teacher file changed or moved since cannot change it."""
    if targets is None or not resume:
        return targets
    from keras_dssdn.distill.teacher import TeacherTargets

    targets = TeacherTargets.of_run(RunFolder(s.run_dir), s.cfg.teacher, s.cfg.kd_temperature,
                                    batch_size=s.run_cfg.batch_size, verbose=bool(s.verbose))
    if s.verbose:
        print(f"teacher: {targets.describe_source()}")
    return targets


def _datasets(s: _Session, resume: bool):
    """``(train dataset, evaluate dataset or None, steps per epoch)``, sharded when distributed. A new distilled
    run keeps a copy of the teacher logits it trains on in its folder."""
    from keras_dssdn.data.device_augment import device_augment  # DIR / DSMN (docs/devices.md)
    from keras_dssdn.data.pipeline import evaluation_dataset, training_dataset

    spec = pipeline_spec(s.run_cfg, s.vocab)
    teacher = _run_teacher(s, teacher_targets(s.run_cfg), resume)
    train_ds = training_dataset(s.train_clips, spec, training_options(s.cfg, teacher, device_augment(s.cfg)))
    eval_ds = evaluation_dataset(s.eval_clips, spec) if s.eval_clips is not None else None
    if teacher is not None and not resume and s.dist.is_chief:
        RunFolder(s.out_dir).write_teacher_logits(teacher.logits)
    steps = int(train_ds.cardinality().numpy())
    if s.dist.distributed:
        train_ds = distribute.shard_by_data(train_ds)
        eval_ds = distribute.shard_by_data(eval_ds) if eval_ds is not None else None
    return train_ds, eval_ds, steps


def _model(s: _Session, resume: bool, steps: int):
    """``(compiled model, saved state or None, first epoch)``: restored from the checkpoint, or built (the
    run folder's set-up files are written once the normalisation statistics exist)."""
    if resume:
        with s.dist.scope():
            model, state = load_checkpoint(s.run_dir)
        return model, state, int(state["epoch"])
    stats = normalization_stats(s.run_cfg, s.train_clips, s.vocab)
    with s.dist.scope():
        net = build_network(s.cfg, len(s.vocab))
        model = compile_for_training(wrap_network(net, s.cfg, stats, s.vocab), s.run_cfg, steps)
    if s.cfg.train_subset != 100:
        RunFolder(s.out_dir).write_subset(s.train_clips)
    RunFolder(s.out_dir).write_setup(s.cfg.to_dict(), s.cfg.frontend_params(), s.vocab, stats,
                                     getattr(net, "dssdn_config", None))
    return model, None, 0


def _distribute_model(s: _Session, model, steps: int) -> None:
    """Record the strategy in the run folder; synchronise batch norm; patch Keras for several workers."""
    record = _distribution_record(s.cfg, s.run_cfg, s.dist, steps)
    if s.verbose:
        print(f"Training with {s.dist.describe()}: batch {s.cfg.batch_size} per replica = {s.run_cfg.batch_size} "
              f"global, learning rate {s.cfg.learning_rate:g} x {s.run_cfg.learning_rate / s.cfg.learning_rate:g} "
              f"({s.cfg.lr_scaling}) = {s.run_cfg.learning_rate:g}"
              + (", batch norm synchronised across replicas" if record["sync_batchnorm"] else "") + ".")
    (s.out_dir / "checkpoint").mkdir(parents=True, exist_ok=True)
    write_json_atomic(s.out_dir / runs.DISTRIBUTION, record)
    if s.dist.replicas > 1 and s.cfg.sync_batchnorm:
        distribute.synchronize_batchnorm(model)
    if s.dist.workers > 1:
        distribute.patch_for_multiworker(model)


def _fit(s: _Session, model, train_ds, eval_ds, state: Optional[dict], initial_epoch: int, resume: bool,
         callbacks) -> dict:
    """Train from ``initial_epoch`` to ``cfg.epochs`` (unless done or stopped early); the final state.json."""
    cfg = s.cfg
    if initial_epoch >= cfg.epochs or (state or {}).get("stopped_early"):
        if s.verbose:
            print(f"{s.run_dir}: already trained to epoch {initial_epoch}; evaluating.")
        return _finish_weight_average(s, model, train_ds, state)
    monitor = cfg.monitor if eval_ds is not None or cfg.monitor == "last" else cfg.monitor.replace("val_", "")
    checkpoint = RunCheckpoint(s.out_dir, monitor, cfg.early_stopping_patience if eval_ds is not None else 0, state)
    averaged = [keras.callbacks.SwapEMAWeights()] if cfg.ema_momentum else []  # the evaluate split on the average
    averaged += [WeightAverage(s.out_dir, cfg.epochs, cfg.swa_epochs)] if cfg.swa_epochs else []
    cbs = [*averaged, _LearningRateLogger(), checkpoint,
           keras.callbacks.CSVLogger(str(s.out_dir / runs.LOG), append=resume),
           keras.callbacks.TensorBoard(str(s.out_dir / runs.TENSORBOARD), write_graph=False), *callbacks]
    model.fit(train_ds, validation_data=eval_ds, epochs=cfg.epochs, initial_epoch=initial_epoch, callbacks=cbs,
              verbose=s.verbose, shuffle=False)  # the pipeline shuffles; Keras 3.15 warns about its default True
    return _finish_weight_average(s, model, train_ds, json.loads((s.out_dir / runs.STATE).read_text()))


def _finish_weight_average(s: _Session, model, train_ds, state: dict) -> dict:
    """``swa_epochs``: ``best.keras`` becomes the weight average (batch norm re-estimated), once per run; the
    state records it (``weight_average``). Without weight averaging, ``state`` unchanged."""
    if not s.cfg.swa_epochs or "weight_average" in state:
        return state
    info = state["weight_average"] = finish_weight_average(model, s.out_dir, train_ds)
    if s.verbose:
        print(f"best.keras: the mean of the weights of epochs {info['last_epoch'] - info['epochs_averaged'] + 1}-"
              f"{info['last_epoch']}, batch norm re-estimated on {info['batchnorm_batches']} training batches.")
    write_json_atomic(s.out_dir / runs.STATE, state)
    return state


def _evaluate_best(s: _Session, state: dict) -> dict:
    """Metrics of ``best.keras`` on the evaluate split (with the training summary), written as the run's reports."""
    from keras_dssdn.inference.evaluate import evaluate_model, write_reports

    if s.eval_clips is None:
        return {}
    best = keras.models.load_model(s.run_dir / runs.BEST, compile=False)
    metrics = evaluate_model(best, s.eval_clips, frontend=s.cfg.frontend_params(), clip_seconds=s.cfg.clip_seconds,
                             segment_seconds=s.cfg.segment_seconds, batch_size=s.cfg.batch_size)
    times = [h["seconds"] for h in state.get("history", []) if "seconds" in h]
    metrics["training"] = {"epochs_run": state["epoch"], "best_epoch": state.get("best_epoch"),
                           "stopped_early": state.get("stopped_early", False),
                           "median_seconds_per_epoch": float(np.median(times)) if times else None}
    write_reports(metrics, s.run_dir, title=f"{best.name} on {s.eval_clips.name}")
    return metrics


def _train(cfg: TrainConfig, resume: bool, callbacks: Sequence[keras.callbacks.Callback]) -> RunResult:
    s = _start(cfg, resume)
    if use_mixed_precision(s.cfg):
        keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        train_ds, eval_ds, steps = _datasets(s, resume)
        model, state, initial_epoch = _model(s, resume, steps)
        if s.dist.distributed:
            _distribute_model(s, model, steps)
        state = _fit(s, model, train_ds, eval_ds, state, initial_epoch, resume, callbacks)
        seconds = float(np.median([h["seconds"] for h in state["history"] if "seconds" in h] or [0.0]))
        if not s.dist.is_chief:  # the chief evaluates and writes the reports; leave the cluster together
            s.dist.agree(None)
            return RunResult(s.run_dir, int(state["epoch"]), state.get("best_epoch"), {}, seconds, chief=False)
        metrics = _evaluate_best(s, state)
        if s.dist.workers > 1:
            s.dist.agree(None)
        return RunResult(s.run_dir, int(state["epoch"]), state.get("best_epoch"), metrics, seconds)
    finally:
        keras.mixed_precision.set_global_policy("float32")
        if s.out_dir != s.run_dir:
            distribute.remove_worker_dir(s.out_dir)
