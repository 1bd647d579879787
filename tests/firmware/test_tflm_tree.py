"""The TFLM + CMSIS-NN tree (keras_dssdn.firmware.tflm_tree): bad trees refused in one line, the file selection
rules on a synthetic tree, an offline cache laid out from local git snapshots, and -- where TFLM_ROOT is set and
arm-none-eabi-g++ exists -- real compiles for Cortex-M4F (one file each, fast) and the whole library linked into a
program (slow tier)."""

import os
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest

from keras_dssdn.errors import ConfigError
from keras_dssdn.firmware import tflm_tree as tt

TFLM_ROOT = os.environ.get("TFLM_ROOT", "")
GXX = shutil.which("arm-none-eabi-g++")
needs_toolchain = pytest.mark.skipif(
    not (TFLM_ROOT and GXX),
    reason="needs TFLM_ROOT (a tree laid out by `python -m keras_dssdn.firmware.tflm_tree prepare`) and "
           "arm-none-eabi-g++ on PATH")


def _touch(root: Path, rel: str, text: str = "") -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def fake_tree(root: Path, cmsis: bool = True) -> Path:
    """A tree with the files find_tflm_tree looks for, some sources of each kind and files the rules exclude."""
    for rel, _ in tt.REQUIRED_FILES + (tt.REQUIRED_CMSIS_NN if cmsis else ()):
        _touch(root, rel)
    micro = "tensorflow/lite/micro"
    for rel in (f"{micro}/micro_allocator.cc", f"{micro}/micro_interpreter_test.cc", f"{micro}/test_helpers.cc",
                f"{micro}/debug_log.cc", f"{micro}/cortex_m_generic/debug_log.cc", f"{micro}/cortex_m_generic/micro_time.cc",
                f"{micro}/hexagon/micro_time.cc", f"{micro}/memory_planner/greedy_memory_planner.cc",
                f"{micro}/examples/hello_world/main.cc", f"{micro}/tools/benchmarking/metrics.cc",
                f"{micro}/kernels/add.cc", f"{micro}/kernels/add_test.cc", f"{micro}/kernels/kernel_runner.cc",
                f"{micro}/kernels/circular_buffer_flexbuffers_generated_data.cc", f"{micro}/kernels/xtensa/conv.cc",
                f"{micro}/kernels/cmsis_nn/add.cc", "tensorflow/lite/core/c/common.cc", "tensorflow/lite/array.cc",
                "tensorflow/lite/experimental/microfrontend/lib/fft.cc", "tensorflow/lite/python/x.cc",
                "signal/src/window.cc"):
        _touch(root, rel)
    if cmsis:
        nn = f"{tt.DOWNLOADS}/cmsis_nn/Source"
        for rel in ("ConvolutionFunctions/arm_convolve_s8.c", "ConvolutionFunctions/arm_convolve_f32.c",
                    "NNSupportFunctions/arm_nntables_flt.c", "NNSupportFunctions/arm_nntables.c",
                    "Bindings/arm_py_module.cpp"):
            _touch(root, f"{nn}/{rel}")
    return root


def _rel(lib, files):
    return sorted(p.relative_to(lib.tree.root).as_posix() for p in files)


# ------------------------------------------------------------------------------------------------ bad input


def _message(excinfo) -> str:
    text = str(excinfo.value)
    assert "\n" not in text
    return text


def test_empty_folder_names_what_was_looked_for(tmp_path):
    with pytest.raises(ConfigError) as e:
        tt.find_tflm_tree(tmp_path)
    text = _message(e)
    assert "tensorflow/lite/micro/micro_interpreter.cc" in text and "is missing" in text
    for rel, _ in tt.REQUIRED_FILES + tt.REQUIRED_CMSIS_NN:
        assert rel in text
    assert "prepare" in text


