"""Shared helpers of the export tests: small models, synthetic log-mel, real TUT 2017 subsets, bundle checks.

Small inputs keep the tests fast: the DSSDN presets take 1-s log-mel maps
(128, 44, 1); the QAT and real-clip tests use two-block DSSDNs. Real inputs
come from ../shared/data/tut17-dev through the pipeline (skipped when absent).
"""

import json
import re
from pathlib import Path

import numpy as np
import pytest

import keras

import keras_dssdn
from keras_dssdn.deploy import csources, micro
from keras_dssdn.params import FrontEndParams

DSSDN_OPS = {"ADD", "AVERAGE_POOL_2D", "CONCATENATION", "CONV_2D", "DEPTHWISE_CONV_2D", "EXPAND_DIMS",
             "FULLY_CONNECTED", "LOGISTIC", "MEAN", "MUL", "RELU", "RESHAPE", "SOFTMAX", "STRIDED_SLICE"}
QUIET = dict(log=lambda *a, **k: None)
FE16 = FrontEndParams(n_mels=16)


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


def check_bundle(path: Path, expect_ops=None):
    """Files present, C array == the device model == the converter's model with the flash cuts, resolver ==
    flatbuffer operators, TFLM runs at the stated arena."""
    from keras_dssdn.deploy.flash_cuts import cut_flatbuffer

    report = json.loads((path / "report.json").read_text())
    deployed = (path / "model_int8_micro.tflite").read_bytes()
    cc = (path / "micro" / "dssdn_model_data.cc").read_text()
    assert "alignas(16)" in cc
    assert csources.parse_c_array(cc) == deployed
    assert cut_flatbuffer((path / "model_int8.tflite").read_bytes())[0] == deployed
    assert report["flash_bytes"] == len(deployed) == report["flash_cuts"]["bytes_after"]
    ops = micro.model_operators(deployed)
    resolver = (path / "micro" / "dssdn_op_resolver.h").read_text()
    calls = re.findall(r"resolver\.(Add\w+)\(\)", resolver)
    assert calls == [micro.add_method(op) for op in ops]
    assert "MicroMutableOpResolver<kNumOperators>" in resolver and f"kNumOperators = {len(ops)};" in resolver
    if expect_ops is not None:
        assert set(ops) <= set(expect_ops), set(ops) - set(expect_ops)
    settings = (path / "micro" / "dssdn_model_settings.h").read_text()
    assert f"kTensorArenaSize = {report['arena_bytes']};" in settings
    for name, v in report["int8"].items():
        assert v["bit_exactness"]["bit_exact"] is True, name
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["model_int8_micro.tflite"]["bytes"] == len(deployed)
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


def sample_report(with_metrics=True, qat=False):
    """A report.json as export_bundle writes it, with made-up numbers (for the report and write steps)."""
    metrics = {"examples": 20, "accuracy": 0.5, "log_loss": 1.25, "clip": {"examples": 2, "accuracy": 0.5,
                                                                          "log_loss": 1.0}}
    int8 = {"operators": ["CONV_2D", "SOFTMAX"], "arena": {"min_bytes": 2000, "recommended_bytes": 5120},
            "bit_exactness": {"inputs": 4, "bit_exact": True}, "bytes": {"file": 2456, "int8_weights": 48}}
    variants = {"ptq": dict(int8)}
    if qat:
        variants["qat"] = dict(int8)
    if with_metrics:
        for v in variants.values():
            v["metrics"] = dict(metrics)
    return {
        "command": "python tools/export.py --model m.keras", "deployed": "ptq",
        "model": {"name": "plain", "source": "m.keras", "input_shape": [16, 8, 1], "segment_seconds": 0.16,
                  "classes": 3, "parameters": 55, "split_off": [], "notes": ["a note"],
                  "sources": {"frontend": "given", "normalization": "none"}},
        "data": {"calibration": {"examples": 16, "source": "given"}, "evaluation": None,
                 "verification": {"source": "given"}},
        "float": {"bytes": 2244, "metrics": dict(metrics) if with_metrics else None},
        "int8": variants, "deployed_accuracy_drop_points": 0.0 if with_metrics else None,
        "qat": {"epochs": 1, "learning_rate": 1e-4, "examples": 48, "mirror_max_abs_diff": 1e-7,
                "history": {"loss": [1.0]}} if qat else None,
        "dcase_budget": {"parameters": 55, "parameters_limit": 128000, "int8_weight_bytes": 48,
                         "int8_bytes_limit": 131072, "fits": True},
        "flash_bytes": 2456, "frontend_flash_bytes": 15840, "arena_bytes": 5120, "arena_min_bytes": 2000,
        "versions": {"tensorflow": "2.17.1"}, "bundle": "/tmp/b",
    }


#: A stand-in for TFLM's micro_interpreter.h, for compiling the bundle's C++ on the host (tests/deploy/test_micro.py,
#: test_device_defects.py): the test program defines Invoke(), e.g. to "classify" a segment by the sum of its int8
#: input (a test program that counts the calls keeps its own counter).
STUB_INTERPRETER = """#pragma once
#include <cstddef>
#include <cstdint>
#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"
struct TfLiteTensor { union { int8_t* int8; } data; };
namespace tflite {
struct Model {};
inline const Model* GetModel(const void*) { static Model m; return &m; }
class MicroInterpreter {
 public:
  template <class R> MicroInterpreter(const Model*, R&, uint8_t* arena, size_t size) : arena_(arena), size_(size) {}
  TfLiteStatus AllocateTensors() { in_.data.int8 = reinterpret_cast<int8_t*>(arena_); out_.data.int8 = scores_;
                                   return size_ > 0 ? kTfLiteOk : kTfLiteError; }
  TfLiteTensor* input(int) { return &in_; }
  TfLiteTensor* output(int) { return &out_; }
  TfLiteStatus Invoke();
  TfLiteTensor in_, out_;
  int8_t scores_[64] = {};
 private:
  uint8_t* arena_; size_t size_;
};
}  // namespace tflite
"""
