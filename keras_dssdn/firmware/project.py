"""The files of a bare-metal program for a :class:`~keras_dssdn.firmware.targets.Target`, and its build.

:func:`write_target_files` writes the start-up code (``startup.c``: vector table, reset handler, semihosting
command line), the linker script (``dssdn_target.ld``: the board's memory map, or the lengths of a named part)
and ``dssdn_target.h`` (the board's counter); :func:`write_makefile` a plain Makefile with one rule per source
(sources under a named root, e.g. the TFLM tree, are written as ``$(ROOT)/...`` so the file can be lifted);
:func:`build` runs make and turns a link that does not fit into :class:`FirmwareFitError` with the overflow in
bytes. Templates: ``keras_dssdn/firmware/templates/`` (``*.tmpl`` are :class:`string.Template` texts).
"""

from __future__ import annotations

import os
import re
import string
import subprocess
from dataclasses import dataclass, field
from importlib import resources
from typing import Dict, List, Optional, Sequence, Tuple

from keras_dssdn.firmware.errors import FirmwareBuildError, FirmwareFitError
from keras_dssdn.firmware.targets import Target

#: Stack of the programs (bytes): TFLM's Invoke and the front end's FFT stay far below it (checked by the
#: linker's placement only; the emulator does not detect an overflow).
STACK_BYTES = 8 * 1024
#: Heap for newlib's semihosting stdio buffers of the test harness (not needed by an application).
HEAP_BYTES = 8 * 1024
C_FLAGS = ("-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic")
CXX_FLAGS = ("-std=c++17", "-fno-rtti", "-fno-exceptions", "-fno-threadsafe-statics", "-fno-unwind-tables",
             "-Wall")


def template_text(name: str) -> str:
    """``keras_dssdn/firmware/templates/<name>`` (UTF-8)."""
    return resources.files("keras_dssdn.firmware").joinpath("templates", name).read_text(encoding="utf-8")


def render(name: str, **values) -> str:
    """``templates/<name>`` with ``${key}`` replaced by ``str(values[key])``."""
    return string.Template(template_text(name)).substitute({k: str(v) for k, v in values.items()})


def write_text(folder: str, name: str, text: str) -> str:
    path = os.path.join(folder, name)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return path


def write_target_files(folder: str, target: Target, flash_bytes: Optional[int] = None,
                       ram_bytes: Optional[int] = None, stack_bytes: int = STACK_BYTES,
                       heap_bytes: int = HEAP_BYTES) -> List[str]:
    """``startup.c``, ``dssdn_target.ld`` and ``dssdn_target.h`` in ``folder``; FLASH / RAM lengths are the
    board's unless ``flash_bytes`` / ``ram_bytes`` name a part (they must not exceed the board's)."""
    flash, ram = flash_bytes or target.flash_bytes, ram_bytes or target.ram_bytes
    comment = ("the board's memory" if not (flash_bytes or ram_bytes) else
               f"those of the named part ({flash // 1024} KB flash, {ram // 1024} KB RAM)")
    ld = render("dssdn_target.ld.tmpl", target=target.name, board=target.board, heap_bytes=heap_bytes,
                stack_bytes=stack_bytes, memory_comment=comment, flash_origin=f"0x{target.flash_origin:08x}",
                flash_bytes=flash, ram_origin=f"0x{target.ram_origin:08x}", ram_bytes=ram)
    header = render("dssdn_target.h.tmpl", target=target.name, board=target.board,
                    counter_address=f"0x{target.counter_address:08x}u", counter_hz=target.counter_hz,
                    instructions_per_tick=target.instructions_per_tick)
    return [write_text(folder, "startup.c", template_text("startup.c")),
            write_text(folder, "dssdn_target.ld", ld), write_text(folder, "dssdn_target.h", header)]


@dataclass
class Sources:
    """What a program compiles: C and C++ files (absolute or relative to the program folder), include folders,
    preprocessor definitions, and roots (``{"TFLM_ROOT": path}``) written as Makefile variables."""

    c: List[str] = field(default_factory=list)
    cxx: List[str] = field(default_factory=list)
    includes: List[str] = field(default_factory=list)
    defines: List[str] = field(default_factory=list)
    roots: Dict[str, str] = field(default_factory=dict)
    c_flags: Sequence[str] = C_FLAGS
    cxx_flags: Sequence[str] = CXX_FLAGS
    #: static libraries linked after the objects, each with the make recipe that builds it (or "")
    libraries: List[Tuple[str, str]] = field(default_factory=list)
    #: C++ sources compiled (as a check that they build for the target) but not linked
    compile_only: List[str] = field(default_factory=list)


