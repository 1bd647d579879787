"""`.keras` files saved before the package was restructured (tests/fixtures, made by the flat-module layout of
commit 0fdd9e5) still load through the registered serialisables and give the same outputs."""

from pathlib import Path

import numpy as np
import pytest

import keras

import keras_dssdn  # noqa: F401 - registers the serialisables

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


@pytest.mark.parametrize("size", ["small", "middle", "large"])
def test_model_saved_before_the_move_loads_and_predicts_the_same(size):
    model = keras.models.load_model(FIXTURES / f"legacy_{size}.keras", compile=False)
    io = np.load(FIXTURES / f"legacy_{size}_io.npz")
    np.testing.assert_allclose(model.predict(io["x"], verbose=0), io["y"], rtol=1e-5, atol=1e-6)
    assert model.get_layer("class_names").class_names == ["a", "b/c", "d"]
    kinds = {type(layer).__name__ for layer in model.layers}
    assert {"LogMel", "LogMelNormalization", "ClassNames"} <= kinds