def test_missing_flatbuffers_is_named(tmp_path):
    fake_tree(tmp_path)
    shutil.rmtree(tmp_path / tt.DOWNLOADS / "flatbuffers")
    with pytest.raises(ConfigError) as e:
        tt.find_tflm_tree(tmp_path)
    text = _message(e)
    assert text.split(": ", 1)[1].startswith(f"{tt.DOWNLOADS}/flatbuffers/include/flatbuffers/flatbuffers.h "
                                             f"(the flatbuffers headers) is missing (1 of 8")


@pytest.mark.parametrize("rel", [r for r, _ in tt.REQUIRED_FILES + tt.REQUIRED_CMSIS_NN])
def test_each_missing_file_is_the_one_named(tmp_path, rel):
    fake_tree(tmp_path)
    (tmp_path / rel).unlink()
    with pytest.raises(ConfigError, match=f": {rel} \\("):
        tt.find_tflm_tree(tmp_path)


def test_reference_kernels_do_not_need_cmsis(tmp_path):
    fake_tree(tmp_path, cmsis=False)
    assert tt.find_tflm_tree(tmp_path, kernels="reference").root == tmp_path.resolve()
    with pytest.raises(ConfigError, match="arm_nnfunctions.h"):
        tt.find_tflm_tree(tmp_path, kernels="cmsis-nn")


def test_tflm_root_fallback_and_its_absence(tmp_path, monkeypatch):
    fake_tree(tmp_path)
    monkeypatch.setenv("TFLM_ROOT", str(tmp_path))
    assert tt.find_tflm_tree(None).root == tmp_path.resolve()
    monkeypatch.delenv("TFLM_ROOT")
    with pytest.raises(ConfigError, match="pass --tflm DIR or set TFLM_ROOT") as e:
        tt.find_tflm_tree(None)
    _message(e)


def test_not_a_folder_and_unknown_choices(tmp_path):
    with pytest.raises(ConfigError, match="is not a folder") as e:
        tt.find_tflm_tree(tmp_path / "nowhere")
    _message(e)
    fake_tree(tmp_path)
    tree = tt.find_tflm_tree(tmp_path)
    with pytest.raises(ConfigError, match="target 'cortex-m7'"):
        tt.library_sources(tree, "cmsis-nn", "cortex-m7")
    with pytest.raises(ConfigError, match="kernels 'ethos-u'"):
        tt.library_sources(tree, "ethos-u", "cortex-m4f")


