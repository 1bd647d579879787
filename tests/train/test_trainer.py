"""Training tool: run folder, kill-and-resume, bad input; evaluation of .keras and .tflite models."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import keras

from keras_dssdn.data.datasets import read_dcase
from keras_dssdn.inference.evaluate import TFLiteClassifier, evaluate_model
from keras_dssdn.data.synthetic import make_synthetic_dataset
from keras_dssdn.errors import ConfigError, ResumeError
from keras_dssdn.train import WarmupCosine, load_checkpoint, load_train_config, train

REPO = Path(__file__).resolve().parents[2]
TINY = ["widths=[4,4,8,8,8]", "clip_seconds=2.0", "segment_seconds=null", "batch_size=6", "warmup_epochs=1", "verbose=0",
        "augment.mixup_alpha=0.2"]


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data") / "synthetic"
    return make_synthetic_dataset(root, num_classes=3, seconds=2.0, train_locations=2, eval_locations=1,
                                  clips_per_location=3, devices=("a", "b"), seed=1)


def _cfg(data, out, name, *extra):
    return load_train_config("small", [f"data={data}", f"out_dir={out}", f"name={name}", *TINY, *extra])


@pytest.fixture(scope="module")
def two_epoch_run(tiny_data, tmp_path_factory):
    """One tiny run of 2 epochs trained through ``dssdn-train`` (its main, in this process), shared by the tests
    that read a finished run (the folder, the command's report, evaluation, the refusals of a resume):
    ``(exit status, what the command printed, run folder)``. Tests that change the folder work on a copy."""
    import contextlib
    import io

    from keras_dssdn.cli.train import main

    out, printed = tmp_path_factory.mktemp("trained"), io.StringIO()
    with contextlib.redirect_stdout(printed):
        status = main(["--config", "small", f"data={tiny_data}", f"out_dir={out}", "name=run", *TINY, "epochs=2"])
    return status, printed.getvalue(), out / "run"


def test_tiny_run_writes_a_complete_run_folder(two_epoch_run):
    status, printed, run = two_epoch_run
    assert status == 0
    for name in ("config.json", "model_config.json", "frontend.json", "labels.json", "normalization.json",
                 "log.csv", "best.keras", "metrics.json", "metrics.md", "confusion.png",
                 "checkpoint/last.keras", "checkpoint/state.json"):
        assert (run / name).is_file(), name
    assert (run / "tensorboard").is_dir()
    assert not list(run.rglob("*.tmp*"))
    state = json.loads((run / "checkpoint" / "state.json").read_text())
    assert state["epoch"] == 2 and len(state["history"]) == 2
    assert all({"loss", "accuracy", "val_accuracy", "learning_rate", "seconds"} <= set(h) for h in state["history"])
    assert len((run / "log.csv").read_text().strip().splitlines()) == 3  # header + 2 epochs
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["examples"] == 9 and set(metrics["class_accuracy"]) == {"airport", "bus", "metro"}
    assert set(metrics["device"]) == {"a", "b"}
    # the command's report is the run's metrics
    assert (f"best epoch {metrics['training']['best_epoch']}/2, accuracy {100 * metrics['accuracy']:.2f} %, macro "
            f"class-wise accuracy {100 * metrics['macro_class_accuracy']:.2f} %") in printed
    best = keras.models.load_model(run / "best.keras")
    assert best.get_layer("class_names").class_names == ["airport", "bus", "metro"]
    assert json.loads((run / "labels.json").read_text())
    # the saved model normalises internally: raw log-mel in, probabilities out
    assert best.input_shape == (None, 128, 87, 1) and best.output_shape == (None, 3)


class _StopAfter(keras.callbacks.Callback):
    """Simulates a crash right after epoch ``n`` was checkpointed."""

    def __init__(self, n):
        super().__init__()
        self.n = n

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.n:
            raise KeyboardInterrupt("simulated kill")


class _StopTrainingAfter(keras.callbacks.Callback):
    """Ends training cleanly after epoch ``n`` (1-based)."""

    def __init__(self, n):
        super().__init__()
        self.n = n

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 >= self.n:
            self.model.stop_training = True


class _RecordStart(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.variables = [np.array(v) for v in self.model.optimizer.variables]

    def on_epoch_begin(self, epoch, logs=None):
        if not hasattr(self, "first_epoch"):
            self.first_epoch = epoch


@pytest.mark.slow
def test_interrupted_run_resumes_at_next_epoch_with_identical_optimizer_state(tiny_data, tmp_path):
    cfg = _cfg(tiny_data, tmp_path, "run", "epochs=3")
    with pytest.raises(KeyboardInterrupt):
        train(cfg, callbacks=[_StopAfter(1)])
    saved, state = load_checkpoint(tmp_path / "run")
    assert state["epoch"] == 1 and int(saved.optimizer.iterations.numpy()) == state["optimizer_iterations"] > 0
    saved_vars = [np.array(v) for v in saved.optimizer.variables]
    rec = _RecordStart()
    result = train(cfg, resume=True, callbacks=[rec])
    assert rec.first_epoch == 1  # zero-based: continues with epoch 2
    assert len(rec.variables) == len(saved_vars)
    for a, b in zip(rec.variables, saved_vars):
        np.testing.assert_array_equal(a, b)  # iterations, Adam moments, ...
    assert result.epochs_run == 3
    history = json.loads((tmp_path / "run" / "checkpoint" / "state.json").read_text())["history"]
    assert [h["epoch"] for h in history] == [1, 2, 3]
    steps = state["optimizer_iterations"]  # per epoch
    schedule = WarmupCosine(cfg.learning_rate, 3 * steps, 1 * steps, cfg.min_lr_ratio)
    expected = [float(schedule(k * steps)) for k in (1, 2, 3)]
    np.testing.assert_allclose([h["learning_rate"] for h in history], expected, rtol=1e-6)


@pytest.mark.slow
def test_killed_training_process_resumes(tiny_data, tmp_path):
    """SIGKILL a real tools/train.py process after its first checkpoint, then --resume it."""
    args = [sys.executable, str(REPO / "tools" / "train.py"), "--config", "small", f"data={tiny_data}",
            f"out_dir={tmp_path}", "name=killed", *TINY, "epochs=40"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state_path = tmp_path / "killed" / "checkpoint" / "state.json"
    deadline = time.time() + 240
    try:
        while time.time() < deadline and not state_path.is_file():
            assert proc.poll() is None, "training exited before its first checkpoint"
            time.sleep(0.5)
        assert state_path.is_file(), "no checkpoint within 240 s"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    done = json.loads(state_path.read_text())["epoch"]
    assert 1 <= done < 40
    rec = _RecordStart()
    cfg = _cfg(tiny_data, tmp_path, "killed", "epochs=40")  # the run's own settings: resume continues them
    result = train(cfg, resume=True, callbacks=[rec, _StopTrainingAfter(done + 1)])
    assert rec.first_epoch == done and result.epochs_run == done + 1


def test_bad_input_errors(tiny_data, tmp_path):
    with pytest.raises(ConfigError, match="Unknown training config key.*'epoch'"):
        load_train_config("small", ["epoch=3"])
    with pytest.raises(ConfigError, match="Unknown augment key"):
        load_train_config("small", ["augment.mixupalpha=3"])
    with pytest.raises(ConfigError, match="neither a file nor one of"):
        load_train_config("huge")
    with pytest.raises(ConfigError, match="model must be one of"):
        train(_cfg(tiny_data, tmp_path, "x", "model=giant", "epochs=1"))
    with pytest.raises(ResumeError, match="not a run folder"):
        train(_cfg(tiny_data, tmp_path, "nothing", "epochs=1"), resume=True)


def test_weight_averaging_keeps_the_average_in_best_and_both_in_the_checkpoint(tiny_data, tmp_path):
    """ema_momentum (one epoch of a tiny run): best.keras holds the optimizer's moving average of the weights; checkpoint/last.keras the raw
    weights and the average (a resume continues both); out-of-range values and multi-device runs refused."""
    from keras_dssdn.train.trainer import averaged_weights

    train(_cfg(tiny_data, tmp_path, "ema", "epochs=1", "ema_momentum=0.5", "monitor=last", "run_eagerly=true"))
    best = keras.models.load_model(tmp_path / "ema" / "best.keras", compile=False)
    last, _ = load_checkpoint(tmp_path / "ema")
    raw = [v.numpy() for v in last.trainable_variables]
    with averaged_weights(last):
        average = [v.numpy() for v in last.trainable_variables]
    assert all(np.array_equal(v.numpy(), r) for v, r in zip(last.trainable_variables, raw))  # restored
    assert all(np.array_equal(b.numpy(), a) for b, a in zip(best.trainable_variables, average))
    assert sum(not np.array_equal(a, r) for a, r in zip(average, raw)) > len(raw) // 2
    with pytest.raises(ConfigError, match=r"ema_momentum=1\.0 must be in \[0, 1\)"):
        load_train_config("small", ["ema_momentum=1.0"])
    with pytest.raises(ConfigError, match="ema_momentum=0.99 .* runs on one device; use strategy=default"):
        load_train_config("small", ["ema_momentum=0.99", "strategy=mirrored"])


def test_resume_refuses_other_labels_and_corrupt_checkpoint(two_epoch_run, tiny_data, tmp_path):
    shutil.copytree(two_epoch_run[2], tmp_path / "run")  # a finished run of 2 epochs, changed below
    cfg = _cfg(tiny_data, tmp_path, "run", "epochs=2")
    with pytest.raises(FileExistsError, match="--resume"):
        train(cfg)
    other = make_synthetic_dataset(tmp_path / "other", num_classes=4, seconds=2.0, train_locations=1,
                                   eval_locations=1, clips_per_location=2, seed=2)
    # the run keeps its own config, so point it at other data by editing config.json (a user moving folders)
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    config["data"] = str(other)
    (tmp_path / "run" / "config.json").write_text(json.dumps(config))
    with pytest.raises(ResumeError, match="labels .* differ from the run's"):
        train(_cfg(other, tmp_path, "run", "epochs=2"), resume=True)  # data= may change on resume; labels may not
    config["data"] = str(tiny_data)
    (tmp_path / "run" / "config.json").write_text(json.dumps(config))
    # an override that changes the experiment is refused, naming the key
    with pytest.raises(ResumeError, match="epochs: 2 -> 3"):
        train(_cfg(tiny_data, tmp_path, "run", "epochs=3"), resume=True)
    (tmp_path / "run" / "checkpoint" / "last.keras").write_bytes(b"not a zip file")
    with pytest.raises(ResumeError, match="last.keras .* is corrupt"):
        train(_cfg(tiny_data, tmp_path, "run", "epochs=2"), resume=True)


def test_evaluate_keras_and_tflite_and_unknown_classes(two_epoch_run, tiny_data, tmp_path):
    import tensorflow as tf

    model = keras.models.load_model(two_epoch_run[2] / "best.keras", compile=False)
    clips = read_dcase(tiny_data, split="evaluate")
    from keras_dssdn.params import FrontEndParams

    fe = FrontEndParams()
    m_keras = evaluate_model(model, clips, clip_seconds=2.0, frontend=fe)
    flat = tf.lite.TFLiteConverter.from_keras_model(model).convert()
    from keras_dssdn.layers.labels import vocabulary_from_model

    m_tflite = evaluate_model(TFLiteClassifier(flat), clips, vocabulary=vocabulary_from_model(model),
                              clip_seconds=2.0, frontend=fe)
    assert m_tflite["accuracy"] == m_keras["accuracy"]
    assert m_tflite["log_loss"] == pytest.approx(m_keras["log_loss"], abs=1e-4)
    other = make_synthetic_dataset(tmp_path / "other", num_classes=5, seconds=2.0, train_locations=1,
                                   eval_locations=1, clips_per_location=1, seed=3)
    with pytest.raises(ValueError, match="not among the model's classes"):
        evaluate_model(model, read_dcase(other, split="evaluate"), clip_seconds=2.0)


@pytest.mark.slow
def test_segment_training_reports_clip_level(tiny_data, tmp_path):
    result = train(_cfg(tiny_data, tmp_path, "seg", "epochs=1", "segment_seconds=1.0", "model=dcase_small_1s"))
    m = result.metrics
    assert m["examples"] == 9 and m["segment"]["examples"] == 18
    assert m["level"].startswith("clip (mean of 1-s segment")


def test_cli_refuses_a_bad_key_and_evaluates_what_it_trained(two_epoch_run, tiny_data, tmp_path, run_command):
    """dssdn-train refuses an unknown key (exit 2; its training and report: the shared run above);
    tools/evaluate.py, a real process in the form the docs use, evaluates the run's model."""
    r = run_command("dssdn-train", "--config", "small", "epochz=1")
    assert r.returncode == 2 and "Unknown training config key" in r.stderr
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    r = subprocess.run([sys.executable, str(REPO / "tools" / "evaluate.py"), "--model", str(two_epoch_run[2] / "best.keras"),
                        "--data", str(tiny_data), "--clip-seconds", "2", "--out", str(tmp_path / "ev")],
                       capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "macro class-wise accuracy" in r.stdout and (tmp_path / "ev" / "confusion.png").is_file()


def test_per_input_normalisation_trains_and_reloads(tiny_data, tmp_path):
    """normalization=per_input: no statistics are learnt from the data (normalization.json holds none), the saved
    model standardises each input by itself, and reloads; export refuses it (the C front end has fixed stats)."""
    from keras_dssdn.deploy.prepare import prepare_model
    from keras_dssdn.layers.frontend import LogMelNormalization, NormalizationStats

    train(_cfg(tiny_data, tmp_path, "pin", "epochs=1", "normalization=per_input", "monitor=last", "run_eagerly=true"))
    stats = NormalizationStats.load(str(tmp_path / "pin" / "normalization.json"))
    assert (stats.mode, stats.mean, stats.std) == ("per_input", (), ())
    best = keras.models.load_model(tmp_path / "pin" / "best.keras", compile=False)
    assert any(isinstance(layer, LogMelNormalization) and layer.stats.mode == "per_input" for layer in best.layers)
    with pytest.raises(Exception, match="per_input"):
        prepare_model(best)
    with pytest.raises(ConfigError, match="per_input or none, got 'per_clip'"):
        _cfg(tiny_data, tmp_path, "bad", "normalization=per_clip")
