"""The export's clips: which splits, which label vocabulary, and the training pipeline's datasets over them.

Every dataset here is :func:`keras_dssdn.data.pipeline.evaluation_dataset` (or ``training_dataset``) with the
model's front end, normalisation and segment length, so calibration, evaluation and QAT see exactly what
training saw: no shuffling, no augmentation (batches ``(x, y, metadata)``, ``x`` normalised log-mel
``(B, n_mels, frames, 1)``, ``y`` class ids ``(B,)``), or for QAT shuffled and augmented like the run.
The evaluate split is decoded once (:func:`decode_once`): its examples and its waveforms, the latter for the C
front end's host check.
"""

from __future__ import annotations

import dataclasses
from typing import Optional, Tuple

import numpy as np

from keras_dssdn.data.spec import PipelineSpec, TrainingOptions
from keras_dssdn.deploy.prepare import PreparedModel
from keras_dssdn.deploy.settings import DataSettings, QATSettings
from keras_dssdn.errors import ConfigError, ExportError
from keras_dssdn.utils.arrays import evenly_spaced


@dataclasses.dataclass(frozen=True)
class DataSources:
    """The splits an export reads (a ClipList, a DCASE folder or a CSV; None when not given), its fold,
    the clip length (seconds; None: the front end's) and the label vocabulary (None without clips)."""

    train: object = None
    evaluate: object = None
    fold: int = 1
    clip_seconds: Optional[float] = None
    vocabulary: object = None

    def clips(self, split: str):
        """The ClipList of ``split`` (``"train"`` or ``"evaluate"``), by :func:`keras_dssdn.data.datasets.read_clips`."""
        from keras_dssdn.data.datasets import read_clips

        return read_clips(self.train if split == "train" else self.evaluate, split=split, fold=self.fold)


def resolve_sources(prep: PreparedModel, settings: DataSettings) -> Tuple[PreparedModel, DataSources]:
    """The splits and the vocabulary: the model's class names, else the train split's labels (then the
    returned model carries them). Raises ExportError when the data's classes do not fit the model."""
    train = settings.train_data if settings.train_data is not None else settings.data
    evaluate = settings.eval_data if settings.eval_data is not None else settings.data
    sources = DataSources(train, evaluate, settings.fold, settings.clip_seconds)
    if train is None and evaluate is None:
        return prep, sources
    from keras_dssdn.data.datasets import read_clips
    from keras_dssdn.layers.labels import LabelVocabulary

    if prep.class_names is not None:
        vocab = LabelVocabulary(prep.class_names)
    else:
        train_clips = read_clips(train if train is not None else evaluate, split="train", fold=settings.fold)
        vocab = train_clips.vocabulary()
        prep = dataclasses.replace(prep, class_names=list(vocab.names), sources={
            **prep.sources, "class_names": f"labels of {train_clips.name or 'the training split'}"})
    if len(vocab) != prep.num_classes:
        raise ExportError(f"The data has {len(vocab)} classes {list(vocab.names)} but the model has "
                          f"{prep.num_classes} outputs; export with the dataset the model was trained on.")
    return prep, dataclasses.replace(sources, vocabulary=vocab)


def clip_length(prep: PreparedModel, sources: DataSources) -> float:
    """Seconds every clip is cropped / padded to."""
    return prep.frontend.clip_seconds if sources.clip_seconds is None else float(sources.clip_seconds)


def export_pipeline_spec(prep: PreparedModel, sources: DataSources, batch_size: int = 32) -> PipelineSpec:
    """The :class:`~keras_dssdn.data.spec.PipelineSpec` of the export's data: the model's front end, segment length
    and normalisation, the sources' clip length and vocabulary, integer labels, no cache."""
    clip_s, seg = clip_length(prep, sources), prep.segment_seconds
    if seg > clip_s + 1e-9:
        raise ExportError(f"The model takes {seg:g} s but clips are cut to {clip_s:g} s; pass --seconds >= {seg:g}.")
    return PipelineSpec(frontend=prep.frontend, clip_seconds=clip_s,
                        segment_seconds=None if abs(seg - clip_s) < 1e-9 else seg, batch_size=batch_size,
                        vocabulary=sources.vocabulary, label_mode="int", cache=None, normalization=prep.normalization)


