"""export_bundle end to end: each size bit-exact in TFLM, real clips with the front end split off, atomic writes."""

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

import keras_dssdn
from keras_dssdn.deploy import micro
from keras_dssdn.deploy.bundle import check_destination, write_bundle
from keras_dssdn.deploy.export import export_bundle
from keras_dssdn.frontend_constants import dense_filterbank
from keras_dssdn.deploy.settings import ExportSettings
from keras_dssdn.errors import (BundleExistsError, ConfigError, OutputPathError, UnsupportedOperatorError,
                                VerificationError)
from keras_dssdn.analysis.budgets import DEFAULT_BUDGETS
from keras_dssdn.inference.tflite import quantize_input
from keras_dssdn.models.presets import preset_frontend

from _export_helpers import (DSSDN_OPS, FE16, QUIET, check_bundle, gelu_model, leftovers, plain_model,
                             randomise_batch_norms, sample_report, synthetic, tiny_dssdn, train_briefly,
                             tut17_subsets)


# ---------------------------------------------------------------------------
# each size, bit-exact in TFLM
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("size", [pytest.param("dcase_small_1s", marks=pytest.mark.slow), "dcase_mcu_1s",
                                  pytest.param("middle", marks=pytest.mark.slow),
                                  pytest.param("large", marks=pytest.mark.slow)])
def test_export_each_size_bit_exact(tmp_path, size):
    frontend = preset_frontend(size)  # the preset's mel bands
    shape = frontend.input_shape(1.0)  # 1-s input for speed
    cfg = keras_dssdn.PRESETS[size].replace(input_shape=list(shape), classes=10)
    model = keras_dssdn.build_dssdn(cfg, name=f"dssdn_{size}")
    randomise_batch_norms(model)
    x, y = synthetic(48, shape, 10)
    result = export_bundle(model, tmp_path / "bundle", representative=x, evaluation=(x[:24], y[:24]),
                           frontend=frontend, num_verify=8, **QUIET)
    report = check_bundle(Path(result.path), expect_ops=DSSDN_OPS)
    ptq = report["int8"]["ptq"]
    assert ptq["bit_exactness"]["inputs"] == 8
    assert ptq["arena"]["min_bytes"] <= report["arena_bytes"]
    assert report["float"]["max_abs_diff_vs_keras"] < 1e-3
    assert report["deployed"] == "ptq"
    if size == "dcase_small_1s":  # the DCASE setting's int8 parameters fit 128 KB
        assert report["dcase_budget"]["fits"]
        assert ptq["bytes"]["int8_weights"] <= 128 * 1024
    if size == "dcase_mcu_1s":  # arena (recommended) + C front end + audio ring, against its 128 KB, shown honestly
        mem = report["device_memory"]
        assert mem["part"]["part_bytes"] == DEFAULT_BUDGETS[size].max_ram == 128 * 1024
        assert mem["part"]["headroom_bytes"] == 128 * 1024 - mem["ram"]["total"]
        assert mem["part"]["fits"] == (mem["ram"]["total"] <= 128 * 1024)
    cuts = report["flash_cuts"]  # names and zero points cut, TFLM identical on verify + calibration inputs
    assert cuts["bytes_before"] == ptq["bytes"]["file"] and cuts["saved"] > 8 * cuts["zero_points_removed"] > 0
    assert cuts["tflm_identical_inputs"] == 8 + 32


# ---------------------------------------------------------------------------
# real clips through the pipeline, front end split off
# ---------------------------------------------------------------------------


