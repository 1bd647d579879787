"""A Keras model rebuilt for another input shape (same layers, same weights)."""

from __future__ import annotations

import keras


def with_input_shape(model: keras.Model, input_shape) -> keras.Model:
    """``model`` itself if it already takes ``input_shape`` (``(n_mels, frames, 1)``, no batch axis), else a
    clone rebuilt for it carrying ``model``'s weights (:func:`keras.models.clone_model` alone makes new,
    freshly initialised variables: an export of a free-time-axis model would otherwise ship random kernels)."""
    current = tuple(model.inputs[0].shape[1:])
    if tuple(input_shape) == current:
        return model
    clone = keras.models.clone_model(model, input_tensors=keras.Input(shape=tuple(input_shape)))
    clone.set_weights(model.get_weights())
    return clone
