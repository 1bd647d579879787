"""Quantisation-aware training: the tf_keras mirror, a QAT export, the rounding-tie guard."""

from pathlib import Path

import numpy as np
import pytest

import keras

from keras_dssdn.deploy.export import export_bundle
from keras_dssdn.deploy.qat import check_mirror
from keras_dssdn.deploy.qat_child import _LUT_ACTIVATIONS, _near_rounding_tie
from keras_dssdn.deploy.qat_mirror import build_mirror_spec
from keras_dssdn.params import FrontEndParams

from _export_helpers import QUIET, check_bundle, randomise_batch_norms, synthetic, tiny_dssdn, train_briefly


def test_qat_mirror_reproduces_sc_osc_spc():
    """One child process checks the tf_keras mirror of SC, OSC and SPC blocks (batch norms folded)."""
    from keras_dssdn.models.blocks import conv_bn_relu, dssdb

    inp = keras.Input((32, 16, 1))
    x = conv_bn_relu(inp, 8, 3, name="stem")
    x = dssdb(x, 12, "sc", name="b1", distill=6, pool=(2, 2))
    x = dssdb(x, 12, "osc", name="b2", distill=6, operator_kwargs={"bottleneck_ratio": 0.25, "ortho_alpha": 0.1})
    x = dssdb(x, 16, "spc", name="b3", distill=8, operator_kwargs={"partial_ratio": 0.25})
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(5, activation="softmax")(x)
    model = keras.Model(inp, out, name="all_operators")
    randomise_batch_norms(model)
    spec, weights = build_mirror_spec(model)
    ops = {n["op"] for n in spec["nodes"]}
    assert {"crop", "depthwise", "conv2d", "multiply", "concat", "add"} <= ops
    assert not any(n["name"].endswith("_bn") for n in spec["nodes"])  # all batch norms folded
    x, _ = synthetic(6, (32, 16, 1), 5)
    result = check_mirror(model, x, **QUIET)
    assert result["mirror_max_abs_diff"] < 1e-5


@pytest.mark.slow
def test_qat_runs_on_dssdn_and_converts(tmp_path):
    """QAT of a DSSDN with the custom SPC / ECA / FrequencySplit layers: 1 epoch, converts, TFLM bit-exact."""
    model = tiny_dssdn("spc", shape=(32, 16, 1), classes=4)
    x, y = synthetic(48, (32, 16, 1), 4)
    train_briefly(model, x, y)
    result = export_bundle(model, tmp_path / "bundle", representative=x[:16], evaluation=(x[:16], y[:16]),
                           qat_epochs=1, qat_train=(x, y), deploy="qat", num_verify=8,
                           frontend=FrontEndParams(n_mels=32), **QUIET)
    report = check_bundle(Path(result.path))
    assert report["deployed"] == "qat"
    qat = report["qat"]
    assert qat["epochs"] == 1 and qat["examples"] == 48 and qat["mirror_max_abs_diff"] < 1e-4
    assert len(qat["history"]["loss"]) == 1
    assert report["int8"]["qat"]["bit_exactness"]["bit_exact"]
    assert "metrics" in report["int8"]["qat"] and "metrics" in report["int8"]["ptq"]
    bundle = Path(result.path)
    assert (bundle / "model_int8_qat.tflite").read_bytes() == (bundle / "model_int8.tflite").read_bytes()


def test_rounding_tie_detection_for_lut_activations():
    fn, out_scale = _LUT_ACTIVATIONS["sigmoid"]
    s, zero = 0.0078124189749360085, 180  # measured: TFLM differed from the reference LUT by one step
    assert _near_rounding_tie(-zero * s, (255 - zero) * s, fn, out_scale)
    assert not _near_rounding_tie(-3.0, 5.0, fn, out_scale)
    rng = np.random.default_rng(0)
    flagged = np.mean([_near_rounding_tie(-rng.uniform(0, 5), rng.uniform(0, 5), fn, out_scale) for _ in range(300)])
    assert flagged < 0.1


def test_mirror_refuses_unknown_layers_by_name():
    import pytest

    from keras_dssdn.errors import QATError

    inp = keras.Input((8, 4, 1))
    x = keras.layers.Conv2D(2, 3, name="conv")(inp)
    x = keras.layers.LayerNormalization(name="odd_norm")(x)
    model = keras.Model(inp, keras.layers.GlobalAveragePooling2D()(x))
    with pytest.raises(QATError, match=r"odd_norm \(LayerNormalization\) has no tf_keras mirror"):
        build_mirror_spec(model)


def test_qat_settings_are_one_checked_object():
    """An export's QAT options become one QATRun: its fields, an unknown option or epochs < 1 named in a
    ConfigError before the child process starts (was a TypeError from run_qat's 14 keywords)."""
    from keras_dssdn.deploy.qat import MIRROR_TOLERANCE, QATRun
    from keras_dssdn.errors import ConfigError

    run = QATRun.from_options(3, {"learning_rate": 5e-5, "max_examples": 64})
    assert (run.epochs, run.learning_rate, run.max_examples, run.tolerance) == (3, 5e-5, 64, MIRROR_TOLERANCE)
    with pytest.raises(ConfigError, match=r"QAT option\(s\) \['lr'\] are not known.*learning_rate"):
        QATRun.from_options(1, {"lr": 1e-4})
    with pytest.raises(ConfigError, match="QAT epochs must be >= 1, got 0"):
        QATRun.from_options(0, {})
