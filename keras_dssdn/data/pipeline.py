"""``tf.data`` pipeline: clips -> batched ``(log-mel, label)`` for training and evaluation.

:func:`training_dataset` and :func:`evaluation_dataset` build, for a
:class:`~keras_dssdn.data.datasets.ClipList` (or a DCASE folder / CSV path) and one
:class:`~keras_dssdn.data.spec.PipelineSpec` (plus :class:`~keras_dssdn.data.spec.TrainingOptions` for a
training set)::

    file list -> read + decode + down-mix + resample + crop/pad   (parallel map, TF ops)
              -> [cut into segments]                               (1-s DCASE 2022+ setting)
              -> log-mel                                           (parallel map, TF ops)
              -> cache (memory or file)                            (later epochs skip all above)
              -> [shuffle] -> batch -> [augment] -> [normalise] -> prefetch

and yields ``x`` float32 ``(B, n_mels, frames, 1)`` (or waveforms
``(B, samples)`` with ``spec.output="waveform"``, for a model whose first layer is
:class:`~keras_dssdn.layers.frontend.LogMel`), ``y`` int32 class ids ``(B,)`` or
one-hot / soft labels ``(B, classes)``, and with ``with_metadata=True`` a dict
of per-example metadata (file, device, identifier, clip_index,
segment_index). Unlabelled clips get id -1 (an all-zero one-hot row).

Before any tensor is built every file is checked (header probe, length,
labels), so bad input fails with a named file before training starts.
:func:`make_dataset` (23 keyword arguments) is the deprecated form of the two entry points, kept for one release.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import os
from typing import NamedTuple, Optional, Sequence, Union

import numpy as np
import tensorflow as tf

from keras_dssdn import audio as audio_ops
from keras_dssdn.data.augment import AugmentConfig, augment_batch, batch_seeds
from keras_dssdn.data.datasets import ClipList, read_clips
from keras_dssdn.errors import AudioFormatError, DataError, ShortClipError, UnsupportedAudioError
from keras_dssdn.layers.frontend import NormalizationStats, log_mel_spectrogram
from keras_dssdn.layers.frequency import split_point
from keras_dssdn.layers.labels import LabelVocabulary
from keras_dssdn.data.spec import LABEL_MODES, OUTPUTS, PipelineSpec, TrainingOptions
from keras_dssdn.params import DEFAULT_FRONTEND, FrontEndParams

#: A clip may be this much shorter (fraction of the target length) than the
#: crop and still be zero-padded silently.
SHORT_CLIP_TOLERANCE = 0.01

def cpu_count() -> int:
    """CPU cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def probe_clips(clips: ClipList, workers: int = 8) -> list:
    """:class:`~keras_dssdn.audio.decode.AudioInfo` of every clip (threaded header reads).

    Raises one :class:`~keras_dssdn.errors.AudioFormatError` (or
    ``UnsupportedAudioError`` when that is all there is) that counts and
    names the unreadable files with their metadata rows.
    """
    def probe(clip):
        try:
            return audio_ops.probe_audio(clip.path), None
        except (DataError, OSError) as e:
            return None, e

    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(probe, clips.clips))
    bad = [(c, e) for c, (_, e) in zip(clips.clips, results) if e is not None]
    if bad:
        shown = " | ".join(f"{c.where}: {e}" if c.where else str(e) for c, e in bad[:5])
        more = f" | ... and {len(bad) - 5} more" if len(bad) > 5 else ""
        cls = UnsupportedAudioError if all(isinstance(e, UnsupportedAudioError) for _, e in bad) else AudioFormatError
        raise cls(f"{len(bad)} of {len(clips)} audio files of {clips.name or 'the dataset'} cannot be read: {shown}{more}")
    return [info for info, _ in results]


def _check_finite(clips, infos) -> None:
    """Refuse float WAVs holding NaN or infinite samples, naming them (before any decoding in TensorFlow)."""
    bad = [(c, n) for c, i in zip(clips, infos) if (n := audio_ops.count_non_finite(i))]
    if bad:
        shown = "; ".join(f"{c.filename} ({c.where}): {n} samples" for c, n in bad[:5])
        more = f"; and {len(bad) - 5} more files" if len(bad) > 5 else ""
        raise AudioFormatError(f"{len(bad)} of {len(clips)} audio files of {clips.name or 'the dataset'} hold NaN or "
                               f"infinite samples: {shown}{more}. Re-export them or remove their rows.")


