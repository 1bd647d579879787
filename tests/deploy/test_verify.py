"""The convert and verify steps on their own: int8 conversion, float parity, TFLM operators, arena, bit-exactness."""

import numpy as np
import pytest

from keras_dssdn.deploy import micro
from keras_dssdn.deploy.convert import convert, convert_float, convert_int8
from keras_dssdn.deploy.calibrate import Calibration
from keras_dssdn.deploy.export_data import DataSources
from keras_dssdn.deploy.prepare import prepare_model
from keras_dssdn.deploy.settings import QATSettings
from keras_dssdn.deploy.verify import check_float_parity, verification_inputs, verify, verify_bit_exact
from keras_dssdn.errors import VerificationError

from _export_helpers import FE16, plain_model, synthetic


def test_arena_measurement_is_the_smallest_that_runs():
    x, _ = synthetic(8, (16, 8, 1), 3)
    fb = convert_int8(plain_model(), x)
    arena = micro.measure_arena(fb)
    n = arena["min_bytes"]
    assert arena["recommended_bytes"] >= n + 2048 and arena["recommended_bytes"] % 1024 == 0
    interp = micro.micro_interpreter(fb, n)
    interp.set_input(np.zeros((1, 16, 8, 1), np.int8), 0)
    interp.invoke()
    if n - 1 >= 1024:
        with pytest.raises(RuntimeError):
            micro.micro_interpreter(fb, n - 1)
    assert any("Arena allocation total" in line for line in arena["allocations"])


def test_convert_and_verify_steps_alone(monkeypatch):
    model = plain_model()
    prep = prepare_model(model, frontend=FE16)
    x, _ = synthetic(12, (16, 8, 1), 3)
    conversion = convert(prep, Calibration(x, "given"), QATSettings(), DataSources(), log=lambda *a: None)
    assert set(conversion.int8) == {"ptq"} and conversion.qat_info is None
    assert micro.model_operators(conversion.int8["ptq"]) == ["CONV_2D", "FULLY_CONNECTED", "MEAN", "SOFTMAX"]
    inputs, source = verification_inputs(None, None, x, 4, (16, 8, 1))
    assert inputs.shape == (4, 16, 8, 1) and "calibration set" in source["source"]
    checked = verify(prep.core, conversion, inputs, log=lambda *a: None)
    assert checked.float_max_abs_diff < 1e-3
    assert checked.int8["ptq"]["bit_exactness"] == verify_bit_exact(conversion.int8["ptq"], inputs,
                                                                     checked.int8["ptq"]["arena"]["recommended_bytes"])
    # A float model that is not the Keras model fails the parity check.
    other = plain_model()
    with pytest.raises(VerificationError, match="float TFLite model differs"):
        check_float_parity(convert_float(other), model, x)
