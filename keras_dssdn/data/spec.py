"""The typed settings of the ``tf.data`` pipeline: :class:`PipelineSpec` (what every dataset of a run shares) and
:class:`TrainingOptions` (what only a training set has: shuffling seed, augmentation, teacher targets, device
augmentation).

One spec is built once (from a run's config by :func:`keras_dssdn.train.recipe.pipeline_spec`, from a bundle's
model by the export) and passed whole to :func:`keras_dssdn.data.pipeline.training_dataset` and
:func:`~keras_dssdn.data.pipeline.evaluation_dataset`; ``spec.replace(cache=None)`` makes a variant. Both are
frozen: a spec that was checked once stays valid.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Optional

from keras_dssdn.params import DEFAULT_FRONTEND, FrontEndParams

#: What a dataset yields as ``x``: log-mel maps ``(B, n_mels, frames, 1)`` or waveforms ``(B, samples)``.
OUTPUTS = ("logmel", "waveform")
#: How a dataset yields ``y``: integer class ids ``(B,)`` or one-hot rows ``(B, classes)``.
LABEL_MODES = ("int", "one_hot")


@dataclass(frozen=True)
class PipelineSpec:
    """The settings shared by the training and evaluation datasets of one model.

    Attributes:
      frontend: log-mel settings (sample rate, STFT, mel bands).
      clip_seconds: every clip is cropped / zero-padded to this length, seconds (None: ``frontend.clip_seconds``).
      segment_seconds: each clip is cut into non-overlapping segments of this length, seconds, each one example
        that keeps its clip's label and ``clip_index`` (None: whole clips).
      batch_size: examples per batch.
      vocabulary: the :class:`~keras_dssdn.layers.labels.LabelVocabulary` (None: the clips' sorted labels; give the
        training vocabulary to an evaluation set).
      label_mode: ``"int"`` or ``"one_hot"`` (None: one-hot when mixup or a teacher needs it, else int).
      output: ``"logmel"`` or ``"waveform"`` (log-mel left to a model whose first layer is ``LogMel``).
      cache: ``"memory"``, a ``tf.data`` cache file prefix, or None (decoded audio turned into log-mel is kept, so
        later epochs skip decoding and the STFT).
      normalization: :class:`~keras_dssdn.layers.frontend.NormalizationStats` applied in the pipeline (None when
        the model normalises inside).
      pad_short: zero-pad clips shorter than ``clip_seconds`` instead of refusing them.
      drop_remainder: drop the last incomplete batch.
      num_parallel_calls: clips decoded at once (None: one per CPU core).
    """

    frontend: FrontEndParams = DEFAULT_FRONTEND
    clip_seconds: Optional[float] = None
    segment_seconds: Optional[float] = None
    batch_size: int = 32
    vocabulary: Any = None
    label_mode: Optional[str] = None
    output: str = "logmel"
    cache: Optional[str] = "memory"
    normalization: Any = None
    pad_short: bool = False
    drop_remainder: bool = False
    num_parallel_calls: Optional[int] = None

    def __post_init__(self):
        if self.output not in OUTPUTS:
            raise ValueError(f"output must be one of {OUTPUTS}, got {self.output!r}.")
        if self.label_mode is not None and self.label_mode not in LABEL_MODES:
            raise ValueError(f"label_mode must be one of {LABEL_MODES}, got {self.label_mode!r}.")
        if int(self.batch_size) < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size!r}.")
        if self.clip_seconds is not None and not float(self.clip_seconds) > 0:
            raise ValueError(f"clip_seconds must be positive, got {self.clip_seconds!r}.")
        if self.segment_seconds is not None and not 0 < float(self.segment_seconds) <= self.seconds + 1e-9:
            raise ValueError(f"segment_seconds={self.segment_seconds} must be in (0, clip_seconds={self.seconds}].")

    @property
    def seconds(self) -> float:
        """The clip length the pipeline crops to, seconds."""
        return float(self.frontend.clip_seconds if self.clip_seconds is None else self.clip_seconds)

    @property
    def clip_samples(self) -> int:
        """Samples per clip at ``frontend.sample_rate``."""
        return self.frontend.num_samples(self.seconds)

    @property
    def segment_samples(self) -> Optional[int]:
        """Samples per segment, or None for whole clips."""
        return None if self.segment_seconds is None else self.frontend.num_samples(self.segment_seconds)

    @property
    def segments_per_clip(self) -> int:
        """Examples one clip gives (1 for whole clips)."""
        return 1 if self.segment_samples is None else self.clip_samples // self.segment_samples

    def replace(self, **changes) -> "PipelineSpec":
        """A copy with ``changes`` (checked again)."""
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class TrainingOptions:
    """What a training set has and an evaluation set does not.

    Attributes:
      seed: seeds the shuffling and the augmentation (same seed, same batches).
      augment: an :class:`~keras_dssdn.data.augment.AugmentConfig` applied to batches (None: none).
      teacher: :class:`~keras_dssdn.distill.teacher.TeacherTargets` (knowledge distillation): ``y`` becomes
        ``(B, 2 * classes)``, one-hot labels then teacher targets.
      devices: a :class:`~keras_dssdn.data.device_augment.DeviceAugment` (impulse responses, spectrum differences).
      shuffle_buffer: examples in the shuffle buffer (None: all with a memory cache, else at most 2048).
    """

    seed: int = 0
    augment: Any = None
    teacher: Any = None
    devices: Any = None
    shuffle_buffer: Optional[int] = None
