"""The three Deep Space Separable Operators (DSSO) as Keras layers.

All three share one shape: a pointwise (1x1) channel mixing ``C -> M`` followed
by depthwise spatial filtering split into a frequency kernel ``(k, 1)`` and a
time kernel ``(1, k)`` whose batch-normalised outputs are summed (BSConv-U
order: pointwise first, then depthwise). They differ in two knobs:

* :class:`SC`  -- plain pointwise, spatial filtering on all ``M`` channels.
* :class:`OSC` -- pointwise factorised ``C -> M' -> M`` with
  ``M' = min(C, max(4, ceil(p * C)))`` and an orthonormality regulariser on the
  first factor (BSConv-S).
* :class:`SPC` -- spatial filtering on only ``ceil(r * M)`` channels; the other
  channels leave the layer exactly as the pointwise step produced them
  (FasterNet's partial convolution).

Input and output are ``(batch, freq, time, channels)``; spatial size is kept
(``padding="same"``, stride 1). Depthwise kernels are never dilated: TFLite
Micro's int8 kernels for the dilated pattern (SPACE_TO_BATCH_ND /
DEPTHWISE_CONV_2D / BATCH_TO_SPACE_ND) differ from TFLite's reference output
(SPEC.md), and the batch-norms sit directly after each depthwise convolution so
the TFLite converter folds them away. No activation is applied: the caller
(the DSSDB) adds one.
"""

from __future__ import annotations

import math

import keras
from keras import layers, ops

from keras_dssdn.params import BN_MOMENTUM
from keras_dssdn.layers.regularizers import OrthonormalRegularizer


def bottleneck_width(in_channels: int, ratio: float = 0.25, minimum: int = 4) -> int:
    """OSC's inner width ``M' = min(C, max(minimum, ceil(ratio * C)))``."""
    return int(min(in_channels, max(minimum, math.ceil(ratio * in_channels))))


def partial_channels(channels: int, ratio: float) -> int:
    """Channels SPC filters spatially: ``ceil(ratio * channels)``, at least 1."""
    return int(min(channels, max(1, math.ceil(ratio * channels))))


class _SeparableOperator(keras.layers.Layer):
    """Pointwise ``C -> M`` then summed ``(k,1)`` and ``(1,k)`` depthwise filters.

    ``bottleneck_ratio``: None for a single 1x1 step, else the OSC factorisation.
    ``partial_ratio``: fraction of the ``M`` channels filtered spatially (1.0: all).
    ``pointwise``: False skips the 1x1 step (needs ``C == M``).
    """

    def __init__(
        self,
        filters: int,
        kernel_size: int = 3,
        *,
        bottleneck_ratio=None,
        ortho_alpha: float = 0.1,
        partial_ratio: float = 1.0,
        pointwise: bool = True,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if int(filters) < 1:
            raise ValueError(f"filters must be >= 1, got {filters!r}.")
        if int(kernel_size) < 1 or int(kernel_size) % 2 == 0:
            raise ValueError(f"kernel_size must be a positive odd integer, got {kernel_size!r}.")
        if not 0.0 < float(partial_ratio) <= 1.0:
            raise ValueError(f"partial_ratio must be in (0, 1], got {partial_ratio!r}.")
        if bottleneck_ratio is not None and not 0.0 < float(bottleneck_ratio) <= 1.0:
            raise ValueError(f"bottleneck_ratio must be in (0, 1], got {bottleneck_ratio!r}.")
        self.filters = int(filters)
        self.kernel_size = int(kernel_size)
        self.bottleneck_ratio = None if bottleneck_ratio is None else float(bottleneck_ratio)
        self.ortho_alpha = float(ortho_alpha)
        self.partial_ratio = float(partial_ratio)
        self.pointwise = bool(pointwise)
        self.spatial_channels = partial_channels(self.filters, self.partial_ratio)
        k = self.kernel_size
        self.freq_depthwise = layers.DepthwiseConv2D((k, 1), padding="same", use_bias=False, name="freq_dw")
        self.freq_bn = layers.BatchNormalization(momentum=BN_MOMENTUM, name="freq_bn")
        self.time_depthwise = layers.DepthwiseConv2D((1, k), padding="same", use_bias=False, name="time_dw")
        self.time_bn = layers.BatchNormalization(momentum=BN_MOMENTUM, name="time_bn")

    def build(self, input_shape):
        channels = input_shape[-1]
        if channels is None:
            raise ValueError(f"{self.name}: the channel axis must be known, got input shape {input_shape}.")
        self.reduce = None
        self.expand = None
        if not self.pointwise:
            if channels != self.filters:
                raise ValueError(
                    f"{self.name}: pointwise=False needs input channels == filters "
                    f"({channels} != {self.filters})."
                )
        elif self.bottleneck_ratio is None:
            self.expand = layers.Conv2D(self.filters, 1, use_bias=False, name="pointwise")
            self.expand.build(input_shape)
        else:
            inner = bottleneck_width(channels, self.bottleneck_ratio)
            self.reduce = layers.Conv2D(
                inner, 1, use_bias=False, name="pointwise_reduce",
                kernel_regularizer=OrthonormalRegularizer(self.ortho_alpha),
            )
            self.reduce.build(input_shape)
            self.expand = layers.Conv2D(self.filters, 1, use_bias=False, name="pointwise_expand")
            self.expand.build(tuple(input_shape[:-1]) + (inner,))
        spatial_shape = tuple(input_shape[:-1]) + (self.spatial_channels,)
        for layer in (self.freq_depthwise, self.freq_bn, self.time_depthwise, self.time_bn):
            layer.build(spatial_shape)
        super().build(input_shape)

    def pointwise_output(self, x):
        """The 1x1 step alone: ``(B, F, T, C) -> (B, F, T, M)``."""
        if self.reduce is not None:
            x = self.reduce(x)
        if self.expand is not None:
            x = self.expand(x)
        return x

    def call(self, x, training=None):
        p = self.pointwise_output(x)
        n = self.spatial_channels
        part = p if n == self.filters else p[..., :n]
        spatial = self.freq_bn(self.freq_depthwise(part), training=training) + self.time_bn(
            self.time_depthwise(part), training=training
        )
        if n == self.filters:
            return spatial
        return ops.concatenate([spatial, p[..., n:]], axis=-1)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.filters,)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "kernel_size": self.kernel_size}


