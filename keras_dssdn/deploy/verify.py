"""Step 5 of an export: the checks every export runs before anything is written.

* the float TFLite model reproduces the Keras model (:func:`check_float_parity`);
* per int8 model (:func:`check_int8`): every operator exists in TFLite Micro,
  input and output are int8, the tensor arena is measured with TFLM, and
  TFLM's int8 output equals the TFLite reference interpreter's bit for bit on
  real inputs (:func:`verify_bit_exact`).

Any failure raises (:class:`~keras_dssdn.errors.VerificationError`,
:class:`~keras_dssdn.errors.UnsupportedOperatorError`). Inputs are float
normalised log-mel ``(N, n_mels, frames, 1)``, quantised here; sizes in bytes.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Callable, Dict, Optional, Tuple

import keras
import numpy as np

from keras_dssdn.deploy import micro
from keras_dssdn.deploy.calibrate import check_examples
from keras_dssdn.deploy.convert import Conversion
from keras_dssdn.deploy.data import spread
from keras_dssdn.errors import VerificationError
from keras_dssdn.inference.tflite import TFLiteRunner

#: Float TFLite outputs must match the Keras model's to this (probabilities).
FLOAT_TOLERANCE = 1e-3


def verification_inputs(given, evaluation_pool: Optional[np.ndarray], calibration: np.ndarray, num_verify: int,
                        input_shape) -> Tuple[np.ndarray, dict]:
    """``(inputs (k, *input_shape) float32, report entry)``: ``given``, else the examples spread over the
    evaluation set, else ``num_verify`` of the calibration set."""
    if given is not None:
        inputs, source = given, "given"
    elif evaluation_pool is not None:
        inputs, source = evaluation_pool, f"{len(evaluation_pool)} examples spread over the evaluation set"
    else:
        inputs = calibration[spread(len(calibration), num_verify)]
        source = f"{len(inputs)} examples of the calibration set (no evaluation set given)"
    return check_examples(inputs, input_shape, "The verification inputs"), {"source": source}


def verify_bit_exact(flatbuffer: bytes, inputs: np.ndarray, arena_size: int, name: str = "int8 model") -> dict:
    """TFLM vs TFLite reference kernels on ``inputs`` (float, quantised here); raises on any difference.

    Returns ``inputs``, ``bit_exact``, ``mismatching_inputs``, ``max_abs_diff`` (quantisation steps) and
    ``interpreters``.
    """
    ref = TFLiteRunner(flatbuffer, reference=True)
    xq = ref.to_input(inputs)
    expected = ref.run_raw(xq)
    got = micro.micro_invoke(flatbuffer, xq, arena_size)
    diff = np.abs(got.astype(np.int64) - expected.astype(np.int64))
    result = {"inputs": int(len(xq)), "bit_exact": bool(np.array_equal(got, expected)),
              "mismatching_inputs": int(np.sum(diff.max(axis=1) > 0)), "max_abs_diff": int(diff.max()),
              "interpreters": "tflite-micro (TFLM) vs ai-edge-litert BUILTIN_REF"}
    if not result["bit_exact"]:
        ops = micro.model_operators(flatbuffer)
        hints = [f"{op}: {hint}" for op, hint in micro.KNOWN_MISMATCH_HINTS.items() if op in ops]
        raise VerificationError(
            f"{name}: TFLite Micro's int8 output differs from the TFLite reference interpreter's on "
            f"{result['mismatching_inputs']} of {len(xq)} real inputs (up to {result['max_abs_diff']} quantisation "
            f"steps). The model would not behave on a device as measured here. "
            + (" Known cause: " + "; ".join(hints) + "." if hints else
               f" Operators used: {', '.join(ops)}; simplify the layer that introduces the mismatch."))
    return result


def check_float_parity(float_model: bytes, core: keras.Model, inputs: np.ndarray) -> float:
    """Max absolute difference between the float TFLite and the Keras outputs on ``inputs``;
    :class:`VerificationError` above :data:`FLOAT_TOLERANCE`."""
    tflite = TFLiteRunner(float_model, reference=False).predict(inputs)
    diff = float(np.max(np.abs(tflite - np.asarray(core(inputs)))))
    if diff > FLOAT_TOLERANCE:
        raise VerificationError(f"The float TFLite model differs from the Keras model by {diff:.2e} "
                                f"(> {FLOAT_TOLERANCE:g}) on the verification inputs; the conversion is wrong.")
    return diff


def _check_int8_io(name: str, flatbuffer: bytes) -> None:
    runner = TFLiteRunner(flatbuffer)
    if runner.input_dtype != np.int8 or runner.output["dtype"] != np.int8:
        raise VerificationError(f"The {name} model has {runner.input_dtype.__name__} input / "
                                f"{runner.output['dtype'].__name__} output; a full-integer int8 model was expected.")


def check_int8(name: str, flatbuffer: bytes, verify_inputs: np.ndarray, log: Callable = print) -> dict:
    """Operators, arena and bit-exactness of one int8 model: ``{"operators", "arena", "bit_exactness", "bytes"}``
    (``bytes``: ``file``, ``int8_weights``, ``int32``, ``other_constants``)."""
    from keras_dssdn.analysis.complexity import tflite_constant_bytes

    ops = micro.check_micro_operators(flatbuffer, where=f"The {name} int8 model")
    _check_int8_io(name, flatbuffer)
    t = time.time()
    arena = micro.measure_arena(flatbuffer)
    log(f"  {name}: TFLM arena {arena['min_bytes']:,} B (recommended {arena['recommended_bytes']:,} B) "
        f"in {time.time() - t:.1f} s")
    t = time.time()
    exact = verify_bit_exact(flatbuffer, verify_inputs, arena["recommended_bytes"], name=f"The {name} int8 model")
    log(f"  {name}: TFLM == TFLite reference kernels on {exact['inputs']} real inputs (bit-exact) "
        f"in {time.time() - t:.1f} s")
    sizes = tflite_constant_bytes(flatbuffer)
    return {"operators": ops, "arena": arena, "bit_exactness": exact,
            "bytes": {"file": len(flatbuffer), "int8_weights": sizes["int8"], "int32": sizes["int32"],
                      "other_constants": sizes["other"]}}


@dataclasses.dataclass(frozen=True)
class Verification:
    """What the checks measured: the float model's max |diff| vs Keras, and :func:`check_int8` per int8 model."""

    float_max_abs_diff: float
    int8: Dict[str, dict]


def verify(core: keras.Model, conversion: Conversion, inputs: np.ndarray, log: Callable = print) -> Verification:
    """Float parity, then :func:`check_int8` for every int8 model of ``conversion``, on ``inputs``."""
    diff = check_float_parity(conversion.float_model, core, inputs)
    return Verification(diff, {name: check_int8(name.upper(), fb, inputs, log)
                               for name, fb in conversion.int8.items()})
