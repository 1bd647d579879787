"""Device spectrum differences (DSMN): measured from paired recordings, saved / loaded, added to log-mel batches."""

import numpy as np
import pytest
import tensorflow as tf

from keras_dssdn.data.device_spectra import DeviceSpectra, add_device_spectra, compute_device_spectra, pairing_key
from keras_dssdn.data.impulse import ImpulseResponses, convolve_dataset
from keras_dssdn.data.synthetic import make_synthetic_dataset
from keras_dssdn.errors import ConfigError, DataError
from keras_dssdn.params import DEFAULT_FRONTEND


@pytest.fixture(scope="module")
def paired(tmp_path_factory):
    root = tmp_path_factory.mktemp("d")
    data = make_synthetic_dataset(root / "src", num_classes=2, seconds=1.0, train_locations=1, eval_locations=1,
                                  clips_per_location=2, devices=("a",), seed=5)
    lowpass = ImpulseResponses(["lowpass"], [np.ones(8, np.float32) / 8], 44100)  # a moving average: dull device
    return data, convolve_dataset(data, root / "paired", lowpass, split="evaluate", paired=True)


def test_pairing_key_follows_tau_naming():
    assert pairing_key("audio/airport-lisbon-1000-40000-b.wav", "b") == "audio/airport-lisbon-1000-40000"
    assert pairing_key("audio/x.wav", "b") is None


def test_measured_difference_of_a_lowpass_device(paired, tmp_path):
    _, folder = paired
    spectra = compute_device_spectra(folder, reference="ref", clip_seconds=1.0)
    assert list(spectra.devices) == ["lowpass"] and spectra.pairs["lowpass"] == 4
    diff = spectra.devices["lowpass"]
    assert diff.shape == (DEFAULT_FRONTEND.n_mels,)
    assert diff[-20:].mean() < diff[:20].mean() - 3.0  # high bands lose several nats of power
    spectra.save(tmp_path / "s.json")
    again = DeviceSpectra.load(tmp_path / "s.json")
    np.testing.assert_allclose(again.devices["lowpass"], diff, rtol=1e-6)
    again.check_frontend(DEFAULT_FRONTEND)


def test_bad_inputs(paired, tmp_path):
    data, folder = paired
    with pytest.raises(ConfigError, match="'zz'"):
        compute_device_spectra(folder, reference="zz")
    with pytest.raises(DataError, match="no recording is heard"):
        compute_device_spectra(data, reference="a")
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(ConfigError, match="bad.json"):
        DeviceSpectra.load(tmp_path / "bad.json")


def test_add_device_spectra_probability():
    x = tf.zeros([6, 4, 3, 1])
    offsets = np.array([[1, 2, 3, 4]], np.float32)
    seed = tf.constant([1, 2], tf.int64)
    assert np.all(add_device_spectra(x, offsets, 0.0, seed).numpy() == 0)
    y = add_device_spectra(x, offsets, 1.0, seed).numpy()
    np.testing.assert_array_equal(y[:, :, 0, 0], np.tile(offsets, (6, 1)))
