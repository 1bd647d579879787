"""keras_dssdn: Deep Space Separable Distillation Networks (Ye & Tian, 2024) for acoustic scene classification.

Quick start::

    import keras_dssdn
    model = keras_dssdn.DSSDNSmall()          # (128, 431, 1) log-mel of a 10-s clip -> 10 classes
    print(keras_dssdn.profile(model).table())  # per-layer parameters and MACs

Importing the package registers its Keras serialisables (layers, models, the
learning-rate schedule), so ``keras.models.load_model("m.keras")`` needs only
``import keras_dssdn``. Data, training, tuning and deployment are loaded on
first use (``keras_dssdn.training_dataset``, ``keras_dssdn.train``, ...).

Package tree (one idea per folder): ``layers/`` operators, frequency split,
attention, regulariser, front-end layers, class names; ``models/`` DSSDB,
DSSDN builder, presets, sizes, baseline; ``audio/`` probe, decode, resample,
FLAC op; ``data/`` datasets, pipeline, augmentation, synthetic data;
``analysis/`` budgets, complexity, metrics; ``train/``; ``tune/``;
``deploy/``; ``inference/``; ``cli/`` (the ``dssdn-*`` commands); and
``params``, ``errors``, ``fileio``, ``runs``, ``manifest`` at the top.
"""

__version__ = "0.1.0"

import importlib as _importlib
import os as _os
import sys as _sys

def _is_command(argv0: str) -> bool:
    """Whether the process is one of the package's commands: a ``dssdn-*`` script, ``python -m keras_dssdn...``,
    or a wrapper in the checkout's ``tools/`` folder (``python tools/predict.py``, the form the docs use)."""
    if _os.path.basename(argv0).startswith("dssdn-") or argv0 == "-m":
        return True
    tools = _os.path.join(_os.path.dirname(_os.path.dirname(_os.path.abspath(__file__))), "tools")
    return bool(argv0) and _os.path.dirname(_os.path.abspath(argv0)) == tools


if _is_command(_sys.argv[0] if _sys.argv else ""):
    # one of the package's commands is starting: keep TensorFlow's C++ start-up lines (CUDA probing, oneDNN
    # notices) off the user's terminal; a user's own TF_CPP_MIN_LOG_LEVEL wins
    from keras_dssdn._tf_startup import quiet_command_start as _quiet_command_start  # TF 2.21 ignores the
    _quiet_command_start()                                                   # variable at start: filtered there

from keras_dssdn.params import DEFAULT_FRONTEND, FrontEndParams  # noqa: E402
from keras_dssdn.analysis.budgets import DCASE_MAX_MACS, DCASE_MAX_PARAMS, DEFAULT_BUDGETS, Budget  # noqa: E402
from keras_dssdn.layers.frequency import FrequencySplit, split_point  # noqa: E402
from keras_dssdn.layers.regularizers import OrthonormalRegularizer  # noqa: E402
from keras_dssdn.layers.operators import OSC, SC, SPC  # noqa: E402
from keras_dssdn.layers.attention import ECA  # noqa: E402
from keras_dssdn.layers.frontend import LogMel, LogMelNormalization, NormalizationStats, attach_front_end  # noqa: E402
from keras_dssdn.layers.labels import ClassNames, LabelVocabulary  # noqa: E402
from keras_dssdn.models.blocks import dssdb  # noqa: E402
from keras_dssdn.models.dssdn import DSSDNConfig, build_dssdn  # noqa: E402
from keras_dssdn.models.presets import DCASE_MCU_1S, DCASE_SMALL_1S, LARGE, MIDDLE, PRESETS, SMALL, resolve_config  # noqa: E402
from keras_dssdn.models.sizes import DSSDNLarge, DSSDNMiddle, DSSDNSmall  # noqa: E402
from keras_dssdn.models.baseline import DCASEBaseline  # noqa: E402
from keras_dssdn.train.schedule import WarmupCosine  # noqa: E402  (registers the schedule saved in checkpoints)

#: Public names loaded on first use: name -> module.
_LAZY = {
    "AugmentConfig": "keras_dssdn.data.augment",
    "ComplexityReport": "keras_dssdn.analysis.complexity",
    "compute_normalization_stats": "keras_dssdn.layers.frontend",
    "evaluate_model": "keras_dssdn.inference.evaluate",
    "export_bundle": "keras_dssdn.deploy",
    "load_train_config": "keras_dssdn.train",
    "evaluation_dataset": "keras_dssdn.data.pipeline",
    "make_dataset": "keras_dssdn.data.pipeline",
    "PipelineSpec": "keras_dssdn.data.spec",
    "training_dataset": "keras_dssdn.data.pipeline",
    "TrainingOptions": "keras_dssdn.data.spec",
    "make_synthetic_dataset": "keras_dssdn.data.synthetic",
    "profile": "keras_dssdn.analysis.complexity",
    "read_clips": "keras_dssdn.data.datasets",
    "read_csv": "keras_dssdn.data.datasets",
    "read_dcase": "keras_dssdn.data.datasets",
    "TrainConfig": "keras_dssdn.train",
}

__all__ = sorted([
    "DEFAULT_FRONTEND", "FrontEndParams", "DCASE_MAX_MACS", "DCASE_MAX_PARAMS", "DEFAULT_BUDGETS", "Budget",
    "FrequencySplit", "split_point", "OrthonormalRegularizer", "OSC", "SC", "SPC", "ECA", "LogMel",
    "LogMelNormalization", "NormalizationStats", "attach_front_end", "ClassNames", "LabelVocabulary", "dssdb",
    "DSSDNConfig", "build_dssdn", "DCASE_MCU_1S", "DCASE_SMALL_1S", "LARGE", "MIDDLE", "PRESETS", "SMALL", "resolve_config",
    "DSSDNLarge", "DSSDNMiddle", "DSSDNSmall", "DCASEBaseline", "WarmupCosine", *_LAZY,
])


def __getattr__(name):
    if name in _LAZY:
        value = getattr(_importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'keras_dssdn' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
