"""keras_dssdn: Deep Space Separable Distillation Networks for acoustic scene classification."""

__version__ = "0.1.0"

from keras_dssdn.params import FrontEndParams, DEFAULT_FRONTEND  # noqa: F401
from keras_dssdn.frequency import FrequencySplit, split_point  # noqa: F401
