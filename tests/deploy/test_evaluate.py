"""The evaluate step (one pass, float and int8 models) and the choice of the deployed model."""

import numpy as np
import pytest

from keras_dssdn.analysis.metrics import classification_metrics
from keras_dssdn.deploy.convert import convert_int8
from keras_dssdn.deploy.evaluate import (ThinnedSample, accuracy_drop, choose_deployed, evaluate_models,
                                         model_metrics)
from keras_dssdn.errors import VerificationError

from _export_helpers import plain_model, synthetic


def test_evaluate_models_float_and_int8_in_one_pass():
    model = plain_model()
    x, y = synthetic(40, (16, 8, 1), 3)
    clip = np.repeat(np.arange(20), 2)
    y = y[clip * 2]  # one label per clip
    fb = convert_int8(model, x)
    result = evaluate_models(model, {"ptq": fb}, (x, y, clip), class_names=["a", "b", "c"], verify_count=5,
                             log=lambda *a: None)
    probs = np.asarray(model(x))
    expected = classification_metrics(y, probs, ["a", "b", "c"])
    assert result.metrics["float"]["accuracy"] == pytest.approx(expected["accuracy"])
    assert result.metrics["float"]["clip"]["examples"] == 20 and result.metrics["ptq"]["examples"] == 40
    assert result.metrics["float"]["top1_agreement_with_float"] == 1.0
    assert result.verify_inputs.shape == (5, 16, 8, 1)
    assert all(any(np.array_equal(v, row) for row in x) for v in result.verify_inputs)


def test_model_metrics_without_segments_has_no_clip_level():
    probs = np.eye(3)[[0, 1, 2, 0]] * 0.9 + 0.1 / 3
    m = model_metrics(probs, np.array([0, 1, 2, 1]), np.arange(4), None)
    assert m["accuracy"] == 0.75 and "clip" not in m


def test_thinned_sample_spreads_over_everything_seen():
    s = ThinnedSample(4)
    for i in range(0, 1000, 10):
        s.add(np.arange(i, i + 10, dtype=np.float32)[:, None])
    taken = s.take((1,))[:, 0]
    assert s.seen == 1000 and len(taken) == 4 and taken[0] == 0 and taken[-1] > 800


def test_choose_deployed_and_accuracy_drop():
    metrics = {"float": {"accuracy": 0.60}, "ptq": {"accuracy": 0.55}, "qat": {"accuracy": 0.58}}
    models = {"ptq": b"", "qat": b""}
    assert choose_deployed("best", models, metrics) == "qat"
    assert choose_deployed("best", {"ptq": b""}, metrics) == "ptq" and choose_deployed("ptq", models, metrics) == "ptq"
    assert choose_deployed("best", models, None) == "ptq"
    assert accuracy_drop(metrics, "qat", None) == pytest.approx(2.0)
    assert accuracy_drop(None, "ptq", 1.0) is None
    with pytest.raises(VerificationError, match="5.00 points below"):
        accuracy_drop(metrics, "ptq", 3.0)