@contextlib.contextmanager
def decoding_errors():
    """Turn a decoding error that TensorFlow raises while a dataset is iterated (a FLAC file corrupt in its middle,
    a truncated WAV: the op's message names the file) into an :class:`~keras_dssdn.errors.AudioFormatError`."""
    try:
        yield
    except tf.errors.InvalidArgumentError as e:
        lines = [line.strip() for line in str(e.message).splitlines() if line.strip()]
        useful = [line for line in lines if "corrupt" in line.lower() or "decoded" in line.lower()
                  or line.lower().endswith((".wav", ".flac"))] or lines[:1]
        raise AudioFormatError("Decoding failed while reading the data: " + " ".join(useful)[:600]
                               + " - re-download or convert the file, or remove its row.") from None


def _check_lengths(clips, infos, target_samples, sample_rate, pad_short):
    short = []
    for clip, info in zip(clips, infos):
        if info.frames is None:
            continue
        have = audio_ops.resampled_length(info.frames, info.sample_rate, sample_rate)
        if have < target_samples * (1.0 - SHORT_CLIP_TOLERANCE):
            short.append((clip, info))
    if short and not pad_short:
        need = target_samples / sample_rate
        shown = "; ".join(f"{c.filename} ({c.where}) is {i.duration:.3f} s" for c, i in short[:5])
        more = f"; and {len(short) - 5} more" if len(short) > 5 else ""
        shortest = min(i.duration for _, i in short)
        raise ShortClipError(
            f"{len(short)} of {len(clips)} clips are shorter than the {need:g} s the pipeline crops to: "
            f"{shown}{more}. Pass pad_short=true (a training config key; PipelineSpec(pad_short=True) in Python) to zero-pad "
            f"them, set clip_seconds to at most "
            f"{shortest:g}, or remove them from the metadata."
        )
    return len(short)


def training_dataset(clips: Union[ClipList, str], spec: PipelineSpec = PipelineSpec(),
                     options: TrainingOptions = TrainingOptions(), *, with_metadata: bool = False) -> tf.data.Dataset:
    """Batched, shuffled (seeded, a new order every epoch) and augmented ``(x, y)`` for training.

    Args:
      clips: a :class:`ClipList`, or a DCASE root folder (its fold-1 train split) or a ``path,label`` CSV file.
      spec: the :class:`~keras_dssdn.data.spec.PipelineSpec` shared with the evaluation set.
      options: the seed, augmentation, teacher targets and device augmentation
        (:class:`~keras_dssdn.data.spec.TrainingOptions`).
      with_metadata: also yield the per-example metadata dict (:data:`METADATA_KEYS`).

    Yields ``x`` float32 ``(B, n_mels, frames, 1)`` (or ``(B, samples)``), ``y`` int32 ``(B,)`` or float32
    ``(B, classes)`` (``(B, 2 * classes)`` with a teacher: labels, then teacher targets). Raises
    :class:`~keras_dssdn.errors.DataError` subclasses naming the file / row for missing, unreadable, too short,
    unlabelled or non-finite audio.
    """
    return _build(read_clips(clips), spec, options, training=True, with_metadata=with_metadata)


def evaluation_dataset(clips: Union[ClipList, str], spec: PipelineSpec = PipelineSpec(), *,
                       with_metadata: bool = False) -> tf.data.Dataset:
    """Batched ``(x, y)`` (``(x, y, metadata)`` with ``with_metadata``) in ClipList order, nothing random.

    ``clips`` and ``spec`` as :func:`training_dataset`; unlabelled clips get id -1 (an all-zero one-hot row, which
    needs ``spec.vocabulary``). Give ``spec.vocabulary`` the training vocabulary.
    """
    return _build(read_clips(clips), spec, TrainingOptions(), training=False, with_metadata=with_metadata)


