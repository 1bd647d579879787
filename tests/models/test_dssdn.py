"""DSSDN builder, presets, config JSON, .keras round trip and gradients."""

import json

import numpy as np
import pytest
import keras
import tensorflow as tf

import keras_dssdn
from keras_dssdn.models.presets import DCASE_MCU_1S, DCASE_SMALL_1S, PRESETS, preset_frontend, resolve_config
from keras_dssdn.models.dssdn import DSSDNConfig, build_dssdn
from keras_dssdn.params import DEFAULT_FRONTEND

SIZES = {"large": keras_dssdn.DSSDNLarge, "middle": keras_dssdn.DSSDNMiddle, "small": keras_dssdn.DSSDNSmall}
ONE_SECOND = DEFAULT_FRONTEND.input_shape(1.0)  # (128, 44, 1): keeps the tests fast


def _randomise(model, seed=0):
    """Non-trivial values in every weight, batch-norm statistics included."""
    rng = np.random.default_rng(seed)
    for w in model.weights:
        v = rng.standard_normal(w.shape).astype("float32") * 0.2
        if "variance" in w.path:
            v = np.abs(v) + 0.5
        w.assign(v)


@pytest.mark.parametrize("size", sorted(SIZES))
def test_sizes_build_with_defaults(size):
    model = SIZES[size]()
    assert model.input_shape == (None, 128, 431, 1)
    assert model.output_shape == (None, 10)
    assert model.name == f"dssdn_{size}"
    assert model.dssdn_config == PRESETS[size]


def test_default_sizes_are_ordered_and_use_their_operators():
    params = {s: SIZES[s](input_shape=ONE_SECOND).count_params() for s in SIZES}
    assert params["small"] < params["middle"] < params["large"] < 1_000_000
    layer_types = {s: {type(l).__name__ for l in SIZES[s](input_shape=ONE_SECOND).layers} for s in SIZES}
    assert "SC" in layer_types["large"] and "OSC" in layer_types["middle"] and "SPC" in layer_types["small"]


def test_constructor_arguments():
    m = keras_dssdn.DSSDNSmall(input_shape=(64, None, 1), classes=15, widths=[8, 8, 16, 16, 16], name="tiny")
    assert m.input_shape == (None, 64, None, 1) and m.output_shape == (None, 15) and m.name == "tiny"
    y = m(np.zeros((2, 64, 37, 1), "float32"))  # any length when frames is None
    assert tuple(y.shape) == (2, 15)
    np.testing.assert_allclose(np.sum(y, axis=-1), 1.0, rtol=1e-5)
    features = keras_dssdn.DSSDNSmall(input_shape=ONE_SECOND, include_top=False, widths=[8, 8, 16, 16, 24])
    assert features.output_shape == (None, 8 + 16 + 16 + 24)  # pooled blocks 2..5 concatenated
    logits = keras_dssdn.DSSDNLarge(input_shape=ONE_SECOND, classifier_activation=None)
    assert logits.layers[-1].activation.__name__ == "linear"


def test_head_concatenates_pooled_blocks():
    m = keras_dssdn.DSSDNMiddle(input_shape=ONE_SECOND)
    concat = m.get_layer("head_concat")
    inbound = [l.name for l in m.layers if l.name.endswith("_gap")]
    assert inbound == ["block2_gap", "block3_gap", "block4_gap", "block5_gap"]
    assert concat.output.shape[-1] == sum(PRESETS["middle"].widths[1:])


def test_every_block_splits_frequency_and_keeps_all_rows():
    m = keras_dssdn.DSSDNSmall(input_shape=ONE_SECOND)
    for i in range(1, 6):
        split = m.get_layer(f"block{i}_split")
        f_in = split.input.shape[1]
        low, high = split.output
        assert low.shape[1] + high.shape[1] == f_in and low.shape[1] == f_in // 2
        assert m.get_layer(f"block{i}_merge").output.shape[1] == f_in
        # the deep path (the DSSO operators) sees the low part only
        assert m.get_layer(f"block{i}_spc1").output.shape[1] == low.shape[1]


def test_wrong_widths_and_operator_mismatch():
    with pytest.raises(ValueError, match="5 blocks"):
        keras_dssdn.DSSDNSmall(widths=[8, 8])
    with pytest.raises(ValueError, match="uses the SPC operator"):
        keras_dssdn.DSSDNSmall(config=PRESETS["large"])


