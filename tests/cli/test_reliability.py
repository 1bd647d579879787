"""Reliability round 3 (issue 24): damaged files are the user's problem (one line naming the file, exit 4), no
command writes onto its own input or replaces a file of another kind, labels that differ only in case or spaces
are refused, messages name what the user gave, and quiet means quiet. In-process: a second or two each."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from keras_dssdn.errors import DamagedFileError, MetadataError, ModelFileError, RunFolderError, TeacherLogitsError

ROOT = Path(__file__).resolve().parents[2]


def _run_folder(folder: Path, classes=("bus", "park")) -> Path:
    """The files of a run folder that a loose .tflite inside it takes its settings from."""
    from keras_dssdn.layers.labels import LabelVocabulary
    from keras_dssdn.params import FrontEndParams

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text("{}")
    (folder / "frontend.json").write_text(json.dumps(FrontEndParams(n_mels=16).to_dict()))
    LabelVocabulary(list(classes)).save(str(folder / "labels.json"))
    return folder


def _tiny_tflite() -> bytes:
    import keras

    from keras_dssdn.deploy.convert import convert_float

    inp = keras.Input((16, 8, 1))
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(2, 3)(inp))
    return convert_float(keras.Model(inp, keras.layers.Dense(2, activation="softmax")(x)))


@pytest.fixture(scope="module")
def tflite_bytes():
    return _tiny_tflite()


def _damaged(kind: str, good: bytes) -> bytes:
    if kind == "truncated":
        return good[: len(good) // 3]
    if kind == "bit-flipped":
        data = bytearray(good)
        for i in range(0, 8):  # the root table offset and the file identifier
            data[i] ^= 0xFF
        return bytes(data)
    return b"<html>not a model</html>\n" * 20


@pytest.mark.parametrize("kind", ["truncated", "bit-flipped", "not a flatbuffer"])
def test_damaged_tflite_is_one_line_naming_the_file(tmp_path, tflite_bytes, capsys, kind):
    """The case of issue 24: a damaged .tflite ended in a traceback saying "This is a bug in keras_dssdn"."""
    from keras_dssdn.cli.predict import main
    from keras_dssdn.inference.loading import load_classifier

    run = _run_folder(tmp_path / "run")
    model = run / "model.tflite"
    model.write_bytes(_damaged(kind, tflite_bytes))
    clip = tmp_path / "clip.wav"
    clip.write_bytes(b"")  # never reached
    assert main(["--model", str(model), str(clip)]) == 4
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: {model}: damaged TFLite model"), err
    assert "re-export" in err and "bug" not in err and "Traceback" not in err
    with pytest.raises(ModelFileError, match="damaged TFLite model"):
        load_classifier(model)


def test_damaged_json_and_npz_files_name_the_file(tmp_path):
    from keras_dssdn.distill.logits import TeacherLogits
    from keras_dssdn.layers.labels import LabelVocabulary
    from keras_dssdn.runs import RunFolder
    from keras_dssdn.tune.search import SearchSettings, check_folder

    search = tmp_path / "tune"
    search.mkdir()
    (search / "search.json").write_text('{"size": "small", "max_tri')  # the tuner state file of issue 24
    with pytest.raises(DamagedFileError, match=r"search\.json: damaged tuner state file .*--overwrite"):
        check_folder(search, SearchSettings(out=str(search)))
    labels = tmp_path / "labels.json"
    labels.write_bytes(b'{"names": ["a", \xff')
    with pytest.raises(DamagedFileError, match="labels.json: damaged labels file"):
        LabelVocabulary.load(labels)
    run = _run_folder(tmp_path / "run")
    (run / "config.json").write_text('{"model": ')
    with pytest.raises(RunFolderError, match=r"config\.json: damaged run folder file"):
        RunFolder(run).config()
    npz = tmp_path / "teacher.npz"
    np.savez(npz, logits=np.zeros((2, 3)))
    npz.write_bytes(npz.read_bytes()[:40])
    with pytest.raises(TeacherLogitsError, match="teacher.npz is not a teacher-logits file"):
        TeacherLogits.load(npz)


def test_labels_that_differ_only_in_case_or_spaces_are_refused(tmp_path):
    """The case of issue 24: `bus` / `Bus ` trained a model with one class too many."""
    from keras_dssdn.data.datasets import read_csv

    csv = tmp_path / "meta.csv"
    csv.write_text("a.wav,bus\nb.wav,park\nc.wav,\"Bus \"\nd.wav,park\n")
    with pytest.raises(MetadataError) as e:
        read_csv(csv)
    message = str(e.value)
    assert "'Bus'" in message and "'bus'" in message and "line 3" in message and "line 1" in message, message


def test_a_row_naming_a_folder_says_so(tmp_path):
    from keras_dssdn.data.datasets import read_csv

    (tmp_path / "clips").mkdir()
    csv = tmp_path / "meta.csv"
    csv.write_text("a.wav,bus\nclips,park\n")
    with pytest.raises(MetadataError, match=r"folders, not audio files: clips \(meta.csv line 2\)"):
        read_csv(csv)


def test_nan_in_a_teacher_csv_names_the_file_and_line(tmp_path):
    from keras_dssdn.distill.logits import read_csv_logits

    csv = tmp_path / "teacher.csv"
    csv.write_text("clip,segment,bus,park\na.wav,0,1.0,2.0\nb.wav,0,nan,2.0\n")
    with pytest.raises(TeacherLogitsError, match=r"teacher\.csv line 3: a logit of 'b\.wav' is NaN"):
        read_csv_logits(csv)


# ---------------------------------------------------------------------------- --out: never onto an input


@pytest.fixture
def files(tmp_path):
    """A model file, an audio file, a CSV, a data folder and a regular file, each with known content."""
    (tmp_path / "data").mkdir()
    f = {"model": tmp_path / "m.keras", "wav": tmp_path / "clip.wav", "csv": tmp_path / "teacher.csv",
         "data": tmp_path / "data", "file": tmp_path / "notes.txt", "npz": tmp_path / "t.npz"}
    for key in ("model", "wav", "csv", "file", "npz"):
        f[key].write_bytes(key.encode())
    return f


def _unchanged(files) -> bool:
    return all(files[k].read_bytes() == k.encode() for k in ("model", "wav", "csv", "file", "npz"))


def _refused(capsys, code, *named):
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and all(n in err for n in named), (code, err)


def test_predict_out(files, capsys):
    from keras_dssdn.cli.predict import main

    _refused(capsys, main(["--model", str(files["model"]), str(files["wav"]), "--out", str(files["wav"])]),
             "is the input", "clip.wav")
    _refused(capsys, main(["--model", str(files["model"]), str(files["wav"]), "--out", str(files["npz"])]),
             "not a file this command writes")
    _refused(capsys, main(["--model", str(files["model"]), str(files["wav"]), "--out", str(files["file"] / "p.csv")]),
             f"{files['file']} is a file, not a folder")
    assert _unchanged(files)


def test_evaluate_out(files, capsys):
    from keras_dssdn.cli.evaluate import main

    run = _run_folder(files["data"].parent / "run")
    (run / "best.keras").write_bytes(b"model")
    _refused(capsys, main(["--model", str(run / "best.keras"), "--data", str(files["csv"]), "--out", str(run)]),
             "input --model's run or bundle folder")
    _refused(capsys, main(["--model", str(run), "--data", str(files["csv"]), "--out", str(run)]), "input --model")
    _refused(capsys, main(["--model", str(files["model"]), "--data", str(files["data"]), "--out", str(files["data"])]),
             "input --data")
    assert _unchanged(files)


def test_export_out(files, capsys):
    from keras_dssdn.cli.export import main

    _refused(capsys, main(["--model", str(files["model"]), "--out", str(files["model"].parent), "--force"]),
             "holds the input --model")
    _refused(capsys, main(["--model", str(files["model"]), "--out", str(files["file"] / "bundle")]),
             f"{files['file']} is a file, not a folder")
    _refused(capsys, main(["--model", str(files["model"]), "--out", str(files["data"]), "--force", "--data",
                           str(files["data"])]), "input --data")
    assert _unchanged(files)


def test_teacher_out(files, capsys):
    from keras_dssdn.cli.teacher import main

    _refused(capsys, main(["join", str(files["npz"]), "--out", str(files["npz"])]), "is the input file")
    _refused(capsys, main(["import", str(files["csv"]), "--data", str(files["data"]), "--segment-seconds", "clip",
                           "--out", str(files["csv"])]), "is the input csv")
    _refused(capsys, main(["export", str(files["npz"]), str(files["wav"])]), "not a file this command writes")
    assert _unchanged(files)


def test_devices_out(files, capsys):
    from keras_dssdn.cli.devices import main

    _refused(capsys, main(["convolve", "--data", str(files["data"]), "--responses", str(files["data"]), "--out",
                           str(files["data"])]), "input --data")
    _refused(capsys, main(["spectra", "--data", str(files["data"]), "--out", str(files["wav"])]),
             "not a file this command writes")
    _refused(capsys, main(["responses", "--out", str(files["file"])]), "is a file")
    assert _unchanged(files)


def test_tune_and_train_out(files, capsys):
    from keras_dssdn.cli.train import main as train
    from keras_dssdn.cli.tune import main as tune

    _refused(capsys, tune(["--data", str(files["data"]), "--out", str(files["data"])]), "input --data")
    # out_dir under a regular file: the path the user gave is named, not a temporary one
    _refused(capsys, train([f"data={files['data']}", f"out_dir={files['file']}/runs", "name=r"]),
             f"out_dir= {files['file']}/runs", f"{files['file']} is a file, not a folder")
    _refused(capsys, train([f"data={files['data']}", f"out_dir={files['data'].parent}", "name=data"]),
             "is the input data=")
    assert _unchanged(files)


# ---------------------------------------------------------------------------- quiet means quiet


def test_conversion_prints_nothing(capfd):
    """The case of issue 24: `dssdn-export --quiet` printed ~200 TensorSpec lines of Keras's "Saved artifact", and
    the converter's and LiteRT's native lines (absl "Ignored output_format", "fully_quantize: ...", "Created
    TensorFlow Lite XNNPACK delegate") and warnings."""
    import keras

    from keras_dssdn.deploy.convert import convert_int8
    from keras_dssdn.inference.tflite import TFLiteRunner

    keras.ops.convert_to_tensor(np.zeros(1))  # TensorFlow's own device start-up lines, before the capture
    capfd.readouterr()
    float_model = _tiny_tflite()
    inp = keras.Input((16, 8, 1))
    model = keras.Model(inp, keras.layers.Dense(2, activation="softmax")(keras.layers.Flatten()(inp)))
    convert_int8(model, np.random.default_rng(0).standard_normal((4, 16, 8, 1)).astype(np.float32))
    TFLiteRunner(float_model, reference=False)
    out, err = capfd.readouterr()
    assert out == "" and err == "", (out[:500], err[:1000])


def test_tools_wrappers_keep_the_start_up_filter():
    """tools/X.py set TF_CPP_MIN_LOG_LEVEL=3, which turned the package's filter of TensorFlow's start-up lines off
    (TF 2.21 prints them whatever the variable says); the package now recognises its tools/ wrappers."""
    import keras_dssdn

    wrappers = [p for p in (ROOT / "tools").glob("*.py") if "from keras_dssdn.cli." in p.read_text()]
    assert len(wrappers) >= 7
    for p in wrappers:
        assert "TF_CPP_MIN_LOG_LEVEL" not in p.read_text().replace("# No TF_CPP_MIN_LOG_LEVEL", ""), p.name
        assert keras_dssdn._is_command(str(p)), p.name
    assert not keras_dssdn._is_command(str(ROOT / "notebooks" / "x.py"))


@pytest.mark.slow
def test_tools_wrapper_start_up_is_quiet(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env["PYTHONPATH"] = str(ROOT)
    out = subprocess.run([sys.executable, str(ROOT / "tools" / "evaluate.py"), "--model", str(tmp_path / "none"),
                          "--data", str(tmp_path)], capture_output=True, text=True, env=env, timeout=300)
    from keras_dssdn._tf_startup import keep_line

    noise = [line for line in out.stderr.splitlines() if not keep_line(line.encode(), 3)]
    assert out.returncode == 2 and not noise, out.stderr[-2000:]
