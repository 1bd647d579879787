"""Flash cuts (deploy/flash_cuts.py): names and repeated zero points go, TFLM computes the same, buffers stay aligned."""

import numpy as np
import pytest

from keras_dssdn.analysis.complexity import int8_tflite_bytes
from keras_dssdn.deploy import flash_cuts, micro
from keras_dssdn.errors import VerificationError
from keras_dssdn.inference.tflite import TFLiteRunner

from _export_helpers import randomise_batch_norms, tiny_dssdn

SHAPE = (32, 16, 1)


@pytest.fixture(scope="module")
def int8_model():
    model = tiny_dssdn("spc", shape=SHAPE, classes=4)
    randomise_batch_norms(model)
    return int8_tflite_bytes(model, SHAPE)


def _inputs(n=12, seed=0):
    return np.random.default_rng(seed).integers(-128, 128, (n, *SHAPE)).astype(np.int8)


def test_cuts_names_and_repeated_zero_points_and_keeps_buffers_aligned(int8_model):
    from tensorflow.lite.python import schema_py_generated as schema

    slimmed, cut = flash_cuts.cut_flatbuffer(int8_model)
    assert cut["name_bytes"] > 0 and cut["zero_points_removed"] > 0 and cut["zero_point_tensors"] > 0
    assert len(slimmed) < len(int8_model) - cut["name_bytes"]  # names plus 8 B per zero point, less repacking
    assert flash_cuts.misaligned_buffers(slimmed) == 0
    model = schema.Model.GetRootAsModel(slimmed, 0)
    tensors = [model.Subgraphs(0).Tensors(i) for i in range(model.Subgraphs(0).TensorsLength())]
    assert all(not t.Name() for t in tensors)
    assert max(t.Quantization().ZeroPointLength() for t in tensors if t.Quantization()) == 1
    assert flash_cuts.cut_flatbuffer(slimmed)[1]["zero_points_removed"] == 0  # nothing left to cut
    with pytest.raises(ValueError, match="zero_point"):  # why model_int8.tflite stays the converter's
        TFLiteRunner(slimmed)


def test_tflm_gives_the_same_outputs_and_arena(int8_model):
    arena = micro.measure_arena(int8_model)
    result = flash_cuts.apply_flash_cuts(int8_model, _inputs(), arena, log=lambda *a: None)
    assert result.report["bytes_before"] == len(int8_model) and result.report["bytes_after"] == len(result.model)
    assert result.report["arena_min_bytes"] == arena["min_bytes"] and result.report["tflm_identical_inputs"] == 12
    np.testing.assert_array_equal(micro.micro_invoke(result.model, _inputs(seed=1), arena["recommended_bytes"]),
                                  micro.micro_invoke(int8_model, _inputs(seed=1), arena["recommended_bytes"]))


def test_a_cut_that_changes_the_outputs_is_refused(int8_model, monkeypatch):
    other = tiny_dssdn("spc", shape=SHAPE, classes=4)  # same graph, other weights
    randomise_batch_norms(other, seed=5)
    wrong = flash_cuts.cut_flatbuffer(int8_tflite_bytes(other, SHAPE))
    monkeypatch.setattr(flash_cuts, "cut_flatbuffer", lambda fb: wrong)
    with pytest.raises(VerificationError, match="other TFLM outputs"):
        flash_cuts.apply_flash_cuts(int8_model, _inputs(), micro.measure_arena(int8_model), log=lambda *a: None)


def test_the_round_2_names_still_import():
    """``keras_dssdn.deploy.slim`` (round 2) is the same code under its former names."""
    from keras_dssdn.deploy import slim

    assert slim.slim_flatbuffer is flash_cuts.cut_flatbuffer and slim.slim_model is flash_cuts.apply_flash_cuts
    assert slim.Slimming is flash_cuts.FlashCuts