def test_config_json_round_trip(tmp_path):
    cfg = DSSDNConfig(operator="osc", widths=(8, 12, 16, 20, 24), pools=[[2, 2]] * 5, low_ratio=0.375,
                      input_shape=[64, None, 1], classes=7)
    text = cfg.to_json()
    assert DSSDNConfig.from_json(text) == cfg
    path = tmp_path / "cfg.json"
    cfg.save(path)
    assert not (tmp_path / "cfg.json.tmp").exists()
    assert DSSDNConfig.from_json(path) == cfg == resolve_config(str(path)) == resolve_config(json.loads(text))
    # a tuner/trainer file that wraps the architecture under "model"
    (tmp_path / "wrapped.json").write_text(json.dumps({"model": cfg.to_dict(), "score": 0.5}))
    assert DSSDNConfig.from_json(tmp_path / "wrapped.json") == cfg
    a, b = build_dssdn(cfg), build_dssdn(DSSDNConfig.from_json(text))
    assert a.count_params() == b.count_params() and a.output_shape == (None, 7)
    m = keras_dssdn.DSSDNMiddle(config=path)
    assert m.dssdn_config == cfg


def test_config_errors(tmp_path):
    with pytest.raises(ValueError, match="Unknown DSSDN config key.*'widht'"):
        DSSDNConfig.from_dict({"widht": [1, 2]})
    with pytest.raises(ValueError, match="operator"):
        DSSDNConfig(operator="conv")
    with pytest.raises(ValueError, match="pools"):
        DSSDNConfig(widths=(8, 8))
    with pytest.raises(ValueError, match="head_blocks"):
        DSSDNConfig(head_blocks=(6,))
    with pytest.raises(FileNotFoundError, match="nope.json"):
        DSSDNConfig.from_json(tmp_path / "nope.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        DSSDNConfig.from_json("{not json")


@pytest.mark.parametrize("size", sorted(SIZES))
def test_keras_file_round_trip_gives_identical_outputs(size, tmp_path):
    model = SIZES[size](input_shape=ONE_SECOND, classes=15)
    _randomise(model)
    x = np.random.default_rng(1).standard_normal((3, *ONE_SECOND)).astype("float32")
    before = model.predict(x, verbose=0)
    path = tmp_path / f"{size}.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    after = loaded.predict(x, verbose=0)
    np.testing.assert_array_equal(before, after)
    assert len(loaded.losses) == len(model.losses)  # OSC's regulariser survives loading


@pytest.mark.parametrize("size", sorted(SIZES))
def test_gradients_are_finite_and_reach_every_trainable_weight(size):
    model = SIZES[size](input_shape=ONE_SECOND)
    x = tf.random.normal((2, *ONE_SECOND))
    y = tf.one_hot([1, 3], 10)
    with tf.GradientTape() as tape:
        loss = keras.losses.categorical_crossentropy(y, model(x, training=True))
        loss = tf.reduce_mean(loss) + tf.add_n(model.losses or [tf.constant(0.0)])
    grads = tape.gradient(loss, model.trainable_weights)
    assert all(g is not None for g in grads)
    assert all(bool(tf.reduce_all(tf.math.is_finite(g))) for g in grads)
    if size == "middle":
        assert len(model.losses) == 10  # one orthonormality term per OSC (5 blocks x 2 steps)


def test_dcase_setting_is_small_on_one_second():
    assert DCASE_SMALL_1S.input_shape == ONE_SECOND
    assert DCASE_SMALL_1S.replace(input_shape=PRESETS["small"].input_shape) == PRESETS["small"]


def test_microcontroller_setting_is_smalls_blocks_on_64_mel_bands_with_a_stride_2_stem():
    assert resolve_config("dcase_mcu_1s") is DCASE_MCU_1S
    assert DCASE_MCU_1S.replace(stem_strides=PRESETS["small"].stem_strides,
                                input_shape=PRESETS["small"].input_shape) == PRESETS["small"]
    frontend = preset_frontend("dcase_mcu_1s")
    assert frontend.n_mels == 64 and frontend.input_shape(1.0) == DCASE_MCU_1S.input_shape == (64, 44, 1)
    assert preset_frontend("small") is DEFAULT_FRONTEND
    model = build_dssdn(DCASE_MCU_1S)
    assert model.get_layer("stem_conv").output.shape[1:3] == (32, 22)  # a quarter of the input map
