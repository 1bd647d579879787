"""Device-specific models: fine-tuning per training device, evaluation and prediction choosing the model by
device (falling back to the general one, and saying so), and one export bundle per device model."""

import json

import numpy as np
import pytest

from keras_dssdn.data.datasets import read_dcase
from keras_dssdn.data.synthetic import make_synthetic_dataset
from keras_dssdn.errors import ConfigError, DataError
from keras_dssdn.inference.device_models import DeviceModels, load_device_models
from keras_dssdn.inference.evaluate import evaluate_model
from keras_dssdn.runs import RunFolder
from keras_dssdn.train import load_train_config, train
from keras_dssdn.train.finetune import FinetuneSettings, finetune_devices

# run_eagerly: tiny runs of a few steps skip Keras' tracing (20-40 s per model here); the graph path is the trainer's
# (tests/train/test_trainer.py::two_epoch_run) and the slow tier's
TINY = ["widths=[4,4,8,8,8]", "clip_seconds=1.0", "segment_seconds=null", "batch_size=6", "warmup_epochs=0",
        "verbose=0", "epochs=1", "run_eagerly=true"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("ft")
    data = make_synthetic_dataset(root / "data", num_classes=2, seconds=1.0, train_locations=2, eval_locations=1,
                                  clips_per_location=4, devices=("a", "b"), seed=6)
    train(load_train_config("small", [f"data={data}", f"out_dir={root}", "name=run", *TINY]))
    return data, root / "run"


def test_finetune_writes_one_model_per_device_and_an_index(run):
    data, run_dir = run
    logs = []
    index = finetune_devices(run_dir, FinetuneSettings(epochs=1, min_clips=2, verbose=0), log=logs.append)
    assert sorted(index) == ["a", "b"]
    paths = RunFolder(run_dir).device_models()
    assert sorted(paths) == ["a", "b"] and all(p.is_file() for p in paths.values())
    saved = json.loads((run_dir / "devices" / "index.json").read_text())
    assert saved["a"]["train_clips"] == 8 and saved["a"]["eval_clips"] == 4
    assert 0 <= saved["a"]["finetuned_accuracy"] <= 1 and 0 <= saved["a"]["general_accuracy"] <= 1


def test_evaluate_routes_by_device_and_falls_back_with_a_message(run):
    data, run_dir = run
    if not RunFolder(run_dir).device_models():
        finetune_devices(run_dir, FinetuneSettings(epochs=1, min_clips=2, verbose=0), log=lambda m: None)
    said = []
    routed = load_device_models(RunFolder(run_dir), log=said.append)
    clips = read_dcase(data, split="evaluate")
    by_device = evaluate_model(routed, clips, clip_seconds=1.0)
    for device in ("a", "b"):  # each device's clips scored by its own model
        own = evaluate_model(routed.by_device[device], clips.subset([i for i, c in enumerate(clips)
                                                                     if c.device == device]), clip_seconds=1.0)
        assert by_device["device"][device]["log_loss"] == pytest.approx(own["log_loss"], rel=1e-5)
    assert not said
    unknown = evaluate_model(routed, clips, clip_seconds=1.0, device="z")
    general = evaluate_model(routed.general, clips, clip_seconds=1.0)
    assert unknown["log_loss"] == pytest.approx(general["log_loss"], rel=1e-5)
    assert len(said) == 1 and "'z'" in said[0] and "general model" in said[0]


def test_predict_chooses_the_device_model(run):
    from keras_dssdn.inference.predict import load_predictor, predict_file

    data, run_dir = run
    if not RunFolder(run_dir).device_models():
        finetune_devices(run_dir, FinetuneSettings(epochs=1, min_clips=2, verbose=0), log=lambda m: None)
    predictor = load_predictor(run_dir)
    assert isinstance(predictor.devices, DeviceModels)
    clip = read_dcase(data, split="evaluate")[0]
    auto = predict_file(predictor, clip.path, device="auto")
    named = predict_file(predictor, clip.path, device=clip.device)
    assert auto["device"] == clip.device and np.allclose(auto["probabilities"], named["probabilities"])
    general = predict_file(predictor, clip.path, device="nope")
    plain = predict_file(predictor, clip.path)
    assert np.allclose(general["probabilities"], plain["probabilities"])


def test_bad_requests(run, tmp_path):
    data, run_dir = run
    with pytest.raises(ConfigError, match="'q'"):
        finetune_devices(run_dir, FinetuneSettings(epochs=1, devices=["q"], verbose=0), log=lambda m: None)
    with pytest.raises(DataError, match="min_clips"):
        finetune_devices(run_dir, FinetuneSettings(epochs=1, min_clips=1000, verbose=0), log=lambda m: None)
    with pytest.raises(ConfigError, match="lr_ratio"):
        FinetuneSettings(lr_ratio=0)


def test_per_device_export_writes_a_checked_bundle_per_model(run, tmp_path, monkeypatch):
    """`dssdn-export --per-device`: the general and each device model go through the one export entry into their
    own folder with a complexity record (export_bundle itself is tested in tests/deploy/test_bundle.py; here it is
    recorded, not run); a device model over the run's budget stops the export before anything is written."""
    from keras_dssdn.analysis.budgets import Budget
    from keras_dssdn.deploy import export as export_module
    from keras_dssdn.deploy import devices as device_export
    from keras_dssdn.errors import BudgetError

    data, run_dir = run
    if not RunFolder(run_dir).device_models():
        finetune_devices(run_dir, FinetuneSettings(epochs=1, min_clips=2, verbose=0), log=lambda m: None)
    exported = {}

    def recorded_export(model, out_dir, settings=None, **_):
        exported[out_dir.name] = (str(model), settings)
        out_dir.mkdir(parents=True)

    monkeypatch.setattr(export_module, "export_bundle", recorded_export)
    record = device_export.export_device_bundles(run_dir, tmp_path / "bundles", log=lambda m: None, num_verify=2)
    models = RunFolder(run_dir).device_models()
    assert record["devices"] == {"a": "00_a", "b": "01_b"} and record["general"] == "general"
    assert exported["00_a"][0] == str(models["a"]) and exported["01_b"][0] == str(models["b"])
    assert exported["general"][0] == str(RunFolder(run_dir).model_path())
    settings = exported["00_a"][1]  # completed from the run: its data, front end and class names
    assert settings.data.num_verify == 2 and str(settings.data.data) == str(data)
    assert settings.model.class_names == list(RunFolder(run_dir).vocabulary().names) == ["airport", "bus"]
    assert settings.model.frontend is not None
    assert set(record["complexity"]) == {"general", "a", "b"}
    assert all(c["fits"] and c["params"] > 0 and c["macs"] > 0 for c in record["complexity"].values())
    assert json.loads((tmp_path / "bundles" / "devices.json").read_text()) == record
    monkeypatch.setattr(device_export, "run_budget", lambda run: Budget(max_params=10, max_macs=10 ** 12,
                                                                        seconds=1.0))
    with pytest.raises(BudgetError, match="model of 'general'.*every device model"):
        device_export.export_device_bundles(run_dir, tmp_path / "over", log=lambda m: None)
    assert not (tmp_path / "over").exists()
