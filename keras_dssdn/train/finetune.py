"""Device-specific models (DCASE 2025): fine-tune a trained run's model once per recording device.

:func:`finetune_devices` takes a finished run folder and, for every device present in its training
clips (the ``source_label`` column; the run's ``train_subset`` clips when it has one), starts from the
run's ``best.keras`` and trains a few more epochs on that device's clips only, at a lower learning
rate (``lr_ratio`` x the run's peak, cosine decay, no warm-up, the run's loss and augmentation; no
DIR/DSMN, which would blur the device). Each model is written to ``devices/<NN>_<device>/best.keras``
and ``devices/index.json`` lists them (:mod:`keras_dssdn.runs` owns the layout). The general model
stays the run's ``best.keras`` and answers for devices without a model of their own.

When the run's evaluate split has clips of a device, the general and the fine-tuned model are both
scored on them (per clip) and the index records both accuracies.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from pathlib import Path
from typing import Callable, Optional, Sequence

import keras

from keras_dssdn.errors import ConfigError, DataError
from keras_dssdn.runs import RunFolder


@dataclasses.dataclass(frozen=True)
class FinetuneSettings:
    """``epochs`` per device, learning rate = ``lr_ratio`` x the run's, devices with fewer than ``min_clips``
    training clips are skipped, ``devices`` restricts the list (None: all), ``data`` replaces the run's dataset
    path (a moved folder)."""

    epochs: int = 3
    lr_ratio: float = 0.1
    min_clips: int = 4
    devices: Optional[Sequence[str]] = None
    data: Optional[str] = None
    verbose: int = 1

    def __post_init__(self):
        if self.epochs < 1 or not 0 < self.lr_ratio <= 1 or self.min_clips < 1:
            raise ConfigError(f"fine-tuning needs epochs >= 1, 0 < lr_ratio <= 1 and min_clips >= 1; got epochs="
                              f"{self.epochs}, lr_ratio={self.lr_ratio}, min_clips={self.min_clips}.")


def _run_data(run: RunFolder, settings: FinetuneSettings):
    """``(run config, training clips, evaluate clips or None, vocabulary)`` of the run (its subset if any)."""
    from keras_dssdn.data.subsets import run_subset
    from keras_dssdn.train.config import TrainConfig
    from keras_dssdn.train.recipe import training_data

    saved = run.config()
    if settings.data:
        saved = {**saved, "data": settings.data}
    cfg = TrainConfig.from_dict(saved)
    train, evaluate, vocab = training_data(cfg, run.vocabulary())
    return cfg, run_subset(cfg, train, run), evaluate, vocab


def clips_by_device(clips) -> dict:
    """``{device: ClipList of its clips}`` (clips without a device are left out)."""
    groups = defaultdict(list)
    for i, c in enumerate(clips):
        if c.device:
            groups[c.device].append(i)
    return {d: clips.subset(idx, name=f"{clips.name} device {d}") for d, idx in sorted(groups.items())}


def _finetune_one(general_path: Path, clips, cfg, vocab, settings: FinetuneSettings):
    """The general model trained ``settings.epochs`` more epochs on ``clips``."""
    from keras_dssdn.data.pipeline import decoding_errors, training_dataset
    from keras_dssdn.train.recipe import compile_for_training, pipeline_spec, teacher_targets, training_options

    ft_cfg = dataclasses.replace(cfg, epochs=settings.epochs, warmup_epochs=0,
                                 learning_rate=cfg.learning_rate * settings.lr_ratio)
    ds = training_dataset(clips, pipeline_spec(ft_cfg, vocab), training_options(cfg, teacher_targets(ft_cfg)))
    model = keras.models.load_model(general_path, compile=False)
    compile_for_training(model, ft_cfg, int(ds.cardinality().numpy()))
    with decoding_errors():
        model.fit(ds, epochs=settings.epochs, verbose=2 if settings.verbose > 1 else 0, shuffle=False)  # as trainer
    return model


def _accuracy(model, clips, cfg) -> float:
    from keras_dssdn.inference.evaluate import evaluate_model

    m = evaluate_model(model, clips, frontend=cfg.frontend_params(), clip_seconds=cfg.clip_seconds,
                       segment_seconds=cfg.segment_seconds, batch_size=cfg.batch_size)
    return m["accuracy"]


def finetune_devices(run_dir, settings: Optional[FinetuneSettings] = None, log: Callable = print) -> dict:
    """Fine-tune one model per training device of the run in ``run_dir``; returns the written ``devices/index.json``
    (``{device: {"folder", "train_clips", "epochs", "learning_rate", "eval_clips", "general_accuracy",
    "finetuned_accuracy"}}``). Raises :class:`~keras_dssdn.errors.DataError` when the training data has no
    device column or no device has ``min_clips`` clips, :class:`~keras_dssdn.errors.ConfigError` for a requested
    device that is not in it."""
    from keras_dssdn.fileio import save_model_atomic

    settings = settings or FinetuneSettings()
    run = RunFolder(run_dir)
    general = run.model_path()
    cfg, train, evaluate, vocab = _run_data(run, settings)
    groups = clips_by_device(train)
    if not groups:
        raise DataError(f"{train.name}: no device column (source_label) in the training metadata; device-specific "
                        "models need one.")
    unknown = sorted(set(settings.devices or ()) - set(groups))
    if unknown:
        raise ConfigError(f"devices {unknown} are not in the training data of {run.path} (it has {sorted(groups)}).")
    chosen = {d: c for d, c in groups.items() if (not settings.devices or d in settings.devices)
              and len(c) >= settings.min_clips}
    if not chosen:
        raise DataError(f"no device of {run.path}'s training data has {settings.min_clips} clips or more "
                        f"({ {d: len(c) for d, c in groups.items()} }); lower min_clips.")
    eval_groups = clips_by_device(evaluate) if evaluate is not None else {}
    general_model = None  # loaded once, when a device has evaluate clips: one load and one traced predict step
    index = {}
    for position, (device, clips) in enumerate(chosen.items()):
        log(f"device {device}: fine-tuning on {len(clips)} clips for {settings.epochs} epochs")
        model = _finetune_one(general, clips, cfg, vocab, settings)
        folder = run.device_folder(device, position)
        folder.mkdir(parents=True, exist_ok=True)
        save_model_atomic(model, folder / "best.keras")
        entry = {"folder": folder.name, "train_clips": len(clips), "epochs": settings.epochs,
                 "learning_rate": cfg.learning_rate * settings.lr_ratio, "eval_clips": 0,
                 "general_accuracy": None, "finetuned_accuracy": None}
        if device in eval_groups:
            ev = eval_groups[device]
            if general_model is None:
                general_model = keras.models.load_model(general, compile=False)
            entry.update(eval_clips=len(ev), finetuned_accuracy=_accuracy(model, ev, cfg),
                         general_accuracy=_accuracy(general_model, ev, cfg))
            log(f"device {device}: accuracy on its {len(ev)} evaluate clips {100 * entry['general_accuracy']:.1f} % "
                f"(general) -> {100 * entry['finetuned_accuracy']:.1f} % (fine-tuned)")
        index[device] = entry
    skipped = sorted(set(groups) - set(chosen))
    if skipped:
        log(f"no fine-tuned model for {skipped} (fewer than {settings.min_clips} clips or not requested): the "
            "general model answers for them")
    run.write_device_index(index)
    return index
