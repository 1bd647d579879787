"""The TensorFlow Lite Micro + CMSIS-NN source tree a firmware build compiles, found, checked, listed and built.

Nothing here downloads anything: the tree is given by the user (``--tflm DIR`` or ``TFLM_ROOT``) and laid out
beforehand, offline, from local snapshots (:func:`prepare_tree`, ``python -m keras_dssdn.firmware.tflm_tree
prepare --from-mirrors DIR --out DIR``). docs/firmware.md (section "TFLM and CMSIS-NN") names the upstream
commits and the cache layout.

* :func:`find_tflm_tree` -- a :class:`TFLMTree` for a folder (or ``TFLM_ROOT``), or one
  :class:`~keras_dssdn.errors.ConfigError` line naming the file that was looked for and is missing.
* :func:`library_sources` -- a :class:`LibrarySources`: for ``kernels`` (``"reference"`` / ``"cmsis-nn"``) and
  ``target`` (``"cortex-m4f"`` / ``"cortex-m55"``), the runtime, kernel and CMSIS-NN sources, include
  folders, defines and flags. Lists come from globbing the tree with the rules of :data:`SELECTION_RULES`, so a
  newer TFLM works without editing a file list.
* :func:`write_library_makefile`, :func:`write_library_cmake` -- a plain Makefile / CMakeLists.txt that builds
  the static library (a user can lift either into a project); :func:`build_library` runs the Makefile.

The layout TFLM's own make expects (and that :func:`prepare_tree` writes): the tflite-micro checkout at the
root, third-party code under :data:`DOWNLOADS` (``flatbuffers``, ``gemmlowp``, ``ruy``, ``kissfft``,
``cmsis``, ``cmsis_nn``).
"""

from __future__ import annotations

import dataclasses
import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from keras_dssdn.errors import ConfigError, ExportError

#: tflite-micro commit the cache of docs/firmware.md was laid out from and tested with (2026-08-20).
TFLM_COMMIT = "90b983c2b3f1480642e040bbd2ddb37b998f3424"

#: Where TFLM's Makefile keeps downloaded third-party code, relative to the TFLM root.
DOWNLOADS = "tensorflow/lite/micro/tools/make/downloads"

#: Name of the record :func:`prepare_tree` writes at the root of a tree it lays out.
MANIFEST = "keras_dssdn_tflm_cache.json"

KERNELS = ("reference", "cmsis-nn")


# ------------------------------------------------------------------------------------------------ targets


@dataclasses.dataclass(frozen=True)
class Target:
    """A Cortex-M core: GCC's architecture flags (also needed at link time) and TFLM's CPU define."""

    name: str
    arch_flags: Tuple[str, ...]
    cpu_define: str


TARGETS: Dict[str, Target] = {
    "cortex-m4f": Target("cortex-m4f", ("-mcpu=cortex-m4", "-mfpu=fpv4-sp-d16", "-mfloat-abi=hard", "-mthumb"),
                         "CPU_M4=1"),
    # -mcpu=cortex-m55 turns on Helium (MVE, with float) in GCC 12; CMSIS-NN then takes its MVE paths
    "cortex-m55": Target("cortex-m55", ("-mcpu=cortex-m55", "-mfpu=auto", "-mfloat-abi=hard", "-mthumb"),
                         "CPU_M55=1"),
}


# ------------------------------------------------------------------------------------------------ the tree


@dataclasses.dataclass(frozen=True)
class TFLMTree:
    """A checked TFLM tree: ``root`` (the tflite-micro checkout) and its third-party folders."""

    root: Path

    @property
    def downloads(self) -> Path:
        return self.root / DOWNLOADS

    @property
    def cmsis_nn(self) -> Path:
        return self.downloads / "cmsis_nn"

    @property
    def cmsis(self) -> Path:
        return self.downloads / "cmsis"

    def manifest(self) -> Optional[dict]:
        """The record :func:`prepare_tree` wrote (commits used), or None for a tree laid out otherwise."""
        path = self.root / MANIFEST
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            return None


#: (path relative to the TFLM root, what it is): a tree missing one of these is refused.
REQUIRED_FILES: Tuple[Tuple[str, str], ...] = (
    ("tensorflow/lite/micro/micro_interpreter.cc", "the TFLM runtime"),
    ("tensorflow/lite/micro/kernels/conv.cc", "TFLM's reference kernels"),
    (f"{DOWNLOADS}/flatbuffers/include/flatbuffers/flatbuffers.h", "the flatbuffers headers"),
    (f"{DOWNLOADS}/gemmlowp/fixedpoint/fixedpoint.h", "gemmlowp's fixedpoint header"),
    (f"{DOWNLOADS}/ruy/ruy/profiler/instrumentation.h", "ruy's profiler header"),
)

#: Required in addition for kernels="cmsis-nn".
REQUIRED_CMSIS_NN: Tuple[Tuple[str, str], ...] = (
    ("tensorflow/lite/micro/kernels/cmsis_nn/conv.cc", "TFLM's CMSIS-NN kernel variants"),
    (f"{DOWNLOADS}/cmsis_nn/Include/arm_nnfunctions.h", "the CMSIS-NN library"),
    (f"{DOWNLOADS}/cmsis/CMSIS/Core/Include/cmsis_compiler.h", "the CMSIS core headers (CMSIS_6)"),
)