def make_dataset(data: Union[ClipList, str], frontend: Optional[FrontEndParams] = None, *, training: bool = False,
                 split: str = "train", fold: int = 1, skip_missing: bool = False, with_metadata: bool = False,
                 **settings) -> tf.data.Dataset:
    """Deprecated (kept for one release): :func:`training_dataset` / :func:`evaluation_dataset` with a
    :class:`~keras_dssdn.data.spec.PipelineSpec`. ``settings`` are the fields of ``PipelineSpec`` and, for
    ``training=True``, of :class:`~keras_dssdn.data.spec.TrainingOptions` (``augment``, ``teacher``, ``devices``,
    ``seed``, ``shuffle_buffer``; ignored for an evaluation set, as before)."""
    import warnings

    warnings.warn("keras_dssdn make_dataset is deprecated: use training_dataset(clips, PipelineSpec(...), "
                  "TrainingOptions(...)) or evaluation_dataset(clips, PipelineSpec(...)) (docs/pipeline.md).",
                  DeprecationWarning, stacklevel=2)
    option_names = {f.name for f in dataclasses.fields(TrainingOptions)}
    options = {k: settings.pop(k) for k in list(settings) if k in option_names}
    unknown = set(settings) - {f.name for f in dataclasses.fields(PipelineSpec)}
    if unknown:
        raise TypeError(f"make_dataset() got unexpected keyword argument(s) {sorted(unknown)}.")
    spec = PipelineSpec(frontend=frontend or DEFAULT_FRONTEND, **settings)
    clips = read_clips(data, split=split, fold=fold, skip_missing=skip_missing)
    if training:
        return training_dataset(clips, spec, TrainingOptions(**options), with_metadata=with_metadata)
    return evaluation_dataset(clips, spec, with_metadata=with_metadata)


class CheckedClips(NamedTuple):
    """Clips that passed every check, ready to become a dataset (:func:`check_clips`)."""

    table: dict  # per-clip arrays (tf.data slices): where the audio is, its encoding, label, metadata[, teacher]
    infos: list  # AudioInfo per clip
    vocabulary: Optional[LabelVocabulary]
    label_mode: str  # "int" | "one_hot"
    augment: Optional[AugmentConfig]  # None when nothing is augmented
    examples: int  # clips x segments per clip


def check_clips(clips: ClipList, spec: PipelineSpec, options: TrainingOptions, training: bool) -> CheckedClips:
    """Every file probed and checked (readable, finite, long enough), labels encoded, teacher targets looked up,
    before any tensor is built."""
    if len(clips) == 0:
        raise DataError(
            f"{clips.name or 'The dataset'} has no clips"
            + (f" ({len(clips.skipped)} missing files were skipped)" if clips.skipped else "")
            + ". Check the metadata and the audio folder.")
    augment = options.augment if (training and options.augment is not None and options.augment.any) else None
    if augment is not None and spec.output != "logmel":
        raise ValueError("Augmentation works on log-mel maps: use output='logmel'.")
    teacher = options.teacher if training else None
    label_mode = _label_mode(spec.label_mode or ("one_hot" if teacher is not None else None), augment)
    vocab, label_ids = _encode_labels(clips, spec.vocabulary, training, label_mode)
    infos = probe_clips(clips)
    _check_finite(clips, infos)
    _check_lengths(clips, infos, spec.clip_samples, spec.frontend.sample_rate, spec.pad_short)
    table = _clip_table(clips, infos, label_ids)
    if teacher is not None:
        table[TEACHER] = _teacher_table(teacher, clips, vocab, label_mode, spec.seconds, spec.segment_seconds,
                                        spec.segments_per_clip)
    return CheckedClips(table, infos, vocab, label_mode, augment, len(clips) * spec.segments_per_clip)


def _build(clips: ClipList, spec: PipelineSpec, options: TrainingOptions, training: bool,
           with_metadata: bool) -> tf.data.Dataset:
    """The pipeline of the module doc for checked clips: examples, then batches."""
    checked = check_clips(clips, spec, options, training)
    ds = _examples(tf.data.Dataset.from_tensor_slices(checked.table), checked, spec, options, training)
    return _batches(ds, checked, spec, options, training, with_metadata)


def _examples(ds: tf.data.Dataset, checked: CheckedClips, spec: PipelineSpec, options: TrainingOptions,
              training: bool) -> tf.data.Dataset:
    """Clip table rows -> cached ``(x, metadata)`` examples: decoded, [device-augmented], [segmented], log-mel."""
    p, calls = spec.frontend, spec.num_parallel_calls or cpu_count()
    if training and spec.cache is None:  # cheap full shuffle of the file list
        ds = ds.shuffle(len(checked.infos), seed=options.seed, reshuffle_each_iteration=True)
    ds = ds.map(_loader(p, checked.infos, spec.clip_samples), num_parallel_calls=calls)
    logmel_cache = spec.cache
    if training and options.devices is not None:  # DIR: the waveforms are cached and convolved every epoch
        ds, logmel_cache = options.devices.waveform_stage(ds, spec.cache, _cached, options.seed, calls)
    return _cached(_featurised(ds, spec, calls, checked.examples), logmel_cache)


