"""The data every trial shares, decoded once for the whole search."""

from __future__ import annotations

import dataclasses

import tensorflow as tf

from keras_dssdn.errors import SearchSettingsError


@dataclasses.dataclass
class TuningData:
    """The cached training pipeline and the evaluate fold.

    ``train`` yields ``(x, y)``: log-mel batches ``(B, n_mels, frames, 1)`` float32 and one-hot labels
    ``(B, classes)``, cached before the augmentation; ``evaluate`` yields ``(x, y, metadata)`` in a fixed
    order (``metadata["clip_index"]``: ``(B,)`` int, the clip each segment comes from), cached.
    """

    train: tf.data.Dataset
    evaluate: tf.data.Dataset
    steps_per_epoch: int
    vocabulary: object  # LabelVocabulary
    stats: object  # NormalizationStats or None
    train_clips: object  # ClipList
    eval_clips: object  # ClipList


def prepare_data(cfg, clips=None) -> TuningData:
    """Datasets for a :class:`~keras_dssdn.train.config.TrainConfig` (``clips``: ``training_data(cfg)``'s
    result, read again when None). :class:`SearchSettingsError` when the data has no evaluate split."""
    from keras_dssdn.data.pipeline import evaluation_dataset, training_dataset
    from keras_dssdn.train import normalization_stats, pipeline_spec, teacher_targets, training_data, training_options

    train_clips, eval_clips, vocab = clips or training_data(cfg)
    if eval_clips is None:
        raise SearchSettingsError(f"{cfg.data}: a search needs an evaluate split to score trials; give a DCASE "
                                  "folder (fold files) or eval_data=<CSV>.")
    spec = pipeline_spec(cfg, vocab)
    train = training_dataset(train_clips, spec, training_options(cfg, teacher_targets(cfg)))
    evaluate = evaluation_dataset(eval_clips, spec, with_metadata=True)
    stats = normalization_stats(cfg, train_clips, vocab)
    return TuningData(train, evaluate, int(train.cardinality().numpy()), vocab, stats, train_clips, eval_clips)
