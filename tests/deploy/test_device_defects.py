"""The on-device defects of issue 22 ("found by an independent check" of a dcase_mcu_1s bundle), one test each.

1. TFLM vs LiteRT reference kernels: counted on every example, "bit-exact" only where every value matched;
2. the audio that arrives during Invoke() is buffered and counted in the RAM total;
3. the streaming example: the ISR only fills a ring buffer, a main loop runs the front end and the model;
4. the front end's sample rate is a setting, and the C API refuses another rate;
5. SceneSetup() twice;
6. the device-only flatbuffer is refused by LiteRT (the standard tools get model_int8.tflite).
"""

import json
from pathlib import Path

import numpy as np
import pytest

import keras

from keras_dssdn.analysis import ram
from keras_dssdn.deploy import micro
from keras_dssdn.deploy.verify import ExactnessTally, verify_bit_exact
from keras_dssdn.errors import VerificationError
from keras_dssdn.inference.tflite import TFLiteRunner

from _export_helpers import QUIET, STUB_INTERPRETER, synthetic, tiny_dssdn


def _dense_int8(seed=0, features=64, classes=15):
    """A one-layer classifier (FULLY_CONNECTED, per-channel int8 weights by PTQ) and its int8 flatbuffer."""
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    inp = keras.Input((features,))
    model = keras.Model(inp, keras.layers.Dense(classes)(inp))
    rep = np.random.default_rng(seed).standard_normal((64, features)).astype(np.float32)
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([r[None]] for r in rep)
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = conv.inference_output_type = tf.int8
    return conv.convert()


# ---------------------------------------------------------------------------
# 1. TFLM vs the reference kernels, counted
# ---------------------------------------------------------------------------


def test_fully_connected_rounding_ties_are_counted_not_hidden():
    """A per-channel FULLY_CONNECTED whose accumulators sometimes land next to a .5 tie: TFLM (double rounding) and
    LiteRT's reference kernel (single rounding) differ by one step on a few values. The check counts them, names the
    outputs and the operator, and does not call the model bit-exact; the decisions it changes are near-ties."""
    fb = _dense_int8()
    assert micro.model_operators(fb) == ["FULLY_CONNECTED"]
    ref = TFLiteRunner(fb)
    xq = np.random.default_rng(1).integers(-128, 128, (2000, 64)).astype(np.int8)
    expected, got = ref.run_raw(xq).astype(int), micro.micro_invoke(fb, xq, 16384).astype(int)
    differ = int(np.sum(expected != got))
    assert 0 < differ < expected.size // 100 and np.abs(expected - got).max() == 1  # the real effect, measured here
    floats = (xq.astype(np.float32) - ref.input_zero_point) * ref.input_scale
    clips = np.repeat(np.arange(200), 10)  # 200 "clips" of 10 segments
    result = verify_bit_exact(fb, floats, 16384, clip_index=clips)  # no VerificationError: within one step
    assert result["bit_exact"] is False
    assert (result["values"], result["equal"], result["max_step"]) == (expected.size, expected.size - differ, 1)
    assert result["mismatching_inputs"] == int(np.sum((expected != got).any(axis=1)))
    assert sum(result["differing_outputs"].values()) == differ and result["output_operator"] == "FULLY_CONNECTED"
    seg_flips = int(np.sum(expected.argmax(1) != got.argmax(1)))
    assert result["segment_decisions_changed"] == seg_flips and result["clips"] == 200
    assert all(m <= result["near_tie_steps"] for m in result["segment_flip_margins"] + result["clip_flip_margins"])


