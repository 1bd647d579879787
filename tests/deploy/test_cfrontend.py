"""The generated C front end: compiled with the system compiler, streamed, compared with the training front end."""

import dataclasses

import numpy as np
import pytest

from keras_dssdn.deploy import cfrontend, host_check
from keras_dssdn.frontend_constants import FrontEndConstants, Quantization
from keras_dssdn.errors import FrontEndError, VerificationError
from keras_dssdn.layers.frontend import NormalizationStats
from keras_dssdn.params import DEFAULT_FRONTEND, FrontEndParams

from _export_helpers import tut17_subsets

needs_cc = pytest.mark.skipif(host_check.find_c_compiler() is None,
                              reason="no C compiler (cc, gcc or clang on PATH, or $CC): the C front end is not built")

#: A second front end: 16 kHz, window shorter than the FFT, 40 bands, global normalisation.
FE_16K = FrontEndParams(sample_rate=16000, n_fft=512, win_length=400, hop_length=160, n_mels=40, fmin=50.0)
FE_NO_CENTER = FrontEndParams(sample_rate=16000, n_fft=256, win_length=256, hop_length=128, n_mels=32, center=False)


def _setup(fe, seconds=1.0, per_band=True, scale=8.0 / 255, zero_point=-1):
    frames = fe.num_frames(seconds)
    stats = (NormalizationStats([-8.0 + 0.01 * m for m in range(fe.n_mels)], [3.5] * fe.n_mels, mode="per_band")
             if per_band else NormalizationStats([-7.0], [4.0]))
    consts = FrontEndConstants.build(fe, [1, fe.n_mels, frames, 1], Quantization(scale, zero_point), stats,
                                     seconds=seconds)
    return consts, stats


def _both(tmp_path, fe, pcm, seconds=1.0, pad=False, consts=None, per_band=True):
    c_consts, stats = _setup(fe, seconds, per_band)
    consts = consts or c_consts
    exe = host_check.build_frontend(cfrontend.frontend_c_sources(consts), str(tmp_path))
    c = host_check.run_c_frontend(exe, pcm, c_consts.input_shape, pad=pad)
    py = host_check.python_int8_tensors(pcm, c_consts, pad=pad)
    return c, py


def _assert_parity(c, py):
    parity = host_check.tensor_parity(c, py)
    assert parity["equal_fraction"] >= host_check.MIN_EQUAL_FRACTION, parity
    assert parity["max_step"] <= host_check.MAX_STEP, parity
    return parity


@needs_cc
@pytest.mark.parametrize("fe", [DEFAULT_FRONTEND, FE_16K, FE_NO_CENTER], ids=["44k_2048_128", "16k_512_win400",
                                                                             "no_center"])
