"""The bundle's C front end alone on an emulated Cortex-M, checked against the training (Python) front end.

This needs no TFLM: :func:`build_frontend_program` compiles ``dssdn_frontend.c`` (from a bundle's ``micro/`` or
from :func:`keras_dssdn.deploy.cfrontend.frontend_c_sources`) with ``templates/fe_main.c`` and the target's
start-up code for the target (``arm-none-eabi-gcc``, e.g. ``-mcpu=cortex-m4 -mfpu=fpv4-sp-d16
-mfloat-abi=hard``; newlib's ``logf``, single-precision FPU), :func:`run_target_frontend` streams int16 PCM
through it in QEMU (semihosting files) and reads the int8 tensors back with the instructions it executed, and
:func:`check_frontend_on_target` compares them with the Python front end by the host check's rule
(:mod:`keras_dssdn.deploy.host_check`: >= ``MIN_EQUAL_FRACTION`` of the values equal, none more than
``MAX_STEP`` apart; with a model, class decisions in TFLM and the near-tie rule), on the host check's test
signals and, when given, real clips.

Shapes: PCM int16 ``(clips, samples)``; tensors int8 ``(segments, n_mels, frames, 1)``.
"""

from __future__ import annotations

import os
import tempfile
import time
from typing import Callable, Dict, Optional, Tuple

import numpy as np

from keras_dssdn.deploy import host_check
from keras_dssdn.frontend_constants import FrontEndConstants
from keras_dssdn.errors import VerificationError
from keras_dssdn.firmware import project, qemu
from keras_dssdn.firmware.errors import TargetMismatchError
from keras_dssdn.firmware.targets import Target
from keras_dssdn.firmware.toolchain import require

PROGRAM = "fe_main"
FRONTEND_FILES = ("dssdn_frontend.h", "dssdn_frontend.c")


def bundle_frontend_sources(bundle: str) -> Dict[str, str]:
    """``{name: text}`` of the bundle's ``micro/dssdn_frontend.h/.c``; FileNotFoundError naming what is missing."""
    out = {}
    for name in FRONTEND_FILES:
        path = os.path.join(bundle, "micro", name)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path} not found: {bundle} is not a keras_dssdn bundle with a C front end "
                                    "(export it with dssdn-export).")
        with open(path, encoding="utf-8") as f:
            out[name] = f.read()
    return out


def build_frontend_program(sources: Dict[str, str], folder: str, target: Target) -> str:
    """Write the front end, ``fe_main.c``, start-up code, linker script and Makefile into ``folder``; build;
    the ELF's path."""
    tools = require(("gcc", "g++", "make"))
    for name, text in sources.items():
        project.write_text(folder, name, text)
    project.write_text(folder, "fe_main.c", project.template_text("fe_main.c"))
    project.write_target_files(folder, target)
    srcs = project.Sources(c=["startup.c", "fe_main.c", "dssdn_frontend.c"], includes=["."])
    project.write_makefile(folder, target, srcs, PROGRAM, "the C front end alone (keras_dssdn.firmware)")
    return project.build(folder, PROGRAM, make=tools["make"])


def run_target_frontend(elf: str, target: Target, pcm: np.ndarray, input_shape: Tuple[int, int],
                        pad: bool = False, timeout: float = 300.0) -> Tuple[np.ndarray, dict]:
    """The program of :func:`build_frontend_program` on clips ``pcm`` in QEMU: int8 ``(segments, n_mels, frames,
    1)`` and ``{"segments", "instructions", "instructions_per_segment", "resolution"}`` (instructions inside the
    front end's calls, from the board counter under ``-icount shift=0``; ``resolution``: +- per call pair)."""
    pcm = np.ascontiguousarray(pcm, dtype="<i2")
    if pcm.ndim != 2:
        raise ValueError(f"pcm must be (clips, samples), got shape {pcm.shape}")
    with tempfile.TemporaryDirectory(prefix="dssdn_fe_target_") as tmp:
        pcm.tofile(os.path.join(tmp, "pcm.raw"))
        out = qemu.run_program(elf, target, ["pcm.raw", str(pcm.shape[1]), "out.raw"] + (["pad"] if pad else []),
                               cwd=tmp, timeout=timeout)
        tensors = np.fromfile(os.path.join(tmp, "out.raw"), dtype=np.int8)
    line = qemu.find_line(out, "dssdn-fe ")
    if line is None:
        raise VerificationError(f"{elf} printed no 'dssdn-fe' line; its output: {out[-500:]}")
    f = qemu.parse_fields(line)
    n = max(int(f["segments"]), 1)
    instructions = int(f["ticks"]) * int(f["instructions_per_tick"])
    cost = {"segments": int(f["segments"]), "instructions": instructions,
            "instructions_per_segment": instructions / n, "resolution": int(f["instructions_per_tick"])}
    return tensors.reshape(-1, *input_shape, 1), cost


