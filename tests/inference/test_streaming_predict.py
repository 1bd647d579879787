"""dssdn-predict streams long files (issue 24, point 7): WAV samples read from disk and FLAC decoded a few MiB at a
time, resampled block by block, give the windows the whole-file path gives, and memory does not grow with the
file's length."""

import wave
from pathlib import Path

import numpy as np
import pytest

from keras_dssdn.audio import load_waveform
from keras_dssdn.audio.probe import probe_audio
from keras_dssdn.inference import predict as predict_module
from keras_dssdn.inference.predict import Predictor, predict_file
from keras_dssdn.inference.stream import FlacSource, Resampled, WavSource, open_stream
from keras_dssdn.params import FrontEndParams


def _wav(path: Path, x: np.ndarray, rate: int, width: int = 2) -> Path:
    """``x`` (frames, channels) in [-1, 1] as 8/16/24-bit PCM."""
    if width == 1:
        raw = np.clip(np.round(x * 128 + 128), 0, 255).astype(np.uint8).tobytes()
    elif width == 2:
        raw = np.clip(np.round(x * 32768), -32768, 32767).astype("<i2").tobytes()
    else:
        v = np.clip(np.round(x * 8388608), -8388608, 8388607).astype("<i4")
        raw = v.view(np.uint8).reshape(-1, 4)[:, :3].tobytes()
    with wave.open(str(path), "wb") as w:
        w.setnchannels(x.shape[1]), w.setsampwidth(width), w.setframerate(rate), w.writeframes(raw)
    return path


def _signal(seconds: float, rate: int, channels: int = 2, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    x = 0.3 * np.sin(2 * np.pi * 440 * t)[:, None] + 0.1 * rng.standard_normal((len(t), channels))
    return np.clip(x, -1, 1)


@pytest.mark.parametrize("width", [1, 2, 3])
def test_wav_source_reads_what_the_decoder_decodes(tmp_path, width):
    path = _wav(tmp_path / "a.wav", _signal(2.0, 44100), 44100, width)
    whole = load_waveform(str(path), mono=True)
    src = WavSource(probe_audio(str(path)))
    assert src.frames == len(whole)
    for a, b in [(0, 1000), (5000, 44100), (len(whole) - 300, len(whole) + 200), (-50, 10)]:
        want = np.zeros(b - a, np.float32)
        lo, hi = max(a, 0), min(b, len(whole))
        want[lo - a:hi - a] = whole[lo:hi]
        np.testing.assert_array_equal(src.read(a, b), want)


def test_blockwise_resampling_equals_the_whole_file(tmp_path):
    path = _wav(tmp_path / "a.wav", _signal(3.0, 48000), 48000)
    whole = load_waveform(str(path), sample_rate=44100, mono=True)
    stream = open_stream(str(path), 44100)
    assert isinstance(stream, Resampled) and stream.length == len(whole)
    for a, b in [(0, 4410), (4410, 30000), (44099, 88200), (len(whole) - 1000, len(whole))]:
        np.testing.assert_allclose(stream.read(a, b), whole[a:b], atol=2e-6)


def test_flac_in_chunks_equals_the_whole_file(tmp_path, monkeypatch):
    sf = pytest.importorskip("soundfile")
    path = tmp_path / "a.flac"
    sf.write(str(path), _signal(6.0, 44100), 44100, subtype="PCM_16")
    stream = open_stream(str(path), 44100)
    if stream is None:
        pytest.skip("the package's FLAC op is not available here (no C++ compiler)")
    assert isinstance(stream.source, FlacSource)
    monkeypatch.setattr(FlacSource, "CHUNK", 1 << 14)  # many chunks: the boundaries are exercised
    stream = open_stream(str(path), 44100)
    whole = load_waveform(str(path), mono=True)
    got = np.concatenate([stream.read(a, min(a + 20000, len(whole))) for a in range(0, len(whole), 20000)])
    np.testing.assert_array_equal(got, whole)


class _BandMeans:
    """A stand-in classifier: softmax of the first log-mel bands' means (deterministic, no TensorFlow model)."""

    def predict(self, x, verbose=0):
        z = np.asarray(x)[:, :3, :, 0].mean(axis=2)
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)


def test_streamed_prediction_equals_the_in_memory_one(tmp_path, monkeypatch):
    fe = FrontEndParams(n_mels=16)
    predictor = Predictor(_BandMeans(), fe, ["a", "b", "c"], 44, "stand-in")
    path = _wav(tmp_path / "long.wav", _signal(7.3, 48000), 48000)
    streamed = predict_file(predictor, path, hop_seconds=0.7, batch_size=4)
    monkeypatch.setattr(predict_module, "_reader", lambda p, rate: predict_module._whole_file(p, rate))
    whole = predict_file(predictor, path, hop_seconds=0.7, batch_size=4)
    assert [w["start"] for w in streamed["windows"]] == [w["start"] for w in whole["windows"]]
    assert streamed["seconds"] == whole["seconds"] and len(streamed["windows"]) > 8
    np.testing.assert_allclose(streamed["probabilities"], whole["probabilities"], atol=1e-5)


def test_memory_stays_flat_with_the_length(tmp_path):
    """Peak of the memory NumPy allocates (tracemalloc) while a 6-minute stereo WAV is streamed at another rate is
    that of a few blocks, not of the file (its samples alone are 69 MB as int16 and 138 MB as float32)."""
    import tracemalloc

    block = np.clip(np.round(_signal(60, 48000) * 32768), -32768, 32767).astype("<i2").tobytes()
    path = tmp_path / "long.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(2), w.setsampwidth(2), w.setframerate(48000)
        for _ in range(6):
            w.writeframes(block)
    del block
    stream = open_stream(str(path), 44100)
    step = 44100 * 16  # dssdn-predict's block: 16 windows of a 1-s model
    tracemalloc.start()
    try:
        for a in range(0, stream.length, step):
            stream.read(a, min(a + step, stream.length))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert stream.length > 6 * 60 * 44100 - 10
    assert peak < 40e6, peak  # bytes: one block's samples and its resampling frames
