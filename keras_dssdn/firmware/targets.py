"""The Cortex-M targets a bundle is built for, and the QEMU boards that run them.

A :class:`Target` holds the compiler flags of the core and the memory map of the emulated board that runs it
(``qemu-system-arm -M <machine>``): where code (``FLASH``) and data (``RAM``) go, and the board's free-running
counter (the FPGA I/O block's ``COUNTER`` register: 25 MHz of QEMU's virtual clock on AN386, 20 MHz on AN547,
both checked with a loop of known length in tests/firmware) that gives instruction counts under ``-icount shift=0``. Addresses and sizes in bytes.

* ``cortex-m4f`` -- Cortex-M4 with single-precision FPU, board ``mps2-an386`` (Arm MPS2+ AN386): 4 MB ZBT SSRAM1
  at 0x0 for code, 4 MB ZBT SSRAM2/3 at 0x2000_0000 for data.
* ``cortex-m55`` -- Cortex-M55 (Helium / MVE, FPU), board ``mps3-an547`` (Arm MPS3 AN547): 512 KB ITCM at 0x0 for
  code, 2 MB SRAM at 0x0100_0000 for data (AN547's other RAMs are left unused).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

from keras_dssdn.errors import ConfigError


@dataclass(frozen=True)
class Target:
    name: str
    cpu_flags: Tuple[str, ...]
    machine: str
    board: str
    flash_origin: int
    flash_bytes: int
    ram_origin: int
    ram_bytes: int
    counter_address: int
    counter_hz: int = 25_000_000

    @property
    def instructions_per_tick(self) -> int:
        """Instructions per counter tick under ``-icount shift=0`` (one instruction = 1 ns of virtual time)."""
        return 1_000_000_000 // self.counter_hz


TARGETS = {
    "cortex-m4f": Target("cortex-m4f", ("-mcpu=cortex-m4", "-mfpu=fpv4-sp-d16", "-mfloat-abi=hard", "-mthumb"),
                         "mps2-an386", "Arm MPS2+ AN386 (Cortex-M4)", 0x0000_0000, 4 << 20, 0x2000_0000, 4 << 20,
                         0x4002_8018),
    "cortex-m55": Target("cortex-m55", ("-mcpu=cortex-m55", "-mfpu=auto", "-mfloat-abi=hard", "-mthumb"),
                         "mps3-an547", "Arm MPS3 AN547 (Cortex-M55)", 0x0000_0000, 512 << 10, 0x0100_0000, 2 << 20,
                         0x4930_2018, 20_000_000),  # the AN547 model's counter: 20 MHz (calibrated by a loop)
}


def get_target(name: str) -> Target:
    """The :class:`Target` called ``name``; :class:`ConfigError` listing the known ones otherwise."""
    try:
        return TARGETS[name]
    except KeyError:
        raise ConfigError(f"Unknown target {name!r}: use one of {', '.join(sorted(TARGETS))}.") from None
