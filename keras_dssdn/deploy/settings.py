"""What an export is asked to do: :class:`ExportSettings`, four frozen groups of options.

:func:`keras_dssdn.deploy.export.export_bundle` takes them either as one
``ExportSettings`` or as the flat keywords of :meth:`ExportSettings.from_options`
(``data=``, ``fold=``, ``qat_epochs=``, ...), which the command line and the
tests use. Units: seconds, counts of examples or clips, accuracy points
(percent).
"""

from __future__ import annotations

import dataclasses
from typing import Mapping, Optional, Sequence

from keras_dssdn.analysis.ram import DEFAULT_MCU_CLOCK_HZ, MODEL_CYCLES_PER_MAC
from keras_dssdn.errors import ConfigError
from keras_dssdn.params import FrontEndParams

#: Default number of calibration examples (representative set) and of real inputs for bit-exactness.
DEFAULT_NUM_CALIBRATION = 200
DEFAULT_NUM_VERIFY = 16
DEPLOY_CHOICES = ("best", "ptq", "qat")


@dataclasses.dataclass(frozen=True)
class ModelOverrides:
    """Used when the model (and its run folder) does not record them; the model's own layers win.

    ``segment_seconds``: audio per inference; required when the model's time
    axis is free, else read off the input and checked. ``normalization``: a
    :class:`~keras_dssdn.layers.frontend.NormalizationStats` or its dict.
    """

    segment_seconds: Optional[float] = None
    frontend: Optional[FrontEndParams] = None
    normalization: object = None
    class_names: Optional[Sequence[str]] = None


@dataclasses.dataclass(frozen=True, eq=False)
class DataSettings:
    """Where calibration, evaluation and verification examples come from.

    ``data``: a DCASE folder (or ``path,label`` CSV); ``fold`` picks
    ``fold<N>_train`` (calibration, QAT) and ``fold<N>_evaluate`` (evaluation,
    verification inputs); ``train_data`` / ``eval_data`` (ClipList or path)
    override one split each. ``representative`` / ``evaluation`` /
    ``verify_inputs``: arrays or ``tf.data`` datasets used instead of the
    pipeline (normalised log-mel of the model's input shape; ``evaluation``
    yields ``(x, y[, metadata])``). ``clip_seconds``: length clips are cropped
    to (default the front end's). ``eval_limit``: evaluate on this many clips
    spread over the split (smoke tests).
    """

    data: object = None
    fold: int = 1
    train_data: object = None
    eval_data: object = None
    representative: object = None
    evaluation: object = None
    verify_inputs: object = None
    clip_seconds: Optional[float] = None
    num_calibration: int = DEFAULT_NUM_CALIBRATION
    num_verify: int = DEFAULT_NUM_VERIFY
    eval_limit: Optional[int] = None

    @property
    def has_clips(self) -> bool:
        """True when any split is named (``data``, ``train_data`` or ``eval_data``)."""
        return any(v is not None for v in (self.data, self.train_data, self.eval_data))


@dataclasses.dataclass(frozen=True, eq=False)
class QATSettings:
    """Quantisation-aware training: ``epochs`` > 0 runs it (in a child process).

    ``train``: ``(x, y)`` arrays, a dataset or ``epoch -> dataset`` (default:
    the train split). ``options``: fields of :class:`keras_dssdn.deploy.qat.QATRun`
    (``learning_rate``, ``batch_size``, ``label_smoothing``,
    ``max_examples``, ``timeout``, ...) and ``augment``: ``"run"`` (default: the
    training run's augmentation and label smoothing), ``"none"``, or an
    AugmentConfig / dict.
    """

    epochs: int = 0
    train: object = None
    options: Mapping = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True, eq=False)
class ExportSettings:
    """All options of an export. ``deploy``: the int8 model of the device files, ``"ptq"``, ``"qat"`` or
    ``"best"`` (higher int8 accuracy on the evaluation set, PTQ on ties or without QAT).
    ``max_accuracy_drop``: fail when the deployed int8 accuracy is more than this many points below float.
    ``force``: replace an existing bundle. ``command``: recorded in the report.
    ``mcu_clock_hz`` (Hz) and ``mcu_cycles_per_mac``: the target core's clock and the model's cycles per
    multiply-accumulate, which size the audio ring that holds the audio arriving during Invoke()
    (:func:`keras_dssdn.analysis.ram.audio_ring`; defaults :data:`~keras_dssdn.analysis.ram.DEFAULT_MCU_CLOCK_HZ`,
    100 MHz, and the measured :data:`~keras_dssdn.analysis.ram.MODEL_CYCLES_PER_MAC`)."""

    model: ModelOverrides = ModelOverrides()
    data: DataSettings = DataSettings()
    qat: QATSettings = QATSettings()
    deploy: str = "best"
    max_accuracy_drop: Optional[float] = None
    force: bool = False
    command: Optional[str] = None
    mcu_clock_hz: float = DEFAULT_MCU_CLOCK_HZ
    mcu_cycles_per_mac: float = MODEL_CYCLES_PER_MAC

    def __post_init__(self):
        for key in ("mcu_clock_hz", "mcu_cycles_per_mac"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ConfigError(f"{key} must be a number > 0, got {value!r}.")
        if self.deploy not in DEPLOY_CHOICES:
            raise ConfigError(f"deploy must be 'best', 'ptq' or 'qat', got {self.deploy!r}.")
        if self.deploy == "qat" and self.qat.epochs <= 0:
            raise ConfigError("deploy='qat' needs qat_epochs > 0 (--qat-epochs).")
        if self.data.num_verify < 1:
            raise ConfigError(f"num_verify must be >= 1, got {self.data.num_verify}.")

    @classmethod
    def from_options(cls, **options) -> "ExportSettings":
        """Settings from the flat keywords of :func:`~keras_dssdn.deploy.export.export_bundle`: each field of
        :class:`DataSettings` and :class:`ModelOverrides` by name, ``qat_epochs`` / ``qat_train`` /
        ``qat_options``, ``deploy``, ``max_accuracy_drop``, ``force``, ``command``, ``mcu_clock_hz``,
        ``mcu_cycles_per_mac``."""
        groups = {"model": ModelOverrides, "data": DataSettings}
        picked = {group: {f.name: options.pop(f.name) for f in dataclasses.fields(kind) if f.name in options}
                  for group, kind in groups.items()}
        qat = {name: options.pop(f"qat_{name}") for name in ("epochs", "train", "options") if f"qat_{name}" in options}
        if qat.get("options") is None:
            qat.pop("options", None)
        unknown = sorted(set(options) - {"deploy", "max_accuracy_drop", "force", "command", "mcu_clock_hz",
                                         "mcu_cycles_per_mac"})
        if unknown:
            raise TypeError(f"export_bundle() got unexpected keyword argument(s) {', '.join(unknown)}.")
        return cls(model=ModelOverrides(**picked["model"]), data=DataSettings(**picked["data"]),
                   qat=QATSettings(**qat), **options)

    def with_run_defaults(self, run_config: Optional[dict]) -> "ExportSettings":
        """The training run's data folder, fold and clip length where these settings name none."""
        rc = run_config or {}
        data = self.data
        if not data.has_clips and rc.get("data"):
            data = dataclasses.replace(data, data=rc["data"], eval_data=rc.get("eval_data") or None,
                                       fold=int(rc.get("fold") or data.fold))
        if data.clip_seconds is None and rc.get("clip_seconds"):
            data = dataclasses.replace(data, clip_seconds=float(rc["clip_seconds"]))
        return dataclasses.replace(self, data=data)
