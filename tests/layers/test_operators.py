"""SC / OSC / SPC operators, the orthonormality regulariser, ECA and the frequency split."""

import numpy as np
import pytest
import keras
from keras import ops

from keras_dssdn.layers.attention import ECA, eca_kernel_size
from keras_dssdn.layers.frequency import FrequencySplit, split_point
from keras_dssdn.layers.operators import OSC, SC, SPC, bottleneck_width, partial_channels
from keras_dssdn.layers.regularizers import OrthonormalRegularizer


def _x(shape=(2, 12, 20, 8), seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype("float32")


@pytest.mark.parametrize("cls", [SC, OSC, SPC])
@pytest.mark.parametrize("in_ch,out_ch", [(8, 16), (8, 8), (16, 4)])
def test_operator_output_shape(cls, in_ch, out_ch):
    x = _x((2, 12, 20, in_ch))
    layer = cls(out_ch, 3)
    y = layer(x)
    assert tuple(y.shape) == (2, 12, 20, out_ch)
    assert layer.compute_output_shape((None, 12, 20, in_ch)) == (None, 12, 20, out_ch)


@pytest.mark.parametrize("kernel", [1, 3, 5])
def test_kernel_sizes_keep_spatial_size(kernel):
    assert tuple(SC(6, kernel)(_x((1, 7, 9, 3))).shape) == (1, 7, 9, 6)


def test_sc_is_pointwise_then_summed_freq_and_time_depthwise():
    layer = SC(4, 3)
    x = _x((1, 6, 5, 3))
    y = np.asarray(layer(x, training=False))
    p = layer.pointwise_output(x)
    expect = layer.freq_bn(layer.freq_depthwise(p), training=False) + layer.time_bn(layer.time_depthwise(p), training=False)
    np.testing.assert_allclose(y, np.asarray(expect), rtol=1e-6, atol=1e-6)
    assert tuple(layer.freq_depthwise.kernel.shape) == (3, 1, 4, 1)
    assert tuple(layer.time_depthwise.kernel.shape) == (1, 3, 4, 1)
    assert layer.freq_depthwise.dilation_rate == (1, 1) and layer.time_depthwise.dilation_rate == (1, 1)


@pytest.mark.parametrize("ratio,filters,expected", [(0.25, 16, 4), (0.25, 10, 3), (0.5, 7, 4), (1.0, 5, 5), (0.01, 8, 1)])
def test_partial_channels(ratio, filters, expected):
    assert partial_channels(filters, ratio) == expected


def test_spc_untouched_channels_are_bit_identical_to_pointwise_output():
    layer = SPC(16, 3, partial_ratio=0.25)
    x = _x((2, 10, 12, 8))
    y = np.asarray(layer(x, training=False))
    p = np.asarray(layer.pointwise_output(x))
    n = layer.spatial_channels
    assert n == 4
    np.testing.assert_array_equal(y[..., n:], p[..., n:])
    assert not np.allclose(y[..., :n], p[..., :n])  # the filtered part does change


def test_spc_without_pointwise_passes_input_channels_through():
    layer = SPC(8, 3, partial_ratio=0.5, pointwise=False)
    x = _x((2, 10, 12, 8))
    y = np.asarray(layer(x, training=True))  # also in training mode (batch statistics)
    np.testing.assert_array_equal(y[..., 4:], x[..., 4:])
    assert not np.allclose(y[..., :4], x[..., :4])
    with pytest.raises(ValueError, match="pointwise=False needs input channels == filters"):
        SPC(6, pointwise=False)(x)


@pytest.mark.parametrize("c,ratio,expected", [(64, 0.25, 16), (8, 0.25, 4), (3, 0.25, 3), (10, 0.25, 4), (17, 0.25, 5)])
def test_osc_bottleneck_width(c, ratio, expected):
    assert bottleneck_width(c, ratio) == expected


def test_osc_factorised_pointwise_and_regulariser_loss():
    layer = OSC(24, 3, bottleneck_ratio=0.25, ortho_alpha=0.1)
    layer(_x((1, 6, 6, 32)))
    assert tuple(layer.reduce.kernel.shape) == (1, 1, 32, 8)
    assert tuple(layer.expand.kernel.shape) == (1, 1, 8, 24)
    assert len(layer.losses) == 1
    w = np.asarray(layer.reduce.kernel).reshape(32, 8).T
    expected = 0.1 * np.linalg.norm(w @ w.T - np.eye(8), "fro")
    np.testing.assert_allclose(float(layer.losses[0]), expected, rtol=1e-4)


def test_orthonormal_regulariser_value():
    reg = OrthonormalRegularizer(alpha=0.1)
    q, _ = np.linalg.qr(np.random.default_rng(0).standard_normal((32, 8)))  # orthonormal columns
    kernel = q.reshape(1, 1, 32, 8).astype("float32")  # rows of W = kernel^T are orthonormal
    assert abs(float(reg(kernel))) < 1e-5
    w = np.random.default_rng(1).standard_normal((32, 8)).astype("float32")
    expected = 0.1 * np.linalg.norm(w.T @ w - np.eye(8), "fro")  # Frobenius norm, not squared
    np.testing.assert_allclose(float(reg(w)), expected, rtol=1e-5)
    assert float(reg(2 * q.astype("float32"))) > 0.1
    assert OrthonormalRegularizer.from_config(reg.get_config()).alpha == 0.1
    with pytest.raises(ValueError):
        OrthonormalRegularizer(-1.0)


def _ortho_error(layer):
    w = np.asarray(layer.reduce.kernel).reshape(-1, layer.reduce.kernel.shape[-1]).T
    return np.linalg.norm(w @ w.T - np.eye(w.shape[0]), "fro")


def test_training_with_regulariser_drives_orthonormality_error_down():
    """Fit a tiny OSC classifier twice from the same start, with and without the penalty."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 8, 8, 16)).astype("float32")
    y = rng.integers(0, 3, 64)
    errors = {}
    for alpha in (0.0, 1.0):
        keras.utils.set_random_seed(7)
        inp = keras.Input((8, 8, 16))
        osc = OSC(16, 3, ortho_alpha=alpha, name="osc")
        out = keras.layers.Dense(3)(keras.layers.GlobalAveragePooling2D()(osc(inp)))
        model = keras.Model(inp, out)
        before = _ortho_error(osc)
        model.compile(keras.optimizers.SGD(0.05), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        model.fit(x, y, epochs=30, batch_size=16, verbose=0)
        errors[alpha] = (before, _ortho_error(osc))
    before, after = errors[1.0]
    assert before > 1.0
    assert after < 0.25 * before, errors
    assert after < 0.25 * errors[0.0][1], errors  # the penalty, not the task loss, did it


def test_eca_kernel_and_gating():
    assert [eca_kernel_size(c) for c in (8, 16, 64, 256)] == [3, 3, 3, 5]
    layer = ECA()
    x = np.abs(_x((2, 5, 7, 16)))
    y = np.asarray(layer(x))
    assert y.shape == x.shape
    gate = y / x
    # one gate per (example, channel), shared over frequency and time, in (0, 1)
    np.testing.assert_allclose(gate, np.broadcast_to(gate[:, :1, :1, :], gate.shape), rtol=1e-5)
    assert (gate > 0).all() and (gate < 1).all()


@pytest.mark.parametrize("bins,ratio,low", [(64, 0.5, 32), (8, 0.25, 2), (5, 0.5, 2), (2, 0.9, 1), (1, 0.5, 1), (16, 1.0, 16)])
def test_split_point(bins, ratio, low):
    assert split_point(bins, ratio) == low


def test_frequency_split_layer():
    x = _x((2, 10, 4, 3))
    low, high = FrequencySplit(0.3)(x)
    assert tuple(low.shape) == (2, 3, 4, 3) and tuple(high.shape) == (2, 7, 4, 3)
    np.testing.assert_array_equal(np.concatenate([low, high], axis=1), x)
    with pytest.raises(ValueError, match="low_ratio"):
        FrequencySplit(0.0)


def test_bad_operator_arguments():
    with pytest.raises(ValueError, match="kernel_size"):
        SC(8, 4)
    with pytest.raises(ValueError, match="partial_ratio"):
        SPC(8, partial_ratio=1.5)
    with pytest.raises(ValueError, match="filters"):
        OSC(0)
