"""The packaged DSSDN architectures: one :class:`~keras_dssdn.models.dssdn.DSSDNConfig` per size.

The paper does not publish widths, kernels or pooling; these are our choices,
sized with :mod:`keras_dssdn.analysis.complexity` to stay inside
:data:`keras_dssdn.analysis.budgets.DEFAULT_BUDGETS` (Small < Middle < Large),
and meant to be re-sized by the tuner (``dssdn-tune``).
"""

from __future__ import annotations

import dataclasses

from keras_dssdn.models.dssdn import DSSDNConfig
from keras_dssdn.params import DEFAULT_FRONTEND, FrontEndParams

#: Presets. Large/Middle/Small differ in operator and widths (see README table).
LARGE = DSSDNConfig(operator="sc", widths=(32, 48, 64, 96, 128), stem_width=24, stem_strides=(1, 2))
MIDDLE = DSSDNConfig(operator="osc", widths=(32, 48, 64, 96, 96), stem_width=24, stem_strides=(1, 2))
SMALL = DSSDNConfig(operator="spc", widths=(24, 32, 48, 64, 64), stem_width=16, stem_strides=(1, 2))
#: DSSDN-Small for 1-s segments inside the DCASE 2022-2024 limits (128 K params, 30 MMACs).
DCASE_SMALL_1S = SMALL.replace(input_shape=list(DEFAULT_FRONTEND.input_shape(1.0)))
#: DSSDN-Small's blocks for a microcontroller with 128 KB of RAM: 64 mel bands and a stem that strides 2 in
#: frequency as well, so every activation is a quarter of DCASE_SMALL_1S's (budget: TFLM arena, C front end and the
#: audio ring <= 128 KB, DEFAULT_BUDGETS["dcase_mcu_1s"]; with the arena TFLM allocates and the audio of one
#: Invoke() at 100 MHz it fits; with a bundle's host-measured recommended arena it does not: docs/firmware.md); its training config
#: sets frontend.n_mels: 64 and names the sample rate (frontend.sample_rate; 16 / 48 kHz overrides in the file).
DCASE_MCU_1S = SMALL.replace(stem_strides=[2, 2], input_shape=[64, DEFAULT_FRONTEND.num_frames(1.0), 1])

PRESETS = {"large": LARGE, "middle": MIDDLE, "small": SMALL, "dcase_small_1s": DCASE_SMALL_1S,
           "dcase_mcu_1s": DCASE_MCU_1S}


def resolve_config(config) -> DSSDNConfig:
    """Accept a DSSDNConfig, a dict, a JSON string, a path to a JSON file, or a preset name."""
    if isinstance(config, str) and config.lower() in PRESETS:
        return PRESETS[config.lower()]
    return DSSDNConfig.coerce(config)




def preset_frontend(config, base: FrontEndParams = DEFAULT_FRONTEND) -> FrontEndParams:
    """The front end a config's input is sized for: ``base`` with the config's mel bands (``input_shape[0]``).

    ``config``: anything :func:`resolve_config` takes. The preset's frame count is not used: the clip length
    is chosen by whoever asks (``frontend.input_shape(seconds)``).
    """
    n_mels = resolve_config(config).input_shape[0]
    return base if base.n_mels == n_mels else dataclasses.replace(base, n_mels=n_mels)
