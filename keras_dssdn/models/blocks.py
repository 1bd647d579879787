"""The Deep Space Separable Distillation Block (DSSDB) and the stem's conv-BN-ReLU helper.

DSSDB, on a ``(B, F, T, C_in)`` map, following SPEC.md:

1. cut the frequency axis into a low part (``low_ratio`` of the rows) and a
   high part (:class:`~keras_dssdn.layers.frequency.FrequencySplit`);
2. low part, the deep path: ``steps`` DSSO operators refine the features; before
   each one a 1x1 "distilled" branch (``distill`` channels) is taken off; the
   distilled branches and the last refined map are concatenated, re-weighted
   by ECA and mixed by a 1x1 convolution to ``filters`` channels;
3. high part, the cheap path: one 1x1 convolution to ``filters`` channels;
4. both parts are batch-normalised and ReLU-activated, put back together along
   frequency (so no frequency row is dropped) and average-pooled.

Output ``(B, F / pf, T / pt, filters)`` for ``pool = (pf, pt)``.
"""

from __future__ import annotations

from keras import layers

from keras_dssdn.layers.attention import ECA
from keras_dssdn.layers.frequency import FrequencySplit, split_point
from keras_dssdn.layers.operators import OPERATORS
from keras_dssdn.params import BN_MOMENTUM


def conv_bn_relu(x, filters: int, kernel_size=1, strides=1, *, name: str):
    """``Conv2D (no bias) -> BatchNorm -> ReLU``; the converter folds the BN."""
    x = layers.Conv2D(filters, kernel_size, strides=strides, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def dssdb(
    x,
    filters: int,
    operator: str,
    *,
    name: str,
    kernel_size: int = 3,
    low_ratio: float = 0.5,
    steps: int = 2,
    distill: int = None,
    pool=(1, 1),
    operator_kwargs: dict = None,
):
    """Apply one DSSDB to the Keras tensor ``x`` (functional API); see module doc.

    ``operator``: ``"sc"``, ``"osc"`` or ``"spc"``; ``operator_kwargs`` go to its
    constructor (``partial_ratio``, ``bottleneck_ratio``, ``ortho_alpha``).
    ``distill``: channels of each distilled branch (default ``filters // 2``).
    """
    if operator not in OPERATORS:
        raise ValueError(f"Unknown operator {operator!r}; choose one of {sorted(OPERATORS)}.")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps!r}.")
    distill = max(1, filters // 2) if distill is None else int(distill)
    op_cls = OPERATORS[operator]
    num_freq = x.shape[1]
    has_high = split_point(num_freq, low_ratio) < num_freq
    if has_high:
        low, high = FrequencySplit(low_ratio, name=f"{name}_split")(x)
    else:
        low, high = x, None

    h = low
    branches = []
    for i in range(1, steps + 1):
        branches.append(conv_bn_relu(h, distill, 1, name=f"{name}_distill{i}"))
        h = op_cls(filters, kernel_size, name=f"{name}_{operator}{i}", **(operator_kwargs or {}))(h)
        h = layers.ReLU(name=f"{name}_{operator}{i}_relu")(h)
    branches.append(h)
    fused = layers.Concatenate(axis=-1, name=f"{name}_distill_concat")(branches)
    fused = ECA(name=f"{name}_eca")(fused)
    y = conv_bn_relu(fused, filters, 1, name=f"{name}_fuse")
    if has_high:
        y_high = conv_bn_relu(high, filters, 1, name=f"{name}_high")
        y = layers.Concatenate(axis=1, name=f"{name}_merge")([y, y_high])
    if tuple(pool) != (1, 1):
        y = layers.AveragePooling2D(tuple(pool), name=f"{name}_pool")(y)
    return y