def _check(where: str, parity: dict, decisions: Optional[dict], target: Target) -> None:
    """The host check's thresholds (:func:`keras_dssdn.deploy.host_check._check_thresholds`) on the target."""
    try:
        host_check._check_thresholds(where, parity, decisions)
    except VerificationError as e:
        text = str(e).replace("The generated C front end", f"The C front end built for {target.name}")
        raise TargetMismatchError(text.replace(" The bundle is not written; report this with the model.", "")) \
            from None


def check_frontend_on_target(sources: Dict[str, str], consts: FrontEndConstants, target: Target, clips=None,
                             clip_seconds: Optional[float] = None, vocabulary=None,
                             decisions: Optional[host_check.MicroDecisions] = None, signal_segments: int = 2,
                             log: Callable = print) -> dict:
    """Build, run and compare (module doc); the report entry. :class:`TargetMismatchError` when the target's
    tensors break the rule.

    ``consts``: the front-end constants (``frontend.json``), whose ``params`` / ``normalization`` are the training
    front end; ``clips``: a ClipList of real clips (or None) of ``clip_seconds``; ``decisions``: the model in TFLM
    (host) for class decisions, or None for tensors only.
    """
    t0 = time.time()
    seg, shape = consts.num_samples, consts.input_shape
    report = {"target": target.name, "machine": target.machine, "cpu_flags": " ".join(target.cpu_flags)}
    with tempfile.TemporaryDirectory(prefix="dssdn_fe_build_") as folder:
        elf = build_frontend_program(sources, folder, target)
        signals = host_check.edge_case_signals(consts.params.sample_rate, signal_segments * seg)
        pcm = np.stack(list(signals.values()))
        c, cost = run_target_frontend(elf, target, pcm, shape)
        py = host_check.python_int8_tensors(pcm, consts)
        report["signals"] = {"names": list(signals), "parity": host_check.tensor_parity(c, py), "cost": cost}
        if decisions is not None:
            report["signals"]["decisions"] = host_check.merge_decisions([decisions.compare(c, py, signal_segments)])
        _check("the generated test signals", report["signals"]["parity"], None, target)
        if clips is not None and len(clips):
            report["clips"] = _check_clips(elf, target, clips, clip_seconds, vocabulary, consts, decisions)
            _check(f"{len(clips)} real clips", report["clips"]["parity"], report["clips"].get("decisions"), target)
    report["seconds"] = round(time.time() - t0, 1)
    summary = report.get("clips") or report["signals"]
    log(f"  C front end on {target.name} (QEMU {target.machine}) == Python front end: "
        f"{100 * summary['parity']['equal_fraction']:.3f} % of {summary['parity']['values']:,} int8 values equal, "
        f"max {summary['parity']['max_step']} step; {summary['cost']['instructions_per_segment']:,.0f} "
        f"instructions per segment, in {report['seconds']:.1f} s")
    return report


def _check_clips(elf, target, clips, clip_seconds, vocabulary, consts: FrontEndConstants, decisions) -> dict:
    parity, agree, costs = [], [], []
    per_clip = consts.params.num_samples(clip_seconds) // consts.num_samples
    for pcm in host_check.clip_batches(clips, consts.params, clip_seconds, vocabulary):
        c, cost = run_target_frontend(elf, target, pcm, consts.input_shape)
        py = host_check.python_int8_tensors(pcm, consts)
        parity.append(host_check.tensor_parity(c, py))
        costs.append(cost)
        if decisions is not None:
            agree.append(decisions.compare(c, py, per_clip))
    n = sum(k["segments"] for k in costs)
    instructions = sum(k["instructions"] for k in costs)
    out = {"source": getattr(clips, "name", None) or "clips", "count": len(clips),
           "parity": host_check.merge_parity(parity),
           "cost": {"segments": n, "instructions": instructions, "instructions_per_segment": instructions / max(n, 1),
                    "resolution": costs[0]["resolution"] if costs else 0}}
    if decisions is not None:
        out["decisions"] = host_check.merge_decisions(agree)
    return out