def test_command_line_prints_one_error_line(tmp_path, capsys):
    assert tt.main(["check", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "micro_interpreter.cc" in err[0]


# ------------------------------------------------------------------------------------------------ selection rules


def test_selection_rules_on_a_synthetic_tree(tmp_path):
    tree = tt.find_tflm_tree(fake_tree(tmp_path))
    ref = tt.library_sources(tree, "reference", "cortex-m4f")
    micro = "tensorflow/lite/micro"
    assert _rel(ref, ref.runtime_sources) == sorted([
        f"{micro}/micro_allocator.cc", f"{micro}/micro_interpreter.cc", f"{micro}/cortex_m_generic/debug_log.cc",
        f"{micro}/memory_planner/greedy_memory_planner.cc", "tensorflow/lite/core/c/common.cc"])
    assert _rel(ref, ref.kernel_sources) == [f"{micro}/kernels/add.cc", f"{micro}/kernels/conv.cc"]
    assert ref.cmsis_nn_sources == ()
    assert "CMSIS_NN" not in ref.defines and "TF_LITE_STATIC_MEMORY" in ref.defines

    nn = tt.library_sources(tree, "cmsis-nn", "cortex-m4f")
    assert _rel(nn, nn.kernel_sources) == [f"{micro}/kernels/cmsis_nn/add.cc", f"{micro}/kernels/cmsis_nn/conv.cc"]
    assert _rel(nn, nn.cmsis_nn_sources) == [
        f"{tt.DOWNLOADS}/cmsis_nn/Source/ConvolutionFunctions/arm_convolve_s8.c",
        f"{tt.DOWNLOADS}/cmsis_nn/Source/NNSupportFunctions/arm_nntables.c"]
    assert {"CMSIS_NN", "ARM_NN_ENABLE_F16=0", "ARM_NN_ENABLE_F32=0"} <= set(nn.defines)
    assert tree.cmsis_nn / "Include" in nn.include_dirs
    assert nn.arch_flags == ("-mcpu=cortex-m4", "-mfpu=fpv4-sp-d16", "-mfloat-abi=hard", "-mthumb")
    flags = nn.compile_flags("c++")
    assert "-fno-exceptions" in flags and "-fno-rtti" in flags and "-DCMSIS_NN" in flags
    assert "-fno-rtti" not in nn.compile_flags("c")


def test_build_files_list_every_source(tmp_path):
    tree = tt.find_tflm_tree(fake_tree(tmp_path / "tree"))
    lib = tt.library_sources(tree, "cmsis-nn", "cortex-m55")
    makefile = tt.write_library_makefile(lib, tmp_path / "build").read_text()
    cmake = tt.write_library_cmake(lib, tmp_path / "cmake").read_text()
    assert "-mcpu=cortex-m55" in makefile and "-mcpu=cortex-m55" in cmake
    for path in lib.all_sources:
        rel = path.relative_to(tree.root).as_posix()
        assert rel in makefile and f"${{TFLM_ROOT}}/{rel}" in cmake
    listed = subprocess.run(["make", "-n", "-C", str(tmp_path / "build")], capture_output=True, text=True)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.count(" -c ") == len(lib.all_sources)
    assert "libtflm-cortex-m55-cmsis-nn.a" in listed.stdout


# ------------------------------------------------------------------------------------------------ prepare (offline)


def _git(cwd: Path, *args: str) -> str:
    env = dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t",
               GIT_COMMITTER_EMAIL="t@t")
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout.strip()


def _repo(path: Path, files: dict, tag: str = "") -> str:
    path.mkdir(parents=True)
    _git(path, "init", "-q")
    for rel, text in files.items():
        _touch(path, rel, text)
    _git(path, "add", "-A")
    _git(path, "commit", "-qm", "snapshot")
    if tag:
        _git(path, "tag", tag)
    return _git(path, "rev-parse", "HEAD")


KISS_PATCH = "--- a/kiss_fft.h\n+++ b/kiss_fft.h\n@@ -0,0 +1 @@\n+k\n"


def fake_mirrors(mirrors: Path, cmsis_nn_pin_exists: bool = True, kiss_patch: str = KISS_PATCH) -> dict:
    """Git snapshots of every component (owner+name/repo clones) and a tflite-micro whose scripts pin them."""
    m = "tensorflow/lite/micro/tools/make"
    pins = {"flatbuffers": _repo(mirrors / "google+flatbuffers/repo",
                                 {"include/flatbuffers/flatbuffers.h": "", "include/flatbuffers/base.h": "a\n"},
                                 tag="v25.9.23"),
            "gemmlowp": _repo(mirrors / "google+gemmlowp/repo", {"fixedpoint/fixedpoint.h": ""}),
            "ruy": _repo(mirrors / "google+ruy/repo", {"ruy/profiler/instrumentation.h": ""}),
            "kissfft": _repo(mirrors / "mborgerding+kissfft/repo", {"kiss_fft.h": ""}, tag="v130"),
            "cmsis": _repo(mirrors / "ARM-software+CMSIS_6/repo", {"CMSIS/Core/Include/cmsis_compiler.h": ""}),
            "cmsis_nn": _repo(mirrors / "ARM-software+CMSIS-NN/repo", {"Include/arm_nnfunctions.h": ""})}
    nn_pin = pins["cmsis_nn"] if cmsis_nn_pin_exists else "0" * 40
    patch = "--- a/include/flatbuffers/base.h\n+++ b/include/flatbuffers/base.h\n@@ -1 +1,2 @@\n a\n+patched\n"
    tflm = {"tensorflow/lite/micro/micro_interpreter.cc": "", "tensorflow/lite/micro/kernels/conv.cc": "",
            "tensorflow/lite/micro/kernels/cmsis_nn/conv.cc": "",
            f"{m}/flatbuffers_download.sh": '  ZIP_PREFIX="v25.9.23"\n', f"{m}/flatbuffers.patch": patch,
            f"{m}/third_party_downloads.inc": textwrap.dedent(f"""\
                GEMMLOWP_URL := "https://github.com/google/gemmlowp/archive/{pins['gemmlowp']}.zip"
                RUY_URL="https://github.com/google/ruy/archive/{pins['ruy']}.zip"
                """),
            f"{m}/kissfft_download.sh": '  KISSFFT_URL="https://github.com/mborgerding/kissfft/archive/refs/tags/v130.zip"\n',
            "third_party/kissfft/kissfft.patch": kiss_patch,
            f"{m}/ext_libs/cmsis_download.sh": f'  ZIP_PREFIX="{pins["cmsis"]}"\n  CMSIS_URL="x"\n'
                                               '  ZIP_PREFIX="c2c70a97"\n  CMSIS_DFP_URL="y"\n',
            f"{m}/ext_libs/cmsis_nn_download.sh": f'ZIP_PREFIX_NN="{nn_pin}"\n'}
    pins["tflite-micro"] = _repo(mirrors / "tensorflow+tflite-micro/repo", tflm)
    return pins


def test_prepare_lays_out_a_tree_from_local_snapshots(tmp_path):
    pins = fake_mirrors(tmp_path / "mirrors")
    record = tt.prepare_tree(tmp_path / "mirrors", tmp_path / "out", tflm_ref=pins["tflite-micro"])
    tree = tt.find_tflm_tree(tmp_path / "out")
    assert record == tree.manifest()
    assert record["tflite-micro"]["commit"] == pins["tflite-micro"]
    for name in ("gemmlowp", "ruy", "cmsis", "cmsis_nn"):
        assert record[name]["commit"] == pins[name] and record[name]["pinned_found"]
    assert record["flatbuffers"]["commit"] == pins["flatbuffers"] and record["flatbuffers"]["pinned"] == "v25.9.23"
    assert (tree.downloads / "flatbuffers/include/flatbuffers/base.h").read_text() == "a\npatched\n"
    assert (tree.downloads / "kissfft/kiss_fft.h").read_text() == "k\n"
    assert (tree.downloads / "pigweed").is_dir()
    assert record["cortex_dfp"]["pinned"] == "c2c70a97" and record["cortex_dfp"]["commit"] is None  # no snapshot
    assert record["cmsis_nn"]["url"] == f"https://github.com/ARM-software/CMSIS-NN/archive/{pins['cmsis_nn']}.zip"


def test_prepare_uses_head_and_says_so_when_a_pin_is_missing(tmp_path):
    pins = fake_mirrors(tmp_path / "mirrors", cmsis_nn_pin_exists=False)
    record = tt.prepare_tree(tmp_path / "mirrors", tmp_path / "out", tflm_ref="HEAD")
    entry = record["cmsis_nn"]
    assert entry["commit"] == pins["cmsis_nn"] and not entry["pinned_found"]
    assert entry["note"] == f"pinned {'0' * 40} is not in the snapshot: HEAD used"


def test_prepare_names_a_patch_that_does_not_apply(tmp_path):
    fake_mirrors(tmp_path / "mirrors", kiss_patch="--- a/kiss_fft.h\n+++ b/kiss_fft.h\n@@ -1 +1 @@\n-x\n+k\n")
    with pytest.raises(ConfigError, match="kissfft.patch does not apply to kissfft"):
        tt.prepare_tree(tmp_path / "mirrors", tmp_path / "out", tflm_ref="HEAD")
    assert not (tmp_path / "out").exists()  # what it wrote is removed: a second run can start afresh
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="kissfft.patch does not apply"):
        tt.prepare_tree(tmp_path / "mirrors", tmp_path / "empty", tflm_ref="HEAD")
    assert (tmp_path / "empty").is_dir() and not any((tmp_path / "empty").iterdir())