@keras.saving.register_keras_serializable(package="keras_dssdn")
class SC(_SeparableOperator):
    """Separable Convolution: 1x1 ``C -> filters``, then ``(k,1) + (1,k)`` depthwise.

    Input ``(B, F, T, C)`` -> output ``(B, F, T, filters)``.
    """

    def __init__(self, filters, kernel_size=3, **kwargs):
        super().__init__(filters, kernel_size, **kwargs)


@keras.saving.register_keras_serializable(package="keras_dssdn")
class OSC(_SeparableOperator):
    """Orthonormal Separable Convolution: SC with pointwise ``C -> M' -> filters``.

    ``M' = min(C, max(4, ceil(bottleneck_ratio * C)))``; the ``C -> M'`` kernel
    carries :class:`OrthonormalRegularizer` (``ortho_alpha``), collected in
    ``layer.losses``. Input ``(B, F, T, C)`` -> output ``(B, F, T, filters)``.
    """

    def __init__(self, filters, kernel_size=3, bottleneck_ratio=0.25, ortho_alpha=0.1, **kwargs):
        super().__init__(filters, kernel_size, bottleneck_ratio=bottleneck_ratio, ortho_alpha=ortho_alpha, **kwargs)

    def get_config(self):
        return {**super().get_config(), "bottleneck_ratio": self.bottleneck_ratio, "ortho_alpha": self.ortho_alpha}


@keras.saving.register_keras_serializable(package="keras_dssdn")
class SPC(_SeparableOperator):
    """Separable Partial Convolution: spatial filtering on ``ceil(partial_ratio * filters)`` channels.

    The first ``spatial_channels`` channels of the pointwise output are filtered;
    the rest are concatenated back untouched (bit-identical). With
    ``pointwise=False`` (needs ``C == filters``) they are the input channels
    themselves. Input ``(B, F, T, C)`` -> output ``(B, F, T, filters)``.
    """

    def __init__(self, filters, kernel_size=3, partial_ratio=0.25, pointwise=True, **kwargs):
        super().__init__(filters, kernel_size, partial_ratio=partial_ratio, pointwise=pointwise, **kwargs)

    def get_config(self):
        return {**super().get_config(), "partial_ratio": self.partial_ratio, "pointwise": self.pointwise}


OPERATORS = {"sc": SC, "osc": OSC, "spc": SPC}
