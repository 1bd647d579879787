"""The graph-walking MAC counter against hand counts, the int8 byte count, and the size budgets."""

import numpy as np
import pytest
import keras

import keras_dssdn
from keras_dssdn.analysis.budgets import DCASE_MAX_INT8_BYTES, DCASE_MAX_MACS, DCASE_MAX_PARAMS, DEFAULT_BUDGETS
from keras_dssdn.analysis.complexity import int8_tflite_bytes, profile, tflite_constant_bytes
from keras_dssdn.cli.complexity import main
from keras_dssdn.models.presets import PRESETS, preset_frontend
from keras_dssdn.models.dssdn import build_dssdn
from keras_dssdn.layers.operators import SC, SPC
from keras_dssdn.params import DEFAULT_FRONTEND


def _stack():
    inp = keras.Input((16, 20, 3))
    x = keras.layers.Conv2D(8, (3, 5), strides=(1, 2), padding="same", name="conv")(inp)  # -> 16 x 10 x 8
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.DepthwiseConv2D(3, padding="valid", depth_multiplier=2, name="dw")(x)  # -> 14 x 8 x 16
    x = keras.layers.ReLU(name="relu")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    out = keras.layers.Dense(5, name="fc")(x)
    return keras.Model(inp, out, name="stack")


def test_macs_match_hand_count_on_conv_depthwise_dense_stack():
    report = profile(_stack())
    rows = {r.name: r for r in report.rows}
    conv = 16 * 10 * 8 * (3 * 5 * 3)
    dw = 14 * 8 * 16 * (3 * 3)
    fc = 16 * 5
    assert rows["conv"].macs == conv
    assert rows["dw"].macs == dw
    assert rows["fc"].macs == fc
    assert rows["bn"].macs == rows["relu"].macs == rows["gap"].macs == 0
    assert report.macs == conv + dw + fc
    assert rows["conv"].params == 3 * 5 * 3 * 8 + 8 and rows["fc"].params == 16 * 5 + 5
    assert report.params == sum(r.params for r in report.rows)
    assert "total" in report.table() and "conv" in report.table()


def test_custom_layers_are_counted_from_the_graph():
    inp = keras.Input((10, 12, 6))
    x = SC(8, 3, name="sc")(inp)
    out = SPC(16, 5, partial_ratio=0.25, name="spc")(x)
    report = profile(keras.Model(inp, out))
    rows = {r.name: r for r in report.rows}
    hw = 10 * 12
    assert rows["sc"].macs == hw * 6 * 8 + 2 * hw * 8 * 3  # pointwise + (3x1) and (1x3) depthwise
    assert rows["spc"].macs == hw * 8 * 16 + 2 * hw * 4 * 5  # pointwise + depthwise on 4 of 16 channels


def test_other_input_length_scales_macs():
    model = keras_dssdn.DSSDNSmall(input_shape=DEFAULT_FRONTEND.input_shape(1.0))
    r1 = profile(model)
    r10 = profile(model, DEFAULT_FRONTEND.input_shape(10.0))
    assert r1.params == r10.params and r1.seconds == 1.0 and r10.seconds == 10.0
    assert 9.0 < r10.macs / r1.macs < 11.0
    flexible = keras_dssdn.DSSDNSmall(input_shape=(128, None, 1))
    with pytest.raises(ValueError, match="unknown dimension"):
        profile(flexible)
    assert profile(flexible, DEFAULT_FRONTEND.input_shape(1.0)).macs == r1.macs


def test_tflite_constant_bytes_counts_int8_weights():
    model = _stack()
    sizes = tflite_constant_bytes(int8_tflite_bytes(model, (16, 20, 3)))
    # int8 weights: conv (BN folded in) + depthwise + dense kernels; biases are int32.
    assert sizes["int8"] == 3 * 5 * 3 * 8 + 3 * 3 * 8 * 2 + 16 * 5
    assert sizes["int32"] > 0
    assert sizes["file"] > sizes["int8"] + sizes["int32"]


@pytest.mark.parametrize("size", ["small", "middle", "large"])
def test_sizes_within_budget_per_ten_seconds(size):
    report = profile(build_dssdn(PRESETS[size]))
    assert report.seconds == 10.0
    budget = DEFAULT_BUDGETS[size]
    assert budget.seconds == 10.0
    assert report.params < budget.max_params and report.macs < budget.max_macs
    assert budget.fits(report.params, report.macs)


def test_size_order_in_macs():
    macs = {s: profile(build_dssdn(PRESETS[s]), DEFAULT_FRONTEND.input_shape(1.0)).macs for s in ("small", "middle", "large")}
    assert macs["small"] < macs["middle"] < macs["large"]


def test_dcase_setting_within_dcase_limits():
    report = profile(build_dssdn(PRESETS["dcase_small_1s"]), int8=True)
    assert report.seconds == 1.0
    assert report.params <= DCASE_MAX_PARAMS and report.macs <= DCASE_MAX_MACS
    assert report.int8["int8"] <= DCASE_MAX_PARAMS  # int8 weights fit 128 KB
    assert report.int8["int8"] <= DCASE_MAX_INT8_BYTES
    assert DEFAULT_BUDGETS["dcase_small_1s"].fits(report.params, report.macs, report.int8["int8"])


def test_microcontroller_setting_within_dcase_limits_and_128_kb_of_device_ram():
    budget = DEFAULT_BUDGETS["dcase_mcu_1s"]
    assert budget.max_ram == 128 * 1024 and budget.max_params == DCASE_MAX_PARAMS and budget.seconds == 1.0
    report = profile(build_dssdn(PRESETS["dcase_mcu_1s"]), frontend=preset_frontend("dcase_mcu_1s"), int8=True,
                     ram=True)
    assert report.seconds == 1.0 and report.input_shape == (64, 44, 1)
    assert budget.fits(report.params, report.macs, report.int8["int8"], report.ram["total"]), report.summary_line()
    assert not DEFAULT_BUDGETS["dcase_small_1s"].max_ram  # the 128-band model is not held to it


@pytest.mark.slow
def test_preset_summary_shows_the_ram_a_budget_limits(capsys):
    from keras_dssdn.analysis.complexity import preset_summary

    row = preset_summary(["dcase_mcu_1s"]).splitlines()[-1]
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[0] == "dcase_mcu_1s" and cells[3] == "(64, 44, 1)"
    assert 0 < int(cells[9].replace(",", "")) <= 128 * 1024
    assert cells[10].endswith("<= 131,072 B of RAM: OK")


def test_command_line(capsys):
    assert main(["--size", "small", "--seconds", "1", "--table"]) == 0
    out = capsys.readouterr().out
    assert "block1_spc1" in out and "total" in out and "per 1 s" in out
    with pytest.raises(SystemExit):
        main(["--model", "/nonexistent.keras"])