def pipeline_dataset(prep: PreparedModel, clips, sources: DataSources, options: Optional[TrainingOptions] = None):
    """``(dataset, segments per clip)`` of ``clips`` through the training pipeline (see the module doc): the
    evaluation form with metadata, or with ``options`` (:class:`~keras_dssdn.data.spec.TrainingOptions`, for QAT)
    shuffled and augmented like training, soft labels with mixup, ``y`` ``(B, 2 K)`` with a teacher."""
    from keras_dssdn.data.pipeline import evaluation_dataset, training_dataset

    spec = export_pipeline_spec(prep, sources)
    if options is None:
        return evaluation_dataset(clips, spec, with_metadata=True), spec.segments_per_clip
    return training_dataset(clips, spec.replace(label_mode=None), options), spec.segments_per_clip


def evaluation_clips(settings: DataSettings, sources: DataSources) -> Tuple[object, int]:
    """``(ClipList of the evaluate split or None, clips in the whole split)``: ``eval_limit`` clips spread over
    the split when set; None when ``settings.evaluation`` replaces the split or there is none."""
    if settings.evaluation is not None or sources.evaluate is None:
        return None, 0
    clips = sources.clips("evaluate")
    total = len(clips)
    if settings.eval_limit:
        clips = clips.subset(list(evenly_spaced(total, settings.eval_limit)))
    return clips, total


#: Clips decoded per step of the export's one pass over the evaluate split.
DECODE_BATCH = 16


def evaluation_set(prep: PreparedModel, settings: DataSettings,
                   sources: DataSources) -> Tuple[object, Optional[np.ndarray], Optional[dict]]:
    """``(evaluation data or None, waveforms or None, report entry)``: the given ``evaluation`` (no waveforms),
    else the evaluate split (``eval_limit`` clips spread over it, when set), **each clip decoded once**
    (:func:`decode_once`): the arrays ``(x (N, n_mels, frames, 1) float32, class ids (N,), clip index (N,))`` that
    the metrics and TFLM-vs-reference steps read, and the clips' waveforms ``(clips, samples)`` that the C front
    end's host check reads."""
    if settings.evaluation is not None:
        return settings.evaluation, None, {"source": "given"}
    clips, total = evaluation_clips(settings, sources)
    if clips is None:
        return None, None, None
    spec = export_pipeline_spec(prep, sources)
    examples, waveforms = decode_once(clips, spec)
    return examples, waveforms, {"source": f"{clips.name or 'evaluate split'}", "clips": len(clips),
                                 "segments_per_clip": spec.segments_per_clip, "limited": bool(settings.eval_limit),
                                 "of_clips": total}


def decode_once(clips, spec: PipelineSpec) -> Tuple[Tuple[np.ndarray, np.ndarray, np.ndarray], np.ndarray]:
    """``((x, class ids, clip index), waveforms)`` of ``clips`` from one decode of each: the pipeline's loader
    (decode, mono, resample, crop / pad) writes the clips' float32 waveforms ``(clips, spec.clip_samples)`` into a
    memory-mapped temporary file in ``$TMPDIR`` (4 B per sample: 141 ten-second clips at 44.1 kHz are 249 MB;
    refused up front when the folder lacks the room; freed with the array), which
    :func:`keras_dssdn.data.pipeline.features_of_waveforms` turns into the evaluation examples, equal to
    :func:`~keras_dssdn.data.pipeline.evaluation_dataset`'s ``x`` bit for bit. ``x`` per segment, in clip order."""
    import tempfile

    from keras_dssdn.data.pipeline import decoding_errors, evaluation_dataset, features_of_waveforms

    decoded = evaluation_dataset(clips, spec.replace(output="waveform", segment_seconds=None, normalization=None,
                                                     batch_size=DECODE_BATCH))
    shape = (len(clips), spec.clip_samples)
    _check_scratch_space(4 * shape[0] * shape[1])
    waveforms = np.memmap(tempfile.TemporaryFile(prefix="dssdn_waveforms_"), np.float32, "w+", shape=shape)
    labels, start = [], 0
    with decoding_errors():
        for w, y in decoded:
            waveforms[start:start + len(w)] = w.numpy()
            labels.append(y.numpy())
            start += len(w)
    x = features_of_waveforms(waveforms, spec)
    per_clip = spec.segments_per_clip
    clip_index = np.repeat(np.arange(len(clips), dtype=np.int32), per_clip)
    return (x, np.repeat(np.concatenate(labels), per_clip), clip_index), waveforms


