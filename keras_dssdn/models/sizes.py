"""keras.applications-style constructors, one per size, over the generic builder
(:func:`~keras_dssdn.models.dssdn.build_dssdn`) and the presets (:mod:`keras_dssdn.models.presets`)."""

from __future__ import annotations

import keras

from keras_dssdn.models.dssdn import DSSDNConfig, build_dssdn
from keras_dssdn.models.presets import LARGE, MIDDLE, SMALL, resolve_config


def _sized(preset: DSSDNConfig, size_name: str, default_name: str, input_shape, classes, include_top,
           widths, config, name, classifier_activation) -> keras.Model:
    cfg = preset if config is None else resolve_config(config)
    if cfg.operator != preset.operator:
        raise ValueError(
            f"{size_name} uses the {preset.operator.upper()} operator but the config has "
            f"{cfg.operator!r}; use keras_dssdn.build_dssdn(config) for other operators."
        )
    changes = {}
    if input_shape is not None:
        changes["input_shape"] = list(input_shape)
    if classes is not None:
        changes["classes"] = int(classes)
    if widths is not None:
        widths = list(widths)
        if len(widths) != len(cfg.widths):
            raise ValueError(f"{size_name} has {len(cfg.widths)} blocks; got {len(widths)} widths: {widths}.")
        changes["widths"] = widths
    cfg = cfg.replace(**changes) if changes else cfg
    return build_dssdn(cfg, include_top=include_top, classifier_activation=classifier_activation,
                       name=name or default_name)


def DSSDNLarge(input_shape=None, classes=None, include_top=True, widths=None, config=None, name=None,
               classifier_activation="softmax") -> keras.Model:
    """DSSDN-Large (SC operator). ``input_shape`` defaults to a 10-s clip ``(128, 431, 1)``;
    ``classes`` to 10; ``widths`` (5 ints) or ``config`` (tuned JSON path / dict / DSSDNConfig) override."""
    return _sized(LARGE, "DSSDN-Large", "dssdn_large", input_shape, classes, include_top, widths, config,
                  name, classifier_activation)


def DSSDNMiddle(input_shape=None, classes=None, include_top=True, widths=None, config=None, name=None,
                classifier_activation="softmax") -> keras.Model:
    """DSSDN-Middle (OSC operator, orthonormality regulariser). Arguments as :func:`DSSDNLarge`."""
    return _sized(MIDDLE, "DSSDN-Middle", "dssdn_middle", input_shape, classes, include_top, widths, config,
                  name, classifier_activation)


def DSSDNSmall(input_shape=None, classes=None, include_top=True, widths=None, config=None, name=None,
               classifier_activation="softmax") -> keras.Model:
    """DSSDN-Small (SPC operator, partial ratio 1/4). Arguments as :func:`DSSDNLarge`."""
    return _sized(SMALL, "DSSDN-Small", "dssdn_small", input_shape, classes, include_top, widths, config,
                  name, classifier_activation)