def _rooted(path: str, roots: Dict[str, str]) -> str:
    """``path`` with a root folder replaced by ``$(NAME)`` (longest root first)."""
    for name, root in sorted(roots.items(), key=lambda kv: -len(kv[1])):
        root = os.path.abspath(root)
        if os.path.isabs(path) and (path == root or path.startswith(root + os.sep)):
            return f"$({name})" + path[len(root):]
    return path


def _object_name(index: int, source: str) -> str:
    stem = os.path.splitext(os.path.basename(source))[0]
    return f"$(BUILD)/{index:04d}_{stem}.o"


def write_makefile(folder: str, target: Target, sources: Sources, program: str, description: str,
                   opt: str = "-O2") -> str:
    """``folder/Makefile`` building ``<program>.elf`` (and ``.map``, ``.size``) from ``sources``."""
    roots = sources.roots
    rules, objects, checks = [], [], []
    jobs = [(s, "$(CC)", "$(CFLAGS)", objects) for s in sources.c] + \
        [(s, "$(CXX)", "$(CXXFLAGS)", objects) for s in sources.cxx] + \
        [(s, "$(CXX)", "$(CXXFLAGS)", checks) for s in sources.compile_only]
    for i, (src, compiler, flags, group) in enumerate(jobs):
        obj = _object_name(i, src)
        group.append(obj)
        rules.append(f"{obj}: {_rooted(src, roots)}\n\t@mkdir -p $(BUILD)\n\t{compiler} {flags} -c $< -o $@")
    libs = [_rooted(os.path.abspath(lib) if os.path.isabs(lib) else lib, roots) for lib, _ in sources.libraries]
    for lib, (_, recipe) in zip(libs, sources.libraries):
        if recipe:
            rules.append(f"{lib}:\n\t{recipe}")
    text = render(
        "Makefile.tmpl", target=target.name, board=target.board, description=description, program=program,
        roots="".join(f"{k} ?= {os.path.abspath(v)}\n" for k, v in roots.items()),
        cpu_flags=" ".join(target.cpu_flags), opt=opt, defines=" ".join(f"-D{d}" for d in sources.defines),
        includes=" \\\n  ".join(f"-I{_rooted(os.path.abspath(i) if os.path.isabs(i) else i, roots)}"
                                for i in sources.includes),
        c_flags=" ".join(sources.c_flags), cxx_flags=" ".join(sources.cxx_flags), machine=target.machine,
        objects=" \\\n  ".join(objects), checks=" ".join(checks), libraries=" ".join(libs),
        rules="\n\n".join(rules))
    return write_text(folder, "Makefile", text)


_OVERFLOW = re.compile(r"region `(\w+)' overflowed by (\d+) bytes")


def build(folder: str, program: str, make: str = "make", jobs: int = 2, timeout: float = 3600) -> str:
    """Run ``make`` in ``folder``; the ELF's path. :class:`FirmwareFitError` (overflow in bytes per region) when
    it does not fit the linker script's memory, :class:`FirmwareBuildError` (first error lines) otherwise."""
    proc = subprocess.run([make, "-C", folder, f"-j{jobs}"], capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        text = proc.stdout + proc.stderr
        overflow = {m.group(1): int(m.group(2)) for m in _OVERFLOW.finditer(text)}
        if overflow:
            raise FirmwareFitError(
                f"{program} does not fit the part's memory: "
                + ", ".join(f"{region} overflowed by {n:,} bytes" for region, n in sorted(overflow.items()))
                + f" (linker script {os.path.join(folder, 'dssdn_target.ld')}). Give a larger part (--ram-kb / "
                "--flash-kb) or a smaller model / arena.")
        errors = [line for line in text.splitlines() if "error:" in line or "undefined reference" in line][:8] \
            or text.splitlines()[-8:]
        raise FirmwareBuildError(f"{program} does not build in {folder} (make exit {proc.returncode}): "
                                 + " | ".join(line.strip() for line in errors)[:3000])
    return os.path.join(folder, program + ".elf")
