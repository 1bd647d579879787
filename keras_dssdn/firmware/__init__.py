"""A bundle on a real microcontroller target: built for Arm Cortex-M with ``arm-none-eabi-gcc``, run in QEMU.

* :mod:`~keras_dssdn.firmware.targets` -- the cores (``cortex-m4f``, ``cortex-m55``) and their QEMU boards;
* :mod:`~keras_dssdn.firmware.toolchain` -- the cross compiler, make and QEMU, or the Debian packages to install;
* :mod:`~keras_dssdn.firmware.project` -- start-up code, linker script, Makefile; the build;
* :mod:`~keras_dssdn.firmware.qemu` -- running a program with semihosting and a timeout;
* :mod:`~keras_dssdn.firmware.frontend_target` -- the C front end alone on the target vs the Python front end;
* :mod:`~keras_dssdn.firmware.errors` -- what can go wrong.

docs/firmware.md has the commands and the measured figures.
"""
