"""The whole program of a bundle on a Cortex-M target: its C front end and model in real TensorFlow Lite Micro.

:func:`read_bundle` reads what a bundle's ``micro/`` folder and ``frontend.json`` hold (nothing is ever written
into the bundle); :func:`write_program` writes, into an output folder, a copy of those files, ``fw_main.cc``
(``templates/``: drives the front end and the interpreter from semihosting files), the start-up code and linker
script of the target, and a plain ``Makefile`` that links them with a TFLM (+ CMSIS-NN) static library built
from the user's tree (:mod:`keras_dssdn.firmware.tflm_tree`); the bundle's ``dssdn_example.cc`` is compiled
too, as a check that it builds for the target, but not linked. :func:`build_program` runs make;
:func:`run_tensors` and :func:`run_pcm` run the ELF in QEMU:

* ``run_tensors``: int8 input tensors ``(n, n_mels, frames, 1)`` -> int8 outputs ``(n, classes)``;
* ``run_pcm``: int16 clips ``(clips, samples)`` through the C front end and the model -> int8 outputs per
  segment ``(clips * segments, classes)`` and the program's own class decision per clip.

Both also return what the program printed: ``arena_used_bytes()`` after ``AllocateTensors`` and the
instructions spent in ``Invoke()`` and in the front end (board counter under ``-icount shift=0``).
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from typing import Dict, List, Optional, Tuple

import numpy as np

from keras_dssdn.frontend_constants import FrontEndConstants
from keras_dssdn.fileio import read_json
from keras_dssdn.firmware import project, qemu
from keras_dssdn.firmware.errors import FirmwareRunError
from keras_dssdn.firmware.targets import Target
from keras_dssdn.manifest import verify_bundle

PROGRAM = "fw_main"
#: The files of a bundle's micro/ folder the program compiles (the example only as a build check).
MICRO_C = ("dssdn_frontend.c",)
MICRO_CXX = ("dssdn_model_data.cc", "dssdn_model_settings.cc")
MICRO_HEADERS = ("dssdn_frontend.h", "dssdn_model_data.h", "dssdn_model_settings.h", "dssdn_op_resolver.h")
EXAMPLE = "dssdn_example.cc"
MICRO_MODEL = "model_int8_micro.tflite"


@dataclasses.dataclass
class Bundle:
    """What the firmware needs from a bundle folder (read only)."""

    path: str
    micro: Dict[str, str]   # file name -> text, of micro/
    constants: FrontEndConstants  # frontend.json
    flatbuffer: bytes       # model_int8_micro.tflite (the bytes of micro/dssdn_model_data.cc)
    report: dict            # report.json ({} when absent)

    @property
    def arena_bytes(self) -> int:
        return int(self.report.get("arena_bytes") or 0)

    @property
    def input_shape(self) -> Tuple[int, int]:
        return self.constants.input_shape


def read_bundle(path: str) -> Bundle:
    """The :class:`Bundle` at ``path``, checked against its manifest (BundleIntegrityError naming a changed file);
    FileNotFoundError naming the first missing file."""
    needed = [os.path.join("micro", n) for n in MICRO_C + MICRO_CXX + MICRO_HEADERS + (EXAMPLE,)] + \
        ["frontend.json", MICRO_MODEL]
    for rel in needed:
        if not os.path.isfile(os.path.join(path, rel)):
            raise FileNotFoundError(f"{os.path.join(path, rel)} not found: {path} is not a keras_dssdn bundle "
                                    "(a folder written by dssdn-export, with micro/, frontend.json and "
                                    f"{MICRO_MODEL}).")
    verify_bundle(path)  # the files as exported: sizes and SHA-256 of manifest.json, else one line naming them
    micro = {}
    for name in sorted(os.listdir(os.path.join(path, "micro"))):
        with open(os.path.join(path, "micro", name), encoding="utf-8") as f:
            micro[name] = f.read()
    where = os.path.join(path, "frontend.json")
    constants = FrontEndConstants.from_json(read_json(where, "bundle file", "export the bundle again"), where)
    with open(os.path.join(path, MICRO_MODEL), "rb") as f:
        flatbuffer = f.read()
    report_path = os.path.join(path, "report.json")
    report = read_json(report_path, "bundle file", "export the bundle again") if os.path.isfile(report_path) else {}
    return Bundle(os.path.abspath(path), micro, constants, flatbuffer, report)


def _library_recipe(lib_dir: str) -> str:
    """The make recipe that builds the TFLM library with its own Makefile (tflm_tree.write_library_makefile)."""
    return f"$(MAKE) -C {lib_dir}"


def write_program(bundle: Bundle, lib, target: Target, out: str, library_dir: str,
                  flash_bytes: Optional[int] = None, ram_bytes: Optional[int] = None,
                  arena_bytes: Optional[int] = None) -> str:
    """Write the program's sources and Makefile into ``out`` (created); ``lib``: the
    :class:`~keras_dssdn.firmware.tflm_tree.LibrarySources` (its Makefile goes to ``library_dir``);
    ``flash_bytes`` / ``ram_bytes``: a named part's memory (default: the board's); ``arena_bytes``: a tensor
    arena of that size instead of the bundle's ``kTensorArenaSize``. Returns ``out``."""
    from keras_dssdn.firmware import tflm_tree

    os.makedirs(out, exist_ok=True)
    for name, text in bundle.micro.items():
        project.write_text(out, name, text)
    project.write_text(out, "fw_main.cc", project.template_text("fw_main.cc"))
    project.write_target_files(out, target, flash_bytes=flash_bytes, ram_bytes=ram_bytes)
    tflm_tree.write_library_makefile(lib, library_dir)
    archive = os.path.join(os.path.abspath(library_dir), f"lib{lib.name}.a")
    if archive.startswith(os.path.abspath(out) + os.sep):
        archive = os.path.relpath(archive, os.path.abspath(out))
    includes = ["."] + [str(p) for p in lib.include_dirs]
    cxx_flags = [*lib.common_flags, *lib.cxx_flags]
    sources = project.Sources(
        c=["startup.c", *MICRO_C], cxx=["fw_main.cc", *MICRO_CXX], includes=includes,
        defines=list(lib.defines) + ([f"DSSDN_ARENA_BYTES={int(arena_bytes)}"] if arena_bytes else []),
        roots={"TFLM_ROOT": str(lib.tree.root)}, cxx_flags=cxx_flags,
        libraries=[(archive, _library_recipe(os.path.abspath(library_dir)))], compile_only=[EXAMPLE])
    project.write_makefile(out, target, sources, PROGRAM,
                           f"the bundle {bundle.path} with TFLM ({lib.kernels} kernels)")
    return out


