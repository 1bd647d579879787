"""DCASE / CSV readers, label vocabulary, missing files, malformed metadata."""

import json
import os

import keras
import numpy as np
import pytest

from keras_dssdn.data.datasets import ClipList, read_csv, read_dcase
from keras_dssdn.errors import MetadataError, MissingAudioError, UnknownLabelError
from keras_dssdn.layers.labels import ClassNames, LabelVocabulary, vocabulary_from_model

TUT17_CLASSES = [
    "beach", "bus", "cafe/restaurant", "car", "city_center", "forest_path", "grocery_store", "home",
    "library", "metro_station", "office", "park", "residential_area", "train", "tram",
]


def _touch(root, names):
    for n in names:
        p = os.path.join(root, n)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        open(p, "wb").close()


def _write(path, text):
    os.makedirs(os.path.dirname(str(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


# ---------------------------------------------------------------- real folders


def test_tut17_folds(shared_data):
    root = shared_data / "tut17-dev"
    train = read_dcase(root, "train")
    evaluate = read_dcase(root, "evaluate")
    test = read_dcase(root, "test")
    everything = read_dcase(root, "all")
    assert (len(train), len(evaluate), len(test), len(everything)) == (252, 141, 141, 393)
    assert list(train.vocabulary()) == TUT17_CLASSES
    assert train.has_labels and not test.has_labels
    clip = train[0]
    assert clip.filename == "audio/a002_40_50.flac" and clip.label == "residential_area"
    assert clip.identifier == "a002" and clip.device == "a"
    assert os.path.isabs(clip.path) and os.path.isfile(clip.path)
    assert clip.where == "evaluation_setup/fold1_train.csv line 2"
    # recording locations never shared between train and evaluate
    assert not set(train.identifiers) & set(evaluate.identifiers)
    assert test[0].identifier == "a001"  # joined from meta.csv


def test_tau18_meta_only(shared_data):
    clips = read_dcase(shared_data / "tau18-format", "all")
    assert len(clips) == 10 and len(clips.vocabulary()) == 10
    assert set(clips.devices) == {"a"} and clips[0].identifier == "tut18-0"
    with pytest.raises(MetadataError, match=r"no evaluation_setup/fold1_train\.csv.*split='all'"):
        read_dcase(shared_data / "tau18-format", "train")


def test_tau20_missing_files_error_names_files_and_rows(shared_data):
    with pytest.raises(MissingAudioError) as info:
        read_dcase(shared_data / "tau20-layout", "all")
    msg = str(info.value)
    assert "5 of 6 listed audio files are missing" in msg
    assert "audio/airport-barcelona-0-1-a.wav (meta.csv line 3)" in msg
    assert "skip_missing=True" in msg
    assert isinstance(info.value, FileNotFoundError)


def test_tau20_skip_missing_reports_count(shared_data):
    with pytest.warns(UserWarning, match=r"skipped 5 of 6 listed audio files"):
        clips = read_dcase(shared_data / "tau20-layout", "all", skip_missing=True)
    assert len(clips) == 1 and len(clips.skipped) == 5
    assert clips[0].device == "a" and clips[0].identifier == "barcelona-0"
    assert "5 missing files skipped" in clips.summary()
    with pytest.warns(UserWarning, match=r"skipped 2 of 3"):
        train = read_dcase(shared_data / "tau20-layout", "train", skip_missing=True)
    assert [c.filename for c in train] == ["audio/airport-barcelona-0-0-a.wav"]


# ---------------------------------------------------------------- layouts


def test_headerless_tut2017_style_txt_files(tmp_path):
    _touch(tmp_path, ["audio/b1.wav", "audio/b2.wav", "audio/c1.wav"])
    _write(tmp_path / "meta.txt", "audio/b1.wav\tbeach\tb001\naudio/b2.wav\tbeach\tb002\naudio/c1.wav\tcafe/restaurant\tc001\n")
    _write(tmp_path / "evaluation_setup/fold2_train.txt", "audio/b1.wav\tbeach\naudio/c1.wav\tcafe/restaurant\n")
    _write(tmp_path / "evaluation_setup/fold2_test.txt", "audio/b2.wav\n")
    train = read_dcase(tmp_path, "train", fold=2)
    assert [c.label for c in train] == ["beach", "cafe/restaurant"]
    assert [c.identifier for c in train] == ["b001", "c001"] and train[0].device is None
    test = read_dcase(tmp_path, "test", fold=2)
    assert test[0].label is None and test[0].identifier == "b002"


def test_full_tau2020_layout_with_many_devices(tmp_path):
    devices = ["a", "b", "c", "s1", "s2", "s3"]
    rows = ["filename\tscene_label\tidentifier\tsource_label"]
    names = []
    for i, d in enumerate(devices * 3):
        scene = ["airport", "bus", "park"][i % 3]
        name = f"audio/{scene}-lisbon-{i}-{i * 10}-{d}.wav"
        names.append(name)
        rows.append(f"{name}\t{scene}\tlisbon-{i}\t{d}")
    _touch(tmp_path, names)
    _write(tmp_path / "meta.csv", "\n".join(rows) + "\n")
    _write(tmp_path / "evaluation_setup/fold1_train.csv", "filename\tscene_label\n" + "".join(f"{n}\t{r.split(chr(9))[1]}\n" for n, r in zip(names, rows[1:])))
    clips = read_dcase(tmp_path, "train")
    assert sorted(set(clips.devices)) == sorted(devices)
    assert list(clips.vocabulary()) == ["airport", "bus", "park"]


def test_plain_csv_with_and_without_header(tmp_path):
    _touch(tmp_path, ["x/a.wav", "x/b.flac"])
    _write(tmp_path / "list.csv", "x/a.wav,park\nx/b.flac,cafe/restaurant\n")
    clips = read_csv(tmp_path / "list.csv")
    assert [c.label for c in clips] == ["park", "cafe/restaurant"]
    assert clips[0].path == str(tmp_path / "x/a.wav")
    _write(tmp_path / "h.csv", "path,label,device\nx/a.wav,park,phone\n\"x/b.flac\",bus,mic\n")
    clips = read_csv(tmp_path / "h.csv")
    assert [c.device for c in clips] == ["phone", "mic"] and clips[1].label == "bus"
    _write(tmp_path / "sub/abs.csv", f"{tmp_path / 'x/a.wav'},park\n")
    assert read_csv(tmp_path / "sub/abs.csv")[0].path == str(tmp_path / "x/a.wav")


# ---------------------------------------------------------------- malformed metadata


@pytest.mark.parametrize(
    "text,pattern",
    [
        ("", r"list\.csv: the metadata file is empty"),
        ("path,label\n", r"has a header but no rows"),
        ("x/a.wav,park\nx/b.flac\n", r"list\.csv line 2: expected at least 2 comma-separated fields"),
        ("path,label\nx/a.wav,park,extra\n", r"list\.csv line 2: 3 comma-separated fields but the header has 2"),
        ("x/a.wav,park\nx/a.wav,park\n", r"line 2: 'x/a.wav' is listed twice \(first on line 1\)"),
        ("x/a.wav,\n", r"line 1: expected at least 2"),
        ("label,device\npark,a\n", r"line 1: expected at least 2|no filename"),
    ],
)
def test_malformed_csv(tmp_path, text, pattern):
    _touch(tmp_path, ["x/a.wav", "x/b.flac"])
    _write(tmp_path / "list.csv", text)
    with pytest.raises(MetadataError, match=pattern):
        read_csv(tmp_path / "list.csv")


def test_malformed_dcase_fold_file(tmp_path):
    _touch(tmp_path, ["audio/a.wav"])
    _write(tmp_path / "meta.csv", "filename\tscene_label\tidentifier\tsource_label\naudio/a.wav\tpark\tp1\ta\n")
    _write(tmp_path / "evaluation_setup/fold1_train.csv", "filename\tscene_label\naudio/a.wav\n")
    with pytest.raises(MetadataError, match=r"fold1_train\.csv line 2: expected at least 2 tab-separated fields"):
        read_dcase(tmp_path, "train")
    _write(tmp_path / "evaluation_setup/fold1_train.csv", "filename\tscene_label\naudio/a.wav\tbus\n")
    with pytest.raises(MetadataError, match=r"label 'bus' for 'audio/a.wav' disagrees with meta\.csv line 2"):
        read_dcase(tmp_path, "train")
    (tmp_path / "meta.csv").write_bytes(b"\xff\xfe\x00garbage\x81")
    with pytest.raises(MetadataError, match=r"not a UTF-8 text file"):
        read_dcase(tmp_path, "all")


def test_missing_file_in_plain_csv(tmp_path):
    _touch(tmp_path, ["a.wav"])
    _write(tmp_path / "l.csv", "a.wav,park\ngone.wav,bus\n")
    with pytest.raises(MissingAudioError, match=r"1 of 2 .*gone\.wav \(l\.csv line 2\)"):
        read_csv(tmp_path / "l.csv")
    with pytest.warns(UserWarning, match="skipped 1 of 2"):
        assert len(read_csv(tmp_path / "l.csv", skip_missing=True)) == 1


# ---------------------------------------------------------------- vocabulary


def test_vocabulary_is_sorted_stable_and_round_trips(tmp_path):
    v = LabelVocabulary.from_labels(["park", "cafe/restaurant", "bus", "park", None])
    assert v.names == ("bus", "cafe/restaurant", "park")
    assert v.index("cafe/restaurant") == 1 and v.decode([2, 0]) == ["park", "bus"]
    np.testing.assert_array_equal(v.encode(["park", "bus"]), [2, 0])
    path = tmp_path / "labels.json"
    v.save(path)
    assert json.loads(path.read_text()) == {"class_names": ["bus", "cafe/restaurant", "park"]}
    assert LabelVocabulary.load(path) == v
    with pytest.raises(ValueError, match="Duplicate"):
        LabelVocabulary(["a", "a"])


def test_unknown_label_names_row_and_value():
    v = LabelVocabulary(["bus", "park"])
    with pytest.raises(UnknownLabelError, match=r"meta\.csv line 9: unknown label 'tram'.*\['bus', 'park'\]"):
        v.encode(["bus", "tram"], ["meta.csv line 8", "meta.csv line 9"])


def test_class_names_layer_saved_in_keras_file(tmp_path):
    inputs = keras.Input((3,))
    outputs = ClassNames(["bus", "cafe/restaurant", "park"])(keras.layers.Dense(3)(inputs))
    model = keras.Model(inputs, outputs)
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert vocabulary_from_model(loaded) == LabelVocabulary(["bus", "cafe/restaurant", "park"])
    x = np.ones((2, 3), np.float32)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


def test_clip_list_subset():
    clips = ClipList([], name="empty")
    assert len(clips) == 0 and not clips.has_labels
