"""Decoding (WAV / FLAC, TF ops), probing errors, resampling, crop/pad, segments."""

import glob
import os

import numpy as np
import pytest
import soundfile as sf
import tensorflow as tf

from keras_dssdn import audio
from keras_dssdn.audio import native_flac, tfio_compat
from keras_dssdn.errors import AudioFormatError, UnsupportedAudioError

# (soundfile format, subtype, expected encoding)
FORMATS = [
    ("WAV", "PCM_U8", "wav_u8"),
    ("WAV", "PCM_16", "wav_s16"),
    ("WAV", "PCM_24", "wav_s24"),
    ("WAV", "PCM_32", "wav_s32"),
    ("WAV", "FLOAT", "wav_f32"),
    ("WAV", "DOUBLE", "wav_f64"),
    ("WAVEX", "PCM_24", "wav_s24"),
    ("WAVEX", "FLOAT", "wav_f32"),
    ("FLAC", "PCM_16", "flac_s16"),
    ("FLAC", "PCM_24", "flac_s24"),
]


def _signal(frames=12345, channels=2, seed=0):
    rng = np.random.default_rng(seed)
    x = np.cumsum(rng.standard_normal((frames, channels)), axis=0)
    x = 0.9 * x / np.abs(x).max()
    x[1000:3000] = 0.0  # silence: constant subframes in FLAC
    return x


@pytest.mark.parametrize("fmt,subtype,encoding", FORMATS)
@pytest.mark.parametrize("channels", [1, 2])
def test_decode_matches_soundfile_exactly(tmp_path, fmt, subtype, encoding, channels):
    path = str(tmp_path / ("x.flac" if fmt == "FLAC" else "x.wav"))
    sf.write(path, _signal(channels=channels), 22050, format=fmt, subtype=subtype)
    info = audio.probe_audio(path)
    assert (info.encoding, info.sample_rate, info.channels, info.frames) == (encoding, 22050, channels, 12345)
    x, rate = audio.read_audio(path)
    ref, ref_rate = sf.read(path, dtype="float32", always_2d=True)
    assert rate == ref_rate and x.dtype == tf.float32
    np.testing.assert_array_equal(x.numpy(), ref)