def test_prepare_takes_github_zip_archives(tmp_path):
    pins = fake_mirrors(tmp_path / "mirrors")
    repo = tmp_path / "mirrors/google+ruy/repo"
    zipped = tmp_path / f"mirrors/ruy-{pins['ruy']}.zip"
    _git(repo, "archive", "--format=zip", f"--prefix=ruy-{pins['ruy']}/", "-o", str(zipped), "HEAD")
    shutil.rmtree(tmp_path / "mirrors/google+ruy")
    record = tt.prepare_tree(tmp_path / "mirrors", tmp_path / "out", tflm_ref="HEAD")
    assert record["ruy"]["source"].endswith(f"ruy-{pins['ruy']}") and record["ruy"]["pinned_found"]
    assert (tmp_path / "out" / tt.DOWNLOADS / "ruy/ruy/profiler/instrumentation.h").is_file()


def test_prepare_refuses_a_used_folder_and_missing_snapshots(tmp_path):
    (tmp_path / "out").mkdir()
    keep = _touch(tmp_path, "out/mine.txt", "user's")
    with pytest.raises(ConfigError, match="exists and is not empty"):
        tt.prepare_tree(tmp_path, tmp_path / "out")
    assert keep.read_text() == "user's"
    with pytest.raises(ConfigError, match="no snapshot of tensorflow/tflite-micro, google/flatbuffers") as e:
        tt.prepare_tree(tmp_path / "nothing", tmp_path / "out2")
    _message(e)
    assert not (tmp_path / "out2").exists()


