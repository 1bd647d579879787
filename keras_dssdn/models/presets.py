"""The packaged DSSDN architectures: one :class:`~keras_dssdn.models.dssdn.DSSDNConfig` per size.

The paper does not publish widths, kernels or pooling; these are our choices,
sized with :mod:`keras_dssdn.analysis.complexity` to stay inside
:data:`keras_dssdn.analysis.budgets.DEFAULT_BUDGETS` (Small < Middle < Large),
and meant to be re-sized by the tuner (``dssdn-tune``).
"""

from __future__ import annotations

from keras_dssdn.models.dssdn import DSSDNConfig
from keras_dssdn.params import DEFAULT_FRONTEND

#: Presets. Large/Middle/Small differ in operator and widths (see README table).
LARGE = DSSDNConfig(operator="sc", widths=(32, 48, 64, 96, 128), stem_width=24, stem_strides=(1, 2))
MIDDLE = DSSDNConfig(operator="osc", widths=(32, 48, 64, 96, 96), stem_width=24, stem_strides=(1, 2))
SMALL = DSSDNConfig(operator="spc", widths=(24, 32, 48, 64, 64), stem_width=16, stem_strides=(1, 2))
#: DSSDN-Small for 1-s segments inside the DCASE 2022-2024 limits (128 K params, 30 MMACs).
DCASE_SMALL_1S = SMALL.replace(input_shape=list(DEFAULT_FRONTEND.input_shape(1.0)))

PRESETS = {"large": LARGE, "middle": MIDDLE, "small": SMALL, "dcase_small_1s": DCASE_SMALL_1S}


def resolve_config(config) -> DSSDNConfig:
    """Accept a DSSDNConfig, a dict, a JSON string, a path to a JSON file, or a preset name."""
    if isinstance(config, str) and config.lower() in PRESETS:
        return PRESETS[config.lower()]
    return DSSDNConfig.coerce(config)