def _featurised(ds: tf.data.Dataset, spec: PipelineSpec, calls: int, examples: int) -> tf.data.Dataset:
    """``(clip waveform, metadata)`` -> [its segments] -> [log-mel] examples, one example per map call."""
    if spec.segment_samples is not None:
        ds = ds.map(_segmenter(spec.segment_samples), num_parallel_calls=calls).unbatch()
        ds = ds.apply(tf.data.experimental.assert_cardinality(examples))
    if spec.output == "logmel":
        ds = ds.map(lambda x, m: (log_mel_spectrogram(x, spec.frontend), m), num_parallel_calls=calls)
    return ds


def features_of_waveforms(waveforms: np.ndarray, spec: PipelineSpec) -> np.ndarray:
    """The ``x`` that :func:`evaluation_dataset` yields for clips already decoded, bit for bit (the same maps).

    ``waveforms``: float32 ``(clips, spec.clip_samples)`` (an array or a ``np.memmap``, read one clip at a time),
    as ``evaluation_dataset`` yields them with ``output="waveform", segment_seconds=None``. Returns float32
    ``(clips * spec.segments_per_clip, n_mels, frames, 1)`` in clip order, normalised with ``spec.normalization``:
    an export featurises the clips it decoded once for its other checks
    (:func:`keras_dssdn.deploy.export_data.decode_once`).
    """
    if waveforms.ndim != 2 or waveforms.shape[1] != spec.clip_samples:
        raise ValueError(f"waveforms must be (clips, {spec.clip_samples}), got shape {waveforms.shape}")
    if len(waveforms) == 0:
        return np.zeros((0,), np.float32)

    def clips():
        for row in waveforms:
            yield np.asarray(row, np.float32), {"segment_index": np.int32(0)}

    signature = (tf.TensorSpec([spec.clip_samples], tf.float32), {"segment_index": tf.TensorSpec([], tf.int32)})
    ds = tf.data.Dataset.from_generator(clips, output_signature=signature)
    ds = ds.apply(tf.data.experimental.assert_cardinality(len(waveforms)))
    calls = spec.num_parallel_calls or cpu_count()
    ds = _featurised(ds, spec, calls, len(waveforms) * spec.segments_per_clip).batch(spec.batch_size)
    ds = ds.map(lambda x, m: x)
    if spec.normalization is not None:
        ds = ds.map(spec.normalization.apply)
    return np.concatenate([x.numpy() for x in ds])


def _batches(ds: tf.data.Dataset, checked: CheckedClips, spec: PipelineSpec, options: TrainingOptions,
             training: bool, with_metadata: bool) -> tf.data.Dataset:
    """Examples -> [shuffled] batches with labels, [augmented], [normalised], prefetched."""
    calls = spec.num_parallel_calls or cpu_count()
    if training:
        n = checked.examples
        buffer = options.shuffle_buffer or (n if spec.cache == "memory" else min(n, 2048))
        ds = ds.shuffle(buffer, seed=options.seed, reshuffle_each_iteration=True)
    ds = ds.batch(spec.batch_size, drop_remainder=spec.drop_remainder, num_parallel_calls=calls)
    vocab = checked.vocabulary
    ds = ds.map(_labeller(checked.label_mode, len(vocab) if vocab is not None else 0))
    if checked.augment is not None:
        augment = checked.augment
        ds = tf.data.Dataset.zip((ds, batch_seeds(options.seed + 1)))
        ds = ds.map(lambda b, s: augment_batch(b[0], b[1], augment, s) + (b[2],), num_parallel_calls=calls)
    if training and options.devices is not None:
        ds = options.devices.batch_stage(ds, options.seed, calls)
    if spec.normalization is not None:
        ds = ds.map(lambda x, y, m: (spec.normalization.apply(x), y, m))
    if with_metadata:
        return ds.map(lambda x, y, m: (x, y, {k: m[k] for k in METADATA_KEYS})).prefetch(tf.data.AUTOTUNE)
    return ds.map(lambda x, y, m: (x, y)).prefetch(tf.data.AUTOTUNE)


