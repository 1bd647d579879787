"""High-low frequency decomposition of a ``(batch, freq, time, channels)`` map.

The paper's key idea: the low-frequency part of a log-mel map carries most of
the scene information, so it gets the deep (expensive) path and the high part a
cheap one. Frequency is the height axis (axis 1) with the lowest band at
index 0 (see :mod:`keras_dssdn.params`).
"""

from __future__ import annotations

import keras
from keras import ops


def split_point(num_bins: int, low_ratio: float) -> int:
    """Number of low-frequency rows kept out of ``num_bins`` for ``low_ratio``.

    Always leaves at least one row on each side when ``num_bins >= 2``; a map
    with a single frequency row is not split (returns 1: all low).
    """
    if not 0.0 < low_ratio <= 1.0:
        raise ValueError(f"low_ratio must be in (0, 1], got {low_ratio!r}.")
    if num_bins is None:
        raise ValueError("The frequency axis must have a static size to be split.")
    if num_bins < 2 or low_ratio >= 1.0:
        return num_bins
    return int(min(num_bins - 1, max(1, round(low_ratio * num_bins))))


@keras.saving.register_keras_serializable(package="keras_dssdn")
class FrequencySplit(keras.layers.Layer):
    """Cut a map along frequency into ``[low, high]``.

    Input ``(B, F, T, C)``; outputs ``(B, F_low, T, C)`` and
    ``(B, F - F_low, T, C)`` with ``F_low = split_point(F, low_ratio)``.
    When ``F_low == F`` the high output has zero rows; callers should check
    :func:`split_point` first and skip the high path.
    """

    def __init__(self, low_ratio: float = 0.5, **kwargs):
        super().__init__(**kwargs)
        split_point(2, low_ratio)  # validates the ratio early
        self.low_ratio = float(low_ratio)

    def call(self, x):
        k = split_point(x.shape[1], self.low_ratio)
        return [x[:, :k], x[:, k:]]

    def compute_output_shape(self, input_shape):
        b, f, t, c = input_shape
        k = split_point(f, self.low_ratio)
        return [(b, k, t, c), (b, f - k, t, c)]

    def get_config(self):
        return {**super().get_config(), "low_ratio": self.low_ratio}
