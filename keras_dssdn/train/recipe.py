"""The training recipe: data of a config, the network it names, optimiser and schedule, compile.

Each function takes a :class:`~keras_dssdn.train.config.TrainConfig`; the
trainer, the tuner and distillation build on them.
"""

from __future__ import annotations

import os
from typing import Optional

import keras
import tensorflow as tf

from keras_dssdn.data.datasets import ClipList, read_clips
from keras_dssdn.data.spec import PipelineSpec, TrainingOptions
from keras_dssdn.errors import ConfigError, ResumeError
from keras_dssdn.layers.frontend import NormalizationStats, attach_front_end, compute_normalization_stats
from keras_dssdn.layers.labels import LabelVocabulary
from keras_dssdn.train.config import TrainConfig
from keras_dssdn.train.schedule import WarmupCosine

# ----------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------


def _clips(source: str, split: str, cfg: TrainConfig) -> ClipList:
    if source is None:
        raise ConfigError("No dataset: set data=<DCASE folder or CSV> (or run the demo: python -m keras_dssdn).")
    return read_clips(source, split=split, fold=cfg.fold, skip_missing=cfg.skip_missing)


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
    from keras_dssdn.models.baseline import DCASEBaseline
    from keras_dssdn.models.presets import PRESETS, resolve_config
    from keras_dssdn.models.dssdn import build_dssdn

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


def make_optimizer(cfg: TrainConfig, steps_per_epoch: int) -> keras.optimizers.Optimizer:
    schedule = WarmupCosine(cfg.learning_rate, cfg.epochs * steps_per_epoch, cfg.warmup_epochs * steps_per_epoch,
                            cfg.min_lr_ratio)
    ema = {"use_ema": True, "ema_momentum": float(cfg.ema_momentum)} if cfg.ema_momentum else {}
    if cfg.optimizer == "adamw":
        return keras.optimizers.AdamW(schedule, weight_decay=cfg.weight_decay, **ema)
    if cfg.optimizer == "adam":
        return keras.optimizers.Adam(schedule, **ema)
    return keras.optimizers.SGD(schedule, momentum=0.9, nesterov=True, **ema)


def pipeline_spec(cfg: TrainConfig, vocabulary: LabelVocabulary) -> PipelineSpec:
    """The :class:`~keras_dssdn.data.spec.PipelineSpec` of a config's train and evaluate datasets: front end,
    vocabulary, clip/segment length, one-hot labels, batch size, cache, padding."""
    return PipelineSpec(frontend=cfg.frontend_params(), clip_seconds=cfg.clip_seconds,
                        segment_seconds=cfg.segment_seconds, batch_size=cfg.batch_size, vocabulary=vocabulary,
                        label_mode="one_hot", cache=cfg.cache, pad_short=cfg.pad_short)


def training_options(cfg: TrainConfig, teacher=None, devices=None) -> TrainingOptions:
    """The :class:`~keras_dssdn.data.spec.TrainingOptions` of a config's training set: its seed and augmentation,
    with ``teacher`` (:func:`teacher_targets`) and ``devices`` (device augmentation) where the caller has them."""
    return TrainingOptions(seed=cfg.seed, augment=cfg.augment_config(), teacher=teacher, devices=devices)


def teacher_targets(cfg: TrainConfig):
    """The config's :class:`~keras_dssdn.distill.teacher.TeacherTargets` (one per teacher and temperature in a
    process, so logits computed from teacher runs are computed once), or None without ``teacher=``."""
    if cfg.teacher is None:
        return None
    from keras_dssdn.distill.teacher import TeacherTargets

    return TeacherTargets.shared(cfg.teacher, cfg.kd_temperature, batch_size=cfg.batch_size, verbose=bool(cfg.verbose))


def normalization_stats(cfg: TrainConfig, train_clips: ClipList,
                        vocabulary: LabelVocabulary) -> Optional[NormalizationStats]:
    """Log-mel statistics of the training clips for ``cfg.normalization`` (None when it is ``"none"``);
    decodes the clips once more, uncached."""
    from keras_dssdn.data.pipeline import evaluation_dataset

    if cfg.normalization == "none":
        return None
    stats_ds = evaluation_dataset(train_clips, pipeline_spec(cfg, vocabulary).replace(cache=None))
    return compute_normalization_stats(stats_ds, mode=cfg.normalization)


def wrap_network(net: keras.Model, cfg: TrainConfig, stats: Optional[NormalizationStats],
                 vocabulary: LabelVocabulary) -> keras.Model:
    """``net`` (log-mel in) with the normalisation and class names inside, as the run folders save it."""
    return attach_front_end(net, cfg.frontend_params(), stats, vocabulary.names, waveform_input=False,
                            seconds=input_seconds(cfg), name=net.name)


def compile_for_training(model: keras.Model, cfg: TrainConfig, steps_per_epoch: int) -> keras.Model:
    """Compile with the recipe: :func:`make_optimizer` over ``cfg.epochs``, label-smoothed cross-entropy,
    accuracy; with a teacher, the distillation loss (:class:`~keras_dssdn.distill.loss.DistillationLoss`) and the
    accuracy of the label half of the targets. Returns ``model``."""
    if cfg.teacher is None:
        loss = keras.losses.CategoricalCrossentropy(label_smoothing=cfg.label_smoothing)
        accuracy = keras.metrics.CategoricalAccuracy(name="accuracy")
    else:
        from keras_dssdn.distill.loss import DistillationLoss, LabelAccuracy

        loss = DistillationLoss(cfg.kd_temperature, cfg.kd_weight, cfg.label_smoothing)
        accuracy = LabelAccuracy(name="accuracy")
    model.compile(optimizer=make_optimizer(cfg, steps_per_epoch), loss=loss, metrics=[accuracy],
                  run_eagerly=bool(cfg.run_eagerly))
    # The optimizer's slots made here, eagerly (in the strategy's scope where the caller opened one): left to the
    # first training step, each is created inside the traced function behind an initialisation condition, which
    # more than doubled the time to the first step (41 s to 19 s for a tiny DSSDN-Small with AdamW on 2 CPUs).
    model.optimizer.build(model.trainable_variables)
    return model


def use_mixed_precision(cfg: TrainConfig) -> bool:
    if cfg.mixed_precision == "auto":
        return bool(tf.config.list_physical_devices("GPU"))
    return cfg.mixed_precision == "on"
