"""LogMel against librosa on real clips, normalisation statistics, saving in .keras files."""

import glob

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_dssdn import audio
from keras_dssdn.layers.frontend import (
    LogMel,
    LogMelNormalization,
    NormalizationStats,
    attach_front_end,
    compute_normalization_stats,
    log_mel_spectrogram,
    mel_filterbank,
)
from keras_dssdn.layers.labels import vocabulary_from_model
from keras_dssdn.params import DEFAULT_FRONTEND, FrontEndParams

librosa = pytest.importorskip("librosa")

#: Tolerance of LogMel against librosa (natural-log units; 1e-4 is 0.0004 dB).
#: Measured on the real clips below: max |difference| 1.1e-5.
LOGMEL_ATOL = 1e-4

OTHER_SETTINGS = [
    FrontEndParams(),
    FrontEndParams(sample_rate=16000, n_fft=512, win_length=400, hop_length=160, n_mels=64, fmin=50.0, fmax=7000.0),
    FrontEndParams(sample_rate=22050, n_fft=1024, win_length=1024, hop_length=256, n_mels=40, center=False),
    FrontEndParams(n_fft=4096, win_length=4096, hop_length=1024, n_mels=256),
]


def librosa_log_mel(y, p: FrontEndParams):
    mel = librosa.feature.melspectrogram(
        y=y, sr=p.sample_rate, n_fft=p.n_fft, hop_length=p.hop_length, win_length=p.win_length,
        window="hann", center=p.center, pad_mode="reflect", power=2.0, n_mels=p.n_mels,
        fmin=p.fmin, fmax=p.effective_fmax, htk=False, norm="slaney",
    )
    return np.log(mel + p.log_offset)