def test_verify_compares_every_evaluation_example():
    """verify(..., evaluation=) adds the comparison on every example of the evaluation set (clips kept)."""
    from keras_dssdn.deploy.calibrate import Calibration
    from keras_dssdn.deploy.convert import convert
    from keras_dssdn.deploy.export_data import DataSources
    from keras_dssdn.deploy.prepare import prepare_model
    from keras_dssdn.deploy.settings import QATSettings
    from keras_dssdn.deploy.verify import verify

    from _export_helpers import FE16, plain_model

    prep = prepare_model(plain_model(), frontend=FE16)
    x, _ = synthetic(30, (16, 8, 1), 3)
    clips = np.repeat(np.arange(6), 5)
    conversion = convert(prep, Calibration(x, "given"), QATSettings(), DataSources(), log=lambda *a: None)
    checked = verify(prep.core, conversion, x[:4], log=lambda *a: None, evaluation=(x, clips % 3, clips))
    be = checked.int8["ptq"]["bit_exactness"]
    assert be["inputs"] == 4 and be["evaluation"]["inputs"] == 30 and be["evaluation"]["clips"] == 6
    assert be["evaluation"]["values"] == 30 * 3
    assert be["bit_exact"] == (be["equal"] == be["values"] and be["evaluation"]["equal"] == 90)


def test_tally_fails_on_a_clear_decision_change_or_when_most_inputs_differ():
    tally = ExactnessTally()
    ref = np.array([[10, 0, -5], [3, 2, 1]])
    tally.add(ref + np.array([[0, 1, 0], [0, 0, 0]]), ref, np.array([0, 0]))
    assert tally.problems() == [] and tally.result()["differing_outputs"] == {"1": 1}  # 1 of 2 inputs: not "most"
    two_steps = ExactnessTally()  # a tie before a softmax can move an output by more than one step: counted
    two_steps.add(np.vstack([ref + np.array([[0, 0, 2], [0, 0, 0]])] + [ref] * 20), np.vstack([ref] * 21))
    assert two_steps.problems() == [] and two_steps.result()["max_step"] == 2
    broken = ExactnessTally()  # most inputs differ: not ties, another computation (e.g. a dilated depthwise kernel)
    broken.add(ref + np.array([[0, 0, 40], [0, 50, 0]]), ref)
    assert "outputs differ on 2 of 2 inputs" in broken.problems()[0]
    flip = ExactnessTally()  # TFLM picks class 1 where the reference had class 0 ahead by 10 steps
    flip.add(np.array([[10, 11, -5]]), np.array([[10, 0, -5]]))
    problems = flip.problems()
    assert any("1 of 1 segment decisions changed" in p for p in problems)
    assert any("1 of 1 clip decisions changed" in p for p in problems)


# ---------------------------------------------------------------------------
# 3, 4, 5. The streaming example on the host, against stubs of TFLM
# ---------------------------------------------------------------------------

#: TFLM stand-ins: a resolver that, like MicroMutableOpResolver<N>, refuses registrations past N, and an interpreter
#: whose Invoke() (defined by the test program) "classifies" a segment by the sum of its int8 input.
STUB_RESOLVER = """#pragma once
enum TfLiteStatus { kTfLiteOk, kTfLiteError };
namespace tflite {
template <unsigned int N> class MicroMutableOpResolver {
 public:
  TfLiteStatus Add() { if (count_ >= N) return kTfLiteError; ++count_; return kTfLiteOk; }
%s
 private:
  unsigned int count_ = 0;
};
}  // namespace tflite
"""

