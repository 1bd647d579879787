"""A run folder and an export bundle written by the code before the typed specs (issue 23) load, evaluate and verify
with today's code: tests/fixtures/formats_r3 (written by the commit its data.json names; remade by its make.py)."""

import json
from pathlib import Path

import numpy as np
import pytest

from keras_dssdn.data.datasets import read_dcase
from keras_dssdn.data.synthetic import make_synthetic_dataset
from keras_dssdn.deploy import cfrontend
from keras_dssdn.frontend_constants import FrontEndConstants
from keras_dssdn.runs import RunFolder
from keras_dssdn.train.config import TrainConfig, config_changes, resume_train_config

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "formats_r3"
RECORD = json.loads((FIXTURE / "data.json").read_text())


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """The synthetic set the fixture was trained on, made again from its recorded arguments."""
    args = {**RECORD["synthetic"], "devices": tuple(RECORD["synthetic"]["devices"])}
    return make_synthetic_dataset(tmp_path_factory.mktemp("formats") / "data", **args)


def test_an_old_config_json_types_its_front_end_and_augmentation():
    saved = json.loads((FIXTURE / "run" / "config.json").read_text())
    # the old layout: only the keys the config file and the overrides set
    assert saved["frontend"] == {"n_mels": 32} and saved["augment"]["mixup_alpha"] == 0.2 and len(saved["augment"]) == 4
    cfg = resume_train_config(saved)
    assert cfg.frontend.n_mels == 32 and cfg.frontend.sample_rate == 44100 and cfg.augment.mixup_alpha == 0.2
    assert cfg.frontend_params() is cfg.frontend and cfg.augment_config() is cfg.augment
    again = TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))  # today's layout: every field
    assert again == cfg and not config_changes(cfg, again)
    assert again.to_dict()["frontend"]["n_mels"] == 32 and len(again.to_dict()["augment"]) > 1


def test_an_old_run_folder_evaluates_as_it_did(data):
    """The run's best.keras, front end, normalisation and labels give the metrics the run recorded."""
    from keras_dssdn.inference.evaluate import evaluate_model
    from keras_dssdn.inference.loading import load_classifier
    from keras_dssdn.inference.predict import load_predictor, predict_file

    run = RunFolder(FIXTURE / "run")
    recorded = json.loads((FIXTURE / "run" / "metrics.json").read_text())
    model = load_classifier(run.model_path())
    got = evaluate_model(model, read_dcase(data, "evaluate"), vocabulary=run.vocabulary(), frontend=run.frontend(),
                         clip_seconds=run.clip_seconds())
    assert got["examples"] == recorded["examples"]
    assert got["accuracy"] == pytest.approx(recorded["accuracy"])
    assert got["log_loss"] == pytest.approx(recorded["log_loss"], abs=1e-4)
    result = predict_file(load_predictor(FIXTURE / "run"), read_dcase(data, "evaluate")[0].path)
    assert len(result["top"]) == 2 and result["top"][0]["label"] in ("airport", "bus")


def test_an_old_bundle_verifies_and_its_front_end_reads_back(data):
    """The manifest checks out, frontend.json reads into FrontEndConstants and back to the same file, and the C
    front end generated from it is the bundle's, byte for byte."""
    from keras_dssdn.inference.predict import read_bundle_settings
    from keras_dssdn.manifest import verify_bundle

    bundle = FIXTURE / "bundle"
    verify_bundle(bundle)
    written = json.loads((bundle / "frontend.json").read_text())
    constants = FrontEndConstants.from_json(written)
    assert json.loads(json.dumps(constants.to_json())) == written
    for name, text in cfrontend.frontend_c_sources(constants).items():
        assert text == (bundle / "micro" / name).read_text(), name
    settings = read_bundle_settings(bundle)
    assert settings.params.n_mels == 32 and list(settings.class_names) == ["airport", "bus"]
    assert settings.normalization.mode == "per_band"


def test_an_old_bundle_runs_in_tflm_as_its_report_says(data):
    """The deployed int8 model of the old bundle, through today's evaluation, gives the int8 accuracy its report
    recorded on the same evaluate split."""
    from keras_dssdn.inference.evaluate import evaluate_model
    from keras_dssdn.inference.loading import load_classifier
    from keras_dssdn.inference.predict import read_bundle_settings

    bundle = FIXTURE / "bundle"
    report = json.loads((bundle / "report.json").read_text())
    settings = read_bundle_settings(bundle)
    from keras_dssdn.layers.labels import LabelVocabulary

    model = load_classifier(bundle / "model_int8.tflite", normalization=settings.normalization)
    got = evaluate_model(model, read_dcase(data, "evaluate"), vocabulary=LabelVocabulary(list(settings.class_names)),
                         frontend=settings.params, clip_seconds=1.0)
    deployed = report["int8"][report["deployed"]]["metrics"]
    assert got["accuracy"] == pytest.approx(deployed["accuracy"])
    assert np.isfinite(got["log_loss"])
