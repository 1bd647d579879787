"""The prepare step: front end split off, time axis fixed, run folders read through keras_dssdn.runs."""

import json

import pytest

import keras

import keras_dssdn
from keras_dssdn.deploy.export_data import qat_augment
from keras_dssdn.deploy.prepare import prepare_model, split_front_end
from keras_dssdn.errors import ConfigError, ModelFileError, RunFolderError
from keras_dssdn.runs import RunFolder

from _export_helpers import FE16, plain_model


def test_prepare_model_errors():
    from keras_dssdn.layers.frontend import LogMelNormalization, NormalizationStats

    inp = keras.Input((128, 44, 1))
    x = keras.layers.Conv2D(1, 1)(inp)
    x = LogMelNormalization(NormalizationStats([0.0], [1.0]))(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    with pytest.raises(Exception, match="not at the start"):
        prepare_model(keras.Model(inp, keras.layers.Dense(3)(x)))
    free = keras_dssdn.DSSDNSmall(input_shape=(128, None, 1), classes=3)
    with pytest.raises(Exception, match="--segment"):
        prepare_model(free)
    assert prepare_model(free, segment_seconds=1.0).input_shape == (128, 44, 1)
    with pytest.raises(Exception, match="mel bands"):
        prepare_model(plain_model())  # 16 bands vs the default front end's 128


def test_per_input_normalisation_is_refused_by_export(tmp_path):
    """The C front end applies fixed statistics: a run trained with normalization=per_input is refused, named."""
    from keras_dssdn.layers.frontend import NormalizationStats, attach_front_end

    wrapped = attach_front_end(plain_model(), FE16, normalization=NormalizationStats((), (), "per_input"),
                               class_names=["a", "b", "c"], waveform_input=False, seconds=FE16.seconds_for_frames(8))
    with pytest.raises(Exception, match="per_input .*normalization=global or per_band"):
        prepare_model(wrapped)


def test_split_front_end_of_attach_front_end():
    from keras_dssdn.layers.frontend import NormalizationStats, attach_front_end

    core = plain_model()
    wrapped = attach_front_end(core, FE16, normalization=NormalizationStats([0.0], [1.0]), class_names=["a", "b", "c"],
                               waveform_input=False, seconds=FE16.seconds_for_frames(8))
    got, log_mel, norm, names = split_front_end(wrapped)
    assert got is core and log_mel is None and norm is not None and names.class_names == ["a", "b", "c"]
    assert split_front_end(core)[0] is core


def _write_run(run, model):
    from keras_dssdn.layers.frontend import NormalizationStats

    run.mkdir()
    model.save(run / "best.keras")
    (run / "labels.json").write_text(json.dumps({"class_names": ["a", "b", "c"]}))
    NormalizationStats([-7.0], [3.0]).save(str(run / "normalization.json"))
    (run / "frontend.json").write_text(json.dumps(keras_dssdn.DEFAULT_FRONTEND.to_dict()))
    (run / "config.json").write_text(json.dumps({"data": "somewhere", "fold": 2, "clip_seconds": None,
                                                 "segment_seconds": 1.0, "augment": {"mixup_alpha": 0.2},
                                                 "label_smoothing": 0.1}))


def test_run_folder_files_are_used(tmp_path):
    """A tools/train.py-style run folder: model, labels, normalisation, front end and config are picked up."""
    run = tmp_path / "run"
    _write_run(run, keras_dssdn.DSSDNSmall(input_shape=(128, None, 1), classes=3))
    found = RunFolder(run)
    assert found.model_path().name == "best.keras" and list(found.vocabulary().names) == ["a", "b", "c"]
    assert found.config()["fold"] == 2 and found.segment_seconds() == 1.0
    prep = prepare_model(str(run))
    assert prep.input_shape == (128, 44, 1) and prep.segment_seconds == 1.0  # free time axis fixed from config
    assert prep.class_names == ["a", "b", "c"] and prep.normalization.mean == (-7.0,)
    assert prep.sources["normalization"].endswith("normalization.json")
    assert prep.sources["frontend"].endswith("frontend.json") and prep.sources["class_names"].endswith("labels.json")
    assert qat_augment("run", prep.run_config).mixup_alpha == 0.2
    assert qat_augment("none", prep.run_config) is None and qat_augment("run", {}) is None
    with pytest.raises(ConfigError, match="QAT augment"):
        qat_augment("sometimes", prep.run_config)
    # The model file of a run: find_run gives the run's files and config.
    via_file = prepare_model(str(run / "best.keras"))
    assert via_file.class_names == ["a", "b", "c"] and via_file.run_config["fold"] == 2
    # No model in the run folder (no guessing among other .keras files).
    (run / "other.keras").write_bytes(b"")
    (run / "best.keras").rename(run / "x.keras")
    with pytest.raises(RunFolderError, match="holds no model"):
        prepare_model(str(run))


def test_not_a_run_folder_or_model_file(tmp_path):
    with pytest.raises(RunFolderError, match="not a training run folder"):
        prepare_model(str(tmp_path))
    with pytest.raises(ModelFileError, match="not found"):
        prepare_model(str(tmp_path / "missing.keras"))
    (tmp_path / "m.h5").write_bytes(b"x")
    with pytest.raises(ModelFileError, match="not a .keras file"):
        prepare_model(str(tmp_path / "m.h5"))