# ------------------------------------------------------------------------------------------------ real toolchain


@needs_toolchain
def test_real_tree_cmsis_nn_kernel_compiles(tmp_path):
    """Flags and include folders fit the real tree: TFLM's CMSIS-NN convolution kernel (TFLM, flatbuffers,
    gemmlowp, ruy and CMSIS-NN headers) and CMSIS-NN's own s8 convolution compile for Cortex-M4F."""
    lib = tt.library_sources(tt.find_tflm_tree(TFLM_ROOT, "cmsis-nn"), "cmsis-nn", "cortex-m4f")
    conv = next(p for p in lib.kernel_sources if p.name == "conv.cc")
    assert conv.parent.name == "cmsis_nn"
    nn_conv = next(p for p in lib.cmsis_nn_sources if p.name == "arm_convolve_s8.c")
    for tool, language, src in ((GXX, "c++", conv), (shutil.which("arm-none-eabi-gcc"), "c", nn_conv)):
        done = subprocess.run([tool, *lib.compile_flags(language), lib.kernel_opt, "-c", str(src), "-o",
                               str(tmp_path / f"{src.stem}.o")], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-2000:]


PROBE_MAIN = r"""
#include <cstdint>
#include "tensorflow/lite/micro/cortex_m_generic/debug_log_callback.h"
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"
#include "tensorflow/lite/schema/schema_generated.h"

alignas(16) static uint8_t arena[16 * 1024];
alignas(16) const unsigned char probe_model[64] = {0};
static volatile char sink;
static void log_line(const char* s) { while (*s) sink = *s++; }

int main() {
  RegisterDebugLogCallback(log_line);
  const tflite::Model* model = tflite::GetModel(probe_model);
  tflite::MicroMutableOpResolver<7> ops;
  ops.AddConv2D(); ops.AddDepthwiseConv2D(); ops.AddFullyConnected(); ops.AddAveragePool2D();
  ops.AddAdd(); ops.AddMean(); ops.AddSoftmax();
  tflite::MicroInterpreter interpreter(model, ops, arena, sizeof(arena));
  if (interpreter.AllocateTensors() != kTfLiteOk) return 1;
  return interpreter.Invoke() == kTfLiteOk ? 0 : 2;
}
"""