PREPARE_HINT = ("lay one out offline with `python -m keras_dssdn.firmware.tflm_tree prepare --from-mirrors DIR "
                "--out DIR` (docs/firmware.md)")


def find_tflm_tree(path: Optional[os.PathLike] = None, kernels: str = "cmsis-nn") -> TFLMTree:
    """The TFLM tree at ``path`` (else the ``TFLM_ROOT`` environment variable), checked for ``kernels``.

    Raises :class:`~keras_dssdn.errors.ConfigError` (one line) when neither is given, the folder does not exist,
    or a file of :data:`REQUIRED_FILES` (and, for ``"cmsis-nn"``, :data:`REQUIRED_CMSIS_NN`) is missing: the
    line names the first missing file and every file looked for.
    """
    _check_choice("kernels", kernels, KERNELS)
    where = _given_root(path)
    required = REQUIRED_FILES + (REQUIRED_CMSIS_NN if kernels == "cmsis-nn" else ())
    missing = [(rel, what) for rel, what in required if not (where / rel).is_file()]
    if missing:
        rel, what = missing[0]
        looked = ", ".join(r for r, _ in required)
        raise ConfigError(f"{where} is not a TensorFlow Lite Micro tree with its third-party code in place: "
                          f"{rel} ({what}) is missing ({len(missing)} of {len(required)} files missing; looked "
                          f"for {looked}); {PREPARE_HINT}")
    return TFLMTree(where.resolve())


def _given_root(path: Optional[os.PathLike]) -> Path:
    """``path`` or ``$TFLM_ROOT`` as an existing folder, else one ConfigError line."""
    if path is None or str(path) == "":
        env = os.environ.get("TFLM_ROOT", "")
        if not env:
            raise ConfigError(f"no TensorFlow Lite Micro tree given: pass --tflm DIR or set TFLM_ROOT; {PREPARE_HINT}")
        path = env
    where = Path(path).expanduser()
    if not where.is_dir():
        raise ConfigError(f"TFLM tree {where} is not a folder (looked for tensorflow/lite/micro/micro_interpreter.cc "
                          f"in it); {PREPARE_HINT}")
    return where