def test_edge_case_signals_match_the_python_front_end(tmp_path, fe):
    """Silence, full-scale square wave, clipping, noise, impulses, a sweep: two segments each, streamed in chunks."""
    seg = fe.num_samples(1.0)
    signals = host_check.edge_case_signals(fe.sample_rate, 2 * seg + seg // 3)  # a partial third segment: dropped
    pcm = np.stack(list(signals.values()))
    c, py = _both(tmp_path, fe, pcm, per_band=fe is not FE_16K)
    assert c.shape == (2 * len(signals), fe.n_mels, fe.num_frames(1.0), 1)
    _assert_parity(c, py)
    silence = c[:2]
    assert np.all(silence == silence[:, :, :1])  # log(0 + offset) in every frame


@needs_cc
def test_real_clips_match_and_flush_zero_pads_like_the_pipeline(tmp_path, shared_data):
    """Real TUT 2017 clips (int16 FLAC) through the pipeline's loader; a partial last segment completed by
    dssdn_fe_flush equals the Python front end on the zero-padded segment."""
    _, _, _, evaluate = tut17_subsets(shared_data, n_eval=2)
    pcm = np.concatenate(list(host_check.clip_batches(evaluate, DEFAULT_FRONTEND, 10.0)))
    assert pcm.shape == (2, 441000)
    c, py = _both(tmp_path, DEFAULT_FRONTEND, pcm)
    assert len(c) == 20
    _assert_parity(c, py)
    cut = pcm[:, :int(2.5 * 44100)]  # the third segment is half audio, half zeros
    c, py = _both(tmp_path, DEFAULT_FRONTEND, cut, pad=True)
    assert len(c) == 6
    _assert_parity(c, py)


@needs_cc
def test_a_wrong_constant_fails_the_check(tmp_path):
    """The comparison can fail: an int8 offset two steps off is caught."""
    fe = FE_16K
    consts, stats = _setup(fe)
    q = consts.input_quantization  # the fused map's offset is zero_point - mean x scale: two steps more
    consts = dataclasses.replace(consts, input_quantization=Quantization(q.scale, q.zero_point + 2))
    pcm = np.stack(list(host_check.edge_case_signals(fe.sample_rate, fe.num_samples(1.0)).values()))
    c, py = _both(tmp_path, fe, pcm, consts=consts)
    parity = host_check.tensor_parity(c, py)
    assert parity["max_step"] == 2
    with pytest.raises(VerificationError, match="2 quantisation steps"):
        host_check._check_thresholds("test signals", parity, None)


def test_only_near_tie_clips_may_change_class():
    """A clip may take another class on the C front end only where the training front end's top two classes were
    within TIE_STEPS output steps; a clear flip fails the check. TFLM is replaced by a table of outputs here."""
    scale = 1.0 / 256
    table = {  # first input value -> dequantised outputs (3 classes)
        0: [0.500, 0.498, 0.002],  # clip 0, Python path: class 0 ahead by 0.5 steps
        1: [0.498, 0.500, 0.002],  # clip 0, C path: class 1 ahead (a near-tie flip)
        2: [0.900, 0.050, 0.050],  # clip 1, Python path: class 0 ahead by 217 steps
        3: [0.050, 0.900, 0.050],  # clip 1, C path: class 1 (a clear flip)
    }
    decisions = host_check.MicroDecisions.__new__(host_check.MicroDecisions)
    decisions.scale, decisions.zero_point = scale, -128
    decisions.outputs = lambda x: np.array([table[int(v.flat[0])] for v in x], np.float32)
    tensor = lambda v: np.full((1, 4, 4, 1), v, np.int8)  # noqa: E731 - one segment per clip
    py = np.concatenate([tensor(0), tensor(2)])
    near_tie_only = host_check.merge_decisions([decisions.compare(np.concatenate([tensor(1), tensor(2)]), py, 1)])
    assert near_tie_only["clips_agreeing"] == 1 and near_tie_only["near_tie_flips"] == 1
    assert near_tie_only["flip_margins"] == [pytest.approx(0.512, abs=0.01)]
    parity = {"equal_fraction": 1.0, "max_step": 1}
    host_check._check_thresholds("two clips", parity, near_tie_only)  # passes: the flip was a near-tie
    both = host_check.merge_decisions([decisions.compare(np.concatenate([tensor(1), tensor(3)]), py, 1)])
    assert both["clips_agreeing"] == 0 and both["near_tie_flips"] == 1
    with pytest.raises(VerificationError, match=r"1 of 2 clips get another class .* 217\.6 or more output"):
        host_check._check_thresholds("two clips", parity, both)


@pytest.mark.parametrize("changes, match", [
    (dict(n_fft=1000, win_length=1000), "n_fft to be a power of two.*n_fft=1000.*n_fft=1024"),
    (dict(n_fft=2, win_length=2, n_mels=1), "power of two between 4"),
])
def test_front_ends_the_c_code_cannot_reproduce_are_rejected(changes, match):
    fe = FrontEndParams(**{**DEFAULT_FRONTEND.to_dict(), **changes})
    with pytest.raises(FrontEndError, match=match):
        cfrontend.check_supported(fe, fe.num_samples(1.0))
    with pytest.raises(FrontEndError, match="too short"):
        cfrontend.check_supported(DEFAULT_FRONTEND, 1024)


def test_export_rejects_such_a_front_end_before_writing(tmp_path):
    import keras

    from keras_dssdn.deploy.export import export_bundle

    fe = FrontEndParams(sample_rate=16000, n_fft=400, win_length=400, hop_length=160, n_mels=16)
    inp = keras.Input((16, fe.num_frames(1.0), 1))
    model = keras.Model(inp, keras.layers.Dense(3, activation="softmax")(keras.layers.Flatten()(inp)))
    out = tmp_path / "bundle"
    with pytest.raises(FrontEndError, match="n_fft=400"):
        export_bundle(model, out, representative=np.zeros((4, 16, fe.num_frames(1.0), 1), np.float32), frontend=fe,
                      log=lambda *a: None)
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_without_a_compiler_the_check_is_skipped_and_says_so(monkeypatch):
    monkeypatch.setattr(host_check, "find_c_compiler", lambda: None)
    consts, stats = _setup(FE_16K)
    lines = []
    out = host_check.check_c_frontend({}, consts, b"", 4096, log=lines.append)
    assert "no C compiler" in out["skipped"] and "NOT checked" in lines[0]


def test_ram_and_flash_constants_are_in_the_header():
    consts, _ = _setup(FE_16K)
    header = cfrontend.frontend_c_sources(consts)[cfrontend.HEADER]
    assert f"#define DSSDN_FE_RAM_BYTES {6 * 512 + 16}" in header
    assert f"#define DSSDN_FE_FLASH_BYTES {cfrontend.frontend_flash_bytes(consts)}" in header
    assert "#define DSSDN_FE_FIRST_COLUMN_SAMPLES 257" in header and "#define DSSDN_FE_SEGMENT_SAMPLES 16000" in header
    assert "malloc" not in cfrontend.frontend_c_sources(consts)[cfrontend.SOURCE]  # no heap
