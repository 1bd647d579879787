"""``tools/benchmark_accuracy.py --folds K`` end to end on a tiny synthetic set: both baselines and a 1-epoch
DSSDN row per fold, every clip scored once, finished runs reused, the report, a paired comparison, the ensemble
of seeds and the out-of-fold teacher over every clip."""

import importlib.util
import json
from pathlib import Path

import pytest

from keras_dssdn.data.datasets import read_dcase
from keras_dssdn.data.synthetic import make_synthetic_dataset
from keras_dssdn.distill.logits import TeacherLogits

TOOL = Path(__file__).resolve().parents[2] / "tools" / "benchmark_accuracy.py"


def _tool():
    spec = importlib.util.spec_from_file_location("benchmark_accuracy", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_cross_validation_end_to_end_with_reuse(tmp_path, capsys):
    data = make_synthetic_dataset(tmp_path / "set", num_classes=3, train_locations=2, eval_locations=1,
                                  clips_per_location=2, devices=("a",), seed=3)
    out = tmp_path / "cv"
    argv = ["--data", str(data), "--out", str(out), "--folds", "2", "--seeds", "0", "1", "--mlp-epochs", "1",
            "--rows", "baselines", "mcu=dcase_mcu_1s:epochs=1,warmup_epochs=0,batch_size=16,run_eagerly=true",
            "--ensemble", "--compare", "mcu", "mlp", "--compare", "mlp+ens", "mlp", "--bootstrap", "500",
            "--teacher-out", str(out / "teacher.npz"), "--teacher-rows", "mcu"]
    tool = _tool()
    assert tool.main(argv) == 0
    results = json.loads((out / "cv_results.json").read_text())
    clips = read_dcase(data, "all")
    assert results["clips"] == len(clips) == 18 and results["folds"] == 2
    for row in ("logreg", "mlp", "mcu", "mcu+ens"):
        assert row in results["rows"], row
    assert results["rows"]["mcu"]["seeds"] == [0, 1]
    assert {(c["a"], c["b"]) for c in results["comparisons"]} == {("mcu", "mlp"), ("mlp+ens", "mlp")}
    teacher = TeacherLogits.load(out / "teacher.npz")
    teacher.check_covers(clips)  # every clip, keyed like the dataset
    assert teacher.n_segments == 10 and len(teacher.models) == 2 * 2
    # a second call trains nothing: every run has its cv.json
    stamps = {p: p.stat().st_mtime for p in out.glob("*/seed*_fold*/cv.json")}
    assert len(stamps) == 3 * 2 * 2
    capsys.readouterr()
    assert tool.main(argv) == 0
    assert {p: p.stat().st_mtime for p in out.glob("*/seed*_fold*/cv.json")} == stamps
    assert "Epoch" not in capsys.readouterr().out
    # the saved record alone (folds.csv, cv.json, oof.npz) tabulates the same
    record = tmp_path / "record"
    assert tool.main(argv + ["--report-only", "--save-record", str(record)]) == 0
    again = ["--data", str(data), "--out", str(record), "--folds", "2", "--report-only", "--ensemble",
             "--compare", "mcu", "mlp", "--bootstrap", "500"]
    assert tool.main(again) == 0
    saved = json.loads((record / "cv_results.json").read_text())
    assert saved["rows"] == results["rows"]


def test_save_record_copies_only_what_the_report_reads(tmp_path):
    """folds.csv and each finished run's cv.json + oof.npz; an unfinished run, the model files and whatever the
    destination already holds are left alone; a folder without folds.csv is refused by name."""
    from keras_dssdn.analysis.cv import save_record
    from keras_dssdn.errors import DataError

    out, dest = tmp_path / "cv", tmp_path / "record"
    for run, files in {"mcu/seed0_fold1": ("cv.json", "oof.npz", "best.keras"), "mcu/seed0_fold2": ("oof.npz",)}.items():
        (out / run).mkdir(parents=True)
        for name in files:
            (out / run / name).write_text(f"{run}/{name}")
    (out / "folds.csv").write_text("folds")
    (dest / "mine").mkdir(parents=True)
    (dest / "mine" / "notes.txt").write_text("keep")
    assert save_record(out, dest) == 1
    copied = sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file())
    assert copied == ["folds.csv", "mcu/seed0_fold1/cv.json", "mcu/seed0_fold1/oof.npz", "mine/notes.txt"]
    assert (dest / "mcu/seed0_fold1/oof.npz").read_text() == "mcu/seed0_fold1/oof.npz"
    with pytest.raises(DataError, match="no folds.csv"):
        save_record(tmp_path / "mine", dest)
    with pytest.raises(DataError, match="is the benchmark folder itself"):
        save_record(out, out)


@pytest.mark.slow
def test_nested_teacher_end_to_end(tmp_path):
    """--nested trains a row without each pair of 3 folds, --nested-teacher-out writes one teacher per student
    fold over exactly that fold's training clips, and a student row reads its own through {fold}."""
    data = make_synthetic_dataset(tmp_path / "set", num_classes=3, train_locations=2, eval_locations=1,
                                  clips_per_location=2, devices=("a",), seed=4)
    out, teachers = tmp_path / "cv", tmp_path / "teachers"
    row = "mcu=dcase_mcu_1s:epochs=1,warmup_epochs=0,batch_size=16,run_eagerly=true"
    common = ["--data", str(data), "--out", str(out), "--folds", "3", "--seeds", "0", "--bootstrap", "200"]
    tool = _tool()
    assert tool.main(common + ["--rows", row, "--nested", "--nested-teacher-out", str(teachers),
                               "--teacher-rows", "mcu"]) == 0
    assert sorted(p.name for p in (out / "mcu").iterdir()) == ["seed0_pair1-2", "seed0_pair1-3", "seed0_pair2-3"]
    folds = {line.split("\t")[0]: line.split("\t")[3] for line in (out / "folds.csv").read_text().splitlines()[2:]}
    for k in (1, 2, 3):
        teacher = TeacherLogits.load(teachers / f"fold{k}.npz")
        assert sorted(teacher.clips) == sorted(c for c, f in folds.items() if f != str(k))
    student = f"kd={row.split('=', 1)[1]},teacher={teachers}/fold{{fold}}.npz"
    assert tool.main(common + ["--rows", student]) == 0
    for k in (1, 2, 3):
        config = json.loads((out / "kd" / f"seed0_fold{k}" / "config.json").read_text())
        assert config["teacher"] == f"{teachers}/fold{k}.npz"


@pytest.mark.parametrize("text, parsed", [
    ("mlp", ("mlp", "mlp", [])),
    ("lr=dcase_mcu_1s:learning_rate=0.001", ("lr", "dcase_mcu_1s", ["learning_rate=0.001"])),
    ("w=dcase_mcu_1s:widths=[20,28,40,56,60],epochs=1",
     ("w", "dcase_mcu_1s", ["widths=[20,28,40,56,60]", "epochs=1"])),
    ("a=small:augment={mixup_alpha: 0.3, freq_masks: 1},name='x,y'",
     ("a", "small", ["augment={mixup_alpha: 0.3, freq_masks: 1}", "name='x,y'"])),
])
def test_row_overrides_split_on_commas_outside_lists_and_quotes(text, parsed):
    assert _tool()._parse_row(text) == parsed
