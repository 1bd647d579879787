"""ECA: efficient channel attention (Wang et al., CVPR 2020), the re-weighting inside every DSSDB."""

from __future__ import annotations

import math

import keras
from keras import ops


def eca_kernel_size(channels: int, gamma: float = 2.0, b: float = 1.0) -> int:
    """ECA's adaptive odd kernel size ``|log2(C)/gamma + b/gamma|`` (ECA-Net)."""
    t = int(abs(math.log2(max(channels, 1)) / gamma + b / gamma))
    return max(t if t % 2 else t + 1, 1)


@keras.saving.register_keras_serializable(package="keras_dssdn")
class ECA(keras.layers.Layer):
    """Efficient Channel Attention: ``x * sigmoid(conv1d_k(mean_{F,T}(x)))``.

    Input and output ``(B, F, T, C)``. The 1-D convolution runs across the
    channel axis with an odd kernel ``k`` (default: :func:`eca_kernel_size`)
    and no bias; it costs ``C * k`` MACs.
    """

    def __init__(self, kernel_size=None, **kwargs):
        super().__init__(**kwargs)
        if kernel_size is not None and (int(kernel_size) < 1 or int(kernel_size) % 2 == 0):
            raise ValueError(f"ECA kernel_size must be a positive odd integer, got {kernel_size!r}.")
        self.kernel_size = None if kernel_size is None else int(kernel_size)

    def build(self, input_shape):
        channels = input_shape[-1]
        self.k = self.kernel_size or eca_kernel_size(channels)
        self.kernel = self.add_weight(
            name="kernel", shape=(self.k, 1, 1), initializer="glorot_uniform", trainable=True
        )
        super().build(input_shape)

    def call(self, x):
        pooled = ops.mean(x, axis=(1, 2))  # (B, C)
        gate = ops.conv(ops.expand_dims(pooled, -1), self.kernel, padding="same")  # (B, C, 1)
        gate = ops.sigmoid(ops.squeeze(gate, -1))  # (B, C)
        return x * gate[:, None, None, :]  # broadcast over (F, T)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "kernel_size": self.kernel_size}