#: The test program: the audio interrupt simulated by SceneAudioIsr calls between (and during) SceneProcess calls.
MAIN = r"""
#include <cstdio>
#include <cstring>
#include "dssdn_model_settings.h"
#include "dssdn_frontend.h"
#include "tensorflow/lite/micro/micro_interpreter.h"
int SceneSetup(int32_t); int32_t SceneAudioIsr(const int16_t*, int32_t); int SceneProcess();
int SceneClipResult(float*); uint32_t SceneDroppedSamples(); const char* SceneStatusText(int);
static int16_t pcm[DSSDN_FE_SEGMENT_SAMPLES * 4];
static long invocations = 0, tensor_changed_during_invoke = 0, pushed_during_invoke = 0;
static int32_t feed = 0;  // next sample of pcm the "microphone" delivers
// Invoke: audio keeps arriving (the interrupt fires) while the model runs; the input tensor must not change.
TfLiteStatus tflite::MicroInterpreter::Invoke() {
  long before = 0, after = 0;
  for (int i = 0; i < dssdn::kInputElements; ++i) before += in_.data.int8[i] * (i % 7 + 1);
  int32_t n = 300;
  if (n > (int32_t)(sizeof(pcm) / 2) - feed) n = (int32_t)(sizeof(pcm) / 2) - feed;
  if (n > 0) { SceneAudioIsr(pcm + feed, n); feed += n; pushed_during_invoke += n; }
  for (int i = 0; i < dssdn::kInputElements; ++i) after += in_.data.int8[i] * (i % 7 + 1);
  if (before != after) ++tensor_changed_during_invoke;
  for (int c = 0; c < dssdn::kNumClasses; ++c) scores_[c] = (c == ((before % 3) + 3) % 3) ? 127 : -128;
  ++invocations;
  return kTfLiteOk;
}
int main(int argc, char** argv) {
  const int32_t total = (int32_t)(sizeof(pcm) / 2) * 5 / 8;  // 2.5 segments
  float p[dssdn::kNumClasses];
  int classified = 0, status, chunk = 1;
  for (int i = 0; i < (int)(sizeof(pcm) / 2); ++i) pcm[i] = (int16_t)((i * 7919) % 20000 - 10000);
  if (argc > 1 && strcmp(argv[1], "rate") == 0) {  // a microphone at another rate is refused, by name
    status = SceneSetup(DSSDN_FE_SAMPLE_RATE == 44100 ? 16000 : 44100);
    printf("%d %s\n", status, SceneStatusText(status));
    return 0;
  }
  if (SceneProcess() != -4) return 10;                        // not set up yet
  if ((status = SceneSetup(DSSDN_FE_SAMPLE_RATE)) != 0) return 11;
  if ((status = SceneSetup(DSSDN_FE_SAMPLE_RATE)) != 0) { printf("second setup: %d\n", status); return 12; }
  if (argc > 1 && strcmp(argv[1], "overflow") == 0) {  // the main loop stalls: the ring fills up
    int32_t dropped = SceneAudioIsr(pcm, dssdn::kAudioRingSamples + 100);
    status = SceneProcess();
    printf("%d %d %u %d\n", (int)dropped, status, (unsigned)SceneDroppedSamples(), SceneProcess());
    return 0;
  }
  while (feed < total) {  // interrupt: uneven DMA blocks; main loop: process after each
    int32_t k = chunk;
    if (k > total - feed) k = total - feed;
    if (SceneAudioIsr(pcm + feed, k) != 0) return 13;
    feed += k;
    if ((status = SceneProcess()) < 0) { printf("process: %s\n", SceneStatusText(status)); return 14; }
    classified += status;
    chunk = chunk * 3 % 251 + 1;  // DMA blocks of at most a hop (256 samples)
  }
  while ((status = SceneProcess()) > 0) classified += status;
  int best = SceneClipResult(p);
  printf("%d %ld %ld %ld %d %.3f %u\n", classified, invocations, tensor_changed_during_invoke, pushed_during_invoke,
         best, p[best], (unsigned)SceneDroppedSamples());
  return 0;
}
"""


