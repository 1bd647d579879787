"""The on-device defects of issue 22 ("found by an independent check" of a dcase_mcu_1s bundle), one test each.

1. TFLM vs LiteRT reference kernels: counted on every example, "bit-exact" only where every value matched;
2. the audio that arrives during Invoke() is buffered and counted in the RAM total;
3. the streaming example: the ISR only fills a ring buffer, a main loop runs the front end and the model;
4. the front end's sample rate is a setting, and the C API refuses another rate;
5. SceneSetup() twice;
6. the device-only flatbuffer is refused by LiteRT (the standard tools get model_int8.tflite).
"""

import json
from pathlib import Path

import numpy as np
import pytest

import keras

from keras_dssdn.deploy import micro
from keras_dssdn.deploy.verify import MAX_OUTPUT_STEP, ExactnessTally, verify_bit_exact
from keras_dssdn.errors import VerificationError
from keras_dssdn.inference.tflite import TFLiteRunner

from _export_helpers import QUIET, synthetic, tiny_dssdn


def _dense_int8(seed=0, features=64, classes=15):
    """A one-layer classifier (FULLY_CONNECTED, per-channel int8 weights by PTQ) and its int8 flatbuffer."""
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    inp = keras.Input((features,))
    model = keras.Model(inp, keras.layers.Dense(classes)(inp))
    rep = np.random.default_rng(seed).standard_normal((64, features)).astype(np.float32)
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([r[None]] for r in rep)
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = conv.inference_output_type = tf.int8
    return conv.convert()


# ---------------------------------------------------------------------------
# 1. TFLM vs the reference kernels, counted
# ---------------------------------------------------------------------------


def test_fully_connected_rounding_ties_are_counted_not_hidden():
    """A per-channel FULLY_CONNECTED whose accumulators sometimes land next to a .5 tie: TFLM (double rounding) and
    LiteRT's reference kernel (single rounding) differ by one step on a few values. The check counts them, names the
    outputs and the operator, and does not call the model bit-exact; the decisions it changes are near-ties."""
    fb = _dense_int8()
    assert micro.model_operators(fb) == ["FULLY_CONNECTED"]
    ref = TFLiteRunner(fb)
    xq = np.random.default_rng(1).integers(-128, 128, (2000, 64)).astype(np.int8)
    expected, got = ref.run_raw(xq).astype(int), micro.micro_invoke(fb, xq, 16384).astype(int)
    differ = int(np.sum(expected != got))
    assert 0 < differ < expected.size // 100 and np.abs(expected - got).max() == 1  # the real effect, measured here
    floats = (xq.astype(np.float32) - ref.input_zero_point) * ref.input_scale
    clips = np.repeat(np.arange(200), 10)  # 200 "clips" of 10 segments
    result = verify_bit_exact(fb, floats, 16384, clip_index=clips)  # no VerificationError: within one step
    assert result["bit_exact"] is False
    assert (result["values"], result["equal"], result["max_step"]) == (expected.size, expected.size - differ, 1)
    assert result["mismatching_inputs"] == int(np.sum((expected != got).any(axis=1)))
    assert sum(result["differing_outputs"].values()) == differ and result["output_operator"] == "FULLY_CONNECTED"
    seg_flips = int(np.sum(expected.argmax(1) != got.argmax(1)))
    assert result["segment_decisions_changed"] == seg_flips and result["clips"] == 200
    assert all(m <= result["near_tie_steps"] for m in result["segment_flip_margins"] + result["clip_flip_margins"])


def test_tally_fails_beyond_one_step_or_on_a_clear_decision_change():
    tally = ExactnessTally()
    ref = np.array([[10, 0, -5], [3, 2, 1]])
    tally.add(ref + np.array([[0, 1, 0], [0, 0, 0]]), ref, np.array([0, 0]))
    assert tally.problems() == [] and tally.result()["differing_outputs"] == {"1": 1}
    big = ExactnessTally()
    big.add(ref + np.array([[0, 0, MAX_OUTPUT_STEP + 1], [0, 0, 0]]), ref)
    assert "2 quantisation steps apart" in big.problems()[0]
    flip = ExactnessTally()  # TFLM picks class 1 where the reference had class 0 ahead by 10 steps
    flip.add(np.array([[10, 11, -5]]), np.array([[10, 0, -5]]))
    problems = flip.problems()
    assert any("1 of 1 segment decisions changed" in p for p in problems)
    assert any("1 of 1 clip decisions changed" in p for p in problems)
