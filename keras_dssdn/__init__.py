"""keras_dssdn: Deep Space Separable Distillation Networks (Ye & Tian, 2024) for acoustic scene classification.

Quick start::

    import keras_dssdn
    model = keras_dssdn.DSSDNSmall()          # (128, 431, 1) log-mel of a 10-s clip -> 10 classes
    print(keras_dssdn.profile(model).table())  # per-layer parameters and MACs
"""

__version__ = "0.1.0"

import os as _os

# TensorFlow's C++ start-up chatter (CUDA probing, oneDNN notices) drowns tool output;
# a user's own TF_CPP_MIN_LOG_LEVEL wins.
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from keras_dssdn.params import DEFAULT_FRONTEND, FrontEndParams  # noqa: F401
from keras_dssdn.analysis.budgets import DCASE_MAX_MACS, DCASE_MAX_PARAMS, Budget  # noqa: F401
from keras_dssdn.layers.frequency import FrequencySplit, split_point  # noqa: F401
from keras_dssdn.layers.regularizers import OrthonormalRegularizer  # noqa: F401
from keras_dssdn.layers.operators import OSC, SC, SPC  # noqa: F401
from keras_dssdn.models.blocks import ECA, dssdb  # noqa: F401
from keras_dssdn.models.dssdn import (  # noqa: F401
    DCASE_SMALL_1S,
    LARGE,
    MIDDLE,
    PRESETS,
    SMALL,
    DSSDNConfig,
    DSSDNLarge,
    DSSDNMiddle,
    DSSDNSmall,
    build_dssdn,
    resolve_config,
)
from keras_dssdn.analysis.complexity import ComplexityReport, profile  # noqa: F401
from keras_dssdn.models.baseline import DCASEBaseline  # noqa: F401
from keras_dssdn.layers.labels import ClassNames, LabelVocabulary  # noqa: F401
from keras_dssdn.data.datasets import read_csv, read_dcase  # noqa: F401
from keras_dssdn.layers.frontend import (  # noqa: F401
    LogMel,
    LogMelNormalization,
    NormalizationStats,
    attach_front_end,
    compute_normalization_stats,
)
from keras_dssdn.data.augment import AugmentConfig  # noqa: F401
from keras_dssdn.data.pipeline import make_dataset  # noqa: F401
from keras_dssdn.data.synthetic import make_synthetic_dataset  # noqa: F401
from keras_dssdn.deploy.export import export_bundle  # noqa: F401
