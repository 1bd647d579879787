"""A user's mistake gets one message naming the file, key or value, a distinct exit status, no traceback,
and leaves nothing half-written or deleted (docs/errors.md)."""

import json
import os
import shutil
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest

from keras_dssdn.data.synthetic import make_synthetic_dataset

BIN = Path(sys.executable).parent


def _run(command, *args, cwd=None, timeout=600):
    exe = BIN / command
    assert exe.is_file(), f"{exe} missing: pip install -e ."
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}  # as a user's shell has it
    out = subprocess.run([str(exe), *map(str, args)], capture_output=True, text=True, timeout=timeout, cwd=cwd,
                         env=env)
    assert "Traceback" not in out.stderr, out.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_synthetic_dataset(tmp_path_factory.mktemp("d") / "tiny", num_classes=2, seconds=1.0,
                                  train_locations=1, eval_locations=1, clips_per_location=2, seed=3)


def _float_wav(path: Path, samples: np.ndarray, rate: int = 44100) -> None:
    """A 32-bit IEEE-float mono WAV (format tag 3), written by hand so NaN can be stored."""
    data = samples.astype("<f4").tobytes()
    fmt = (3).to_bytes(2, "little") + (1).to_bytes(2, "little") + rate.to_bytes(4, "little") + \
        (rate * 4).to_bytes(4, "little") + (4).to_bytes(2, "little") + (32).to_bytes(2, "little")
    body = b"WAVE" + b"fmt " + len(fmt).to_bytes(4, "little") + fmt + b"data" + len(data).to_bytes(4, "little") + data
    path.write_bytes(b"RIFF" + (len(body)).to_bytes(4, "little") + body)


BAD_TRAIN_VALUES = [
    ("epochs=abc", "'epochs'"), ("learning_rate=abc", "'learning_rate'"), ("clip_seconds=0", "clip_seconds"),
    ("frontend.n_mels=0", "n_mels"), ("model=huge", "'huge'"), ("segment_seconds=5", "segment_seconds"),
    ("fold=7", "fold7"), ("augment.mixup_alpha=[1", "augment.mixup_alpha"),
]


def _train_args(tiny, out, override):
    return ["--config", "small", f"data={tiny}", f"out_dir={out}", "name=run", "clip_seconds=1.0", override]


@pytest.mark.parametrize("override, named", BAD_TRAIN_VALUES)
def test_train_refuses_bad_values_before_any_work(tiny, tmp_path, override, named, capsys):
    """In process (dssdn-train's main, as the command calls it): the same message and status, without a
    TensorFlow start-up per value; the installed command itself is run by the test below."""
    from keras_dssdn.cli.train import main

    status = main(_train_args(tiny, tmp_path, override))
    err = capsys.readouterr().err
    assert status in (2, 3), (status, err)
    assert err.startswith("error: ") and named in err and "Traceback" not in err, err
    assert not (tmp_path / "run").exists()  # no run folder left behind to block a rerun


def test_train_command_refuses_a_bad_value_in_one_line(tiny, tmp_path):
    """The installed dssdn-train, in its own process: one line, its exit status, no traceback, nothing written."""
    out = _run("dssdn-train", *_train_args(tiny, tmp_path, "epochs=abc"))
    assert out.returncode == 2, (out.returncode, out.stderr)
    assert out.stderr.startswith("error: ") and "'epochs'" in out.stderr, out.stderr
    assert not (tmp_path / "run").exists()


def test_malformed_csv_is_named(tmp_path, capsys, run_command):
    bad = tmp_path / "bad.csv"
    bad.write_text("filename\tscene_label\na.wav\n")
    out = run_command("dssdn-train", f"data={bad}", f"out_dir={tmp_path}", "name=run")
    assert out.returncode == 3 and "bad.csv" in out.stderr, out.stderr
    assert not (tmp_path / "run").exists()


def test_non_finite_audio_is_refused_before_training(tiny, tmp_path, capsys, run_command):
    data = tmp_path / "data"
    shutil.copytree(tiny, data)
    victim = sorted((data / "audio").glob("*.wav"))[0]
    x = np.zeros(44100, np.float32)
    x[100] = np.nan
    _float_wav(victim, x)
    out = run_command("dssdn-train", f"data={data}", f"out_dir={tmp_path}", "name=run", "epochs=1",
                          "warmup_epochs=0", "clip_seconds=1.0")
    assert out.returncode == 3 and victim.name in out.stderr and "NaN" in out.stderr, out.stderr
    assert not (tmp_path / "run").exists()
    pred = run_command("dssdn-predict", "--model", str(tmp_path / "none.keras"), str(victim))
    assert pred.returncode == 4 and "none.keras" in pred.stderr


def test_short_clip_message_names_a_key_the_trainer_accepts(tiny, tmp_path, capsys, run_command):
    out = run_command("dssdn-train", f"data={tiny}", f"out_dir={tmp_path}", "name=run", "clip_seconds=2.0")
    assert out.returncode == 3 and "pad_short=true" in out.stderr, out.stderr
    from keras_dssdn.train import load_train_config

    assert load_train_config("small", ["pad_short=true"]).pad_short is True


def test_demo_refuses_a_folder_it_did_not_write(tmp_path, capsys, run_command):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("precious")
    out = run_command("dssdn-demo", "--out", mine, "--epochs", "1")
    assert out.returncode == 2 and str(mine) in out.stderr, out.stderr
    assert (mine / "thesis.tex").read_text() == "precious" and sorted(p.name for p in mine.iterdir()) == ["thesis.tex"]


def test_not_a_keras_file_is_not_reported_as_missing(tiny, tmp_path, capsys, run_command):
    fake = tmp_path / "model.keras"
    fake.write_bytes(b"this is not a zip archive")
    out = run_command("dssdn-evaluate", "--model", fake, "--data", tiny)
    assert out.returncode == 4 and str(fake) in out.stderr and "not found" not in out.stderr.lower(), out.stderr


def test_resume_reads_the_run_config_and_refuses_changes(tmp_path):
    from keras_dssdn.cli.train import build_parser, resolve_config
    from keras_dssdn.errors import ConfigError
    from keras_dssdn.train import load_train_config

    saved = load_train_config("small", ["epochs=6", "data=/somewhere", "name=r"]).to_dict()
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "config.json").write_text(json.dumps(saved))
    args = build_parser().parse_args(["--resume", f"out_dir={tmp_path}", "name=r"])
    assert resolve_config(args).epochs == 6  # not the packaged preset's epochs
    args = build_parser().parse_args(["--resume", f"out_dir={tmp_path}", "name=r", "epochs=60"])
    with pytest.raises(ConfigError, match="epochs: 6 -> 60"):
        resolve_config(args)


def test_integer_wav_cannot_hold_non_finite_values(tmp_path):
    from keras_dssdn.audio import count_non_finite, probe_audio

    path = tmp_path / "int16.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(16000), w.writeframes(np.zeros(160, "<i2").tobytes())
    assert count_non_finite(probe_audio(str(path))) == 0
    x = np.ones(1000, np.float32)
    x[[3, 7]] = [np.inf, -np.inf]
    _float_wav(tmp_path / "f.wav", x)
    assert count_non_finite(probe_audio(str(tmp_path / "f.wav"))) == 2