def _check_scratch_space(nbytes: int) -> None:
    """Refuse, before decoding, a waveform file the temporary folder has no room for (a memory map written past a
    full disk kills the process without a message)."""
    import shutil
    import tempfile

    folder = tempfile.gettempdir()
    free = shutil.disk_usage(folder).free
    if free < nbytes + (64 << 20):
        raise ExportError(f"The evaluate split's waveforms need {nbytes / 2**20:,.0f} MiB in the temporary folder "
                          f"{folder}, which has {free / 2**20:,.0f} MiB free; point TMPDIR at a folder with room, or "
                          "export with --eval-limit N (fewer clips).")


def qat_augment(choice, run_config: Optional[dict]):
    """AugmentConfig for QAT (None: no augmentation): ``"run"`` = the training run's (when its config has one),
    ``"none"``, a dict or an AugmentConfig."""
    from keras_dssdn.data.augment import AugmentConfig

    run_config = run_config or {}
    if choice is None or choice == "none" or (choice == "run" and "augment" not in run_config):
        return None
    if choice == "run":
        choice = run_config.get("augment") or {}
    if isinstance(choice, dict):
        choice = AugmentConfig(**choice)
    if not isinstance(choice, AugmentConfig):
        raise ConfigError(f"QAT augment must be 'run', 'none', a dict or an AugmentConfig, got {choice!r}.")
    return choice if choice.any else None


def qat_training_data(prep: PreparedModel, qat: QATSettings,
                      sources: DataSources) -> Tuple[object, dict, Optional[dict]]:
    """``(training data, run_qat options, distillation record or None)`` for quantisation-aware training.

    ``qat.train`` when given; else the train split, with the run's augmentation
    (a freshly augmented pass per epoch: ``epoch -> dataset``) and label
    smoothing unless ``options["augment"]`` says otherwise.
    """
    options = dict(qat.options or {})
    choice = options.pop("augment", "run")
    distill = options.pop("distill", "run")
    if qat.train is not None:
        return qat.train, options, None
    if sources.train is None:
        raise ExportError("QAT needs training data: pass data= (a DCASE folder) or qat_train=(x, y).")
    run_config = prep.run_config or {}
    options.setdefault("label_smoothing", float(run_config.get("label_smoothing") or 0.0))
    clips = sources.clips("train")
    augment = qat_augment(choice, run_config)
    teacher, record = qat_teacher(distill, prep)
    if augment is None and teacher is None:
        return pipeline_dataset(prep, clips, sources)[0], options, None
    if teacher is not None:
        from keras_dssdn.data.augment import AugmentConfig

        augment = augment or AugmentConfig.off()  # training=True carries the teacher targets; nothing augmented

    def fresh_pass(epoch: int):
        ds = pipeline_dataset(prep, clips, sources, TrainingOptions(seed=1000 + epoch, augment=augment,
                                                                    teacher=teacher))[0]
        return ds if teacher is None else ds.map(lambda x, y: (x, distillation_targets(y, record["kd_weight"])))

    return fresh_pass, options, record


def qat_teacher(choice, prep: PreparedModel) -> Tuple[object, Optional[dict]]:
    """``(TeacherTargets at T = 1, record {"kd_weight", "temperature", "teacher"})`` for QAT, or ``(None, None)``:
    with ``choice="run"`` (the default) a model from a distilled run is fine-tuned towards the teacher too
    (:meth:`~keras_dssdn.distill.teacher.TeacherTargets.of_run`: the run's copy of its teacher logits, else the
    teacher its config names); ``"none"``: labels only."""
    if choice not in ("run", "none", None):
        raise ConfigError(f"QAT distill must be 'run' or 'none', got {choice!r}.")
    run_config = prep.run_config or {}
    if choice in ("none", None) or not run_config.get("teacher"):
        return None, None
    from keras_dssdn.distill.teacher import TeacherTargets
    from keras_dssdn.runs import find_run

    run = find_run(prep.source) if prep.source and prep.source != "<in memory>" else None
    teacher = TeacherTargets.of_run(run, run_config["teacher"], 1.0)
    return teacher, {"kd_weight": float(run_config["kd_weight"]), "temperature": 1.0,
                     "teacher": teacher.describe_source()}


def distillation_targets(y, kd_weight: float):
    """QAT's targets from distilled training's ``y`` ``(B, 2 K)`` (labels, teacher probabilities at T = 1):
    ``(1 - kd_weight) * labels + kd_weight * teacher`` ``(B, K)``. QAT minimises cross-entropy to these, which is
    the distillation loss at T = 1 (the KL term up to the teacher's entropy, a constant)."""
    import tensorflow as tf

    k = tf.shape(y)[-1] // 2
    return (1.0 - kd_weight) * y[:, :k] + kd_weight * y[:, k:]