@pytest.mark.parametrize("p", OTHER_SETTINGS, ids=lambda p: f"{p.sample_rate}-{p.n_fft}-{p.n_mels}")
def test_filterbank_matches_librosa(p):
    ref = librosa.filters.mel(sr=p.sample_rate, n_fft=p.n_fft, n_mels=p.n_mels, fmin=p.fmin, fmax=p.effective_fmax)
    ours = mel_filterbank(p)
    assert ours.shape == (p.n_fft // 2 + 1, p.n_mels)
    np.testing.assert_allclose(ours.T, ref, rtol=1e-5, atol=1e-8)


def _real_clips(shared_data):
    """(name, 44.1 kHz mono float32 waveform) for a few clips of every real folder."""
    paths = sorted(glob.glob(str(shared_data / "tut17-dev/audio/*.flac")))[:4]
    paths += sorted(glob.glob(str(shared_data / "tau18-format/audio/*.wav")))[:2]
    paths += sorted(glob.glob(str(shared_data / "tau20-layout/audio/*.wav")))
    return [(p.split("/")[-1], audio.load_waveform(p, 44100)) for p in paths]


def test_logmel_matches_librosa_on_real_clips(shared_data):
    p = DEFAULT_FRONTEND
    worst = 0.0
    for name, y in _real_clips(shared_data):
        y = y[: p.num_samples()]
        ours = log_mel_spectrogram(y, p).numpy()
        ref = librosa_log_mel(y, p)
        assert ours.shape == (p.n_mels, p.num_frames(len(y) / p.sample_rate), 1) == ref.shape + (1,), name
        diff = np.abs(ours[..., 0] - ref).max()
        worst = max(worst, diff)
        assert diff < LOGMEL_ATOL, (name, diff)
    print(f"max |LogMel - librosa| over real clips: {worst:.2e}")


@pytest.mark.parametrize("p", OTHER_SETTINGS[1:], ids=lambda p: f"{p.sample_rate}-{p.n_fft}-{p.n_mels}")
def test_logmel_matches_librosa_other_settings(shared_data, p):
    path = sorted(glob.glob(str(shared_data / "tut17-dev/audio/*.flac")))[5]
    y = audio.load_waveform(path, p.sample_rate)[: p.num_samples(2.0)]
    ours = log_mel_spectrogram(y[None], p).numpy()[0, ..., 0]  # batched call
    np.testing.assert_allclose(ours, librosa_log_mel(y, p), atol=LOGMEL_ATOL, rtol=0)


def test_frame_counts_match_params():
    for seconds, frames in [(10.0, 431), (1.0, 44)]:
        x = tf.zeros([2, DEFAULT_FRONTEND.num_samples(seconds)])
        assert log_mel_spectrogram(x).shape == (2, 128, frames, 1)


def test_logmel_layer_in_saved_model(tmp_path):
    p = FrontEndParams(sample_rate=16000, n_fft=512, win_length=512, hop_length=256, n_mels=32, clip_seconds=1.0)
    inputs = keras.Input((16000,))
    x = LogMel(p)(inputs)
    assert x.shape == (None, 32, p.num_frames(1.0), 1)
    outputs = keras.layers.Dense(3)(keras.layers.GlobalAveragePooling2D()(x))
    model = keras.Model(inputs, outputs)
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    layer = next(layer for layer in loaded.layers if isinstance(layer, LogMel))
    assert layer.params == p
    wav = np.random.default_rng(0).uniform(-0.5, 0.5, (2, 16000)).astype(np.float32)
    np.testing.assert_allclose(loaded.predict(wav, verbose=0), model.predict(wav, verbose=0), rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- normalisation


def test_normalization_stats_match_numpy():
    rng = np.random.default_rng(0)
    batches = [rng.normal(loc=np.arange(8)[None, :, None, None], size=(4, 8, 10, 1)).astype(np.float32) for _ in range(3)]
    data = np.concatenate(batches)
    g = compute_normalization_stats(batches, mode="global")
    assert g.count == data.size
    np.testing.assert_allclose(g.mean, [data.mean()], rtol=1e-6)
    np.testing.assert_allclose(g.std, [data.std()], rtol=1e-6)
    b = compute_normalization_stats(((x, None) for x in batches), mode="per_band")
    np.testing.assert_allclose(b.mean, data.mean(axis=(0, 2, 3)), rtol=1e-6)
    np.testing.assert_allclose(b.std, data.std(axis=(0, 2, 3)), rtol=1e-6)
    out = b.apply(tf.constant(data)).numpy()
    np.testing.assert_allclose(out.mean(axis=(0, 2, 3)), 0.0, atol=1e-5)
    np.testing.assert_allclose(out.std(axis=(0, 2, 3)), 1.0, atol=1e-4)


def test_per_input_normalization_standardises_each_input_by_itself(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.normal(loc=rng.uniform(-9, 0, (5, 1, 1, 1)), scale=rng.uniform(0.5, 4, (5, 1, 1, 1)), size=(5, 8, 10, 1))
    x[4] = -11.5  # a constant input (digital silence at the log floor) maps to zeros, not NaN
    s = compute_normalization_stats([x.astype(np.float32)], mode="per_input")
    assert (s.mean, s.std, s.mode) == ((), (), "per_input")
    out = s.apply(tf.constant(x, tf.float32)).numpy()
    np.testing.assert_allclose(out[:4].mean(axis=(1, 2, 3)), 0.0, atol=1e-5)
    np.testing.assert_allclose(out[:4].std(axis=(1, 2, 3)), 1.0, atol=1e-4)
    np.testing.assert_allclose(out[:4], (x[:4] - x[:4].mean(axis=(1, 2, 3), keepdims=True))
                               / x[:4].std(axis=(1, 2, 3), keepdims=True), rtol=1e-4, atol=1e-4)
    assert np.all(out[4] == 0.0)
    s.save(str(tmp_path / "n.json"))
    assert NormalizationStats.load(str(tmp_path / "n.json")) == s
    with pytest.raises(ValueError):
        NormalizationStats([0.0], [1.0], "per_input")


def test_normalization_stats_json(tmp_path):
    s = NormalizationStats([1.0, 2.0], [3.0, 4.0], "per_band", 7)
    s.save(str(tmp_path / "n.json"))
    assert NormalizationStats.load(str(tmp_path / "n.json")) == s
    with pytest.raises(ValueError):
        NormalizationStats([1.0, 2.0], [1.0], "global")


def test_attach_front_end_saves_everything(tmp_path):
    p = FrontEndParams(sample_rate=8000, n_fft=256, win_length=256, hop_length=128, n_mels=16, clip_seconds=0.5)
    core = keras.Sequential([keras.Input(p.input_shape()), keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(3)])
    stats = NormalizationStats(np.linspace(-5, -3, 16), np.linspace(1, 2, 16), "per_band", 10)
    names = ["bus", "cafe/restaurant", "park"]
    wav_model = attach_front_end(core, p, stats, names, waveform_input=True)
    assert wav_model.input_shape == (None, 4000)
    mel_model = attach_front_end(core, p, stats, names, waveform_input=False)
    assert mel_model.input_shape == (None,) + p.input_shape()
    path = str(tmp_path / "full.keras")
    wav_model.save(path)
    loaded = keras.saving.load_model(path)
    assert list(vocabulary_from_model(loaded)) == names
    norm = next(layer for layer in loaded.layers if isinstance(layer, LogMelNormalization))
    assert norm.stats == stats
    wav = np.random.default_rng(1).uniform(-0.3, 0.3, (2, 4000)).astype(np.float32)
    np.testing.assert_allclose(loaded.predict(wav, verbose=0), wav_model.predict(wav, verbose=0), rtol=1e-5, atol=1e-5)
    # the waveform model equals tf.data log-mel -> log-mel model
    np.testing.assert_allclose(
        mel_model.predict(log_mel_spectrogram(wav, p), verbose=0), wav_model.predict(wav, verbose=0), rtol=1e-5, atol=1e-5
    )
