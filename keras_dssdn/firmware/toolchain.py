"""The Arm cross toolchain and the emulator: where they are, or one message naming the Debian packages.

:func:`require` returns the paths of the programs a step needs (``gcc``, ``g++``, ``size``, ``nm``, ``make``,
``qemu``) or raises :class:`~keras_dssdn.firmware.errors.ToolchainError`; :func:`missing` says what is absent
without raising (for tests that skip). ``$DSSDN_ARM_PREFIX`` (default ``arm-none-eabi-``) and
``$DSSDN_QEMU`` (default ``qemu-system-arm``) choose other installs.
"""

from __future__ import annotations

import os
import shutil
from typing import Dict, Iterable, List

from keras_dssdn.firmware.errors import ToolchainError

#: The Debian packages that provide each program.
PACKAGES = {"gcc": "gcc-arm-none-eabi", "g++": "gcc-arm-none-eabi", "size": "binutils-arm-none-eabi",
            "nm": "binutils-arm-none-eabi", "newlib": "libnewlib-arm-none-eabi", "make": "make",
            "qemu": "qemu-system-arm"}
#: What every step needs: the cross compiler with newlib, and make.
BUILD = ("gcc", "g++", "size", "nm", "make")
RUN = ("qemu",)
INSTALL_LINE = ("sudo apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi binutils-arm-none-eabi "
                "qemu-system-arm make")


def program_name(tool: str) -> str:
    """The executable's name for ``tool`` (``"gcc"`` -> ``"arm-none-eabi-gcc"``)."""
    if tool == "qemu":
        return os.environ.get("DSSDN_QEMU", "qemu-system-arm")
    if tool == "make":
        return "make"
    return os.environ.get("DSSDN_ARM_PREFIX", "arm-none-eabi-") + tool


def _newlib_present(gcc: str) -> bool:
    """Whether the cross compiler finds newlib's rdimon specs (package libnewlib-arm-none-eabi)."""
    import subprocess

    try:
        out = subprocess.run([gcc, "-print-file-name=rdimon.specs"], capture_output=True, text=True, timeout=30)
    except OSError:
        return False
    return os.path.isabs(out.stdout.strip())


def missing(tools: Iterable[str] = BUILD + RUN) -> List[str]:
    """The programs of ``tools`` that are not installed (``"newlib"`` when the compiler lacks rdimon)."""
    absent = [program_name(t) for t in tools if shutil.which(program_name(t)) is None]
    gcc = shutil.which(program_name("gcc"))
    if "gcc" in tools and gcc and not _newlib_present(gcc):
        absent.append("newlib (rdimon.specs)")
    return absent


def require(tools: Iterable[str] = BUILD + RUN) -> Dict[str, str]:
    """``{tool: path}`` for ``tools``; :class:`ToolchainError` naming the Debian packages when one is absent."""
    tools = tuple(tools)
    absent = missing(tools)
    if absent:
        raise ToolchainError(f"{', '.join(absent)} not found: install the Arm toolchain and QEMU with "
                             f"`{INSTALL_LINE}` (Debian/Ubuntu packages).")
    return {t: shutil.which(program_name(t)) for t in tools}