def _check_choice(name: str, value: str, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ConfigError(f"{name} {value!r} is not one of {', '.join(choices)}")


# ------------------------------------------------------------------------------------------------ selection

#: The rules :func:`library_sources` applies, in words (docs/firmware.md repeats them).
SELECTION_RULES = """\
runtime:  tensorflow/lite/micro/*.cc and its arena_allocator/, memory_planner/, tflite_bridge/ folders; every
          *.c / *.cc under tensorflow/ outside tensorflow/lite/micro/ and tensorflow/lite/experimental/
          (the shared TFLite code: flatbuffer conversions, common.c(c), quantisation utilities, ...), except
          tensorflow/lite/array.cc (not built with TF_LITE_STATIC_MEMORY).
kernels:  tensorflow/lite/micro/kernels/*.cc. With kernels="cmsis-nn" a file of the same name in
          tensorflow/lite/micro/kernels/cmsis_nn/ replaces the reference one (TFLM's specialize rule).
cmsis-nn: downloads/cmsis_nn/Source/**/*.c except *_f16.c, *_f32.c and arm_nntables_flt.c (float kernels,
          off as in TFLM: ARM_NN_ENABLE_F16=0, ARM_NN_ENABLE_F32=0).
excluded everywhere: *_test.cc, *_test_common.cc, *benchmark.cc, *_generated_data.cc (test data), test-only
          helpers (test_helpers.cc, test_helper_custom_ops.cc, fake_micro_context.cc, mock_micro_graph.cc,
          kernels/kernel_runner.cc), folders named test(s)/testing/examples/benchmarks/tools/python/docs, the
          platform folders of tensorflow/lite/micro (cortex_m_generic, cortex_m_corstone_300, arc_*, ceva,
          hexagon, bluepill, chre, riscv32_generic, ...: only direct children and the three folders above are
          read), the optimised-kernel folders of other vendors (kernels/arc_mli, ceva, xtensa, ethos_u) and
          TFLM's Signal library (signal/: audio front-end ops, which need kissfft; bundles carry their own C
          front end).
platform: debug_log.cc comes from tensorflow/lite/micro/cortex_m_generic/ (DebugLog hands each line to the
          callback set by RegisterDebugLogCallback, declared in cortex_m_generic/debug_log_callback.h); the
          generic micro_time.cc stays (0 ticks: TFLM's Cortex-M one needs the Cortex_DFP device headers).
"""

RUNTIME_DIRS = ("tensorflow/lite/micro", "tensorflow/lite/micro/arena_allocator",
                "tensorflow/lite/micro/memory_planner", "tensorflow/lite/micro/tflite_bridge")
SHARED_TFLITE_PRUNE = ("tensorflow/lite/micro", "tensorflow/lite/experimental")
EXCLUDED_FILES = ("tensorflow/lite/array.cc",)
EXCLUDED_PATTERNS = ("*_test.cc", "*_test.c", "*_test_common.cc", "*benchmark.cc", "*_generated_data.cc",
                     "test_helpers.cc", "test_helper_custom_ops.cc", "fake_micro_context.cc",
                     "mock_micro_graph.cc", "kernel_runner.cc")
EXCLUDED_DIR_NAMES = ("test", "tests", "testing", "testdata", "examples", "benchmarks", "tools", "python", "docs")
CMSIS_NN_FLOAT_PATTERNS = ("*_f16.c", "*_f32.c", "arm_nntables_flt.c")
PLATFORM_DIR = "tensorflow/lite/micro/cortex_m_generic"
PLATFORM_FILES = ("debug_log.cc",)


@dataclasses.dataclass(frozen=True)
class LibrarySources:
    """Everything a build of TFLM (+ CMSIS-NN) for one target needs; paths are absolute.

    ``runtime_sources`` compile with ``core_opt`` (TFLM: -Os), ``kernel_sources`` and ``cmsis_nn_sources`` with
    ``kernel_opt`` (TFLM: -O2). ``arch_flags`` must also be given to the linker; ``defines`` are without ``-D``.
    """

    tree: TFLMTree
    kernels: str
    target: Target
    runtime_sources: Tuple[Path, ...]
    kernel_sources: Tuple[Path, ...]
    cmsis_nn_sources: Tuple[Path, ...]
    include_dirs: Tuple[Path, ...]
    defines: Tuple[str, ...]
    common_flags: Tuple[str, ...]
    cxx_flags: Tuple[str, ...]
    c_flags: Tuple[str, ...]
    core_opt: str = "-Os"
    kernel_opt: str = "-O2"

    @property
    def arch_flags(self) -> Tuple[str, ...]:
        return self.target.arch_flags

    @property
    def all_sources(self) -> Tuple[Path, ...]:
        return self.runtime_sources + self.kernel_sources + self.cmsis_nn_sources

    @property
    def name(self) -> str:
        """``tflm-<target>-<kernels>``: the library's name (``lib<name>.a``)."""
        return f"tflm-{self.target.name}-{self.kernels}"

    def compile_flags(self, language: str) -> List[str]:
        """Flags for one ``language`` (``"c"`` / ``"c++"``) without the optimisation level: architecture,
        common, language, ``-D`` defines and ``-I`` include folders."""
        lang = self.cxx_flags if language == "c++" else self.c_flags
        return ([*self.arch_flags, *self.common_flags, *lang] + [f"-D{d}" for d in self.defines]
                + [f"-I{d}" for d in self.include_dirs])


def library_sources(tree: TFLMTree, kernels: str = "cmsis-nn", target: str = "cortex-m4f") -> LibrarySources:
    """The :class:`LibrarySources` of ``tree`` for ``kernels`` and ``target`` (rules: :data:`SELECTION_RULES`).

    Raises ConfigError for an unknown ``kernels`` / ``target`` or a tree without what ``kernels`` needs.
    """
    _check_choice("kernels", kernels, KERNELS)
    _check_choice("target", target, tuple(TARGETS))
    tree = find_tflm_tree(tree.root, kernels)
    return LibrarySources(
        tree=tree, kernels=kernels, target=TARGETS[target],
        runtime_sources=tuple(_runtime_sources(tree.root)),
        kernel_sources=tuple(_kernel_sources(tree.root, kernels)),
        cmsis_nn_sources=tuple(_cmsis_nn_sources(tree) if kernels == "cmsis-nn" else ()),
        include_dirs=tuple(_include_dirs(tree, kernels)),
        defines=tuple(_defines(kernels, TARGETS[target])),
        common_flags=COMMON_FLAGS, cxx_flags=CXX_FLAGS, c_flags=C_FLAGS)


def _excluded(path: Path) -> bool:
    return any(fnmatch.fnmatchcase(path.name, p) for p in EXCLUDED_PATTERNS)


def _files(folder: Path, suffixes: Tuple[str, ...]) -> List[Path]:
    """Direct children of ``folder`` with one of ``suffixes``, not excluded, sorted."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in suffixes and not _excluded(p))


def _walk(root: Path, start: str, prune: Sequence[str], suffixes: Tuple[str, ...]) -> List[Path]:
    """Files with ``suffixes`` under ``root/start``, skipping the ``prune`` folders (relative to ``root``),
    folders named in :data:`EXCLUDED_DIR_NAMES` and excluded file names; sorted."""
    found = []
    for folder, dirs, names in os.walk(root / start):
        rel = Path(folder).relative_to(root).as_posix()
        dirs[:] = [d for d in dirs if d not in EXCLUDED_DIR_NAMES and f"{rel}/{d}" not in prune]
        found += [Path(folder) / n for n in names if Path(n).suffix in suffixes and not _excluded(Path(n))]
    return sorted(found)


def _runtime_sources(root: Path) -> List[Path]:
    micro = [p for d in RUNTIME_DIRS for p in _files(root / d, (".cc", ".c"))]
    shared = [p for p in _walk(root, "tensorflow", SHARED_TFLITE_PRUNE, (".cc", ".c"))
              if p.relative_to(root).as_posix() not in EXCLUDED_FILES]
    return _specialize(micro, root / PLATFORM_DIR, PLATFORM_FILES) + shared


def _kernel_sources(root: Path, kernels: str) -> List[Path]:
    base = _files(root / "tensorflow/lite/micro/kernels", (".cc",))
    if kernels == "reference":
        return base
    folder = root / "tensorflow/lite/micro/kernels/cmsis_nn"
    return _specialize(base, folder, tuple(p.name for p in _files(folder, (".cc",))))


def _specialize(base: List[Path], folder: Path, names: Tuple[str, ...]) -> List[Path]:
    """``base`` with each file whose name is in ``names`` replaced by ``folder``'s file of that name."""
    return [folder / p.name if p.name in names and (folder / p.name).is_file() else p for p in base]


def _cmsis_nn_sources(tree: TFLMTree) -> List[Path]:
    return [p for p in _walk(tree.cmsis_nn, "Source", (), (".c",))
            if not any(fnmatch.fnmatchcase(p.name, f) for f in CMSIS_NN_FLOAT_PATTERNS)]


def _include_dirs(tree: TFLMTree, kernels: str) -> List[Path]:
    d = tree.downloads
    dirs = [tree.root, d, d / "gemmlowp", d / "flatbuffers/include", d / "ruy"]
    if kernels == "cmsis-nn":
        dirs += [tree.cmsis, tree.cmsis_nn, tree.cmsis / "CMSIS/Core/Include", tree.cmsis_nn / "Include"]
    return dirs


#: As TFLM's Makefile and cortex_m_generic_makefile.inc set them (warnings left to the user).
COMMON_FLAGS = ("-fno-unwind-tables", "-fno-asynchronous-unwind-tables", "-ffunction-sections", "-fdata-sections",
                "-fmessage-length=0", "-fomit-frame-pointer", "-funsigned-char", "-mlittle-endian")
CXX_FLAGS = ("-std=c++17", "-fno-rtti", "-fno-exceptions", "-fno-threadsafe-statics")
C_FLAGS = ("-std=c17",)


def _defines(kernels: str, target: Target) -> List[str]:
    defines = ["TF_LITE_STATIC_MEMORY", "TF_LITE_DISABLE_X86_NEON", "TF_LITE_MCU_DEBUG_LOG",
               "KERNELS_OPTIMIZED_FOR_SPEED", target.cpu_define]
    if kernels == "cmsis-nn":
        defines += ["CMSIS_NN", "ARM_NN_ENABLE_F16=0", "ARM_NN_ENABLE_F32=0"]
    return defines


# ------------------------------------------------------------------------------------------------ build files


def write_library_makefile(lib: LibrarySources, build_dir: os.PathLike) -> Path:
    """Write ``build_dir/Makefile`` that builds ``build_dir/lib<lib.name>.a`` (``make -j N``); returns its path.

    Objects go to ``build_dir/obj/{core,kernels,cmsis_nn}/<path in the tree>.o`` with ``-MMD`` dependency files,
    so a second ``make`` only recompiles what changed. Variables (``CC``, ``CXX``, ``AR``, ``ARCH_FLAGS``,
    ``EXTRA_FLAGS``) can be overridden on make's command line.
    """
    if any(c.isspace() for c in str(lib.tree.root)):
        raise ConfigError(f"the TFLM tree {lib.tree.root} has a space in its path, which make cannot handle: "
                          f"move it (or link it) to a path without spaces")
    out = Path(build_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "Makefile"
    path.write_text(_makefile_text(lib))
    return path


def _rel(lib: LibrarySources, files: Sequence[Path]) -> str:
    return " \\\n  ".join(p.relative_to(lib.tree.root).as_posix() for p in files)


def _makefile_text(lib: LibrarySources) -> str:
    groups = (("CORE", "core", lib.runtime_sources, lib.core_opt), ("KERNEL", "kernels", lib.kernel_sources,
              lib.kernel_opt), ("CMSIS_NN", "cmsis_nn", lib.cmsis_nn_sources, lib.kernel_opt))
    head = [f"# TensorFlow Lite Micro ({lib.kernels} kernels) for {lib.target.name}, written by keras_dssdn",
            "# (keras_dssdn/firmware/tflm_tree.py); selection rules: docs/firmware.md.",
            f"TFLM_ROOT := {lib.tree.root.as_posix()}",
            "CC := arm-none-eabi-gcc", "CXX := arm-none-eabi-g++", "AR := arm-none-eabi-ar",
            f"ARCH_FLAGS := {' '.join(lib.arch_flags)}",
            "EXTRA_FLAGS :=",
            f"COMMON_FLAGS := {' '.join(lib.common_flags)} " + " ".join(f"-D{d}" for d in lib.defines),
            "INCLUDES := " + " ".join("-I$(TFLM_ROOT)" + ("/" + p.relative_to(lib.tree.root).as_posix()
                                      if p != lib.tree.root else "") for p in lib.include_dirs),
            f"CXXFLAGS := $(ARCH_FLAGS) $(COMMON_FLAGS) {' '.join(lib.cxx_flags)} $(INCLUDES) $(EXTRA_FLAGS) -MMD -MP",
            f"CFLAGS := $(ARCH_FLAGS) $(COMMON_FLAGS) {' '.join(lib.c_flags)} $(INCLUDES) $(EXTRA_FLAGS) -MMD -MP",
            f"LIB := lib{lib.name}.a", ""]
    body, objs = [], []
    for var, sub, files, opt in groups:
        body.append(f"{var}_SRCS := \\\n  {_rel(lib, files)}\n" if files else f"{var}_SRCS :=\n")
        body.append(f"{var}_OBJS := $(addprefix obj/{sub}/,$(addsuffix .o,$(basename $({var}_SRCS))))")
        body.append(f"obj/{sub}/%.o: $(TFLM_ROOT)/%.cc\n\t@mkdir -p $(dir $@)\n\t$(CXX) $(CXXFLAGS) {opt} -c $< -o $@")
        body.append(f"obj/{sub}/%.o: $(TFLM_ROOT)/%.c\n\t@mkdir -p $(dir $@)\n\t$(CC) $(CFLAGS) {opt} -c $< -o $@\n")
        objs.append(f"$({var}_OBJS)")
    tail = [f"OBJS := {' '.join(objs)}", "all: $(LIB)",
            "$(LIB): $(OBJS)\n\t@rm -f $@\n\t$(AR) rcs $@ $(OBJS)",
            "clean:\n\trm -rf obj $(LIB)", ".PHONY: all clean", "-include $(OBJS:.o=.d)", ""]
    return "\n".join(head + body + tail)


def write_library_cmake(lib: LibrarySources, folder: os.PathLike) -> Path:
    """Write ``folder/CMakeLists.txt`` defining the static library target ``lib.name`` (same sources, flags and
    per-group optimisation levels as the Makefile) for ``add_subdirectory``; returns its path. The project
    sets the cross compilers (e.g. ``-DCMAKE_TOOLCHAIN_FILE``) and links with the same ``ARCH_FLAGS``."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "CMakeLists.txt"
    path.write_text(_cmake_text(lib))
    return path


def _cmake_text(lib: LibrarySources) -> str:
    root = lib.tree.root.as_posix()

    def listing(files: Sequence[Path]) -> str:
        return "\n".join(f"  ${{TFLM_ROOT}}/{p.relative_to(lib.tree.root).as_posix()}" for p in files)

    lines = [f"# TensorFlow Lite Micro ({lib.kernels} kernels) for {lib.target.name}, written by keras_dssdn",
             "cmake_minimum_required(VERSION 3.16)",
             f'set(TFLM_ROOT "{root}" CACHE PATH "TensorFlow Lite Micro tree with its downloads/ folder")',
             f"set(TFLM_CORE_SRCS\n{listing(lib.runtime_sources)})",
             f"set(TFLM_KERNEL_SRCS\n{listing(lib.kernel_sources + lib.cmsis_nn_sources)})",
             f"add_library({lib.name} STATIC ${{TFLM_CORE_SRCS}} ${{TFLM_KERNEL_SRCS}})",
             f"set_source_files_properties(${{TFLM_CORE_SRCS}} PROPERTIES COMPILE_OPTIONS {lib.core_opt})",
             f"set_source_files_properties(${{TFLM_KERNEL_SRCS}} PROPERTIES COMPILE_OPTIONS {lib.kernel_opt})",
             f"target_include_directories({lib.name} PUBLIC\n" + "\n".join(
                 "  ${TFLM_ROOT}" + ("/" + p.relative_to(lib.tree.root).as_posix() if p != lib.tree.root else "")
                 for p in lib.include_dirs) + ")",
             f"target_compile_definitions({lib.name} PUBLIC {' '.join(lib.defines)})",
             f"target_compile_options({lib.name} PUBLIC {' '.join(lib.arch_flags)} {' '.join(lib.common_flags)}",
             f"  $<$<COMPILE_LANGUAGE:CXX>:{';'.join(lib.cxx_flags)}>",
             f"  $<$<COMPILE_LANGUAGE:C>:{';'.join(lib.c_flags)}>)",
             f"target_link_options({lib.name} INTERFACE {' '.join(lib.arch_flags)})", ""]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------ building


@dataclasses.dataclass(frozen=True)
class BuiltLibrary:
    """A static library :func:`build_library` made: its path, the sources, the wall-clock seconds make took and
    the CPU seconds (user + system) of make and the compilers."""

    archive: Path
    sources: LibrarySources
    seconds: float
    jobs: int
    cpu_seconds: float = 0.0


def build_library(lib: LibrarySources, build_dir: os.PathLike, jobs: int = 2,
                  toolchain_prefix: str = "arm-none-eabi-") -> BuiltLibrary:
    """Write the Makefile of ``lib`` into ``build_dir`` and run ``make -j jobs``: ``build_dir/lib<name>.a``.

    A second call recompiles nothing that is up to date. Raises ConfigError when the compiler is not on PATH,
    ExportError (with the end of make's output) when compiling fails.
    """
    cxx = toolchain_prefix + "g++"
    if shutil.which(cxx) is None:
        raise ConfigError(f"{cxx} is not on PATH: install the Arm GNU toolchain (Debian/Ubuntu: apt-get install "
                          f"gcc-arm-none-eabi libnewlib-arm-none-eabi) to build TensorFlow Lite Micro")
    makefile = write_library_makefile(lib, build_dir)
    tools = [f"CC={toolchain_prefix}gcc", f"CXX={cxx}", f"AR={toolchain_prefix}ar"]
    start, cpu = time.monotonic(), _children_cpu()
    done = subprocess.run(["make", "-C", str(makefile.parent), f"-j{jobs}", *tools], capture_output=True, text=True)
    seconds, cpu = time.monotonic() - start, _children_cpu() - cpu
    if done.returncode != 0:
        tail = " | ".join((done.stdout + done.stderr).strip().splitlines()[-6:])
        raise ExportError(f"building TensorFlow Lite Micro in {makefile.parent} failed (make exit {done.returncode}; "
                          f"run make -C {makefile.parent} to see all): {tail}")
    return BuiltLibrary(makefile.parent / f"lib{lib.name}.a", lib, seconds, jobs, cpu)


def _children_cpu() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


# ------------------------------------------------------------------------------------------------ preparing


@dataclasses.dataclass(frozen=True)
class Component:
    """One upstream project of the tree: where it goes, how to find its snapshot, where TFLM pins it.

    ``pin`` is (file in the TFLM tree, regex whose group 1 is the commit or tag); ``patch`` a patch file in the
    TFLM tree that TFLM's download script applies (None: none).
    """

    name: str
    repo: str  # GitHub owner/name
    folder: str  # relative to the TFLM root
    pin: Optional[Tuple[str, str]]
    patch: Optional[str] = None
    optional: bool = False  # only TFLM's own make needs it (not library_sources): recorded as absent if missing

    def url(self, ref: str) -> str:
        return f"https://github.com/{self.repo}/archive/{ref}.zip"


MAKE = "tensorflow/lite/micro/tools/make"
TFLM = Component("tflite-micro", "tensorflow/tflite-micro", "", None)
COMPONENTS: Tuple[Component, ...] = (
    Component("flatbuffers", "google/flatbuffers", f"{DOWNLOADS}/flatbuffers",
              (f"{MAKE}/flatbuffers_download.sh", r'ZIP_PREFIX="([^"]+)"'), f"{MAKE}/flatbuffers.patch"),
    Component("gemmlowp", "google/gemmlowp", f"{DOWNLOADS}/gemmlowp",
              (f"{MAKE}/third_party_downloads.inc", r"GEMMLOWP_URL\s*:?=\s*\"[^\"]*/archive/([0-9a-f]+)\.zip")),
    Component("ruy", "google/ruy", f"{DOWNLOADS}/ruy",
              (f"{MAKE}/third_party_downloads.inc", r"RUY_URL\s*:?=\s*\"[^\"]*/archive/([0-9a-f]+)\.zip")),
    Component("kissfft", "mborgerding/kissfft", f"{DOWNLOADS}/kissfft",
              (f"{MAKE}/kissfft_download.sh", r'KISSFFT_URL="[^"]*/tags/([^"/]+)\.zip"'),
              "third_party/kissfft/kissfft.patch"),
    Component("cmsis", "ARM-software/CMSIS_6", f"{DOWNLOADS}/cmsis",
              (f"{MAKE}/ext_libs/cmsis_download.sh", r'ZIP_PREFIX="([0-9a-f]+)"')),
    Component("cmsis_nn", "ARM-software/CMSIS-NN", f"{DOWNLOADS}/cmsis_nn",
              (f"{MAKE}/ext_libs/cmsis_nn_download.sh", r'ZIP_PREFIX_NN="([0-9a-f]+)"')),
    # device headers (ARMCM4.h, ...) for TFLM's cortex_m_generic micro_time.cc in TFLM's own make
    Component("cortex_dfp", "ARM-software/Cortex_DFP", f"{DOWNLOADS}/cmsis/Cortex_DFP",
              (f"{MAKE}/ext_libs/cmsis_download.sh", r'ZIP_PREFIX="([0-9a-f]+)"\s*CMSIS_DFP_URL'), optional=True),
)


def _git(git_dir: Path, *args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(["git", f"--git-dir={git_dir}", *args], capture_output=True, **kw)


def _git_dir(folder: Path) -> Optional[Path]:
    """The git directory of a bare repository or a clone at ``folder``, else None."""
    for cand in (folder / ".git", folder):
        if (cand / "HEAD").is_file() and (cand / "objects").is_dir():
            return cand
    return None


def find_snapshot(mirrors: Path, comp: Component) -> Optional[Path]:
    """A snapshot of ``comp`` in ``mirrors``: a git repository (bare or cloned) named ``owner+name/repo``,
    ``owner+name``, ``name`` or ``name.git``, or an unpacked / zipped GitHub archive ``name-REF[.zip]``."""
    owner_name = comp.repo.replace("/", "+")
    base = comp.repo.split("/")[1]
    for cand in (mirrors / owner_name / "repo", mirrors / owner_name, mirrors / base, mirrors / f"{base}.git"):
        if cand.is_dir() and _git_dir(cand) is not None:
            return _git_dir(cand)
    archives = sorted(mirrors.glob(f"{base}-*"))
    return archives[0] if archives else None


def _resolve(git_dir: Path, ref: str) -> Optional[str]:
    done = _git(git_dir, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", text=True)
    return done.stdout.strip() if done.returncode == 0 else None


def _extract(snapshot: Path, ref: Optional[str], dest: Path) -> dict:
    """Put the files of ``snapshot`` at ``ref`` (None: as it is) into the new folder ``dest``; the record of what
    was used (commit, and whether it is the pinned one)."""
    dest.mkdir(parents=True, exist_ok=True)
    if _git_dir(snapshot) is None:
        return _extract_archive(snapshot, dest, ref)
    used = _resolve(snapshot, ref) if ref else None
    record = {"source": str(snapshot), "pinned": ref, "commit": used, "pinned_found": used is not None}
    if used is None:
        used = _resolve(snapshot, "HEAD")
        record.update(commit=used, note=f"pinned {ref} is not in the snapshot: HEAD used" if ref else "HEAD")
    archive = _git(snapshot, "archive", "--format=tar", used)
    if archive.returncode != 0:
        raise ConfigError(f"git archive of {snapshot} at {used} failed: {archive.stderr.decode(errors='replace')}")
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    return record


def _extract_archive(snapshot: Path, dest: Path, ref: Optional[str]) -> dict:
    """An unpacked GitHub archive folder (copied) or a zip of one (its single top folder unpacked)."""
    if snapshot.is_dir():
        shutil.copytree(snapshot, dest, dirs_exist_ok=True, symlinks=True)
    else:
        with zipfile.ZipFile(snapshot) as z:
            tops = {n.split("/", 1)[0] for n in z.namelist()}
            if len(tops) != 1:
                raise ConfigError(f"{snapshot} is not a GitHub archive (one top folder expected, found {len(tops)})")
            top = tops.pop()
            for info in z.infolist():
                rel = info.filename.split("/", 1)[1] if "/" in info.filename else ""
                if rel and not info.is_dir():
                    target = dest / rel
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(z.read(info))
                    if (info.external_attr >> 16) & 0o111:  # TFLM's make runs its scripts: keep them executable
                        target.chmod(0o755)
            snapshot = snapshot.with_name(top)
    matches = bool(ref) and snapshot.name.endswith(ref.lstrip("v"))
    return {"source": str(snapshot), "pinned": ref, "commit": None, "pinned_found": matches,
            "note": "archive: its name " + ("ends with" if matches else "does not end with") + " the pinned ref"}


def _pinned_ref(root: Path, comp: Component) -> str:
    """The commit or tag TFLM's own download scripts fetch for ``comp`` (read from the TFLM tree)."""
    rel, pattern = comp.pin
    try:
        found = re.search(pattern, (root / rel).read_text())
    except OSError:
        found = None
    if not found:
        raise ConfigError(f"cannot read the pinned version of {comp.name} from {root / rel} (looked for "
                          f"{pattern!r}); is {root} a tflite-micro checkout?")
    return found.group(1)


def _apply_patch(root: Path, comp: Component, dest: Path) -> Optional[str]:
    if comp.patch is None:
        return None
    patch = root / comp.patch
    done = subprocess.run(["git", "apply", "-p1", str(patch)], cwd=dest, capture_output=True, text=True)
    if done.returncode != 0:
        raise ConfigError(f"TFLM's patch {patch} does not apply to {comp.name} in {dest}: {done.stderr.strip()}")
    return comp.patch


def prepare_tree(mirrors: os.PathLike, out: os.PathLike, tflm_ref: str = TFLM_COMMIT) -> dict:
    """Lay out a TFLM tree at the new folder ``out`` from local snapshots in ``mirrors``; never downloads.

    tflite-micro at ``tflm_ref`` goes to ``out``; each of :data:`COMPONENTS` at the commit / tag that tree's
    download scripts pin (HEAD, recorded as such, when the snapshot lacks it) to its folder under
    :data:`DOWNLOADS`, with TFLM's patch applied (an optional one without a snapshot is recorded as absent);
    an empty ``downloads/pigweed`` keeps TFLM's own make from cloning pigweed (needed by its test runner only).
    Writes and returns the record ``out/`` :data:`MANIFEST`.
    Raises ConfigError when ``out`` exists and is not empty or a snapshot is missing.
    """
    mirrors, out = Path(mirrors), Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"{out} exists and is not empty: give a new folder to lay the TFLM tree out in")
    snaps = {c.name: find_snapshot(mirrors, c) for c in (TFLM,) + COMPONENTS}
    absent = [c.repo for c in (TFLM,) + COMPONENTS if snaps[c.name] is None and not c.optional]
    if absent:
        raise ConfigError(f"no snapshot of {', '.join(absent)} in {mirrors} (looked for owner+name/repo, owner+name, "
                          f"name, name.git git repositories and name-REF archives); docs/firmware.md lists them")
    made = not out.exists()
    try:
        record = _lay_out(snaps, out, tflm_ref)
    except BaseException:
        _remove_partial(out, made)
        raise
    (out / MANIFEST).write_text(json.dumps(record, indent=1) + "\n")
    return record


def _lay_out(snaps: Dict[str, Path], out: Path, tflm_ref: str) -> dict:
    record = {"tflite-micro": dict(_extract(snaps["tflite-micro"], tflm_ref, out), url=TFLM.url(tflm_ref))}
    for comp in COMPONENTS:
        if snaps[comp.name] is None:  # an optional one (prepare_tree refused missing others)
            record[comp.name] = _absent(out, comp)
            continue
        ref = _pinned_ref(out, comp)
        entry = _extract(snaps[comp.name], ref, out / comp.folder)
        record[comp.name] = dict(entry, url=comp.url(ref), patch=_apply_patch(out, comp, out / comp.folder))
    (out / DOWNLOADS / "pigweed").mkdir(exist_ok=True)
    return record


def _absent(out: Path, comp: Component) -> dict:
    """The record of an optional component without a snapshot (its pin, if the TFLM tree names one)."""
    try:
        ref = _pinned_ref(out, comp)
    except ConfigError:
        ref = None
    return {"pinned": ref, "commit": None, "pinned_found": False, "url": comp.url(ref) if ref else None,
            "note": "no snapshot: absent (only TFLM's own make needs it)"}


def _remove_partial(out: Path, made: bool) -> None:
    """Remove what a failed :func:`prepare_tree` wrote: ``out`` was new (``made``) or empty, so all in it is ours."""
    if not out.is_dir():
        return
    if made:
        shutil.rmtree(out)
        return
    for child in out.iterdir():
        shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()


# ------------------------------------------------------------------------------------------------ command line


def _describe(tree: TFLMTree) -> str:
    lines = [f"TFLM tree {tree.root}"]
    for name, entry in (tree.manifest() or {}).items():
        lines.append(f"  {name:13s} {entry.get('commit') or entry.get('source')}"
                     + ("" if entry.get("pinned_found") else f"  ({entry.get('note', 'not the pinned version')})"))
    for kernels in KERNELS:
        lib = library_sources(tree, kernels, "cortex-m4f")
        lines.append(f"  {kernels:13s} {len(lib.runtime_sources)} runtime, {len(lib.kernel_sources)} kernel, "
                     f"{len(lib.cmsis_nn_sources)} CMSIS-NN sources")
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``prepare --from-mirrors DIR --out DIR [--tflm-ref REF]``, ``check [DIR]``, ``build [DIR] --build-dir DIR
    [--target T] [--kernels K] [-j N]``, ``rules``."""
    import argparse

    from keras_dssdn.cli.common import run_command

    parser = argparse.ArgumentParser(prog="python -m keras_dssdn.firmware.tflm_tree", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare", help="lay out a TFLM tree from local snapshots (no network)")
    p.add_argument("--from-mirrors", required=True, type=Path)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--tflm-ref", default=TFLM_COMMIT)
    c = sub.add_parser("check", help="check a TFLM tree (default: $TFLM_ROOT) and count its sources")
    c.add_argument("tflm", nargs="?")
    b = sub.add_parser("build", help="compile the static library of one target and kernels")
    b.add_argument("tflm", nargs="?")
    b.add_argument("--build-dir", required=True, type=Path)
    b.add_argument("--target", default="cortex-m4f", choices=sorted(TARGETS))
    b.add_argument("--kernels", default="cmsis-nn", choices=KERNELS)
    b.add_argument("-j", "--jobs", type=int, default=2)
    sub.add_parser("rules", help="print the file selection rules")
    args = parser.parse_args(argv)

    def body() -> int:
        if args.command == "prepare":
            print(json.dumps(prepare_tree(args.from_mirrors, args.out, args.tflm_ref), indent=1))
        elif args.command == "check":
            print(_describe(find_tflm_tree(args.tflm)))
        elif args.command == "build":
            lib = library_sources(find_tflm_tree(args.tflm, args.kernels), args.kernels, args.target)
            built = build_library(lib, args.build_dir, args.jobs)
            print(f"{built.archive}: {len(lib.all_sources)} sources, make -j{built.jobs} {built.seconds:.1f} s wall, "
                  f"{built.cpu_seconds:.1f} s CPU")
        else:
            print(SELECTION_RULES, end="")
        return 0

    return run_command(body)


if __name__ == "__main__":
    sys.exit(main())
