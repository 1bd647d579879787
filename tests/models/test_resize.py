"""models.resize.with_input_shape: a model rebuilt for a fixed time axis keeps its weights and outputs."""

import keras
import numpy as np

from keras_dssdn.models.resize import with_input_shape


def _free_time_model():
    inp = keras.Input((8, None, 1))
    x = keras.layers.Conv2D(3, 3, bias_initializer="random_normal")(inp)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inp, keras.layers.Dense(2)(x))


def test_same_shape_is_the_model_itself():
    m = _free_time_model()
    assert with_input_shape(m, (8, None, 1)) is m


def test_fixed_time_axis_keeps_weights_and_outputs():
    m = _free_time_model()
    fixed = with_input_shape(m, (8, 5, 1))
    assert tuple(fixed.inputs[0].shape[1:]) == (8, 5, 1)
    for a, b in zip(m.get_weights(), fixed.get_weights()):
        np.testing.assert_array_equal(a, b)
    x = np.random.default_rng(0).normal(size=(4, 8, 5, 1)).astype("float32")
    np.testing.assert_allclose(m.predict(x, verbose=0), fixed.predict(x, verbose=0), rtol=1e-6, atol=1e-6)
