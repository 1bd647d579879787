"""Device impulse responses: loading (and its bad input), synthetic sets, FFT convolution, the training pipeline
(waveform cache), convolved dataset copies."""

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from keras_dssdn.data.datasets import read_dcase
from keras_dssdn.data.device_augment import DeviceAugment
from keras_dssdn.data.impulse import (ImpulseResponses, convolve, convolve_dataset, load_impulse_responses,
                                      random_response, synthetic_impulse_responses, write_impulse_responses)
from keras_dssdn.data.pipeline import evaluation_dataset, training_dataset
from keras_dssdn.data.spec import PipelineSpec, TrainingOptions
from keras_dssdn.data.synthetic import make_synthetic_dataset, write_wav16
from keras_dssdn.errors import ConfigError, ImpulseResponseError
from keras_dssdn.params import DEFAULT_FRONTEND
from keras_dssdn.train import load_train_config


def _float_wav(path: Path, samples: np.ndarray, rate: int) -> None:
    """A 32-bit IEEE-float mono WAV written by hand, so that NaN can be stored."""
    data = samples.astype("<f4").tobytes()
    fmt = (3).to_bytes(2, "little") + (1).to_bytes(2, "little") + rate.to_bytes(4, "little") + \
        (rate * 4).to_bytes(4, "little") + (4).to_bytes(2, "little") + (32).to_bytes(2, "little")
    body = b"WAVE" + b"fmt " + len(fmt).to_bytes(4, "little") + fmt + b"data" + len(data).to_bytes(4, "little") + data
    path.write_bytes(b"RIFF" + len(body).to_bytes(4, "little") + body)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_synthetic_dataset(tmp_path_factory.mktemp("d") / "tiny", num_classes=2, seconds=1.0,
                                  train_locations=1, eval_locations=1, clips_per_location=3, devices=("a", "b"),
                                  seed=3)


def test_synthetic_sets_are_seeded_disjoint_and_band_limited():
    a, a2, b = (synthetic_impulse_responses(4, 44100, seed=s) for s in (1, 1, 2))
    assert a.names == a2.names and all(np.array_equal(x, y) for x, y in zip(a.responses, a2.responses))
    assert not set(a.names) & set(b.names)
    assert not any(np.allclose(x, y) for x in a.responses for y in b.responses)
    for h in a.responses:
        power = np.abs(np.fft.rfft(h, 8192)) ** 2
        f = np.fft.rfftfreq(8192, 1 / 44100)
        assert power[f < 40].mean() < 0.05 * power[(f > 1000) & (f < 3000)].mean()  # low cut: band-limited
        assert np.max(np.abs(h)) == pytest.approx(1.0)


def test_convolve_matches_numpy_and_keeps_the_level():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 5000)).astype(np.float32)
    h = synthetic_impulse_responses(1, 44100, seed=4).responses[0]
    y = convolve(x, h[None]).numpy()
    for xi, yi in zip(x, y):
        ref = np.convolve(xi, h)[:5000]
        ref *= np.sqrt(np.mean(xi ** 2) / np.mean(ref ** 2))
        np.testing.assert_allclose(yi, ref, atol=2e-4)
        assert np.sqrt(np.mean(yi ** 2)) == pytest.approx(np.sqrt(np.mean(xi ** 2)), rel=1e-4)
    assert np.all(convolve(np.zeros((1, 100), np.float32), h[None]).numpy() == 0)


def test_random_response_probability_and_seed():
    x = tf.constant(np.random.default_rng(1).standard_normal(4000).astype(np.float32))
    table = synthetic_impulse_responses(3, 44100, seed=5).as_array()
    seed = tf.constant([3, 4], tf.int64)
    assert np.array_equal(random_response(x, table, 0.0, seed).numpy(), x.numpy())
    once, again = random_response(x, table, 1.0, seed).numpy(), random_response(x, table, 1.0, seed).numpy()
    assert np.array_equal(once, again) and not np.allclose(once, x.numpy())


def test_load_resamples_trims_and_names(tmp_path):
    ir = synthetic_impulse_responses(3, 48000, seed=6)
    write_impulse_responses(tmp_path / "irs", ir)
    loaded = load_impulse_responses(tmp_path / "irs", 44100, max_samples=44100)
    assert loaded.names == ir.names and loaded.sample_rate == 44100
    for h, orig in zip(loaded.responses, ir.responses):
        assert len(h) <= int(np.ceil(len(orig) * 44100 / 48000)) and np.max(np.abs(h)) == pytest.approx(1.0)


