"""TFLM helpers, the C / C++ sources of a bundle (templates) and the front-end constants."""

import os
import re
import shutil
import subprocess

import numpy as np
import pytest

import keras_dssdn
from keras_dssdn.deploy import csources, micro
from keras_dssdn.frontend_constants import FrontEndConstants, Quantization, dense_filterbank, sparse_filterbank
from keras_dssdn.deploy.resources import template_text

from _export_helpers import DSSDN_OPS, STUB_INTERPRETER


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




def _stub_tflm(root):
    stub = root / "tensorflow" / "lite" / "micro"
    stub.mkdir(parents=True)
    methods = "\n".join(f"  TfLiteStatus {m}() {{ return kTfLiteOk; }}" for m in sorted(set(micro.ADD_METHODS.values())))
    (stub / "micro_mutable_op_resolver.h").write_text(
        "#pragma once\nenum TfLiteStatus { kTfLiteOk, kTfLiteError };\nnamespace tflite {\n"
        f"template <unsigned int N> class MicroMutableOpResolver {{\n public:\n{methods}\n}};\n}}\n")
    (stub / "micro_interpreter.h").write_text(STUB_INTERPRETER)
    (root / "tensorflow" / "lite" / "schema").mkdir(parents=True)
    (root / "tensorflow" / "lite" / "schema" / "schema_generated.h").write_text("#pragma once\n")


@pytest.mark.skipif(shutil.which("g++") is None or shutil.which("cc") is None, reason="g++ / cc not installed")
def test_generated_sources_compile_and_the_streaming_example_runs(tmp_path):
    """The bundle's C++ and C99 compile (-Wall -Werror) against stubs of TFLM's resolver and interpreter, and the
    streaming example classifies every complete segment of audio pushed in uneven chunks."""
    from keras_dssdn.deploy import cfrontend
    from keras_dssdn.layers.frontend import NormalizationStats

    fe = keras_dssdn.params.FrontEndParams(n_mels=16, n_fft=512, win_length=400, hop_length=256, sample_rate=16000)
    ops = ["ADD", "CONV_2D", "SOFTMAX", "PADV2"]
    frames = fe.num_frames(0.5)
    files = {}
    files.update(csources.c_array_source(bytes(range(40)), "g_dssdn_model_data", "dssdn_model_data.h"))
    files["dssdn_op_resolver.h"] = csources.op_resolver_header(ops)
    files.update(csources.model_settings_sources({
        "arena_bytes": 4096, "arena_min_bytes": 4000, "model_bytes": 40, "input_shape": [1, 16, frames, 1],
        "input_scale": 0.05, "input_zero_point": -3, "output_scale": 1 / 256, "output_zero_point": -128,
        "class_names": ["cafe/restaurant", 'say "hi"', "c"], "sample_rate": 16000, "macs": 1000, "cycles_per_mac": 4.0,
        "clock_hz": 80e6, "invoke_cycles": 4000, "invoke_seconds": 5e-5, "ring_samples": 1024}))
    consts = FrontEndConstants.build(fe, [1, 16, frames, 1], Quantization(0.05, -3), NormalizationStats([-8.0], [4.0]),
                                     ["a"], Quantization(1 / 256, -128), seconds=0.5)
    files.update(cfrontend.frontend_c_sources(consts))
    files["dssdn_example.cc"] = csources.example_source()
    _stub_tflm(tmp_path)
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    (tmp_path / "main.cc").write_text(
        '#include <cstdio>\n#include "dssdn_op_resolver.h"\n#include "dssdn_model_data.h"\n'
        '#include "dssdn_model_settings.h"\n#include "dssdn_frontend.h"\n'
        '#include "tensorflow/lite/micro/micro_interpreter.h"\n'
        "int SceneSetup(int32_t); int32_t SceneAudioIsr(const int16_t*, int32_t); int SceneProcess();\n"
        "int SceneClipResult(float*);\n"
        "TfLiteStatus tflite::MicroInterpreter::Invoke() { long s = 0; for (int i = 0; i < dssdn::kInputElements; ++i)"
        " s += in_.data.int8[i]; for (int c = 0; c < dssdn::kNumClasses; ++c) scores_[c] = (c == ((s % 3) + 3) % 3)"
        " ? 127 : -128; return kTfLiteOk; }\n"
        "int main() { static int16_t pcm[DSSDN_FE_SEGMENT_SAMPLES * 5 / 2]; float p[dssdn::kNumClasses];\n"
        "  for (int i = 0; i < DSSDN_FE_SEGMENT_SAMPLES * 5 / 2; ++i) pcm[i] = (int16_t)((i * 7919) % 20000 - 10000);\n"
        "  int n = 0, pos = 0, chunk = 1;\n  if (SceneSetup(DSSDN_FE_SAMPLE_RATE) != 0) return 2;\n"
        "  while (pos < DSSDN_FE_SEGMENT_SAMPLES * 5 / 2) { int k = chunk; if (k > DSSDN_FE_SEGMENT_SAMPLES * 5 / 2 - pos)"
        " k = DSSDN_FE_SEGMENT_SAMPLES * 5 / 2 - pos; SceneAudioIsr(pcm + pos, k); n += SceneProcess(); pos += k;"
        " chunk = chunk * 3 % 1001 + 1; }\n"
        "  int best = SceneClipResult(p); printf(\"%d %d %.3f\\n\", n, best, p[best]);\n"
        "  return (n == 2 && best >= 0 && g_dssdn_model_data_len == 40 && dssdn_fe_window[256] > 0.99f) ? 0 : 1; }\n")
    obj = tmp_path / "dssdn_frontend.o"
    subprocess.run(["cc", "-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", "-c", str(tmp_path / "dssdn_frontend.c"),
                    "-o", str(obj)], check=True, capture_output=True)
    sources = [str(tmp_path / n) for n in files if n.endswith(".cc")] + [str(tmp_path / "main.cc")]
    exe = tmp_path / "a.out"
    proc = subprocess.run(["g++", "-std=c++17", "-Wall", "-Werror", "-I", str(tmp_path), *sources, str(obj), "-o",
                           str(exe), "-lm"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    run = subprocess.run([str(exe)], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout
    segments, best, prob = run.stdout.split()
    # two complete segments classified (the half is pending); the clip result is the mean of their outputs
    # (each 255 / 256 for its class): 0.996 when both chose the same class, else 0.498
    assert int(segments) == 2 and min(abs(float(prob) - 0.996), abs(float(prob) - 0.498)) < 1e-3


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
    from keras_dssdn.deploy import cfrontend

    assert "SceneAudioIsr" in csources.example_source() and "SceneProcess" in csources.example_source()
    assert "def smallest_arena" in template_text("arena_probe.py")
    consts = FrontEndConstants.build(keras_dssdn.DEFAULT_FRONTEND, [1, 128, 44, 1], Quantization(0.05, -3))
    c_files = cfrontend.frontend_c_sources(consts)
    texts = [csources.op_resolver_header(["ADD"]), *c_files.values(),
             *csources.c_array_source(b"\x01", "v", "v.h", comment="c").values()]
    assert not any("${" in t for t in texts)
    # window and twiddles 8 KB each, 2,013 non-zero mel weights, five per-band arrays
    assert cfrontend.frontend_flash_bytes(consts) == 4 * 2048 * 2 + 4 * 2013 + 128 * 16
    assert "#define DSSDN_FE_RAM_BYTES 12304" in c_files["dssdn_frontend.h"]  # int16 ring + float FFT of 2,048
    assert "#define DSSDN_FE_PAD 1024" in c_files["dssdn_frontend.h"]