@pytest.mark.slow
@needs_toolchain
@pytest.mark.parametrize("target", sorted(tt.TARGETS))
def test_library_builds_and_links_cmsis_nn_into_a_program(tmp_path, target):
    """The whole library compiles (make -j2) for ``target`` and a program using the interpreter links against it
    with --gc-sections and newlib's nosys specs; CMSIS-NN's convolutions are in the program. The library is
    built in $TFLM_BUILD_DIR/<name> when that is set (kept between runs: make recompiles only what changed;
    a first build is about 13.5 CPU minutes, 30-65 min of wall clock with make -j2 on this shared 2-core
    machine: docs/firmware_tflm.md), else in a temporary folder."""
    lib = tt.library_sources(tt.find_tflm_tree(TFLM_ROOT), "cmsis-nn", target)
    build_dir = Path(os.environ["TFLM_BUILD_DIR"]) / lib.name if os.environ.get("TFLM_BUILD_DIR") else tmp_path / "b"
    built = tt.build_library(lib, build_dir, jobs=2)
    stamp = built.archive.stat().st_mtime_ns
    tt.build_library(lib, build_dir, jobs=2)  # up to date: the archive is not rewritten
    assert built.archive.stat().st_mtime_ns == stamp
    main = _touch(tmp_path, "main.cc", PROBE_MAIN)
    elf = tmp_path / "probe.elf"
    done = subprocess.run([GXX, *lib.compile_flags("c++"), "-Os", str(main), str(built.archive), *lib.arch_flags,
                           "-Wl,--gc-sections", "--specs=nosys.specs", "-lm", "-o", str(elf)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    symbols = subprocess.run(["arm-none-eabi-nm", "-C", str(elf)], capture_output=True, text=True).stdout
    assert "arm_convolve_wrapper_s8" in symbols and "arm_depthwise_conv_wrapper_s8" in symbols
    assert "tflite::MicroInterpreter::Invoke()" in symbols


@pytest.mark.skipif(not (shutil.which("cmake") and GXX), reason="needs cmake and arm-none-eabi-g++ on PATH")
def test_cmake_file_configures_with_the_cross_compiler(tmp_path):
    """The written CMakeLists.txt configures under a project with the Arm compilers and plans one compile per
    source, with the group's optimisation level."""
    tree = tt.find_tflm_tree(fake_tree(tmp_path / "tree"))
    lib = tt.library_sources(tree, "cmsis-nn", "cortex-m4f")
    tt.write_library_cmake(lib, tmp_path / "top/tflm")
    _touch(tmp_path, "top/CMakeLists.txt", "cmake_minimum_required(VERSION 3.16)\nproject(probe C CXX)\n"
                                           "add_subdirectory(tflm)\n")
    done = subprocess.run(["cmake", "-S", str(tmp_path / "top"), "-B", str(tmp_path / "b"), "-DCMAKE_SYSTEM_NAME=Generic",
                           "-DCMAKE_C_COMPILER=arm-none-eabi-gcc", "-DCMAKE_CXX_COMPILER=arm-none-eabi-g++",
                           "-DCMAKE_TRY_COMPILE_TARGET_TYPE=STATIC_LIBRARY"], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    plan = subprocess.run(["make", "-n", "VERBOSE=1"], cwd=tmp_path / "b", capture_output=True, text=True).stdout
    compiles = [line for line in plan.splitlines() if " -c " in line and "arm-none-eabi-" in line]
    assert len(compiles) == len(lib.all_sources)
    conv = next(line for line in compiles if line.endswith("kernels/cmsis_nn/conv.cc"))
    assert " -O2 " in conv and "-mfpu=fpv4-sp-d16" in conv and "-DTF_LITE_STATIC_MEMORY" in conv
    assert " -Os " in next(line for line in compiles if line.endswith("micro/micro_allocator.cc"))
