"""The DCASE 2020 Task 1B baseline CNN, as a reference model.

Three 7x7 convolution layers (16, 16, 32 filters) with batch norm and ReLU,
two max-poolings with dropout 0.3, a 100-unit dense layer and the classifier
(Heittola et al., DCASE 2020 baseline, Keras). The original pools (5, 5) and
then (4, 100) on a 40 x 500 log-mel map, i.e. down to a single time step;
here the second time pool is ``frames // 5`` so that stays true for any input
length (431 frames -> pool 86). Input ``(n_mels, frames, 1)`` log-mel, output
``(classes,)`` probabilities.
"""

from __future__ import annotations

import keras
from keras import layers

from keras_dssdn.params import BN_MOMENTUM, DEFAULT_FRONTEND


def DCASEBaseline(input_shape=None, classes: int = 10, include_top: bool = True, name: str = "dcase2020_baseline",
                  classifier_activation="softmax") -> keras.Model:
    """DCASE 2020 Task 1B baseline CNN (see module docstring)."""
    input_shape = tuple(input_shape or DEFAULT_FRONTEND.input_shape())
    freq, frames = input_shape[0], input_shape[1]
    if frames is None or frames < 25 or freq < 20:
        raise ValueError(f"DCASEBaseline needs a fixed input of at least 20 bands x 25 frames, got {input_shape}.")
    inputs = keras.Input(input_shape, name="log_mel")
    x = inputs
    for i, filters in enumerate((16, 16), start=1):
        x = layers.Conv2D(filters, 7, padding="same", name=f"conv{i}")(x)
        x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"bn{i}")(x)
        x = layers.ReLU(name=f"relu{i}")(x)
    x = layers.MaxPooling2D((5, 5), name="pool1")(x)
    x = layers.Dropout(0.3, name="drop1")(x)
    x = layers.Conv2D(32, 7, padding="same", name="conv3")(x)
    x = layers.BatchNormalization(momentum=BN_MOMENTUM, name="bn3")(x)
    x = layers.ReLU(name="relu3")(x)
    x = layers.MaxPooling2D((4, max(1, (frames // 5))), name="pool2")(x)
    x = layers.Dropout(0.3, name="drop2")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(100, activation="relu", name="fc1")(x)
    x = layers.Dropout(0.3, name="drop3")(x)
    if include_top:
        x = layers.Dense(classes, activation=classifier_activation, dtype="float32", name="predictions")(x)
    return keras.Model(inputs, x, name=name)