def test_native_flac_op_is_used_and_matches_tfio(tmp_path):
    import shutil

    if not (os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")):
        pytest.skip("no C++ compiler: the pipeline falls back to tensorflow-io's FLAC decoder")
    assert native_flac.flac_decoder_name() == "native"
    if not tfio_compat.available():  # the TF 2.21 stack; test_decode_matches_soundfile_exactly still runs
        pytest.skip(f"no tensorflow-io reference decoder: {tfio_compat.status()[1]}")
    import tensorflow_io as tfio

    path = str(tmp_path / "x.flac")
    sf.write(path, _signal(channels=2), 48000, subtype="PCM_16")
    contents = tf.io.read_file(path)
    ours = native_flac.decode_flac(contents, path)
    theirs = tf.cast(tfio.audio.decode_flac(contents, dtype=tf.int16), tf.float32) / 32768.0
    np.testing.assert_array_equal(ours.numpy(), theirs.numpy())


def test_decode_in_graph_with_switch(tmp_path):
    paths = []
    for i, (fmt, subtype, _) in enumerate(FORMATS[:4] + FORMATS[8:]):
        p = str(tmp_path / f"{i}.{'flac' if fmt == 'FLAC' else 'wav'}")
        sf.write(p, _signal(frames=4000, channels=1, seed=i), 16000, format=fmt, subtype=subtype)
        paths.append(p)
    infos = [audio.probe_audio(p) for p in paths]
    codes = sorted({i.encoding_code for i in infos})

    @tf.function
    def dec(path, code, offset, nbytes, channels):
        return audio.decode_audio(tf.io.read_file(path), code, offset, nbytes, channels, path, encodings=codes)

    for info in infos:
        x = dec(info.path, info.encoding_code, info.data_offset, info.data_bytes, info.channels)
        np.testing.assert_array_equal(x.numpy(), sf.read(info.path, dtype="float32", always_2d=True)[0])


def test_real_files_decode_exactly(shared_data):
    # channels kept (test_pipeline.py reads every file through make_dataset, down-mixed)
    for pattern, encoding, channels in [
        ("tau18-format/audio/*.wav", "wav_s24", 2),
        ("tut17-dev/audio/*.flac", "flac_s16", 1),
        ("tau20-layout/audio/*.wav", "wav_f32", 1),
    ]:
        paths = sorted(glob.glob(str(shared_data / pattern)))
        for path in paths if "tut17" not in pattern else paths[:5]:
            info = audio.probe_audio(path)
            assert info.encoding == encoding and info.channels == channels
            x, rate = audio.read_audio(path)
            ref, ref_rate = sf.read(path, dtype="float32", always_2d=True)
            assert rate == ref_rate
            np.testing.assert_array_equal(x.numpy(), ref)


# ---------------------------------------------------------------- bad files


def test_empty_file(tmp_path):
    path = tmp_path / "empty.wav"
    path.write_bytes(b"")
    with pytest.raises(AudioFormatError, match=r"empty\.wav.*empty \(0 bytes\).*Re-download"):
        audio.probe_audio(str(path))


def test_truncated_wav(tmp_path):
    path = str(tmp_path / "cut.wav")
    sf.write(path, _signal(), 22050, subtype="PCM_16")
    data = open(path, "rb").read()
    open(path, "wb").write(data[: len(data) // 2])
    with pytest.raises(AudioFormatError, match=r"cut\.wav.*truncated.*12345 samples"):
        audio.probe_audio(path)


@pytest.mark.parametrize("keep", [0.5, 0.999])
def test_truncated_flac_detected_by_probe_and_decoder(tmp_path, keep):
    path = str(tmp_path / "cut.flac")
    sf.write(path, _signal(frames=30000), 22050, subtype="PCM_16")
    data = open(path, "rb").read()
    open(path, "wb").write(data[: int(len(data) * keep)])
    with pytest.raises(AudioFormatError, match=r"cut\.flac.*(truncated|corrupt)"):
        audio.probe_audio(path)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"cut\.flac.*(truncated|corrupt)"):
        native_flac.decode_flac(tf.io.read_file(path), path)


def test_corrupt_flac_frame_named_by_decoder(tmp_path):
    path = str(tmp_path / "flip.flac")
    sf.write(path, _signal(frames=30000), 22050, subtype="PCM_16")
    data = bytearray(open(path, "rb").read())
    data[len(data) // 2] ^= 0x55
    open(path, "wb").write(bytes(data))
    audio.probe_audio(path)  # header and last frame are fine...
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"flip\.flac: corrupt"):
        native_flac.decode_flac(tf.io.read_file(path), path)  # ...the decoder checks every frame


def test_native_flac_never_crashes_on_garbage():
    rng = np.random.default_rng(0)
    import io

    buf = io.BytesIO()
    sf.write(buf, _signal(frames=20000), 22050, format="FLAC", subtype="PCM_16")
    data = buf.getvalue()
    for _ in range(200):
        b = bytearray(data)
        for _ in range(rng.integers(1, 8)):
            b[rng.integers(0, len(b))] = rng.integers(0, 256)
        if rng.random() < 0.3:
            b = b[: rng.integers(0, len(b))]
        try:
            native_flac.decode_flac(bytes(b), "fuzz.flac")
        except tf.errors.InvalidArgumentError as e:
            assert "fuzz.flac" in str(e)


def test_garbage_and_unsupported_formats(tmp_path):
    garbage = tmp_path / "noise.wav"
    garbage.write_bytes(os.urandom(2000))
    with pytest.raises(AudioFormatError, match=r"noise\.wav: not a WAV or FLAC file"):
        audio.probe_audio(str(garbage))
    mp3 = tmp_path / "song.mp3"
    mp3.write_bytes(b"ID3\x04\x00\x00\x00\x00\x00\x00" + b"\xff\xfb\x90\x00" * 100)
    with pytest.raises(UnsupportedAudioError, match=r"song\.mp3: MP3 .*Convert it"):
        audio.probe_audio(str(mp3))
    ogg = tmp_path / "a.ogg"
    ogg.write_bytes(b"OggS" + bytes(100))
    with pytest.raises(UnsupportedAudioError, match=r"Ogg"):
        audio.probe_audio(str(ogg))
    ulaw = str(tmp_path / "ulaw.wav")
    sf.write(ulaw, _signal(), 8000, subtype="ULAW")
    with pytest.raises(UnsupportedAudioError, match=r"ulaw\.wav: 8-bit mu-law WAV is not supported"):
        audio.probe_audio(ulaw)
    flac8 = str(tmp_path / "eight.flac")
    sf.write(flac8, _signal(), 8000, subtype="PCM_S8")
    with pytest.raises(UnsupportedAudioError, match=r"8-bit FLAC"):
        audio.probe_audio(flac8)
    with pytest.raises(FileNotFoundError):
        audio.probe_audio(str(tmp_path / "nope.wav"))


# ---------------------------------------------------------------- resampling


def test_resampling_matrix_shapes():
    up, down, p, w = audio.resampling_matrix(48000, 44100)
    assert (up, down) == (147, 160) and w.shape == ((2 * p + 1) * 160, 147)


@pytest.mark.parametrize("rate_in,rate_out", [(48000, 44100), (16000, 44100), (22050, 44100), (44100, 32000)])
def test_resample_length_and_sine(rate_in, rate_out):
    t = np.arange(rate_in) / rate_in
    x = np.sin(2 * np.pi * 1000.0 * t).astype(np.float32)
    y = audio.resample(x, rate_in, rate_out).numpy()
    assert len(y) == audio.resampled_length(len(x), rate_in, rate_out) == rate_out
    ref = np.sin(2 * np.pi * 1000.0 * np.arange(rate_out) / rate_out)
    mid = slice(rate_out // 10, -rate_out // 10)  # away from the zero-padded ends
    assert np.abs(y[mid] - ref[mid]).max() < 1e-3  # no delay, unit gain


def test_resample_stereo_matches_mono():
    x = _signal(frames=9600, channels=2).astype(np.float32)
    both = audio.resample(x, 48000, 44100).numpy()
    left = audio.resample(x[:, 0], 48000, 44100).numpy()
    np.testing.assert_allclose(both[:, 0], left, atol=1e-6)


def test_resample_real_clip_against_librosa(shared_data):
    librosa = pytest.importorskip("librosa")
    path = sorted(glob.glob(str(shared_data / "tau18-format/audio/*.wav")))[0]
    x = sf.read(path, dtype="float32")[0].mean(axis=1)
    ours = audio.resample(x, 48000, 44100).numpy()
    ref = librosa.resample(x, orig_sr=48000, target_sr=44100)  # soxr_hq
    assert ours.shape == ref.shape
    err = ours - ref
    snr_db = 10 * np.log10(np.sum(ref**2) / np.sum(err**2))
    assert snr_db > 60.0, snr_db  # measured 66.9 dB
    assert np.abs(err).max() < 0.01 * np.abs(ref).max()


def test_resample_from_picks_rate_branch():
    x = np.sin(np.arange(4800, dtype=np.float32) / 10.0)

    @tf.function
    def f(x, rate):
        return audio.resample_from(x, rate, 16000, [16000, 48000])

    np.testing.assert_allclose(f(x, 48000).numpy(), audio.resample(x, 48000, 16000).numpy(), atol=1e-6)
    np.testing.assert_array_equal(f(x, 16000).numpy(), x)


# ---------------------------------------------------------------- length


def test_fix_length_and_segments():
    x = tf.range(10, dtype=tf.float32)
    np.testing.assert_array_equal(audio.fix_length(x, 4).numpy(), [0, 1, 2, 3])
    np.testing.assert_array_equal(audio.fix_length(x, 12).numpy(), list(range(10)) + [0, 0])
    np.testing.assert_array_equal(audio.fix_length(x, 4, offset=3).numpy(), [3, 4, 5, 6])
    segs = audio.split_segments(x, 3).numpy()
    assert segs.shape == (3, 3) and segs[2, 2] == 8


def test_load_waveform(shared_data):
    path = sorted(glob.glob(str(shared_data / "tau18-format/audio/*.wav")))[0]
    y = audio.load_waveform(path, 44100)
    assert y.shape == (441000,) and y.dtype == np.float32


def test_tfio_fallback_decodes_the_same(tmp_path, monkeypatch):
    path = str(tmp_path / "x.flac")
    sf.write(path, _signal(channels=2), 44100, subtype="PCM_24")
    monkeypatch.setenv("KERAS_DSSDN_FLAC_DECODER", "tfio")
    if not tfio_compat.available():  # the TF 2.21 stack: test_without_tfio_the_fallbacks_say_what_is_missing
        pytest.skip(f"tensorflow-io fallback unavailable: {tfio_compat.status()[1]}")
    assert native_flac.flac_decoder_name() == "tfio"
    x, _ = audio.read_audio(path)
    np.testing.assert_array_equal(x.numpy(), sf.read(path, dtype="float32", always_2d=True)[0])


def test_without_tfio_the_fallbacks_say_what_is_missing(tmp_path, monkeypatch):
    """Where tensorflow-io's native ops do not load (TF 2.21), the package needs them for nothing but its
    fallbacks: those raise an error naming the cause, and one warning per process lists what is missing."""
    import warnings

    path = str(tmp_path / "x.flac")
    sf.write(path, _signal(channels=1), 16000, subtype="PCM_16")
    monkeypatch.setattr(tfio_compat, "_state", (None, "tensorflow-io is not installed"))
    monkeypatch.setattr(tfio_compat, "_warned", False)
    monkeypatch.setenv("KERAS_DSSDN_FLAC_DECODER", "tfio")
    assert native_flac.flac_decoder_name() == "none"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(UnsupportedAudioError, match="Decoding FLAC without the native FLAC op.*tensorflow-io"):
            audio.read_audio(path)
        with pytest.raises(UnsupportedAudioError, match=r"resample\(method='tfio'\).*TensorFlow 2.17"):
            audio.resample(np.zeros(100, "float32"), 16000, 44100, method="tfio")
    said = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert len(said) == 1 and "not available: FLAC decoding when the native FLAC op" in said[0], said
    monkeypatch.delenv("KERAS_DSSDN_FLAC_DECODER")
    x, _ = audio.read_audio(path)  # the native op does not need tensorflow-io
    np.testing.assert_array_equal(x.numpy(), sf.read(path, dtype="float32", always_2d=True)[0])