@pytest.mark.slow
def test_export_real_clips_with_front_end(tmp_path, shared_data):
    from keras_dssdn.layers.frontend import NormalizationStats, attach_front_end, mel_filterbank

    root, full_train, train, evaluate = tut17_subsets(shared_data)
    vocab = full_train.vocabulary()
    core = tiny_dssdn("spc", shape=(128, 44, 1), classes=len(vocab), widths=(12, 16))
    x, y = synthetic(32, (128, 44, 1), len(vocab))
    train_briefly(core, x, y)
    stats = NormalizationStats([-8.0] * 128, [3.5] * 128, mode="per_band")
    wrapped = attach_front_end(core, normalization=stats, class_names=vocab.names, waveform_input=True, seconds=1.0)
    path = tmp_path / "wrapped.keras"
    wrapped.save(path)

    result = export_bundle(str(path), tmp_path / "bundle", train_data=train, eval_data=evaluate,
                           num_calibration=20, num_verify=6, **QUIET)
    report = check_bundle(Path(result.path), expect_ops=DSSDN_OPS)
    assert report["model"]["split_off"] == ["log_mel", "log_mel_normalization", "class_names"]
    assert report["model"]["class_names"] == list(vocab.names)
    ev = report["data"]["evaluation"]
    assert ev["clips"] == 3 and ev["segments_per_clip"] == 10
    m = report["int8"]["ptq"]["metrics"]
    assert m["examples"] == 30 and m["clip"]["examples"] == 3
    assert 0.0 <= m["accuracy"] <= 1.0 and np.isfinite(m["log_loss"])
    assert "evaluation set" in report["data"]["verification"]["source"]
    # The generated C front end, compiled here, reproduces the training front end on the evaluate clips.
    check = report["c_frontend"]
    if not check.get("skipped"):
        clips = check["clips"]
        assert clips["count"] == 3 and clips["parity"]["values"] == 30 * 128 * 44
        assert clips["parity"]["equal_fraction"] >= 0.999 and clips["parity"]["max_step"] <= 1
        assert clips["decisions"]["clips"] == 3 and clips["decisions"]["clip_agreement"] == 1.0
        assert "clips of" in (Path(result.path) / "report.md").read_text()
    mem = report["device_memory"]
    ring = mem["audio_ring"]  # the audio of one Invoke() at the named clock + two hops, int16
    assert ring["samples"] > 2 * 1024 and mem["ram"]["audio_buffer"] == 2 * (ring["samples"] + 1)
    assert mem["ram"]["total"] == mem["ram"]["arena"] + 12304 + mem["ram"]["audio_buffer"]
    assert mem["flash"]["model"] == report["flash_bytes"]
    assert (Path(result.path) / "micro" / "dssdn_frontend.c").exists()

    fe = json.loads((Path(result.path) / "frontend.json").read_text())
    assert fe["sample_rate"] == 44100 and fe["frames"] == 44 and fe["num_samples"] == 44100
    assert fe["normalization"]["mode"] == "per_band"
    # The fused map reproduces normalise-then-quantise.
    logmel = np.random.default_rng(1).normal(-8, 4, (128, 44))
    s, z = fe["input_quantization"]["scale"], fe["input_quantization"]["zero_point"]
    two_step = quantize_input((logmel + 8.0) / 3.5, s, z)
    fused = quantize_input(logmel * np.array(fe["logmel_to_int8"]["scale"])[:, None]
                           + np.array(fe["logmel_to_int8"]["offset"])[:, None], 1.0, 0)
    assert np.max(np.abs(two_step.astype(int) - fused.astype(int))) <= 1
    # The exported filterbank is the pipeline's.
    fb = dense_filterbank(fe["mel_filterbank"], 128)
    np.testing.assert_array_equal(fb, mel_filterbank(keras_dssdn.DEFAULT_FRONTEND))
    assert len(fe["window"]) == 2048


# ---------------------------------------------------------------------------
# bad input, atomic writes
# ---------------------------------------------------------------------------


def test_operator_missing_in_tflm_is_named_and_leaves_nothing(tmp_path):
    x, _ = synthetic(8, (16, 8, 1), 3)
    out = tmp_path / "bundle"
    with pytest.raises(UnsupportedOperatorError, match=r"GELU \(produces .*gelu"):
        export_bundle(gelu_model(), out, representative=x, frontend=FE16, **QUIET)
    assert not out.exists() and not leftovers(out)


