"""tools/predict.py and keras_dssdn.inference.predict: windowing, aggregation, bad files among good ones."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import keras_dssdn
from keras_dssdn.layers.frontend import attach_front_end
from keras_dssdn.inference.predict import _windows, load_predictor, predict_files
from keras_dssdn.data.synthetic import write_wav16

REPO = Path(__file__).resolve().parents[2]
CLASSES = ["cafe/restaurant", "park", "tram"]


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    """A 1-s DSSDN-Small (untrained) saved like a run's best.keras."""
    net = keras_dssdn.DSSDNSmall(input_shape=keras_dssdn.DEFAULT_FRONTEND.input_shape(1.0), classes=3,
                                 widths=[4, 4, 8, 8, 8])
    model = attach_front_end(net, class_names=CLASSES, waveform_input=False, seconds=1.0)
    path = tmp_path_factory.mktemp("model") / "best.keras"
    model.save(path)
    return path


def test_windows_cover_the_whole_signal():
    x = np.arange(35)
    starts, wins, padded = _windows(x, 10, 10)
    assert starts.tolist() == [0, 10, 20, 25] and not padded  # last window aligned to the end
    np.testing.assert_array_equal(wins[-1], x[25:])
    starts, wins, padded = _windows(x[:4], 10, 10)
    assert starts.tolist() == [0] and padded and wins.shape == (1, 10)
    starts, _, _ = _windows(x[:30], 10, 5)
    assert starts.tolist() == [0, 5, 10, 15, 20]


def test_long_file_short_file_and_corrupt_file(model_path, tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "audio"
    folder.mkdir()
    write_wav16(folder / "long.wav", 0.1 * rng.standard_normal(int(3.5 * 22050)), 22050)  # other rate: resampled
    write_wav16(folder / "short.wav", 0.1 * rng.standard_normal(11025), 44100)
    (folder / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk" + bytes(100))
    predictor = load_predictor(model_path)
    assert predictor.class_names == CLASSES and predictor.frames == 44
    results = {Path(r["file"]).name: r for r in predict_files(predictor, [folder], k=2)}
    assert set(results) == {"long.wav", "short.wav", "broken.wav"}
    assert "broken.wav" in results["broken.wav"]["error"]
    long = results["long.wav"]
    assert long["seconds"] == pytest.approx(3.5, abs=1e-3)
    win = 1.0  # 44 centred frames: the 1-s segments the model was trained on (FrontEndParams.seconds_for_frames)
    np.testing.assert_allclose([w["start"] for w in long["windows"]], [0.0, win, 2 * win, 3.5 - win], atol=1e-4)
    assert long["windows"][-1]["end"] == pytest.approx(3.5, abs=1e-3)
    assert len(long["top"]) == 2 and long["top"][0]["probability"] >= long["top"][1]["probability"]
    assert np.isclose(sum(long["probabilities"]), 1.0, atol=1e-5)
    assert results["short.wav"]["padded"] and len(results["short.wav"]["windows"]) == 1


def test_cli_on_real_tau18_files_with_a_corrupt_one(model_path, tmp_path, shared_data, run_command):
    audio = shared_data / "tau18-format" / "audio"
    bad = tmp_path / "empty.flac"
    bad.write_bytes(b"")
    cmd = [sys.executable, str(REPO / "tools" / "predict.py"), "--model", str(model_path), str(audio), str(bad)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 1, r.stderr[-2000:]  # one file failed, the others were classified
    rows = [l for l in r.stdout.splitlines() if l.endswith(".wav") or ".wav " in l]
    assert len(rows) == 10 and "ERROR" in r.stdout and "empty.flac" in r.stdout
    # the other formats through the command's main in this process (one TensorFlow start-up is enough)
    r = run_command("dssdn-predict", *cmd[2:-1], "--format", "json", "--hop", "5")
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout)
    assert len(out["results"]) == 10 and all(len(x["windows"]) == 3 for x in out["results"])  # 0, 5, 9 s
    r = run_command("dssdn-predict", *cmd[2:-1], "--format", "csv")
    assert r.returncode == 0 and r.stdout.startswith("file,window,start_s,end_s,label1,prob1")