def build_program(out: str, make: str = "make", jobs: int = 2) -> str:
    """Build the program of :func:`write_program` (and its TFLM library if needed); the ELF's path."""
    return project.build(out, PROGRAM, make=make, jobs=jobs, timeout=4 * 3600)


def _cost(output: str) -> dict:
    line = qemu.find_line(output, "dssdn-cost ")
    arena = qemu.find_line(output, "dssdn-arena ")
    if line is None or arena is None:
        raise FirmwareRunError(f"{PROGRAM} printed no cost / arena line; its output ends: {output[-600:]}")
    f, a = qemu.parse_fields(line), qemu.parse_fields(arena)
    m = qemu.parse_fields(qemu.find_line(output, "dssdn-memory ") or "")
    per_tick = int(f["instructions_per_tick"])
    invokes, segments = max(int(f["invokes"]), 1), max(int(f["fe_segments"]), 1)
    return {"arena_used_bytes": int(a["used"]), "arena_size": int(a["size"]), "invokes": int(f["invokes"]),
            "stack_used_bytes": m.get("stack_used"), "heap_used_bytes": m.get("heap_used"),
            "model_instructions_per_invoke": int(f["model_ticks"]) * per_tick / invokes,
            "fe_segments": int(f["fe_segments"]),
            "fe_instructions_per_segment": int(f["fe_ticks"]) * per_tick / segments if f["fe_segments"] else None,
            "resolution": per_tick}


def run_tensors(elf: str, target: Target, tensors: np.ndarray, classes: int,
                timeout: float = 600.0) -> Tuple[np.ndarray, dict]:
    """int8 outputs ``(n, classes)`` of the model on the target for int8 inputs ``(n, ...)``, and :func:`_cost`."""
    x = np.ascontiguousarray(tensors, dtype=np.int8)
    with tempfile.TemporaryDirectory(prefix="dssdn_fw_") as tmp:
        x.tofile(os.path.join(tmp, "in.raw"))
        out = qemu.run_program(elf, target, ["tensors", "in.raw", "out.raw"], cwd=tmp, timeout=timeout)
        y = np.fromfile(os.path.join(tmp, "out.raw"), dtype=np.int8)
    return y.reshape(-1, classes), _cost(out)


def run_pcm(elf: str, target: Target, pcm: np.ndarray, classes: int,
            timeout: float = 600.0) -> Tuple[np.ndarray, List[int], dict]:
    """On the target, clips ``pcm`` (int16 ``(clips, samples)``) through the C front end and the model: int8
    outputs per segment ``(segments, classes)``, the program's class per clip, and :func:`_cost`."""
    x = np.ascontiguousarray(pcm, dtype="<i2")
    with tempfile.TemporaryDirectory(prefix="dssdn_fw_") as tmp:
        x.tofile(os.path.join(tmp, "pcm.raw"))
        out = qemu.run_program(elf, target, ["pcm", "pcm.raw", str(x.shape[1]), "out.raw"], cwd=tmp,
                               timeout=timeout)
        y = np.fromfile(os.path.join(tmp, "out.raw"), dtype=np.int8)
    clips = [qemu.parse_fields(line)["class"] for line in out.splitlines() if line.startswith("dssdn-clip ")]
    return y.reshape(-1, classes), clips, _cost(out)


def library_folder(base: str, lib) -> str:
    """Where the TFLM library of ``lib`` is built under ``base`` (``<base>/<name>``), shared by programs."""
    return os.path.join(base, lib.name)