def _example_files(tmp_path, sample_rate=16000):
    """The bundle's C / C++ for a 16-band front end at ``sample_rate`` and a made-up model, with the stubs."""
    import keras_dssdn
    from keras_dssdn.analysis.ram import audio_ring
    from keras_dssdn.deploy import cfrontend, csources
    from keras_dssdn.frontend_constants import FrontEndConstants, Quantization
    from keras_dssdn.layers.frontend import NormalizationStats

    fe = keras_dssdn.params.FrontEndParams(n_mels=16, n_fft=512, win_length=400, hop_length=256,
                                           sample_rate=sample_rate)
    frames = fe.num_frames(0.5)
    ring = audio_ring(sample_rate, 256, 100_000)
    files = dict(csources.c_array_source(bytes(range(40)), "g_dssdn_model_data", "dssdn_model_data.h"))
    files["dssdn_op_resolver.h"] = csources.op_resolver_header(["ADD", "CONV_2D", "SOFTMAX"])
    files.update(csources.model_settings_sources({
        "arena_bytes": 4096, "arena_min_bytes": 4000, "model_bytes": 40, "input_shape": [1, 16, frames, 1],
        "input_scale": 0.05, "input_zero_point": -3, "output_scale": 1 / 256, "output_zero_point": -128,
        "class_names": ["a", "b", "c"], "sample_rate": sample_rate, "macs": ring["macs"],
        "cycles_per_mac": ring["cycles_per_mac"], "clock_hz": ring["clock_hz"], "invoke_cycles": ring["invoke_cycles"],
        "invoke_seconds": ring["invoke_seconds"], "ring_samples": ring["samples"]}))
    consts = FrontEndConstants.build(fe, [1, 16, frames, 1], Quantization(0.05, -3), NormalizationStats([-8.0], [4.0]),
                                     ["a"], Quantization(1 / 256, -128), seconds=0.5)
    files.update(cfrontend.frontend_c_sources(consts))
    files["dssdn_example.cc"] = csources.example_source()
    stub = tmp_path / "tensorflow" / "lite" / "micro"
    stub.mkdir(parents=True)
    methods = "\n".join(f"  TfLiteStatus {m}() {{ return Add(); }}" for m in sorted(set(micro.ADD_METHODS.values())))
    (stub / "micro_mutable_op_resolver.h").write_text(STUB_RESOLVER % methods)
    (stub / "micro_interpreter.h").write_text(STUB_INTERPRETER)
    (tmp_path / "tensorflow" / "lite" / "schema").mkdir(parents=True)
    (tmp_path / "tensorflow" / "lite" / "schema" / "schema_generated.h").write_text("#pragma once\n")
    for name, text in {**files, "main.cc": MAIN}.items():
        (tmp_path / name).write_text(text)
    return files, ring


