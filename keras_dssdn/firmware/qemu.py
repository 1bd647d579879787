"""Running a program in ``qemu-system-arm`` (system mode, semihosting), with a timeout.

:func:`run_program` starts the board of a :class:`~keras_dssdn.firmware.targets.Target` with the ELF, passes
the command line through semihosting (files named in it are relative to ``cwd``), counts instructions
(``-icount shift=0``) and returns the program's standard output. A hang is stopped at ``timeout`` seconds, and
a hang, a fault (the start-up code prints ``FAULT: ... pc=...``) or a non-zero exit raises
:class:`~keras_dssdn.firmware.errors.FirmwareRunError` with the last lines of output.
"""

from __future__ import annotations

import os
import subprocess
from typing import List, Optional, Sequence

from keras_dssdn.firmware.errors import FirmwareRunError
from keras_dssdn.firmware.targets import Target
from keras_dssdn.firmware.toolchain import program_name, require

TAIL_LINES = 15


def qemu_command(elf: str, target: Target, args: Sequence[str] = (), icount: bool = True,
                 qemu: Optional[str] = None) -> List[str]:
    """The ``qemu-system-arm`` command line (arguments must not contain commas or spaces)."""
    for a in args:
        if "," in a or " " in a:
            raise ValueError(f"semihosting argument {a!r} must not contain a comma or a space")
    name = os.path.splitext(os.path.basename(elf))[0]
    semihosting = ",".join(["enable=on", "target=native"] + [f"arg={a}" for a in (name, *args)])
    return ([qemu or program_name("qemu"), "-M", target.machine, "-nographic", "-monitor", "none",
             "-serial", "none"] + (["-icount", "shift=0"] if icount else [])
            + ["-semihosting-config", semihosting, "-kernel", elf])


def _tail(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()][-TAIL_LINES:]
    return "\n  ".join(lines) if lines else "(no output)"


def run_program(elf: str, target: Target, args: Sequence[str] = (), cwd: Optional[str] = None,
                timeout: float = 120.0, icount: bool = True) -> str:
    """Standard output of ``elf`` run on ``target``'s board; :class:`FirmwareRunError` on a hang, fault or
    non-zero exit."""
    qemu = require(("qemu",))["qemu"]
    cmd = qemu_command(os.path.abspath(elf), target, args, icount, qemu)
    try:
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode("utf-8", "replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        raise FirmwareRunError(f"{os.path.basename(elf)} on {target.machine} did not finish within {timeout:g} s "
                               f"(stopped). Last output:\n  {_tail(out)}") from None
    out = proc.stdout + proc.stderr
    if "FAULT:" in out:
        raise FirmwareRunError(f"{os.path.basename(elf)} faulted on {target.machine}. Last output:\n  {_tail(out)}")
    if proc.returncode != 0:
        raise FirmwareRunError(f"{os.path.basename(elf)} on {target.machine} exited with status {proc.returncode}. "
                               f"Last output:\n  {_tail(out)}")
    return proc.stdout


def parse_fields(line: str) -> dict:
    """``{"key": int}`` from a line of ``key=value`` words (non-integer values kept as text)."""
    out = {}
    for word in line.split():
        if "=" in word:
            k, v = word.split("=", 1)
            try:
                out[k] = int(v)
            except ValueError:
                out[k] = v
    return out


def find_line(output: str, prefix: str) -> Optional[str]:
    """The last line of ``output`` starting with ``prefix``."""
    lines = [line for line in output.splitlines() if line.startswith(prefix)]
    return lines[-1] if lines else None