@pytest.mark.parametrize("case, message", [
    ("missing", "does not exist"), ("empty", "no impulse responses"), ("long", "longer than the 0.100-s clips"),
    ("nan", "NaN or infinite"), ("silent", "silent"),
])
def test_bad_responses_are_named(tmp_path, case, message):
    folder = tmp_path / "irs"
    if case != "missing":
        folder.mkdir()
        (folder / "notes.txt").write_text("not audio")
    good = synthetic_impulse_responses(1, 44100, seed=7).responses[0]
    if case == "long":
        write_wav16(folder / "room.wav", np.r_[good, 0.5 * np.ones(8000, np.float32)], 44100)
    elif case == "nan":
        _float_wav(folder / "broken.wav", np.r_[good[:10], np.nan, good[10:]], 44100)
    elif case == "silent":
        write_wav16(folder / "quiet.wav", np.zeros(100, np.float32), 44100)
    with pytest.raises(ImpulseResponseError, match=message) as e:
        load_impulse_responses(folder, 44100, max_samples=4410)
    if case in ("long", "nan", "silent"):
        assert {"long": "room.wav", "nan": "broken.wav", "silent": "quiet.wav"}[case] in str(e.value)


def test_config_refuses_bad_device_keys(tiny, tmp_path):
    with pytest.raises(ConfigError, match="dir_prob=1.5"):
        load_train_config("small", [f"data={tiny}", "dir_prob=1.5"])
    with pytest.raises(ConfigError, match="dir_folder="):
        load_train_config("small", [f"data={tiny}", f"dir_folder={tmp_path / 'nowhere'}"])


def _examples(ds):
    """{(clip, segment): log-mel} of one pass over a dataset with metadata."""
    out = {}
    for x, _, m in ds:
        for xi, c, s in zip(x.numpy(), m["clip_index"].numpy(), m["segment_index"].numpy()):
            out[(int(c), int(s))] = xi
    return out


def test_pipeline_convolves_cached_waveforms_every_epoch(tiny):
    clips = read_dcase(tiny, split="train")
    ir = synthetic_impulse_responses(4, 44100, seed=8)
    spec = PipelineSpec(batch_size=4, clip_seconds=1.0, segment_seconds=0.5)

    def training(devices=None):
        return training_dataset(clips, spec, TrainingOptions(seed=3, devices=devices), with_metadata=True)

    plain = _examples(training())
    off = _examples(training(DeviceAugment(ir, 0.0)))
    assert plain.keys() == off.keys() and all(np.array_equal(plain[k], off[k]) for k in plain)
    ds = training(DeviceAugment(ir, 1.0))
    first, second = _examples(ds), _examples(ds)
    assert first.keys() == plain.keys()
    assert all(not np.allclose(first[k], plain[k]) for k in plain)  # every clip filtered (p = 1)
    assert any(not np.allclose(first[k], second[k]) for k in plain)  # new responses in the next epoch
    evaluation = _examples(evaluation_dataset(clips, spec, with_metadata=True))  # no device augmentation there
    assert all(np.array_equal(evaluation[k], plain[k]) for k in plain)  # never on evaluation data


def test_convolve_dataset_assigns_responses_as_devices(tiny, tmp_path):
    ir = synthetic_impulse_responses(2, 44100, seed=9)
    out = convolve_dataset(tiny, tmp_path / "conv", ir, split="evaluate")
    clips = read_dcase(out, split="evaluate")
    source = read_dcase(tiny, split="evaluate")
    assert len(clips) == len(source) and sorted(set(clips.devices)) == sorted(ir.names)
    assert [c.label for c in clips] == [c.label for c in source]
    paired = read_dcase(convolve_dataset(tiny, tmp_path / "paired", ir, split="evaluate", paired=True), split="all")
    assert len(paired) == 3 * len(source) and set(paired.devices) == {"ref", *ir.names}
    with pytest.raises(FileExistsError):
        convolve_dataset(tiny, tmp_path / "conv", ir)


def test_responses_class_pads_to_the_longest():
    ir = ImpulseResponses(["x", "y"], [np.ones(3, np.float32), np.ones(5, np.float32)], 44100)
    assert ir.as_array().shape == (2, 5) and ir.as_array()[0, 3:].sum() == 0
    assert DEFAULT_FRONTEND.sample_rate == 44100
