"""Training with a teacher, end to end on tiny data: dssdn-teacher writes an ensemble's logits, a student distils
from them (mixup on, killed and resumed), from teacher run folders directly, with --strategy mirrored on two CPU
devices, and in a search; bad teachers stop before any training step."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from keras_dssdn.cli.teacher import main as teacher_main
from keras_dssdn.distill.logits import TeacherLogits
from keras_dssdn.errors import ConfigError, TeacherLogitsError
from keras_dssdn.runs import RunFolder
from keras_dssdn.train import load_train_config, train

REPO = Path(__file__).resolve().parents[2]
# run_eagerly: tiny runs of a few steps skip Keras' tracing (20-40 s per model here); the distilled student of
# test_teacher_runs_directly... and the mirrored run train in graph mode, as users' runs do
TINY = ["widths=[4,4,8,8,8]", "clip_seconds=2.0", "segment_seconds=1.0", "batch_size=6", "warmup_epochs=1",
        "verbose=0", "run_eagerly=true"]


def _cfg(data, out, name, *extra):
    return load_train_config("small", [f"data={data}", f"out_dir={out}", f"name={name}", *TINY, *extra])


@pytest.fixture(scope="module")
def teachers(tiny_data, tmp_path_factory):
    """Two tiny teacher runs and their ensemble's logits of the training split: seed 0 trained for one epoch, and
    "seed1", a copy of that run folder whose model's trainable weights were moved by random noise (a second,
    different member without a second training run)."""
    out = tmp_path_factory.mktemp("teachers")
    train(_cfg(tiny_data, out, "seed0", "epochs=1", "seed=0"))
    shutil.copytree(out / "seed0", out / "seed1")
    model = keras.models.load_model(out / "seed1" / "best.keras", compile=False)
    rng = np.random.default_rng(1)
    for v in model.trainable_variables:
        v.assign(v.numpy() + rng.normal(0.0, 0.2, v.shape).astype(v.dtype))
    model.save(out / "seed1" / "best.keras")
    logits = out / "train.npz"
    assert teacher_main(["run", str(out / "seed*"), "--data", str(tiny_data), "--split", "train", "--clip-seconds",
                         "2", "--out", str(logits)]) == 0
    return out, logits


def test_teacher_command_writes_an_ensemble_keyed_by_clip(teachers, tiny_data, capsys):
    out, path = teachers
    tl = TeacherLogits.load(path)
    assert tl.logits.shape == (18, 2, 3) and tl.segment_seconds == 1.0 and len(tl.models) == 2
    np.testing.assert_allclose(tl.logits, tl.members.mean(axis=0), atol=1e-5)  # ensemble = mean of members' logits
    # a member's logits are the log of the probabilities its model gives that segment
    model = keras.models.load_model(out / "seed0" / "best.keras", compile=False)
    from keras_dssdn.data.pipeline import evaluation_dataset
    from keras_dssdn.data.spec import PipelineSpec

    x, _, m = next(iter(evaluation_dataset(tiny_data, PipelineSpec(clip_seconds=2.0, segment_seconds=1.0, batch_size=4),
                                           with_metadata=True)))
    for p, f, s in zip(model.predict(x, verbose=0), m["file"].numpy(), m["segment_index"].numpy()):
        row = list(tl.clips).index(f.decode())
        np.testing.assert_allclose(tl.members[0, row, s], np.log(np.clip(p, 1e-7, 1)), atol=1e-4)
    # whole-clip logits from the 1-s teachers (mean of their segment probabilities), and the show command
    assert teacher_main(["run", str(out / "seed0"), "--data", str(tiny_data), "--clip-seconds", "2",
                         "--segment-seconds", "clip", "--out", str(out / "clip.npz")]) == 0
    clip = TeacherLogits.load(out / "clip.npz")
    assert clip.logits.shape == (18, 1, 3)
    np.testing.assert_allclose(np.exp(clip.logits[:, 0]), np.exp(tl.members[0]).mean(axis=1), atol=1e-5)
    assert teacher_main(["show", str(path)]) == 0
    assert "ensemble" in capsys.readouterr().out


class _KillAfterFirstEpoch(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        raise KeyboardInterrupt("simulated kill")


@pytest.mark.slow
def test_student_distils_with_mixup_and_resumes(teachers, tiny_data, tmp_path):
    _, original = teachers
    logits = tmp_path / "teacher.npz"  # the user's file, changed while the run is down
    logits.write_bytes(original.read_bytes())
    kd = [f"teacher={logits}", "kd_temperature=2", "kd_weight=0.9", "augment.mixup_alpha=0.3", "epochs=2"]
    with pytest.raises(KeyboardInterrupt):
        train(_cfg(tiny_data, tmp_path, "student", *kd), callbacks=[_KillAfterFirstEpoch()])
    copy = RunFolder(tmp_path / "student").teacher_logits()  # the run keeps the logits it started with
    np.testing.assert_array_equal(copy.logits, TeacherLogits.load(original).logits)
    logits.write_bytes(b"overwritten: not a logits file any more")
    result = train(_cfg(tiny_data, tmp_path, "student", *kd), resume=True)  # reads its own copy
    state = json.loads((tmp_path / "student" / "checkpoint" / "state.json").read_text())
    assert state["epoch"] == 2 and all(np.isfinite(h["loss"]) for h in state["history"])
    assert {"accuracy", "val_accuracy", "val_loss"} <= set(state["history"][-1])
    assert result.metrics["examples"] == 9
    model = keras.models.load_model(tmp_path / "student" / "checkpoint" / "last.keras")  # the KD loss reloads
    assert type(model.loss).__name__ == "DistillationLoss" and model.loss.kd_weight == 0.9


def test_teacher_runs_directly_and_bad_teachers_stop_before_training(teachers, tiny_data, tmp_path):
    out, logits = teachers
    result = train(_cfg(tiny_data, tmp_path, "from-runs", f"teacher={out}/seed*", "epochs=1", "run_eagerly=false"))
    assert result.epochs_run == 1
    m = result.metrics  # a run on 1-s segments of 2-s clips reports clip-level figures, with the segments' aside
    assert m["examples"] == 9 and m["segment"]["examples"] == 18
    assert m["level"].startswith("clip (mean of 1-s segment")
    # logits for other segments, and a teacher run with other labels: refused before any training step
    with pytest.raises(TeacherLogitsError, match=r"2 segment\(s\) of 1 s per 2-s clip; the student's examples need 1"):
        train(_cfg(tiny_data, tmp_path, "bad", f"teacher={logits}", "epochs=1", "segment_seconds=null"))
    assert not (tmp_path / "bad" / "checkpoint" / "last.keras").exists()
    from keras_dssdn.distill.teacher import write_logits
    from keras_dssdn.data.datasets import read_dcase
    from keras_dssdn.layers.labels import LabelVocabulary

    with pytest.raises(TeacherLogitsError, match=r"seed0 has labels \['airport', 'bus', 'metro'\]; the student"):
        write_logits([out / "seed0"], read_dcase(tiny_data, "train"), vocabulary=LabelVocabulary(["a", "b", "c"]))
    with pytest.raises(ConfigError, match="no such logits file"):
        _cfg(tiny_data, tmp_path, "x", f"teacher={tmp_path / 'absent.npz'}")
    with pytest.raises(ConfigError, match="teacher= is not"):
        _cfg(tiny_data, tmp_path, "x", "kd_weight=0.9")


@pytest.mark.slow
def test_mirrored_two_cpu_replicas_train_with_the_teacher(teachers, tiny_data, tmp_path):
    _, logits = teachers
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, str(REPO / "tools" / "train.py"), "--strategy", "mirrored", "--cpu-devices", "2",
           f"data={tiny_data}", f"out_dir={tmp_path}", "name=mirrored", *TINY, "run_eagerly=false", "epochs=1",
           f"teacher={logits}", "kd_weight=0.8"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    record = json.loads((tmp_path / "mirrored" / "distribution.json").read_text())
    assert record["replicas"] == 2 and (tmp_path / "mirrored" / "metrics.json").is_file()


@pytest.mark.slow
def test_a_search_passes_the_teacher_to_its_trials(teachers, tiny_data, tmp_path):
    """The search's training config carries the teacher: trials train on 2K-wide targets with the KD loss."""
    _, logits = teachers
    from keras_dssdn.cli import tune as tune_cli
    from keras_dssdn.tune import run_search

    settings = tune_cli.parse_settings(["--size", "small", "--data", str(tiny_data), "--out", str(tmp_path / "tune"),
                                        "--algorithm", "random", "--epochs", "1", "--max-trials", "1",
                                        "--width-scale", "1:2", "--width-step", "4", "--quiet", *TINY,
                                        f"teacher={logits}", "kd_weight=0.8"])
    result = run_search(settings)
    assert result.best is not None
    assert result.tuner.hypermodel.data.train.element_spec[1].shape[-1] == 6


