"""Orthonormality regulariser for the first pointwise factor of OSC.

For a weight ``W`` of shape ``(M', C)`` (``M' <= C``) the penalty is
``alpha * ||W W^T - I||_F`` -- the Frobenius norm itself, not its square, as
in BSConv-S (Haase & Amthor, CVPR 2020). It is zero exactly when the rows of
``W`` are orthonormal.
"""

from __future__ import annotations

import keras
from keras import ops

_EPS = 1e-12


@keras.saving.register_keras_serializable(package="keras_dssdn")
class OrthonormalRegularizer(keras.regularizers.Regularizer):
    """``alpha * ||W W^T - I||_F`` for a dense or 1x1-convolution kernel.

    Accepts a Dense kernel ``(C, M')`` or a Conv2D kernel ``(1, 1, C, M')``;
    both are read as ``W = kernel.reshape(C, M').T`` of shape ``(M', C)``.
    Returns a scalar tensor.
    """

    def __init__(self, alpha: float = 0.1):
        if alpha < 0:
            raise ValueError(f"alpha must be >= 0, got {alpha!r}.")
        self.alpha = float(alpha)

    def __call__(self, kernel):
        w = ops.reshape(kernel, (-1, ops.shape(kernel)[-1]))  # (C, M')
        w = ops.transpose(w)  # (M', C)
        gram = ops.matmul(w, ops.transpose(w))  # (M', M')
        eye = ops.eye(ops.shape(gram)[0], dtype=gram.dtype)
        squared = ops.sum(ops.square(gram - eye))
        # sqrt(s + eps) - sqrt(eps): exactly 0 at W W^T = I, with a finite gradient there.
        return self.alpha * (ops.sqrt(squared + _EPS) - _EPS**0.5)

    def get_config(self):
        return {"alpha": self.alpha}
