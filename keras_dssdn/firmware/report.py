"""``firmware_report.md``: the figures of :func:`keras_dssdn.firmware.build.write_report` as Markdown tables."""

from __future__ import annotations

from typing import List

PARTS = ("model", "front end", "TFLM runtime", "TFLM kernels", "CMSIS-NN", "tensor arena", "harness",
         "C/C++ libraries", "heap", "stack", "fill and merged strings", "other")


def _memory_rows(memory: dict) -> List[str]:
    rows = ["| part | flash (B) | RAM (B) |", "|---|---:|---:|"]
    for part in PARTS:
        f, r = memory["flash"].get(part), memory["ram"].get(part)
        if f or r:
            rows.append(f"| {part} | {f or 0:,} | {r or 0:,} |")
    rows.append(f"| **total (ELF sections)** | **{memory['flash']['total']:,}** | **{memory['ram']['total']:,}** |")
    return rows


def _estimates(report: dict) -> List[str]:
    est = report.get("bundle_estimates")
    if not est:
        return []
    mem = report["memory"]
    rows = ["", "Linker vs the bundle's estimates (report.md):", "",
            "| item | bundle estimate (B) | linker (B) |", "|---|---:|---:|",
            f"| model array (flash) | {est['flash'].get('model', 0):,} | {mem['flash'].get('model', 0):,} |",
            f"| front-end constants + code (flash) | {est['flash'].get('frontend_constants', 0):,} (constants) | "
            f"{mem['flash'].get('front end', 0):,} |",
            f"| tensor arena (RAM) | {est['ram'].get('arena', 0):,} | {mem['ram'].get('tensor arena', 0):,} |",
            f"| flash total | {est['flash'].get('total', 0):,} (model + front end only) | {mem['flash']['total']:,} "
            "(whole program) |",
            f"| RAM total | {est['ram'].get('total', 0):,} | {report['application_ram']:,} (without the test "
            "harness's heap and file buffers) |"]
    return rows


def _checks(report: dict) -> List[str]:
    checks = report.get("checks")
    if not checks:
        return ["", "Not run in the emulator (no --run)."]
    cost = checks["sets"][0]["cost"]
    rows = ["", f"arena_used_bytes() on the target: {checks['arena_used_bytes']:,} B (arena {checks['arena_size']:,} B; "
            f"host minimum {report['host_arena'].get('min_bytes')} B). Stack high-water mark: "
            f"{cost.get('stack_used_bytes')} B of the {report['memory']['ram'].get('stack', 0):,} B reserved; heap taken "
            f"by the harness's stdio: {cost.get('heap_used_bytes')} B.", "",
            "| inputs | (a) int8 inputs: outputs equal / max step | (a) clips agreeing | (b) PCM on the target: outputs "
            "equal / max step | (b) clips agreeing (near-tie flips) | front end instr./segment | model instr./segment |",
            "|---|---|---|---|---|---:|---:|"]
    for s in checks["sets"]:
        a, b, c = s["tensors"], s["pcm"], s["cost"]
        rows.append(f"| {s['name']} | {a['parity']['equal']:,} / {a['parity']['values']:,}, {a['parity']['max_step']} | "
                    f"{a['decisions']['clips_agreeing']}/{a['decisions']['clips']} | {b['parity']['equal']:,} / "
                    f"{b['parity']['values']:,}, {b['parity']['max_step']} | {b['decisions']['clips_agreeing']}/"
                    f"{b['decisions']['clips']} ({b['decisions']['near_tie_flips']}) | "
                    f"{c['fe_instructions_per_segment']:,.0f} | {c['model_instructions_per_invoke']:,.0f} |")
    return rows


def report_markdown(report: dict) -> str:
    head = [f"# {report['bundle']} on {report['target']} ({report['machine']}), TFLM {report['kernels']} kernels", "",
            f"Compiler flags: `{report['cpu_flags']}`. TFLM tree: {report['tflm']['root']}.", "",
            "Flash and RAM from the ELF and its map file (arm-none-eabi-size, -nm, the map):", ""]
    return "\n".join(head + _memory_rows(report["memory"]) + _estimates(report) + _checks(report)) + "\n"
