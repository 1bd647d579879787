"""``tf.data`` pipeline: clips -> batched ``(log-mel, label)`` for training and evaluation.

:func:`make_dataset` builds, for a :class:`~keras_dssdn.data.datasets.ClipList`
(or a DCASE folder / CSV path)::

    file list -> read + decode + down-mix + resample + crop/pad   (parallel map, TF ops)
              -> [cut into segments]                               (1-s DCASE 2022+ setting)
              -> log-mel                                           (parallel map, TF ops)
              -> cache (memory or file)                            (later epochs skip all above)
              -> [shuffle] -> batch -> [augment] -> [normalise] -> prefetch

and yields ``x`` float32 ``(B, n_mels, frames, 1)`` (or waveforms
``(B, samples)`` with ``output="waveform"``, for a model whose first layer is
:class:`~keras_dssdn.layers.frontend.LogMel`), ``y`` int32 class ids ``(B,)`` or
one-hot / soft labels ``(B, classes)``, and with ``with_metadata=True`` a dict
of per-example metadata (file, device, identifier, clip_index,
segment_index). Unlabelled clips get id -1 (an all-zero one-hot row).

Before any tensor is built every file is checked (header probe, length,
labels), so bad input fails with a named file before training starts.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
from typing import Optional, Sequence, Union

import numpy as np
import tensorflow as tf

from keras_dssdn import audio as audio_ops
from keras_dssdn.data.augment import AugmentConfig, augment_batch, batch_seeds
from keras_dssdn.data.datasets import ClipList, read_clips
from keras_dssdn.errors import AudioFormatError, DataError, ShortClipError, UnsupportedAudioError
from keras_dssdn.layers.frontend import NormalizationStats, log_mel_spectrogram
from keras_dssdn.layers.frequency import split_point
from keras_dssdn.layers.labels import LabelVocabulary
from keras_dssdn.params import DEFAULT_FRONTEND, FrontEndParams

#: A clip may be this much shorter (fraction of the target length) than the
#: crop and still be zero-padded silently.
SHORT_CLIP_TOLERANCE = 0.01

OUTPUTS = ("logmel", "waveform")
LABEL_MODES = ("int", "one_hot")


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
            f"{shown}{more}. Pass pad_short=true (a training config key; pad_short=True in make_dataset) to zero-pad "
            f"them, set clip_seconds to at most "
            f"{shortest:g}, or remove them from the metadata."
        )
    return len(short)


def make_dataset(
    data: Union[ClipList, str],
    frontend: Optional[FrontEndParams] = None,
    *,
    batch_size: int = 32,
    training: bool = False,
    augment: Optional[AugmentConfig] = None,
    teacher=None,
    vocabulary: Optional[LabelVocabulary] = None,
    label_mode: Optional[str] = None,
    clip_seconds: Optional[float] = None,
    segment_seconds: Optional[float] = None,
    output: str = "logmel",
    cache: Optional[str] = "memory",
    shuffle_buffer: Optional[int] = None,
    seed: int = 0,
    with_metadata: bool = False,
    normalization: Optional[NormalizationStats] = None,
    pad_short: bool = False,
    drop_remainder: bool = False,
    split: str = "train",
    fold: int = 1,
    skip_missing: bool = False,
    num_parallel_calls: Optional[int] = None,
    devices=None,
) -> tf.data.Dataset:
    """Batched ``(x, y)`` (or ``(x, y, metadata)``) dataset for training or evaluation.

    Args:
      data: a :class:`ClipList`, or a DCASE root folder (read with ``split``,
        ``fold``, ``skip_missing``) or a ``path,label`` CSV file.
      frontend: log-mel settings (default :data:`DEFAULT_FRONTEND`).
      training: shuffle (seeded, new order every epoch) and augment. With
        ``False`` the order is the ClipList order and nothing is random.
      augment: :class:`AugmentConfig` applied to training batches (None: none).
      teacher: a :class:`~keras_dssdn.distill.teacher.TeacherTargets` (knowledge distillation). For a
        training set (ignored with ``training=False``) each clip's teacher targets ``(segments, classes)``
        are looked up by clip, checked and put into the clip table before any shuffling; each example
        carries its segment's row, and ``y`` becomes ``(B, 2 * classes)``: labels, then teacher targets
        (:func:`keras_dssdn.distill.loss.pack_targets`), so mixup mixes both with the same weights and the
        other augmentations keep the clean clip's targets. Needs one-hot labels.
      vocabulary: label vocabulary (default: the clips' sorted labels; pass the
        training vocabulary when building the evaluation set).
      label_mode: ``"int"`` (ids ``(B,)``) or ``"one_hot"`` (``(B, classes)``);
        default one-hot when mixup is on, else int.
      clip_seconds: every clip is cropped / zero-padded to this length at
        ``frontend.sample_rate`` (default ``frontend.clip_seconds``).
      segment_seconds: cut each clip into non-overlapping segments of this
        length (e.g. 1.0); each segment is one example that keeps its clip's
        label and ``clip_index``.
      output: ``"logmel"`` (maps ``(B, n_mels, frames, 1)``) or
        ``"waveform"`` (``(B, samples)``, log-mel left to the model).
      cache: ``"memory"``, a file path prefix (``tf.data`` cache files), or
        None. Cached: decoded, resampled audio turned into log-mel is kept,
        and later epochs skip decoding and the STFT.
      shuffle_buffer: examples in the shuffle buffer (default: all with a
        memory cache, else at most 2048; the file list itself is always
        shuffled first when there is no cache).
      seed: seeds shuffling and augmentation; same seed, same batches.
      with_metadata: also yield a dict with ``file``, ``device``,
        ``identifier`` (strings, "" if unknown), ``clip_index`` (row in the
        ClipList) and ``segment_index`` (0 without segments).
      normalization: apply these statistics in the pipeline (leave None when
        the model has a :class:`LogMelNormalization` layer).
      pad_short: zero-pad clips shorter than ``clip_seconds`` instead of
        raising :class:`ShortClipError`.
      drop_remainder: drop the last incomplete batch.
      devices: a :class:`~keras_dssdn.data.device_augment.DeviceAugment` for a training set (impulse responses
        on cached waveforms, spectrum differences on batches; docs/devices.md).
      num_parallel_calls: clips decoded at once (default: one per CPU core;
        measured faster than ``tf.data.AUTOTUNE`` for these few, heavy
        elements).

    Raises :class:`~keras_dssdn.errors.DataError` subclasses naming the file /
    row for missing, unreadable, unsupported or too-short audio and unknown
    labels.
    """
    p = frontend or DEFAULT_FRONTEND
    num_parallel_calls = num_parallel_calls or cpu_count()
    if output not in OUTPUTS:
        raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}.")
    clips = read_clips(data, split=split, fold=fold, skip_missing=skip_missing)
    if len(clips) == 0:
        raise DataError(
            f"{clips.name or 'The dataset'} has no clips"
            + (f" ({len(clips.skipped)} missing files were skipped)" if clips.skipped else "")
            + ". Check the metadata and the audio folder."
        )
    augment = augment if (training and augment is not None and augment.any) else None
    if augment is not None and output != "logmel":
        raise ValueError("Augmentation works on log-mel maps: use output='logmel'.")
    if label_mode is None and training and teacher is not None:
        label_mode = "one_hot"  # teacher targets sit beside one-hot labels
    label_mode = _label_mode(label_mode, augment)
    vocab, label_ids = _encode_labels(clips, vocabulary, training, label_mode)

    # ---- audio headers and lengths ----
    infos = probe_clips(clips)
    clip_seconds = p.clip_seconds if clip_seconds is None else float(clip_seconds)
    clip_samples = p.num_samples(clip_seconds)
    _check_finite(clips, infos)
    _check_lengths(clips, infos, clip_samples, p.sample_rate, pad_short)
    segment_samples = _segment_samples(p, segment_seconds, clip_seconds)
    table = _clip_table(clips, infos, label_ids)
    if training and teacher is not None:
        table[TEACHER] = _teacher_table(teacher, clips, vocab, label_mode, clip_seconds,
                                        segment_seconds if segment_samples else None,
                                        clip_samples // segment_samples if segment_samples else 1)

    ds = tf.data.Dataset.from_tensor_slices(table)
    if training and cache is None:  # cheap full shuffle of the file list
        ds = ds.shuffle(len(clips), seed=seed, reshuffle_each_iteration=True)
    ds = ds.map(_loader(p, infos, clip_samples), num_parallel_calls=num_parallel_calls)
    logmel_cache = cache
    if training and devices is not None:  # DIR: the waveforms are cached and convolved every epoch
        ds, logmel_cache = devices.waveform_stage(ds, cache, _cached, seed, num_parallel_calls)
    n_examples = len(clips) * (clip_samples // segment_samples if segment_samples else 1)
    if segment_samples is not None:
        ds = ds.map(_segmenter(segment_samples), num_parallel_calls=num_parallel_calls).unbatch()
        ds = ds.apply(tf.data.experimental.assert_cardinality(n_examples))
    if output == "logmel":
        ds = ds.map(lambda x, m: (log_mel_spectrogram(x, p), m), num_parallel_calls=num_parallel_calls)
    ds = _cached(ds, logmel_cache)
    if training:
        buffer = shuffle_buffer or (n_examples if cache == "memory" else min(n_examples, 2048))
        ds = ds.shuffle(buffer, seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder, num_parallel_calls=num_parallel_calls)
    ds = ds.map(_labeller(label_mode, len(vocab) if vocab is not None else 0))
    if augment is not None:
        ds = tf.data.Dataset.zip((ds, batch_seeds(seed + 1)))
        ds = ds.map(lambda b, s: augment_batch(b[0], b[1], augment, s) + (b[2],), num_parallel_calls=num_parallel_calls)
    if training and devices is not None:
        ds = devices.batch_stage(ds, seed, num_parallel_calls)
    if normalization is not None:
        ds = ds.map(lambda x, y, m: (normalization.apply(x), y, m))
    if with_metadata:
        ds = ds.map(lambda x, y, m: (x, y, {k: m[k] for k in METADATA_KEYS}))
    else:
        ds = ds.map(lambda x, y, m: (x, y))
    return ds.prefetch(tf.data.AUTOTUNE)


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


def _segment_samples(p: FrontEndParams, segment_seconds: Optional[float], clip_seconds: float) -> Optional[int]:
    if segment_seconds is None:
        return None
    samples = p.num_samples(segment_seconds)
    if not 0 < samples <= p.num_samples(clip_seconds):
        raise ValueError(f"segment_seconds={segment_seconds} must be in (0, clip_seconds={clip_seconds}].")
    return samples


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