#: The per-example metadata ``make_dataset(..., with_metadata=True)`` yields.
METADATA_KEYS = ("file", "device", "identifier", "clip_index", "segment_index")
_TABLE_META = ("label", "clip_index", "file", "device", "identifier")
#: The clip-table column of teacher targets ``(segments, classes)`` (knowledge distillation).
TEACHER = "teacher"


def _teacher_table(teacher, clips: ClipList, vocab, label_mode: str, clip_seconds: float,
                   segment_seconds: Optional[float], n_segments: int) -> np.ndarray:
    """The teacher targets of every clip in ClipList order, ``(clips, n_segments, classes)`` float32 (checked by
    the teacher: classes, segment layout, dataset, missing clips)."""
    if label_mode != "one_hot":
        raise ValueError("Teacher targets travel with one-hot labels: use label_mode='one_hot' (or None).")
    return teacher.targets(clips, vocab, n_segments=n_segments, segment_seconds=segment_seconds,
                           clip_seconds=clip_seconds)


def _label_mode(label_mode: Optional[str], augment) -> str:
    """One-hot when mixup makes soft labels, else integer ids (unless the caller chose)."""
    if label_mode is None:
        label_mode = "one_hot" if augment is not None and augment.uses_mixup else "int"
    if label_mode not in LABEL_MODES:
        raise ValueError(f"label_mode must be one of {LABEL_MODES}, got {label_mode!r}.")
    if augment is not None and augment.uses_mixup and label_mode != "one_hot":
        raise ValueError("mixup makes soft labels: use label_mode='one_hot' (or None).")
    return label_mode


def _encode_labels(clips: ClipList, vocabulary, training: bool, label_mode: str):
    """``(vocabulary, label ids (clips,) int32)``, checked before any audio is touched (-1: unlabelled)."""
    labelled = [c.label is not None for c in clips]
    if any(labelled) and not all(labelled):
        first = next(c for c in clips if c.label is None)
        raise DataError(f"{first.where}: {first.filename!r} has no label while other clips do. Label it or remove the row.")
    if all(labelled):
        vocab = vocabulary or clips.vocabulary()
        return vocab, vocab.encode(clips.labels, [f"{c.where} ({c.filename})" for c in clips])
    if training:
        raise DataError(f"{clips.name or 'The dataset'} has no labels; a training set needs them.")
    if label_mode == "one_hot" and not vocabulary:
        raise DataError("label_mode='one_hot' needs a vocabulary for unlabelled clips: pass vocabulary=.")
    return vocabulary, np.full(len(clips), -1, np.int32)


def _clip_table(clips: ClipList, infos: list, label_ids: np.ndarray) -> dict:
    """One row per clip: where its audio is, how it is encoded, its label and metadata (tf.data slices)."""
    return {
        "path": np.array([i.path for i in infos]),
        "encoding": np.array([i.encoding_code for i in infos], np.int32),
        "offset": np.array([i.data_offset for i in infos], np.int64),
        "nbytes": np.array([i.data_bytes for i in infos], np.int64),
        "channels": np.array([i.channels for i in infos], np.int32),
        "rate": np.array([i.sample_rate for i in infos], np.int32),
        "frames": np.array([-1 if i.frames is None else i.frames for i in infos], np.int64),
        "label": label_ids,
        "clip_index": np.arange(len(clips), dtype=np.int32),
        "file": np.array([c.filename for c in clips]),
        "device": np.array([c.device or "" for c in clips]),
        "identifier": np.array([c.identifier or "" for c in clips]),
    }


def _loader(p: FrontEndParams, infos: list, clip_samples: int):
    """The tf.data map: a table row -> ``(mono waveform (clip_samples,) at p.sample_rate, metadata)``."""
    rates = sorted({i.sample_rate for i in infos})
    encodings = sorted({i.encoding_code for i in infos})

    def load(e):
        x = audio_ops.decode_audio(tf.io.read_file(e["path"]), e["encoding"], e["offset"], e["nbytes"],
                                   e["channels"], e["path"], encodings=encodings)
        ok = tf.logical_or(e["frames"] < 0, tf.equal(tf.cast(tf.shape(x)[0], tf.int64), e["frames"]))
        check = tf.debugging.Assert(ok, ["Decoded", tf.shape(x)[0], "samples instead of", e["frames"], "from",
                                         e["path"], "- the file is corrupt: re-download it or remove its row."])
        with tf.control_dependencies([check]):
            x = audio_ops.to_mono(x)
        x = audio_ops.fix_length(audio_ops.resample_from(x, e["rate"], p.sample_rate, rates), clip_samples)
        meta = {k: e[k] for k in _TABLE_META + (TEACHER,) if k in e}
        meta["segment_index"] = tf.constant(0, tf.int32)
        return x, meta

    return load


