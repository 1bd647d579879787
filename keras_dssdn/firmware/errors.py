"""What can go wrong when a bundle is built for and run on an emulated Cortex-M (all :class:`ExportError`, exit 6).

* :class:`ToolchainError` -- ``arm-none-eabi-gcc``, ``make`` or ``qemu-system-arm`` missing: names the Debian
  packages to install;
* :class:`FirmwareBuildError` -- a generated program does not compile or link (the compiler's message, shortened);
* :class:`FirmwareFitError` -- it links but not into the named part: the overflow in bytes per region;
* :class:`FirmwareRunError` -- the emulator timed out, the program faulted or exited with an error: the last output;
* :class:`TargetMismatchError` -- the target's outputs differ from the host's beyond what the check allows.
"""

from __future__ import annotations

from keras_dssdn.errors import ExportError, VerificationError


class FirmwareError(ExportError):
    """Base class of the firmware build / emulator errors."""


class ToolchainError(FirmwareError):
    """A program the firmware build needs is not installed."""


class FirmwareBuildError(FirmwareError):
    """The generated program does not compile or link."""


class FirmwareFitError(FirmwareError):
    """The program does not fit the flash / RAM of the named part."""


class FirmwareRunError(FirmwareError):
    """The program hung (timeout), faulted or failed in the emulator."""


class TargetMismatchError(FirmwareError, VerificationError):
    """The target's tensors or outputs differ from the host's beyond the check's rule."""
