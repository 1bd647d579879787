"""TFLM helpers, the C / C++ sources of a bundle (templates) and the front-end constants."""

import os
import re
import shutil
import subprocess

import numpy as np
import pytest

import keras_dssdn
from keras_dssdn.deploy import csources, micro
from keras_dssdn.deploy.frontend_constants import (dense_filterbank, frontend_constant_bytes, frontend_constants,
                                                   sparse_filterbank)
from keras_dssdn.deploy.resources import template_text

from _export_helpers import DSSDN_OPS


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


@pytest.mark.skipif(shutil.which("g++") is None, reason="g++ not installed")
def test_generated_c_sources_compile(tmp_path):
    """The bundle's C++ compiles (syntax + types) against a stub of TFLM's MicroMutableOpResolver."""
    from keras_dssdn.layers.frontend import NormalizationStats

    ops = ["ADD", "CONV_2D", "SOFTMAX", "PADV2"]
    files = {}
    files.update(csources.c_array_source(bytes(range(40)), "g_dssdn_model_data", "dssdn_model_data.h"))
    files["dssdn_op_resolver.h"] = csources.op_resolver_header(ops)
    files.update(csources.model_settings_sources({
        "arena_bytes": 4096, "arena_min_bytes": 4000, "model_bytes": 40, "input_shape": [1, 128, 44, 1],
        "input_scale": 0.05, "input_zero_point": -3, "output_scale": 1 / 256, "output_zero_point": -128,
        "class_names": ["cafe/restaurant", 'say "hi"']}))
    consts = frontend_constants(keras_dssdn.DEFAULT_FRONTEND, [1, 128, 44, 1], 0.05, -3,
                                NormalizationStats([-8.0], [4.0]), ["a"], 1 / 256, -128)
    files.update(csources.frontend_sources(consts))
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
    files = csources.c_array_source(data, "g_x", "x.h")
    assert csources.parse_c_array(files["x.cc"]) == data
    from keras_dssdn.layers.frontend import mel_filterbank

    dense = mel_filterbank(keras_dssdn.DEFAULT_FRONTEND)
    sparse = sparse_filterbank(dense)
    assert len(sparse["weights"]) < dense.size // 20
    np.testing.assert_array_equal(dense_filterbank(sparse), dense)


def test_templates_are_package_files_and_fully_filled():
    assert "ClassifyScene" in csources.example_source()
    assert "def smallest_arena" in template_text("arena_probe.py")
    consts = frontend_constants(keras_dssdn.DEFAULT_FRONTEND, [1, 128, 44, 1], 0.05, -3)
    texts = [csources.op_resolver_header(["ADD"]), *csources.frontend_sources(consts).values(),
             *csources.c_array_source(b"\x01", "v", "v.h", comment="c").values()]
    assert not any("${" in t for t in texts)
    assert frontend_constant_bytes(consts) == 19316  # window 8 KB, 2,046 mel weights, per-band arrays
    assert consts["normalization"] is None and "kHasNormalization = false;" in csources.frontend_sources(consts)[
        "dssdn_frontend.h"]