def _segmenter(segment_samples: int):
    """The tf.data map: one clip -> its segments ``(n, segment_samples)`` with repeated metadata."""
    def segment(x, meta):
        segs = audio_ops.split_segments(x, segment_samples)
        n = tf.shape(segs)[0]
        m = {k: tf.fill([n], v) for k, v in meta.items() if k not in ("segment_index", TEACHER)}
        m["segment_index"] = tf.range(n, dtype=tf.int32)
        if TEACHER in meta:  # (segments, classes): row s goes with segment s
            m[TEACHER] = meta[TEACHER]
        return segs, m

    return segment


def _cached(ds: tf.data.Dataset, cache: Optional[str]) -> tf.data.Dataset:
    if cache == "memory":
        return ds.cache()
    if cache:
        os.makedirs(os.path.dirname(os.path.abspath(cache)) or ".", exist_ok=True)
        return ds.cache(os.fspath(cache))
    return ds


def _labeller(label_mode: str, num_classes: int):
    """The batch map ``(x, meta) -> (x, y, meta)``: integer ids or one-hot ``(B, classes)``; with teacher targets
    in ``meta``, one-hot labels and teacher targets side by side ``(B, 2 * classes)``."""
    def labels(x, m):
        y = m["label"]
        if label_mode == "one_hot":
            y = tf.one_hot(y, num_classes, dtype=tf.float32)
        if TEACHER in m:
            from keras_dssdn.distill.loss import pack_targets

            y = pack_targets(y, tf.reshape(m[TEACHER], [-1, num_classes]))
        return x, y, m

    return labels


def split_frequency(dataset: tf.data.Dataset, low_ratio: float = 0.5) -> tf.data.Dataset:
    """Map ``x`` ``(B, F, T, C)`` to ``(low, high)`` as :class:`~keras_dssdn.layers.frequency.FrequencySplit` does.

    Low rows ``[0, split_point(F, low_ratio))``, the rest high. The DSSDN
    models split inside every block, so this is only for models that take
    the two parts as separate inputs.
    """
    def split(x, *rest):
        k = split_point(x.shape[1], low_ratio)
        return ((x[:, :k], x[:, k:]),) + rest

    return dataset.map(split)


def example_metadata(clips: ClipList, frontend: Optional[FrontEndParams] = None,
                     clip_seconds: Optional[float] = None, segment_seconds: Optional[float] = None) -> list:
    """Per-example metadata, in the order of an evaluation (``training=False``) dataset.

    One dict per example: ``file``, ``label``, ``device``, ``identifier``,
    ``clip_index`` and ``segment_index``.
    """
    p = frontend or DEFAULT_FRONTEND
    clip_seconds = p.clip_seconds if clip_seconds is None else clip_seconds
    n_seg = 1 if segment_seconds is None else p.num_samples(clip_seconds) // p.num_samples(segment_seconds)
    return [
        {"file": c.filename, "label": c.label, "device": c.device, "identifier": c.identifier,
         "clip_index": i, "segment_index": s}
        for i, c in enumerate(clips) for s in range(n_seg)
    ]


def clip_level_scores(scores, clip_index: Sequence[int]):
    """Average per-segment scores ``(N, classes)`` over each clip.

    Returns ``(clip_ids, clip_scores)``: the sorted distinct ``clip_index``
    values and the mean score of their segments ``(clips, classes)``. Average
    probabilities (or log-probabilities) rather than logits when the model is
    calibrated that way.
    """
    scores = np.asarray(scores, dtype=np.float64)
    clip_index = np.asarray(clip_index)
    ids, inverse = np.unique(clip_index, return_inverse=True)
    sums = np.zeros((len(ids),) + scores.shape[1:])
    np.add.at(sums, inverse, scores)
    counts = np.bincount(inverse, minlength=len(ids)).reshape((-1,) + (1,) * (scores.ndim - 1))
    return ids, sums / counts