@pytest.mark.slow
def test_qat_of_a_distilled_run_distils_too(teachers, tiny_data, tmp_path):
    """QAT fine-tunes a distilled run's model towards (1 - w) x labels + w x teacher probabilities (T = 1), from the
    run's copy of its teacher logits; ``distill="none"`` gives the labels alone."""
    from keras_dssdn.deploy.export_data import qat_training_data, resolve_sources
    from keras_dssdn.deploy.prepare import prepare_model
    from keras_dssdn.deploy.settings import DataSettings, QATSettings
    from keras_dssdn.distill.logits import softened

    _, logits = teachers
    train(_cfg(tiny_data, tmp_path, "student", f"teacher={logits}", "kd_weight=0.75", "epochs=1"))
    prep, sources = resolve_sources(prepare_model(str(tmp_path / "student")),
                                    DataSettings(data=str(tiny_data), clip_seconds=2.0))
    tl = TeacherLogits.load(tmp_path / "student" / "teacher_logits.npz")
    onehot = np.eye(len(tl.class_names))[[tl.class_names.index(l) for l in tl.labels]]
    expected = (0.25 * onehot[:, None] + 0.75 * softened(tl.logits, 1.0)).reshape(-1, len(tl.class_names))
    data, _, record = qat_training_data(prep, QATSettings(epochs=1), sources)
    assert record == {"kd_weight": 0.75, "temperature": 1.0,
                      "teacher": str(tmp_path / "student" / "teacher_logits.npz")}
    ys = np.concatenate([y.numpy() for _, y in data(0)])
    assert ys.shape == expected.shape  # every (clip, segment) once per epoch
    nearest = np.abs(ys[:, None, :] - expected[None]).max(axis=-1).min(axis=1)
    assert nearest.max() < 1e-5  # each target is one clip-segment's mix of its label and its teacher
    plain, _, record = qat_training_data(prep, QATSettings(epochs=1, options={"distill": "none"}), sources)
    assert record is None
    y_plain = np.concatenate([np.asarray(b[1]) for b in plain])
    assert set(np.unique(y_plain)) <= set(range(len(tl.class_names)))  # class ids: labels only
    with pytest.raises(ConfigError, match="QAT distill must be 'run' or 'none'"):
        qat_training_data(prep, QATSettings(epochs=1, options={"distill": "yes"}), sources)
