"""``dssdn-firmware``'s work: a bundle built for a Cortex-M target with real TFLM, run in QEMU, compared with the host.

:func:`make_firmware` writes and builds the program (:mod:`keras_dssdn.firmware.program`) and reads the linker's
figures (:mod:`keras_dssdn.firmware.linker`); :func:`run_checks` runs it in the emulator on

(a) int8 inputs made by the training (Python) front end from the host check's test signals and, with ``data``,
    real clips of the evaluate split: the target's int8 outputs vs the host TFLM's (:mod:`~keras_dssdn.firmware.compare`);
(b) the same PCM through the C front end and the model on the target: outputs and class decisions per clip vs
    the host path (Python front end, host TFLM), with the near-tie rule;
(c) ``arena_used_bytes()`` on the target, and the instructions per segment of the front end and of the model.

:func:`write_report` writes ``firmware_report.json`` and ``firmware_report.md`` into the output folder. Nothing is
written into the bundle.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

from keras_dssdn.deploy import host_check
from keras_dssdn.firmware import compare, linker, program
from keras_dssdn.firmware.targets import get_target
from keras_dssdn.firmware.toolchain import require

REPORT_JSON = "firmware_report.json"
REPORT_MD = "firmware_report.md"


def check_out_folder(out: str, bundle: str) -> None:
    """The output folder must not be inside the bundle, and must be new, empty or an earlier output of this
    command (it holds ``fw_main.cc``)."""
    out_abs, bundle_abs = os.path.abspath(out), os.path.abspath(bundle)
    if out_abs == bundle_abs or out_abs.startswith(bundle_abs + os.sep):
        raise FileExistsError(f"--out {out} is inside the bundle {bundle}: nothing is written into a bundle; "
                              "choose a folder outside it.")
    if os.path.isdir(out) and os.listdir(out) and not os.path.isfile(os.path.join(out, "fw_main.cc")):
        raise FileExistsError(f"--out {out} exists and holds other files; give a new or empty folder.")


@dataclass(frozen=True)
class Part:
    """The memory of the part the program is linked for: RAM and flash in KiB (None: the target's own), and the
    tensor arena in bytes (None: the bundle's recommended size)."""

    ram_kb: Optional[int] = None
    flash_kb: Optional[int] = None
    arena_bytes: Optional[int] = None


def make_firmware(bundle_path: str, tflm: Optional[str], target_name: str, kernels: str, out: str,
                  library_dir: Optional[str] = None, part: Part = Part(), jobs: int = 2,
                  log: Callable = print) -> dict:
    """Write and build the program; ``{"elf", "bundle", "lib", "target", "memory", ...}``. ``library_dir``: where
    the TFLM library is built (default ``<out>/tflm``; give a shared folder to build it once); ``part``: the
    memory it is linked for (:class:`Part`)."""
    ram_kb, flash_kb, arena_bytes = part.ram_kb, part.flash_kb, part.arena_bytes
    from keras_dssdn.firmware import tflm_tree

    tools = require(("gcc", "g++", "size", "nm", "make"))
    target = get_target(target_name)
    bundle = program.read_bundle(bundle_path)
    check_out_folder(out, bundle_path)
    lib = tflm_tree.library_sources(tflm_tree.find_tflm_tree(tflm, kernels), kernels, target_name)
    lib_dir = program.library_folder(library_dir or os.path.join(out, "tflm"), lib)
    program.write_program(bundle, lib, target, out, lib_dir, flash_bytes=ram_or_none(flash_kb),
                          ram_bytes=ram_or_none(ram_kb), arena_bytes=arena_bytes)
    t0 = time.time()
    log(f"building {bundle_path} for {target.name} with TFLM ({kernels} kernels) in {out} "
        f"(library: {lib_dir}) ...")
    elf = program.build_program(out, make=tools["make"], jobs=jobs)
    memory = linker.memory_report(elf, os.path.join(out, program.PROGRAM + ".map"), lib, tools["nm"], tools["size"])
    log(f"  built in {time.time() - t0:.0f} s: flash {memory['flash']['total']:,} B, RAM {memory['ram']['total']:,} B "
        f"(linker)")
    return {"elf": elf, "bundle": bundle, "lib": lib, "target": target, "kernels": kernels, "out": out,
            "memory": memory, "part": {"ram_kb": ram_kb, "flash_kb": flash_kb, "arena_bytes": arena_bytes},
            "tflm": {"root": str(lib.tree.root), "manifest": lib.tree.manifest()}}


def ram_or_none(kb: Optional[int]) -> Optional[int]:
    return int(kb) * 1024 if kb else None


def _pcm_sets(constants, data: Optional[str], fold: int, clips: int, clip_seconds: float):
    """``[(name, int16 (n, samples), segments per clip)]``: the host check's test signals (two segments each) and,
    with ``data``, ``clips`` clips spread over the evaluate split (``constants``: the bundle's
    :class:`~keras_dssdn.frontend_constants.FrontEndConstants`)."""
    seg, fe = constants.num_samples, constants.params
    signals = host_check.edge_case_signals(fe.sample_rate, 2 * seg)
    sets = [("test signals", np.stack(list(signals.values())), 2)]
    if data:
        from keras_dssdn.data.datasets import read_clips

        evaluate = read_clips(data, split="evaluate", fold=fold)
        pick = np.linspace(0, len(evaluate) - 1, min(clips, len(evaluate))).round().astype(int)
        subset = evaluate.subset(list(pick))
        pcm = np.concatenate(list(host_check.clip_batches(subset, fe, clip_seconds)))
        sets.append((f"{len(subset)} clips of {os.path.basename(os.path.normpath(data))} fold{fold} evaluate", pcm,
                     fe.num_samples(clip_seconds) // seg))
    return sets


def run_checks(fw: dict, data: Optional[str] = None, fold: int = 1, clips: int = 10, clip_seconds: float = 10.0,
               timeout: float = 1800.0, log: Callable = print) -> dict:
    """(a), (b), (c) of the module doc on the built program ``fw``; the report entries. Raises
    :class:`~keras_dssdn.firmware.errors.TargetMismatchError` when a rule of :func:`compare.check` fails."""
    bundle, target, kernels = fw["bundle"], fw["target"], fw["kernels"]
    c = bundle.constants
    oq = c.output_quantization
    classes = len(c.class_names or []) or int(bundle.report.get("model", {}).get("classes", 0))
    arena = bundle.arena_bytes or 1 << 20
    results = []
    for name, pcm, per_clip in _pcm_sets(c, data, fold, clips, clip_seconds):
        t0 = time.time()
        x = host_check.python_int8_tensors(pcm, c)
        host = compare.host_outputs(bundle.flatbuffer, x, arena)
        tgt, cost_a = program.run_tensors(fw["elf"], target, x, classes, timeout=timeout)
        a = {"inputs": len(x), "parity": compare.output_parity(tgt, host),
             "decisions": compare.decision_parity(tgt, host, oq.scale, oq.zero_point, per_clip)}
        tgt_pcm, clip_classes, cost_b = program.run_pcm(fw["elf"], target, pcm, classes, timeout=timeout)
        b = {"segments": len(tgt_pcm), "parity": compare.output_parity(tgt_pcm, host),
             "decisions": compare.decision_parity(tgt_pcm, host, oq.scale, oq.zero_point, per_clip),
             "target_clip_classes": clip_classes,
             "host_clip_classes": _clip_classes(host, oq, per_clip)}
        results.append({"name": name, "clips": len(pcm), "segments_per_clip": per_clip, "tensors": a, "pcm": b,
                        "cost": {**cost_b, "model_instructions_per_invoke_tensors": cost_a[
                            "model_instructions_per_invoke"]}, "seconds": round(time.time() - t0, 1)})
        _log_set(log, results[-1], kernels)
        compare.check(kernels, a["parity"], a["decisions"], f"{name} (int8 inputs)", kernels == "reference")
        compare.check(kernels, b["parity"], b["decisions"], f"{name} (PCM through the C front end)", False)
    return {"sets": results, "arena_used_bytes": results[0]["cost"]["arena_used_bytes"],
            "arena_size": results[0]["cost"]["arena_size"]}


def frontend_only(bundle_path: str, target_name: str, data: Optional[str] = None, fold: int = 1, clips: int = 10,
                  clip_seconds: float = 10.0, log: Callable = print) -> dict:
    """The bundle's C front end alone on the target vs the Python front end
    (:func:`keras_dssdn.firmware.frontend_target.check_frontend_on_target`), with class decisions in the host TFLM;
    with ``data``, ``clips`` clips spread over its evaluate split. Needs no TFLM tree."""
    from keras_dssdn.firmware.frontend_target import check_frontend_on_target

    bundle = program.read_bundle(bundle_path)
    subset = None
    if data:
        from keras_dssdn.data.datasets import read_clips

        evaluate = read_clips(data, split="evaluate", fold=fold)
        subset = evaluate.subset(list(np.linspace(0, len(evaluate) - 1, min(clips, len(evaluate))).round().astype(int)))
    decisions = host_check.MicroDecisions(bundle.flatbuffer, bundle.arena_bytes or 1 << 20)
    sources = {n: bundle.micro[n] for n in ("dssdn_frontend.h", "dssdn_frontend.c")}
    report = check_frontend_on_target(sources, bundle.constants, get_target(target_name), subset, clip_seconds,
                                      decisions=decisions, log=log)
    for key in ("signals", "clips"):
        if key in report:
            r = report[key]
            d = r.get("decisions") or {}
            log(f"  {key}: {r['parity']['equal']:,} of {r['parity']['values']:,} int8 values equal "
                f"({100 * r['parity']['equal_fraction']:.4f} %), max {r['parity']['max_step']} step; segments "
                f"{r['cost']['segments']}, {r['cost']['instructions_per_segment']:,.0f} instructions per segment; "
                f"clips agreeing {d.get('clips_agreeing')}/{d.get('clips')} (near-tie flips {d.get('near_tie_flips')})")
    return report


def _clip_classes(outputs: np.ndarray, oq, per_clip: int) -> list:
    deq = (outputs.astype(np.float32) - oq.zero_point) * oq.scale
    return [int(k) for k in deq.reshape(-1, per_clip, deq.shape[-1]).mean(axis=1).argmax(axis=1)]


def _log_set(log: Callable, r: dict, kernels: str) -> None:
    a, b, cost = r["tensors"], r["pcm"], r["cost"]
    log(f"  {r['name']}: (a) int8 inputs, target ({kernels}) vs host TFLM: {a['parity']['equal']:,} of "
        f"{a['parity']['values']:,} outputs equal, max {a['parity']['max_step']} step; clips agreeing "
        f"{a['decisions']['clips_agreeing']}/{a['decisions']['clips']}")
    log(f"  {r['name']}: (b) PCM -> C front end -> model on the target vs Python front end -> host TFLM: "
        f"{b['parity']['equal']:,} of {b['parity']['values']:,} outputs equal, max {b['parity']['max_step']} "
        f"steps; clips agreeing {b['decisions']['clips_agreeing']}/{b['decisions']['clips']} (near-tie flips "
        f"{b['decisions']['near_tie_flips']})")
    log(f"  (c) arena_used_bytes() {cost['arena_used_bytes']:,} B of {cost['arena_size']:,}; instructions per "
        f"segment: front end {cost['fe_instructions_per_segment']:,.0f}, model "
        f"{cost['model_instructions_per_invoke']:,.0f} (QEMU -icount, +-{cost['resolution']} per call)")


def write_report(fw: dict, checks: Optional[dict], log: Callable = print) -> dict:
    """``firmware_report.json`` / ``.md`` in the output folder; returns the JSON value."""
    bundle = fw["bundle"]
    report = {"bundle": bundle.path, "target": fw["target"].name, "machine": fw["target"].machine,
              "kernels": fw["kernels"], "cpu_flags": " ".join(fw["target"].cpu_flags), "tflm": fw["tflm"],
              "part": fw["part"], "memory": fw["memory"], "application_ram": linker.application_ram(fw["memory"]),
              "bundle_estimates": bundle.report.get("device_memory"), "host_arena": {
                  "min_bytes": bundle.report.get("arena_min_bytes"), "bytes": bundle.report.get("arena_bytes")},
              "checks": checks}
    with open(os.path.join(fw["out"], REPORT_JSON), "w", encoding="utf-8") as f:
        json.dump(report, f, indent=1, default=str)
    from keras_dssdn.firmware.report import report_markdown

    with open(os.path.join(fw["out"], REPORT_MD), "w", encoding="utf-8") as f:
        f.write(report_markdown(report))
    log(f"  report: {os.path.join(fw['out'], REPORT_MD)}")
    return report