def test_existing_bundle_needs_force_and_failed_export_leaves_nothing(tmp_path, monkeypatch):
    x, y = synthetic(16, (16, 8, 1), 3)
    out = tmp_path / "bundle"
    out.mkdir()
    (out / "keep.txt").write_text("old")
    with pytest.raises(BundleExistsError, match="--force"):
        export_bundle(plain_model(), out, representative=x, frontend=FE16, **QUIET)
    assert (out / "keep.txt").exists()
    # --force replaces only a bundle the package wrote (issue 24): the user's file is kept, then a first bundle
    with pytest.raises(OutputPathError, match="not a bundle"):
        export_bundle(plain_model(), out, representative=x, frontend=FE16, force=True, **QUIET)
    assert (out / "keep.txt").exists()
    (out / "keep.txt").unlink()
    export_bundle(plain_model(), out, representative=x, frontend=FE16, force=True, **QUIET)
    first = (out / "report.json").read_text()

    # TFLM outputs that differ from the reference on every input (not rounding ties: a kernel that computes something
    # else) fail the export; the old bundle stays untouched. (A one-step tie on one input is counted, not failed:
    # tests/deploy/test_device_defects.py.)
    real = micro.micro_invoke

    def off_everywhere(*args, **kwargs):
        y = real(*args, **kwargs).astype(np.int16)
        y[:, 0] = np.where(y[:, 0] < 100, y[:, 0] + 20, y[:, 0] - 20)
        return y.astype(np.int8)

    monkeypatch.setattr(micro, "micro_invoke", off_everywhere)
    with pytest.raises(VerificationError, match="differs from the TFLite reference"):
        export_bundle(plain_model(), out, representative=x, frontend=FE16, force=True, **QUIET)
    assert (out / "report.json").read_text() == first and not leftovers(out)

    monkeypatch.setattr(micro, "micro_invoke", real)
    result = export_bundle(plain_model(), out, representative=x, evaluation=(x, y), frontend=FE16, force=True,
                           **QUIET)
    assert (out / "report.json").read_text() != first and not leftovers(out)
    report = check_bundle(Path(result.path))
    assert report["data"]["verification"]["source"].endswith("evaluation set")


def test_write_step_is_atomic_and_checks_the_written_model(tmp_path):
    out = tmp_path / "bundle"
    files = {"model_int8_micro.tflite": b"abc", "micro/dssdn_model_data.cc": "{ 0x61, 0x62, 0x63, }",
             "a.json": {"x": 1.5}}
    report = sample_report()
    with pytest.raises(VerificationError, match="do not match"):
        write_bundle(out, files, dict(report), b"abd")
    assert not out.exists() and not leftovers(out)
    written = write_bundle(out, files, dict(report), b"abc", started=0.0)
    assert sorted(written) == sorted([*files, "report.json", "report.md", "manifest.json"]) and not leftovers(out)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["model_int8_micro.tflite"] == {"bytes": 3, "sha256": hashlib.sha256(b"abc").hexdigest()}
    assert json.loads((out / "a.json").read_text()) == {"x": 1.5}
    with pytest.raises(BundleExistsError):
        check_destination(out, force=False)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        check_destination(tmp_path / "missing" / "bundle", force=False)


def test_settings_group_the_keywords_and_refuse_bad_ones():
    s = ExportSettings.from_options(data="d", fold=2, segment_seconds=1.0, qat_epochs=2, qat_options=None,
                                    deploy="qat", force=True, num_verify=4)
    assert (s.data.data, s.data.fold, s.data.num_verify, s.model.segment_seconds) == ("d", 2, 4, 1.0)
    assert s.qat.epochs == 2 and dict(s.qat.options) == {} and s.deploy == "qat" and s.force
    with pytest.raises(TypeError, match="unexpected keyword"):
        ExportSettings.from_options(dataa="d")
    with pytest.raises(ConfigError, match="qat_epochs"):
        ExportSettings.from_options(deploy="qat")
    with pytest.raises(ConfigError, match="num_verify"):
        ExportSettings.from_options(num_verify=0)
    run = {"data": "run-data", "eval_data": None, "fold": 3, "clip_seconds": 5.0}
    filled = ExportSettings().with_run_defaults(run)
    assert (filled.data.data, filled.data.fold, filled.data.clip_seconds) == ("run-data", 3, 5.0)
    own = ExportSettings.from_options(data="mine").with_run_defaults(run)
    assert (own.data.data, own.data.fold) == ("mine", 1)