def _build_example(tmp_path, sample_rate=16000):
    import shutil
    import subprocess

    if shutil.which("g++") is None or shutil.which("cc") is None:
        pytest.skip("g++ / cc not installed")
    files, ring = _example_files(tmp_path, sample_rate)
    obj = tmp_path / "dssdn_frontend.o"
    subprocess.run(["cc", "-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", "-c",
                    str(tmp_path / "dssdn_frontend.c"), "-o", str(obj)], check=True, capture_output=True)
    sources = [str(tmp_path / n) for n in files if n.endswith(".cc")] + [str(tmp_path / "main.cc")]
    exe = tmp_path / "example"
    proc = subprocess.run(["g++", "-std=c++17", "-Wall", "-Wextra", "-Werror", "-I", str(tmp_path), *sources,
                           str(obj), "-o", str(exe), "-lm"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    run = lambda *args: subprocess.run([str(exe), *args], capture_output=True, text=True)  # noqa: E731
    return run, files, ring


def test_streaming_example_isr_fills_a_ring_and_the_main_loop_runs_the_model(tmp_path):
    """The example compiles against TFLM stubs (-Wall -Wextra -Werror); audio pushed by the "interrupt" in uneven
    blocks, and also while Invoke() runs, reaches the model only through SceneProcess: every complete segment is
    classified, the input tensor never changes during Invoke(), and nothing is dropped; SceneSetup() twice works."""
    run, files, ring = _build_example(tmp_path)
    out = run()
    assert out.returncode == 0, out.stdout + out.stderr
    classified, invocations, changed, during, best, prob, dropped = out.stdout.split()
    assert int(classified) == int(invocations) == 2  # 2.5 segments pushed: two complete
    assert int(changed) == 0 and int(during) > 0 and int(dropped) == 0
    assert int(best) >= 0 and min(abs(float(prob) - 0.996), abs(float(prob) - 0.498)) < 1e-3
    header = files["dssdn_model_settings.h"]
    assert f"constexpr int kAudioRingSamples = {ring['samples']};" in header
    assert "kSampleRateHz = 16000;" in header and f"kMcuClockHz = {ram.DEFAULT_MCU_CLOCK_HZ};" in header
    example = files["dssdn_example.cc"]
    assert "Invoke" not in example[example.index("int32_t SceneAudioIsr"):example.index("uint32_t SceneDroppedSamples")]


def test_streaming_example_reports_overflow_and_refuses_another_sample_rate(tmp_path):
    run, _, ring = _build_example(tmp_path)
    dropped, status, total, after = (int(v) for v in run("overflow").stdout.split())
    assert dropped == 100 and total == 100  # the ring holds kAudioRingSamples; the rest is counted
    assert status == -6 and after >= 0  # kSceneErrorOverflow once, then the stream goes on
    status, text = run("rate").stdout.split(" ", 1)
    assert int(status) == -1 and "sample rate" in text


# ---------------------------------------------------------------------------
# 4. The sample rate is a setting of the MCU config, followed by training, export and the C code
# ---------------------------------------------------------------------------

RATE_16K = ["frontend.sample_rate=16000", "frontend.n_fft=1024", "frontend.win_length=1024", "frontend.hop_length=368"]


@pytest.mark.slow
def test_a_16_khz_mcu_config_builds_and_exports_at_its_rate(tmp_path):
    """dcase_mcu_1s at 16 kHz (the overrides its config file names): the network takes the same (64, 44, 1) input;
    a tiny model with that front end exports, and frontend.json, the C front end, the model settings and the audio
    ring all say 16 kHz; the C front end, compiled here, matches the Python one at 16 kHz; TFLM is compared with the
    reference kernels on every evaluation example, clips included."""
    from keras_dssdn.layers.frontend import NormalizationStats, attach_front_end
    from keras_dssdn.deploy.export import export_bundle
    from keras_dssdn.train.config import load_train_config
    from keras_dssdn.train.recipe import build_network

    cfg = load_train_config("dcase_mcu_1s", RATE_16K)
    fe = cfg.frontend_params()
    assert (fe.sample_rate, fe.input_shape(1.0)) == (16000, (64, 44, 1))
    assert build_network(cfg, classes=4).input_shape == (None, 64, 44, 1)
    core = tiny_dssdn("spc", shape=(64, 44, 1), classes=4, widths=(8, 8))
    wrapped = attach_front_end(core, fe, NormalizationStats([-8.0], [4.0]), ["a", "b", "c", "d"], seconds=1.0)
    x, _ = synthetic(40, (64, 44, 1), 4)
    clips = np.repeat(np.arange(8), 5)
    y = clips % 4  # one label per clip
    result = export_bundle(wrapped, tmp_path / "b16k", representative=x, evaluation=(x, y, clips), num_verify=4,
                           **QUIET)
    path = Path(result.path)
    report = result.report
    assert json.loads((path / "frontend.json").read_text())["sample_rate"] == 16000
    assert "#define DSSDN_FE_SAMPLE_RATE 16000" in (path / "micro" / "dssdn_frontend.h").read_text()
    assert "constexpr int kSampleRateHz = 16000;" in (path / "micro" / "dssdn_model_settings.h").read_text()
    ring = report["device_memory"]["audio_ring"]
    assert ring["sample_rate"] == 16000 and ring["samples"] >= 2 * 368
    assert report["device_memory"]["ram"]["audio_buffer"] == ring["bytes"] == 2 * (ring["samples"] + 1)
    check = report["c_frontend"]
    if not check.get("skipped"):
        assert check["signals"]["parity"]["equal_fraction"] >= 0.999
    be = report["int8"]["ptq"]["bit_exactness"]
    assert be["inputs"] == 4 and be["evaluation"]["inputs"] == 40 and be["evaluation"]["clips"] == 8
    assert be["bit_exact"] == (be["evaluation"]["bit_exact"] and be["equal"] == be["values"])
    assert "TFLM vs TFLite reference kernels" in (path / "report.md").read_text()


def test_the_16_khz_setting_reaches_the_c_front_end():
    """Fast: the config's 16-kHz front end, through the export's constants, makes C that says 16 kHz."""
    from keras_dssdn.deploy import cfrontend
    from keras_dssdn.frontend_constants import FrontEndConstants, Quantization
    from keras_dssdn.train.config import load_train_config

    fe = load_train_config("dcase_mcu_1s", RATE_16K).frontend_params()
    consts = FrontEndConstants.build(fe, [1, 64, 44, 1], Quantization(0.05, -3)).to_json()
    assert (consts["sample_rate"], consts["num_samples"], consts["hop_length"]) == (16000, 16000, 368)
    consts = FrontEndConstants.from_json(consts)
    header = cfrontend.frontend_c_sources(consts)["dssdn_frontend.h"]
    assert "#define DSSDN_FE_SAMPLE_RATE 16000" in header and "#define DSSDN_FE_SEGMENT_SAMPLES 16000" in header


@pytest.mark.slow
def test_training_pipeline_follows_the_rate(shared_data):
    """A real 44.1 kHz clip through the training pipeline at the 16-kHz setting: resampled, 64 x 44 per second."""
    from keras_dssdn.data.pipeline import evaluation_dataset
    from keras_dssdn.data.spec import PipelineSpec
    from keras_dssdn.train.config import load_train_config

    from _export_helpers import tut17_subsets

    _, _, _, evaluate = tut17_subsets(shared_data, n_eval=1)
    fe = load_train_config("dcase_mcu_1s", RATE_16K).frontend_params()
    spec = PipelineSpec(frontend=fe, clip_seconds=10.0, batch_size=1, label_mode="int", cache=None)
    wave, _ = next(iter(evaluation_dataset(evaluate, spec.replace(output="waveform"))))
    assert wave.shape == (1, 160000)
    x, _ = next(iter(evaluation_dataset(evaluate, spec.replace(batch_size=16, segment_seconds=1.0))))
    assert tuple(x.shape[1:]) == (64, 44, 1)


# ---------------------------------------------------------------------------
# 1 (real data, slow). Every segment of real evaluate clips compared
# ---------------------------------------------------------------------------


@pytest.mark.slow
def test_export_on_real_clips_compares_every_segment(tmp_path, shared_data):
    """A small DSSDN with its front end, exported on real TUT 2017 clips: TFLM is compared with the reference kernels
    on every 1-s segment of the evaluate subset (10 per clip), the counts are in report.json and report.md, and
    "bit-exact" is claimed exactly when every value matched."""
    from keras_dssdn.deploy.export import export_bundle
    from keras_dssdn.layers.frontend import NormalizationStats, attach_front_end
    from keras_dssdn.params import FrontEndParams

    from _export_helpers import train_briefly, tut17_subsets

    root, full_train, train, evaluate = tut17_subsets(shared_data, n_train=6, n_eval=4)
    vocab = full_train.vocabulary()
    fe = FrontEndParams(n_mels=64)
    core = tiny_dssdn("spc", shape=(64, 44, 1), classes=len(vocab), widths=(12, 16))
    x, y = synthetic(32, (64, 44, 1), len(vocab))
    train_briefly(core, x, y)
    wrapped = attach_front_end(core, fe, NormalizationStats([-8.0], [3.5]), vocab.names, seconds=1.0)
    result = export_bundle(wrapped, tmp_path / "bundle", train_data=train, eval_data=evaluate, num_calibration=20,
                           num_verify=6, **QUIET)
    for name, v in result.report["int8"].items():
        be = v["bit_exactness"]
        ev = be["evaluation"]
        assert (ev["inputs"], ev["clips"], ev["values"]) == (40, 4, 40 * len(vocab)), name
        assert ev["mismatching_inputs"] <= 0.05 * ev["inputs"]
        assert be["bit_exact"] == (be["equal"] == be["values"] and ev["equal"] == ev["values"])
        assert all(m <= ev["near_tie_steps"] for m in ev["segment_flip_margins"] + ev["clip_flip_margins"])
    md = (Path(result.path) / "report.md").read_text()
    assert "evaluation set (every example)" in md and "6 inputs + 40 evaluation examples" in md


# ---------------------------------------------------------------------------
# 2. The audio ring: sized from the model and a clock, counted, settable
# ---------------------------------------------------------------------------


def test_audio_ring_holds_the_audio_of_one_invoke_and_is_counted():
    from keras_dssdn.analysis import ram
    from keras_dssdn.frontend_constants import FrontEndConstants, Quantization
    from keras_dssdn.deploy.report import device_memory
    from keras_dssdn.deploy.settings import ExportSettings
    from keras_dssdn.errors import ConfigError
    from keras_dssdn.params import FrontEndParams

    fe = FrontEndParams(n_mels=64)
    # dcase_mcu_1s: 2,100,960 MACs x 4 cycles at 80 MHz = 105 ms = 4,633 samples at 44.1 kHz, + two hops of 1,024
    ring = ram.audio_ring(44100, 1024, 2_100_960, clock_hz=80e6, cycles_per_mac=4.0)
    assert (ring["invoke_cycles"], ring["samples"], ring["bytes"]) == (8_403_840, 4633 + 2048, 2 * (4633 + 2048 + 1))
    assert ring["samples"] * 2 > 4096 * 3  # far more than the one-hop buffer counted before
    faster = ram.audio_ring(44100, 1024, 2_100_960, clock_hz=168e6)
    assert faster["samples"] < ring["samples"]
    consts = FrontEndConstants.build(fe, [1, 64, 44, 1], Quantization(0.05, -3), seconds=1.0)
    mem = device_memory(130_000, 109_568, 98_984, consts, ring)
    assert mem["ram"]["audio_buffer"] == ring["bytes"]
    assert mem["ram"]["total"] == 109_568 + 6 * 2048 + 16 + ring["bytes"]
    part = mem["part"]
    assert part["headroom_bytes"] == 131_072 - mem["ram"]["total"] < 0 and not part["fits"]
    # at the clock the report names, the same model fits
    per_mac = ring["cycles_per_mac"]
    at = ram.device_ram(109_568, fe, 2_100_960, clock_hz=part["min_clock_hz"], cycles_per_mac=per_mac)
    below = ram.device_ram(109_568, fe, 2_100_960, clock_hz=part["min_clock_hz"] - 1e6, cycles_per_mac=per_mac)
    assert at["total"] <= 131_072 < below["total"]
    assert part["keeps_up"] is True  # 105 ms per 1-s segment
    slow = ram.audio_ring(44100, 1024, 2_100_960, clock_hz=8e6)  # 1.05 s per 1-s segment
    late = device_memory(130_000, 109_568, 98_984, consts, slow)
    assert late["part"]["keeps_up"] is False
    assert ExportSettings.from_options(mcu_clock_hz=168e6).mcu_clock_hz == 168e6
    with pytest.raises(ConfigError, match="mcu_clock_hz"):
        ExportSettings.from_options(mcu_clock_hz=0)


def test_streaming_example_cross_compiles_for_cortex_m4f_without_runtime_helpers(tmp_path):
    """With the Arm toolchain (Debian gcc-arm-none-eabi): the example compiles for a Cortex-M4F against the stubs, and
    its ring indices need no library atomics (__atomic_*) or static-init guards (__cxa_guard_*): plain loads and stores
    with barriers."""
    import shutil
    import subprocess

    gxx, nm = shutil.which("arm-none-eabi-g++"), shutil.which("arm-none-eabi-nm")
    if gxx is None or nm is None:
        pytest.skip("arm-none-eabi-g++ not installed (Debian package gcc-arm-none-eabi)")
    _example_files(tmp_path)
    obj = tmp_path / "example.o"
    proc = subprocess.run([gxx, "-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16", "-std=c++17",
                           "-Os", "-Wall", "-Wextra", "-Werror", "-fno-exceptions", "-fno-rtti", "-I", str(tmp_path),
                           "-c", str(tmp_path / "dssdn_example.cc"), "-o", str(obj)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    undefined = subprocess.run([nm, "-u", str(obj)], capture_output=True, text=True, check=True).stdout
    assert "__atomic" not in undefined and "__cxa_guard" not in undefined, undefined
    assert "dssdn_fe_push" in undefined  # the front end is linked in from dssdn_frontend.c
