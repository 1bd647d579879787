"""Linker truth: flash and RAM of a program from its ELF and map file, split by what the bytes belong to.

:func:`memory_report` reads ``<program>.map`` (GNU ld's "Linker script and memory map") and the ELF's symbols
(``arm-none-eabi-nm``) and returns bytes per part and region:

* parts: ``model`` (``dssdn_model_data``, ``dssdn_model_settings``), ``front end`` (``dssdn_frontend``),
  ``TFLM runtime`` and ``TFLM kernels`` / ``CMSIS-NN`` (members of the TFLM library, told apart by the source lists
  of :class:`~keras_dssdn.firmware.tflm_tree.LibrarySources`), ``tensor arena`` (the ``tensor_arena`` symbol),
  ``harness`` (start-up code and ``fw_main``: semihosting file I/O, not needed by an application), ``C/C++
  libraries`` (newlib, libm, libgcc, libstdc++, librdimon), ``stack`` and ``heap`` (the linker script's
  reservations; the heap only serves the harness's stdio buffers);
* regions: ``flash`` = ``.text`` (code and read-only data) + ``.data``'s initial values + tables; ``ram`` =
  ``.data`` + ``.bss`` + heap + stack.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections import defaultdict
from typing import Dict, Iterable, Tuple

FLASH_SECTIONS = (".text", ".ARM.extab", ".ARM.exidx", ".preinit_array", ".init_array", ".fini_array", ".data")
RAM_SECTIONS = (".data", ".bss", ".heap", ".stack")
_OUTPUT = re.compile(r"^(\.[\w.]+)\s+0x[0-9a-f]+\s+0x([0-9a-f]+)")
_INPUT = re.compile(r"^ (\S+)?\s+0x([0-9a-f]+)\s+0x([0-9a-f]+)\s+(\S.*)$")
_MEMBER = re.compile(r"^(.*\.a)\((.+)\)$")


def map_entries(map_text: str) -> Iterable[Tuple[str, str, int]]:
    """``(output section, input file, bytes)`` for every input section of the map's memory map (fill and
    ``*fill*`` lines skipped; wrapped lines joined)."""
    start = map_text.find("Linker script and memory map")
    lines = map_text[start:].splitlines()
    section, pending = None, None
    for line in lines:
        out = _OUTPUT.match(line)
        if out or (line and not line[0].isspace()):
            section = out.group(1) if out else (line.split()[0] if line.startswith(".") else None)
            pending = None
            continue
        if section is None:
            continue
        if re.match(r"^ \.\S+$", line):        # a long input section name; its numbers follow on the next line
            pending = line.strip()
            continue
        m = _INPUT.match(line if pending is None else f" {pending} {line.strip()}")
        pending = None
        if m and m.group(1) not in ("*fill*",) and int(m.group(3), 16) and not line.lstrip().startswith("*fill*"):
            yield section, m.group(4).strip(), int(m.group(3), 16)


def _stems(paths) -> set:
    return {os.path.splitext(os.path.basename(str(p)))[0] for p in paths}


def classify(input_file: str, lib=None) -> str:
    """The part an input file (``path.o`` or ``lib.a(member.o)``) belongs to (module doc)."""
    member = _MEMBER.match(input_file)
    name = os.path.basename(member.group(2) if member else input_file)
    stem = re.sub(r"^\d{4}_", "", os.path.splitext(name)[0])
    if member:
        archive = os.path.basename(member.group(1))
        if archive.startswith("libtflm"):
            if lib is not None and stem in _stems(lib.cmsis_nn_sources):
                return "CMSIS-NN"
            if lib is not None and stem in _stems(lib.kernel_sources) and stem not in _stems(lib.runtime_sources):
                return "TFLM kernels"
            return "TFLM runtime" if lib is None or stem in _stems(lib.runtime_sources) else "TFLM kernels"
        return "C/C++ libraries"
    if stem in ("dssdn_model_data", "dssdn_model_settings"):
        return "model"
    if stem == "dssdn_frontend":
        return "front end"
    if stem in ("startup", "fw_main", "fe_main"):
        return "harness"
    if "/arm-none-eabi/" in input_file or "/gcc/" in input_file:
        return "C/C++ libraries"
    return "other"


def symbol_size(elf: str, pattern: str, nm: str = "arm-none-eabi-nm") -> int:
    """Total size of the ELF's symbols whose name contains ``pattern``."""
    out = subprocess.run([nm, "-S", "-C", elf], capture_output=True, text=True, check=True).stdout
    total = 0
    for line in out.splitlines():
        parts = line.split(maxsplit=3)
        if len(parts) == 4 and pattern in parts[3]:
            total += int(parts[1], 16)
    return total


def section_sizes(elf: str, size: str = "arm-none-eabi-size") -> Dict[str, int]:
    """``{section: bytes}`` of ``arm-none-eabi-size -A``."""
    out = subprocess.run([size, "-A", elf], capture_output=True, text=True, check=True).stdout
    sizes = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0].startswith(".") and parts[1].isdigit():
            sizes[parts[0]] = int(parts[1])
    return sizes


def memory_report(elf: str, map_file: str, lib=None, nm: str = "arm-none-eabi-nm",
                  size: str = "arm-none-eabi-size") -> dict:
    """``{"flash": {part: bytes, "total": bytes}, "ram": {...}, "sections": {...}}`` (module doc). The totals
    equal the ELF's section sizes (flash: ``.text`` ... ``.data``; RAM: ``.data`` + ``.bss`` + heap + stack)."""
    with open(map_file, encoding="utf-8", errors="replace") as f:
        entries = list(map_entries(f.read()))
    flash, ram = defaultdict(int), defaultdict(int)
    for section, src, n in entries:
        part = classify(src, lib)
        if section in FLASH_SECTIONS:
            flash[part] += n
        if section in (".data", ".bss"):
            ram[part] += n
    sections = section_sizes(elf, size)
    for part, symbol in (("tensor arena", "tensor_arena"), ("front end", "namespace)::frontend")):
        n = symbol_size(elf, symbol, nm)  # fw_main.cc's tensor arena and front-end state: the application's RAM
        if n:
            ram["harness"] -= n
            ram[part] = ram.get(part, 0) + n
    ram["heap"], ram["stack"] = sections.get(".heap", 0), sections.get(".stack", 0)
    flash_total = sum(sections.get(s, 0) for s in FLASH_SECTIONS)
    ram_total = sum(sections.get(s, 0) for s in RAM_SECTIONS)
    flash["fill and merged strings"] = flash_total - sum(flash.values())
    ram["fill and merged strings"] = ram_total - sum(ram.values())
    return {"flash": {**dict(flash), "total": flash_total}, "ram": {**dict(ram), "total": ram_total},
            "sections": sections}


def application_ram(report: dict) -> int:
    """RAM an application of the same parts needs: the program's RAM without the harness's heap (stdio
    buffers) and the harness's own ``.data`` / ``.bss`` (file names, I/O blocks)."""
    ram = report["ram"]
    return ram["total"] - ram.get("heap", 0) - max(ram.get("harness", 0), 0)
