"""dssdn-firmware: a bundle built for Arm Cortex-M with real TensorFlow Lite Micro, run in QEMU (docs/firmware.md).

    dssdn-firmware BUNDLE --tflm DIR --target cortex-m4f --kernels reference --out fw/ --run --data DIR
    dssdn-firmware BUNDLE --tflm DIR --kernels cmsis-nn --out fw-cmsis/ --ram-kb 128 --flash-kb 512
    dssdn-firmware BUNDLE --frontend-only --data DIR      # the C front end alone on the target (no TFLM)

Writes into --out (never into the bundle): the bundle's micro/ files, fw_main.cc, startup.c, dssdn_target.ld,
a plain Makefile (liftable: `make`, `make run ARGS="..."`), the TFLM library's Makefile (--library-dir), the ELF
and its map, and firmware_report.json / .md (flash and RAM from the linker by part, next to the bundle's
estimates). With --run, in qemu-system-arm: (a) int8 inputs made by the training front end through the model,
vs the host TFLM (reference kernels: bit-exact required); (b) PCM (test signals, and with --data real clips)
through the C front end and the model, class decisions per clip vs the host path (near-tie rule);
(c) arena_used_bytes() and instructions per segment. The TFLM tree: --tflm or $TFLM_ROOT.
Needs arm-none-eabi-gcc, newlib, make and qemu-system-arm (Debian: gcc-arm-none-eabi libnewlib-arm-none-eabi
qemu-system-arm). Exit status: see keras_dssdn.cli.common.
"""

from __future__ import annotations

import argparse
import sys

from keras_dssdn.cli.common import quiet_tensorflow, run_command
from keras_dssdn.errors import ConfigError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dssdn-firmware", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bundle", help="a bundle folder written by dssdn-export")
    p.add_argument("--tflm", default=None, help="TFLM + CMSIS-NN source tree (default: $TFLM_ROOT)")
    p.add_argument("--target", default="cortex-m4f", choices=["cortex-m4f", "cortex-m55"])
    p.add_argument("--kernels", default="cmsis-nn", choices=["reference", "cmsis-nn"])
    p.add_argument("--out", default=None, help="folder for the program (new, empty, or an earlier --out)")
    p.add_argument("--frontend-only", action="store_true",
                   help="build and check only the bundle's C front end on the target against the Python front end "
                        "(test signals, and --data clips; class decisions in the host TFLM); needs no TFLM tree")
    p.add_argument("--library-dir", default=None,
                   help="folder under which the TFLM library is built and kept (default: OUT/tflm)")
    p.add_argument("--ram-kb", type=int, default=None, help="link for a part with this much RAM (KiB)")
    p.add_argument("--flash-kb", type=int, default=None, help="link for a part with this much flash (KiB)")
    p.add_argument("--arena-bytes", type=int, default=None,
                   help="tensor arena of this size instead of the bundle's kTensorArenaSize (e.g. the target's "
                        "arena_used_bytes() plus a margin)")
    p.add_argument("--run", action="store_true", help="run the checks in qemu-system-arm")
    p.add_argument("--data", default=None, help="DCASE dataset folder: real clips of its evaluate split for --run")
    p.add_argument("--fold", type=int, default=1)
    p.add_argument("--clips", type=int, default=10, help="evaluate clips to run with --data (default 10)")
    p.add_argument("--clip-seconds", type=float, default=10.0)
    p.add_argument("--timeout", type=float, default=1800.0, help="seconds before an emulator run is stopped")
    p.add_argument("-j", "--jobs", type=int, default=2)
    return p


def main(argv=None) -> int:
    quiet_tensorflow()
    args = build_parser().parse_args(argv)

    def body() -> int:
        from keras_dssdn.firmware import build

        if args.frontend_only:
            build.frontend_only(args.bundle, args.target, args.data, args.fold, args.clips, args.clip_seconds)
            return 0
        if not args.out:
            raise ConfigError("--out is required (a folder for the program) unless --frontend-only is given.")
        part = build.Part(args.ram_kb, args.flash_kb, args.arena_bytes)
        fw = build.make_firmware(args.bundle, args.tflm, args.target, args.kernels, args.out, args.library_dir,
                                 part, args.jobs)
        checks = None
        try:
            if args.run:
                checks = build.run_checks(fw, args.data, args.fold, args.clips, args.clip_seconds, args.timeout)
        finally:
            build.write_report(fw, checks)
        return 0

    return run_command(body)


if __name__ == "__main__":
    sys.exit(main())
