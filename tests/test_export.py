"""Export: float / int8 TFLite, TFLM bundle, bit-exactness, QAT, bad input.

Small inputs keep it fast: the DSSDN presets take 1-s log-mel maps (128, 44, 1);
the QAT and real-clip tests use two-block DSSDNs. Real inputs come from
../shared/data/tut17-dev through the pipeline (skipped when absent).
"""

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

import keras

import keras_dssdn
from keras_dssdn.deploy import micro
from keras_dssdn.deploy.export import (
    BundleExistsError,
    RepresentativeDataError,
    UnsupportedOperatorError,
    VerificationError,
    export_bundle,
    main,
    prepare_model,
    representative_array,
)
from keras_dssdn.params import FrontEndParams

DSSDN_OPS = {"ADD", "AVERAGE_POOL_2D", "CONCATENATION", "CONV_2D", "DEPTHWISE_CONV_2D", "EXPAND_DIMS",
             "FULLY_CONNECTED", "LOGISTIC", "MEAN", "MUL", "RELU", "RESHAPE", "SOFTMAX", "STRIDED_SLICE"}
QUIET = dict(log=lambda *a, **k: None)


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------


def synthetic(n, shape, classes, seed=0):
    """Log-mel-like inputs (normalised scale) and labels."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, *shape)).astype(np.float32)
    return x, rng.integers(0, classes, n)


def tiny_dssdn(operator="spc", shape=(32, 16, 1), classes=4, widths=(8, 12), name=None):
    """A two-block DSSDN (custom SC / OSC / SPC, ECA, FrequencySplit layers), fast to convert."""
    preset = {"sc": keras_dssdn.LARGE, "osc": keras_dssdn.MIDDLE, "spc": keras_dssdn.SMALL}[operator]
    cfg = preset.replace(input_shape=list(shape), widths=list(widths), pools=[[2, 2], [1, 1]], head_blocks=[1, 2],
                         classes=classes, stem_width=8)
    return keras_dssdn.build_dssdn(cfg, name=name or f"tiny_{operator}")


def train_briefly(model, x, y, steps=3):
    """A few optimizer steps so batch-norm statistics and weights are not the initial ones."""
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
    model.fit(x, y, batch_size=16, epochs=1, steps_per_epoch=steps, verbose=0)
    return model


def randomise_batch_norms(model, seed=0):
    rng = np.random.default_rng(seed)
    for layer in model._flatten_layers():
        if isinstance(layer, keras.layers.BatchNormalization):
            c = layer.gamma.shape[0]
            layer.set_weights([rng.uniform(0.5, 1.5, c), rng.normal(0, 0.2, c), rng.normal(0, 0.5, c),
                               rng.uniform(0.5, 2.0, c)])


def tut17_subsets(shared_data, n_train=6, n_eval=3):
    from keras_dssdn.data.datasets import read_clips

    root = shared_data / "tut17-dev"
    if not root.is_dir():
        pytest.skip(f"{root} not found")
    train = read_clips(root, split="train", fold=1)
    evaluate = read_clips(root, split="evaluate", fold=1)
    pick = lambda n, k: list(np.linspace(0, n - 1, k).round().astype(int))  # noqa: E731
    return root, train, train.subset(pick(len(train), n_train)), evaluate.subset(pick(len(evaluate), n_eval))


def leftovers(out: Path):
    return [p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]


def check_bundle(path: Path, expect_ops=None):
    """Files present, C array == model, resolver == flatbuffer operators, TFLM runs at the stated arena."""
    report = json.loads((path / "report.json").read_text())
    deployed = (path / "model_int8.tflite").read_bytes()
    cc = (path / "micro" / "dssdn_model_data.cc").read_text()
    assert "alignas(16)" in cc
    assert micro.parse_c_array(cc) == deployed
    ops = micro.model_operators(deployed)
    resolver = (path / "micro" / "dssdn_op_resolver.h").read_text()
    calls = re.findall(r"resolver\.(Add\w+)\(\)", resolver)
    assert calls == [micro.add_method(op) for op in ops]
    assert f"MicroMutableOpResolver<kNumOperators>" in resolver and f"kNumOperators = {len(ops)};" in resolver
    if expect_ops is not None:
        assert set(ops) <= set(expect_ops), set(ops) - set(expect_ops)
    settings = (path / "micro" / "dssdn_model_settings.h").read_text()
    assert f"kTensorArenaSize = {report['arena_bytes']};" in settings
    for name, v in report["int8"].items():
        assert v["bit_exactness"]["bit_exact"] is True, name
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["model_int8.tflite"]["bytes"] == len(deployed)
    assert (path / "report.md").read_text().startswith("# Export report")
    fe = json.loads((path / "frontend.json").read_text())
    for key in ("sample_rate", "n_fft", "hop_length", "win_length", "window", "mel_filterbank", "log_offset",
                "normalization", "input_quantization", "logmel_to_int8"):
        assert key in fe
    # The device files run in TFLM with the stated arena.
    interp = micro.micro_interpreter(deployed, report["arena_bytes"])
    details = interp.get_input_details(0)
    interp.set_input(np.zeros(details["shape"], np.int8), 0)
    interp.invoke()
    return report


# ---------------------------------------------------------------------------
# each size, bit-exact in TFLM
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("size", ["dcase_small_1s", "middle", "large"])
def test_export_each_size_bit_exact(tmp_path, size):
    cfg = keras_dssdn.PRESETS[size].replace(input_shape=[128, 44, 1], classes=10)  # 1-s input for speed
    model = keras_dssdn.build_dssdn(cfg, name=f"dssdn_{size}")
    randomise_batch_norms(model)
    x, y = synthetic(48, (128, 44, 1), 10)
    result = export_bundle(model, tmp_path / "bundle", representative=x, evaluation=(x[:24], y[:24]),
                           num_verify=8, **QUIET)
    report = check_bundle(Path(result.path), expect_ops=DSSDN_OPS)
    ptq = report["int8"]["ptq"]
    assert ptq["bit_exactness"]["inputs"] == 8
    assert ptq["arena"]["min_bytes"] <= report["arena_bytes"]
    assert report["float"]["max_abs_diff_vs_keras"] < 1e-3
    assert report["deployed"] == "ptq"
    if size == "dcase_small_1s":  # the DCASE setting's int8 parameters fit 128 KB
        assert report["dcase_budget"]["fits"]
        assert ptq["bytes"]["int8_weights"] <= 128 * 1024


# ---------------------------------------------------------------------------
# real clips through the pipeline, front end split off
# ---------------------------------------------------------------------------


def test_export_real_clips_with_front_end(tmp_path, shared_data):
    from keras_dssdn.layers.frontend import NormalizationStats, attach_front_end

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

    fe = json.loads((Path(result.path) / "frontend.json").read_text())
    assert fe["sample_rate"] == 44100 and fe["frames"] == 44 and fe["num_samples"] == 44100
    assert fe["normalization"]["mode"] == "per_band"
    # The fused map reproduces normalise-then-quantise.
    from keras_dssdn.deploy.export import quantize_input

    logmel = np.random.default_rng(1).normal(-8, 4, (128, 44))
    s, z = fe["input_quantization"]["scale"], fe["input_quantization"]["zero_point"]
    two_step = quantize_input((logmel + 8.0) / 3.5, s, z)
    fused = quantize_input(logmel * np.array(fe["logmel_to_int8"]["scale"])[:, None]
                           + np.array(fe["logmel_to_int8"]["offset"])[:, None], 1.0, 0)
    assert np.max(np.abs(two_step.astype(int) - fused.astype(int))) <= 1
    # The exported filterbank is the pipeline's.
    from keras_dssdn.layers.frontend import mel_filterbank

    fb = micro.dense_filterbank(fe["mel_filterbank"], 128)
    np.testing.assert_array_equal(fb, mel_filterbank(keras_dssdn.DEFAULT_FRONTEND))
    assert len(fe["window"]) == 2048


# ---------------------------------------------------------------------------
# QAT
# ---------------------------------------------------------------------------


def test_qat_mirror_reproduces_sc_osc_spc():
    """One child process checks the tf_keras mirror of SC, OSC and SPC blocks (batch norms folded)."""
    from keras_dssdn.models.blocks import conv_bn_relu, dssdb
    from keras_dssdn.deploy.qat import build_mirror_spec, check_mirror

    inp = keras.Input((32, 16, 1))
    x = conv_bn_relu(inp, 8, 3, name="stem")
    x = dssdb(x, 12, "sc", name="b1", distill=6, pool=(2, 2))
    x = dssdb(x, 12, "osc", name="b2", distill=6, operator_kwargs={"bottleneck_ratio": 0.25, "ortho_alpha": 0.1})
    x = dssdb(x, 16, "spc", name="b3", distill=8, operator_kwargs={"partial_ratio": 0.25})
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(5, activation="softmax")(x)
    model = keras.Model(inp, out, name="all_operators")
    randomise_batch_norms(model)
    spec, weights = build_mirror_spec(model)
    ops = {n["op"] for n in spec["nodes"]}
    assert {"crop", "depthwise", "conv2d", "multiply", "concat", "add"} <= ops
    assert not any(n["name"].endswith("_bn") for n in spec["nodes"])  # all batch norms folded
    x, _ = synthetic(6, (32, 16, 1), 5)
    result = check_mirror(model, x, **QUIET)
    assert result["mirror_max_abs_diff"] < 1e-5


def test_qat_runs_on_dssdn_and_converts(tmp_path):
    """QAT of a DSSDN with the custom SPC / ECA / FrequencySplit layers: 1 epoch, converts, TFLM bit-exact."""
    model = tiny_dssdn("spc", shape=(32, 16, 1), classes=4)
    x, y = synthetic(48, (32, 16, 1), 4)
    train_briefly(model, x, y)
    result = export_bundle(model, tmp_path / "bundle", representative=x[:16], evaluation=(x[:16], y[:16]),
                           qat_epochs=1, qat_train=(x, y), deploy="qat", num_verify=8,
                           frontend=FrontEndParams(n_mels=32), **QUIET)
    report = check_bundle(Path(result.path))
    assert report["deployed"] == "qat"
    qat = report["qat"]
    assert qat["epochs"] == 1 and qat["examples"] == 48 and qat["mirror_max_abs_diff"] < 1e-4
    assert len(qat["history"]["loss"]) == 1
    assert report["int8"]["qat"]["bit_exactness"]["bit_exact"]
    assert "metrics" in report["int8"]["qat"] and "metrics" in report["int8"]["ptq"]
    assert (Path(result.path) / "model_int8_qat.tflite").read_bytes() == (Path(result.path) / "model_int8.tflite").read_bytes()


# ---------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------


def gelu_model():
    inp = keras.Input((16, 8, 1), name="log_mel")
    x = keras.layers.Conv2D(4, 3, name="conv")(inp)
    x = keras.layers.Activation("gelu", name="gelu_act")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inp, keras.layers.Dense(3, activation="softmax")(x), name="with_gelu")


def plain_model():
    inp = keras.Input((16, 8, 1), name="log_mel")
    x = keras.layers.Conv2D(4, 3, name="conv")(inp)
    x = keras.layers.ReLU()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inp, keras.layers.Dense(3, activation="softmax")(x), name="plain")


FE16 = FrontEndParams(n_mels=16)


def test_operator_missing_in_tflm_is_named_and_leaves_nothing(tmp_path):
    x, _ = synthetic(8, (16, 8, 1), 3)
    out = tmp_path / "bundle"
    with pytest.raises(UnsupportedOperatorError, match=r"GELU \(produces .*gelu"):
        export_bundle(gelu_model(), out, representative=x, frontend=FE16, **QUIET)
    assert not out.exists() and not leftovers(out)


def test_representative_empty_or_wrong_shape(tmp_path):
    out = tmp_path / "bundle"
    with pytest.raises(RepresentativeDataError, match="empty"):
        export_bundle(plain_model(), out, representative=np.zeros((0, 16, 8, 1), np.float32), frontend=FE16, **QUIET)
    with pytest.raises(RepresentativeDataError, match=r"\(16, 9, 1\).*\(16, 8, 1\)"):
        export_bundle(plain_model(), out, representative=np.zeros((4, 16, 9, 1), np.float32), frontend=FE16, **QUIET)
    with pytest.raises(RepresentativeDataError, match="No representative data"):
        export_bundle(plain_model(), out, frontend=FE16, **QUIET)
    import tensorflow as tf

    empty = tf.data.Dataset.from_tensor_slices(np.zeros((0, 16, 8, 1), np.float32)).batch(4)
    with pytest.raises(RepresentativeDataError, match="empty"):
        representative_array(empty, (16, 8, 1))
    assert not out.exists() and not leftovers(out)


def test_existing_bundle_needs_force_and_failed_export_leaves_nothing(tmp_path, monkeypatch):
    x, y = synthetic(16, (16, 8, 1), 3)
    out = tmp_path / "bundle"
    out.mkdir()
    (out / "keep.txt").write_text("old")
    with pytest.raises(BundleExistsError, match="--force"):
        export_bundle(plain_model(), out, representative=x, frontend=FE16, **QUIET)
    assert (out / "keep.txt").exists()

    # A TFLM output that differs from the reference fails the export; the old bundle stays untouched.
    real = micro.micro_invoke

    def off_by_one(*args, **kwargs):
        y = real(*args, **kwargs)
        y[0, 0] = y[0, 0] + 1 if y[0, 0] < 127 else y[0, 0] - 1
        return y

    monkeypatch.setattr(micro, "micro_invoke", off_by_one)
    with pytest.raises(VerificationError, match="differs from the TFLite reference"):
        export_bundle(plain_model(), out, representative=x, frontend=FE16, force=True, **QUIET)
    assert (out / "keep.txt").exists() and not leftovers(out)

    monkeypatch.setattr(micro, "micro_invoke", real)
    result = export_bundle(plain_model(), out, representative=x, evaluation=(x, y), frontend=FE16, force=True,
                           **QUIET)
    assert not (out / "keep.txt").exists() and (out / "report.json").exists() and not leftovers(out)
    report = check_bundle(Path(result.path))
    assert report["data"]["verification"]["source"].endswith("evaluation set")


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


# ---------------------------------------------------------------------------
# micro helpers
# ---------------------------------------------------------------------------


def test_supported_operators_come_from_the_tflm_library():
    supported = micro.micro_supported_operators()
    assert DSSDN_OPS <= supported
    assert "GELU" not in supported
    # The hand-kept resolver method list and the library agree on the operators both know.
    assert DSSDN_OPS <= set(micro.ADD_METHODS)
    assert len(supported & set(micro.ADD_METHODS)) >= 80
    for op in supported:
        assert re.fullmatch(r"Add[A-Za-z0-9]+", micro.add_method(op))
    assert micro.add_method("CONV_2D") == "AddConv2D" and micro.add_method("PADV2") == "AddPadV2"


def test_arena_measurement_is_the_smallest_that_runs():
    from keras_dssdn.deploy.export import convert_int8

    x, _ = synthetic(8, (16, 8, 1), 3)
    fb = convert_int8(plain_model(), x)
    arena = micro.measure_arena(fb)
    n = arena["min_bytes"]
    assert arena["recommended_bytes"] >= n + 2048 and arena["recommended_bytes"] % 1024 == 0
    interp = micro.micro_interpreter(fb, n)
    interp.set_input(np.zeros((1, 16, 8, 1), np.int8), 0)
    interp.invoke()
    if n - 1 >= 1024:
        with pytest.raises(RuntimeError):
            micro.micro_interpreter(fb, n - 1)
    assert any("Arena allocation total" in line for line in arena["allocations"])


@pytest.mark.skipif(shutil.which("g++") is None, reason="g++ not installed")
def test_generated_c_sources_compile(tmp_path):
    """The bundle's C++ compiles (syntax + types) against a stub of TFLM's MicroMutableOpResolver."""
    from keras_dssdn.layers.frontend import NormalizationStats

    ops = ["ADD", "CONV_2D", "SOFTMAX", "PADV2"]
    files = {}
    files.update(micro.c_array_source(bytes(range(40)), "g_dssdn_model_data", "dssdn_model_data.h"))
    files["dssdn_op_resolver.h"] = micro.op_resolver_header(ops)
    files.update(micro.model_settings_sources({
        "arena_bytes": 4096, "arena_min_bytes": 4000, "model_bytes": 40, "input_shape": [1, 128, 44, 1],
        "input_scale": 0.05, "input_zero_point": -3, "output_scale": 1 / 256, "output_zero_point": -128,
        "class_names": ["cafe/restaurant", 'say "hi"']}))
    consts = micro.frontend_constants(keras_dssdn.DEFAULT_FRONTEND, [1, 128, 44, 1], 0.05, -3,
                                      NormalizationStats([-8.0], [4.0]), ["a"], 1 / 256, -128)
    files.update(micro.frontend_sources(consts))
    stub = tmp_path / "tensorflow" / "lite" / "micro"
    stub.mkdir(parents=True)
    methods = "\n".join(f"  TfLiteStatus {m}() {{ return kTfLiteOk; }}" for m in sorted(set(micro.ADD_METHODS.values())))
    (stub / "micro_mutable_op_resolver.h").write_text(
        "#pragma once\nenum TfLiteStatus { kTfLiteOk, kTfLiteError };\nnamespace tflite {\n"
        f"template <unsigned int N> class MicroMutableOpResolver {{\n public:\n{methods}\n}};\n}}\n")
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    (tmp_path / "main.cc").write_text(
        '#include "dssdn_op_resolver.h"\n#include "dssdn_model_data.h"\n#include "dssdn_model_settings.h"\n'
        '#include "dssdn_frontend.h"\nint main() { dssdn::OpResolver r; return dssdn::RegisterOperators(r) == '
        'kTfLiteOk && g_dssdn_model_data_len == 40 && dssdn::kWindow[1024] > 0.99f ? 0 : 1; }\n')
    sources = [str(tmp_path / n) for n in files if n.endswith(".cc")] + [str(tmp_path / "main.cc")]
    exe = tmp_path / "a.out"
    subprocess.run(["g++", "-std=c++17", "-Wall", "-Werror", "-I", str(tmp_path), *sources, "-o", str(exe)],
                   check=True, capture_output=True)
    assert subprocess.run([str(exe)]).returncode == 0


def test_c_array_roundtrip_and_sparse_filterbank():
    data = os.urandom(1000)
    files = micro.c_array_source(data, "g_x", "x.h")
    assert micro.parse_c_array(files["x.cc"]) == data
    from keras_dssdn.layers.frontend import mel_filterbank

    dense = mel_filterbank(keras_dssdn.DEFAULT_FRONTEND)
    sparse = micro.sparse_filterbank(dense)
    assert len(sparse["weights"]) < dense.size // 20
    np.testing.assert_array_equal(micro.dense_filterbank(sparse), dense)


# ---------------------------------------------------------------------------
# command line
# ---------------------------------------------------------------------------


def test_cli_exports_a_saved_model_on_real_data(tmp_path, shared_data, capsys):
    root = shared_data / "tut17-dev"
    if not root.is_dir():
        pytest.skip(f"{root} not found")
    model = tiny_dssdn("spc", shape=(128, 44, 1), classes=15, widths=(8, 12))
    path = tmp_path / "m.keras"
    model.save(path)
    out = tmp_path / "bundle"
    args = ["--model", str(path), "--data", str(root), "--fold", "1", "--out", str(out), "--eval-limit", "2",
            "--num-calibration", "10", "--num-verify", "4", "--quiet"]
    assert main(args) == 0
    assert "bit-exact yes" in capsys.readouterr().out
    report = check_bundle(out)
    assert report["data"]["evaluation"]["limited"] and report["command"].startswith("python tools/export.py")
    assert main(args) == 1  # exists, no --force
    assert "--force" in capsys.readouterr().err


# ---------------------------------------------------------------------------
# run folders and QAT helpers (no conversion)
# ---------------------------------------------------------------------------


def test_run_folder_files_are_used(tmp_path):
    """A tools/train.py-style run folder: model, labels, normalisation, front end and config are picked up."""
    from keras_dssdn.deploy.export import _qat_augment, read_run_dir
    from keras_dssdn.layers.frontend import NormalizationStats

    run = tmp_path / "run"
    run.mkdir()
    model = keras_dssdn.DSSDNSmall(input_shape=(128, None, 1), classes=3)
    model.save(run / "best.keras")
    (run / "labels.json").write_text(json.dumps({"class_names": ["a", "b", "c"]}))
    NormalizationStats([-7.0], [3.0]).save(str(run / "normalization.json"))
    (run / "frontend.json").write_text(json.dumps(keras_dssdn.DEFAULT_FRONTEND.to_dict()))
    (run / "config.json").write_text(json.dumps({"data": "somewhere", "fold": 2, "clip_seconds": None,
                                                 "segment_seconds": 1.0, "augment": {"mixup_alpha": 0.2},
                                                 "label_smoothing": 0.1}))
    found = read_run_dir(run)
    assert found.model_path.endswith("best.keras") and found.class_names == ["a", "b", "c"]
    assert found.config["fold"] == 2 and found.config["segment_seconds"] == 1.0
    prep = prepare_model(str(run))
    assert prep.input_shape == (128, 44, 1) and prep.segment_seconds == 1.0  # free time axis fixed from config
    assert prep.class_names == ["a", "b", "c"] and prep.normalization.mean == (-7.0,)
    assert prep.sources["normalization"].endswith("normalization.json")
    assert _qat_augment("run", prep.run_config).mixup_alpha == 0.2
    assert _qat_augment("none", prep.run_config) is None and _qat_augment("run", {}) is None
    (run / "other.keras").write_bytes(b"")
    (run / "best.keras").rename(run / "x.keras")
    with pytest.raises(Exception, match="several models"):
        read_run_dir(run)


def test_rounding_tie_detection_for_lut_activations():
    from keras_dssdn.deploy.qat import _LUT_ACTIVATIONS, _near_rounding_tie

    fn, out_scale = _LUT_ACTIVATIONS["sigmoid"]
    s, zero = 0.0078124189749360085, 180  # measured: TFLM differed from the reference LUT by one step
    assert _near_rounding_tie(-zero * s, (255 - zero) * s, fn, out_scale)
    assert not _near_rounding_tie(-3.0, 5.0, fn, out_scale)
    rng = np.random.default_rng(0)
    flagged = np.mean([_near_rounding_tie(-rng.uniform(0, 5), rng.uniform(0, 5), fn, out_scale) for _ in range(300)])
    assert flagged < 0.1
