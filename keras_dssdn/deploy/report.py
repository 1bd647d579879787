"""What an export measured: ``report.json`` (:func:`build_report`), ``report.md`` (:func:`report_markdown`)
and the one-line summary of the command line (:func:`summary_line`).

Units: sizes in bytes, accuracies as fractions in JSON (percent in Markdown),
log loss in nats, durations in seconds.
"""

from __future__ import annotations

import datetime
import json
import math
from dataclasses import dataclass
from typing import Dict, List, Optional

from keras_dssdn.analysis.budgets import DCASE_MAX_INT8_BYTES, DCASE_MAX_PARAMS
from keras_dssdn.deploy.convert import Conversion
from keras_dssdn.deploy import cfrontend
from keras_dssdn.frontend_constants import FrontEndConstants
from keras_dssdn.deploy.host_check import TIE_STEPS
from keras_dssdn.deploy.prepare import PreparedModel
from keras_dssdn.deploy.verify import Verification

VERSIONED = ("ai-edge-litert", "tflite-micro", "tensorflow-model-optimization", "tf-keras")


def versions() -> dict:
    """Versions of TensorFlow, Keras and the conversion / interpreter packages (None: not installed)."""
    from importlib import metadata

    import keras
    import tensorflow as tf

    out = {"tensorflow": tf.__version__, "keras": keras.__version__}
    for dist in VERSIONED:
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out


def _model_entry(prep: PreparedModel) -> dict:
    return {"source": prep.source, "name": prep.core.name, "input_shape": list(prep.input_shape),
            "segment_seconds": prep.segment_seconds, "classes": prep.num_classes, "class_names": prep.class_names,
            "parameters": int(prep.core.count_params()), "split_off": prep.split_off, "sources": prep.sources,
            "notes": prep.notes}


def _int8_entries(verification: Verification, metrics: Optional[Dict[str, dict]]) -> Dict[str, dict]:
    out = {}
    for name, checks in verification.int8.items():
        out[name] = dict(checks)
        if metrics is not None:
            out[name]["metrics"] = metrics[name]
    return out


def _budget_entry(parameters: int, int8_weight_bytes: int) -> dict:
    return {"parameters": parameters, "parameters_limit": DCASE_MAX_PARAMS, "int8_weight_bytes": int8_weight_bytes,
            "int8_bytes_limit": DCASE_MAX_INT8_BYTES,
            "fits": bool(parameters <= DCASE_MAX_PARAMS and int8_weight_bytes <= DCASE_MAX_INT8_BYTES)}


def device_memory(model_bytes: int, arena_bytes: int, arena_min_bytes: int, constants: FrontEndConstants,
                  ring: Optional[dict] = None) -> dict:
    """What a device needs, in bytes: ``flash`` (model array + the C front end's constants) and ``ram`` (tensor
    arena, recommended size, + front-end state + the audio ring), each with ``total``; ``audio_ring``: ``ring``
    (:func:`keras_dssdn.analysis.ram.audio_ring`: the audio of one Invoke() at a named clock plus two hops) and
    ``part``: the headroom on a part with 128 KB of RAM (:func:`keras_dssdn.analysis.ram.ram_headroom`).
    Without ``ring`` the audio ring is two hops only (no Invoke() time: not a device figure)."""
    from keras_dssdn.analysis.ram import audio_ring, ram_headroom

    p = constants.params
    if ring is None:
        ring = audio_ring(p.sample_rate, p.hop_length, 0)
    flash = {"model": int(model_bytes), "frontend_constants": cfrontend.frontend_flash_bytes(constants)}
    ram = {"arena": int(arena_bytes), "frontend": cfrontend.frontend_ram_bytes(p.n_fft),
           "audio_buffer": int(ring["bytes"])}
    flash["total"], ram["total"] = sum(flash.values()), sum(ram.values())
    ram["arena_min"] = int(arena_min_bytes)
    part = ram_headroom(ram["total"], ram["arena"], ram["frontend"], ring, p.hop_length)
    part["keeps_up"] = bool(ring["invoke_seconds"] < constants.seconds)  # slower than real time overflows a ring
    return {"flash": flash, "ram": ram, "audio_ring": dict(ring), "part": part}


@dataclass(frozen=True)
class ExportFacts:
    """What the export steps found, the input of :func:`build_report`.

    ``data``: the calibration / evaluation / verification entries; ``metrics``: per model (None without an
    evaluation set); ``chosen``: the deployed int8 model; ``drop``: its accuracy points below float;
    ``constants``: the front-end constants; ``c_frontend``: the host check of the C front end
    (:func:`keras_dssdn.deploy.host_check.check_c_frontend`); ``flash_cuts``:
    :func:`keras_dssdn.deploy.flash_cuts.apply_flash_cuts`'s report (the device model's bytes), None when the device gets the
    converter's model; ``ring``: the audio ring (:func:`keras_dssdn.analysis.ram.audio_ring`).
    """

    prep: PreparedModel
    data: dict
    conversion: Conversion
    verification: Verification
    metrics: Optional[Dict[str, dict]]
    chosen: str
    drop: Optional[float]
    constants: FrontEndConstants
    c_frontend: Optional[dict] = None
    flash_cuts: Optional[dict] = None
    ring: Optional[dict] = None


def build_report(facts: ExportFacts, command: Optional[str] = None, bundle: str = "") -> dict:
    """``report.json`` (without ``seconds``, which the write step adds) of what the export found; ``command``:
    the command line that ran it; ``bundle``: the bundle folder."""
    f = facts
    prep, conversion, verification, metrics, chosen, drop = (f.prep, f.conversion, f.verification, f.metrics,
                                                              f.chosen, f.drop)
    data, constants, c_frontend, flash_cuts, ring = f.data, f.constants, f.c_frontend, f.flash_cuts, f.ring
    int8 = _int8_entries(verification, metrics)
    model = _model_entry(prep)
    flash = flash_cuts["bytes_after"] if flash_cuts else len(conversion.int8[chosen])
    return {
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": command,
        "model": model,
        "data": data,
        "float": {"bytes": len(conversion.float_model), "max_abs_diff_vs_keras": verification.float_max_abs_diff,
                  "metrics": None if metrics is None else metrics["float"]},
        "int8": int8,
        "deployed": chosen,
        "deployed_accuracy_drop_points": drop,
        "qat": conversion.qat_info,
        "dcase_budget": _budget_entry(model["parameters"], int8[chosen]["bytes"]["int8_weights"]),
        "flash_bytes": flash,
        "flash_cuts": flash_cuts,
        "frontend_flash_bytes": cfrontend.frontend_flash_bytes(constants),
        "arena_bytes": int8[chosen]["arena"]["recommended_bytes"],
        "arena_min_bytes": int8[chosen]["arena"]["min_bytes"],
        "device_memory": device_memory(flash, int8[chosen]["arena"]["recommended_bytes"],
                                       int8[chosen]["arena"]["min_bytes"], constants, ring),
        "c_frontend": c_frontend,
        "versions": versions(),
        "bundle": bundle,
    }


# ---------------------------------------------------------------------------
# report.md
# ---------------------------------------------------------------------------


def _missing(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _pct(v) -> str:
    return "-" if _missing(v) else f"{100 * v:.2f} %"


def _num(v, fmt: str = "{:.3f}") -> str:
    return "-" if _missing(v) else fmt.format(v)


def _md_summary(report: dict) -> List[str]:
    m = report["model"]
    lines = [f"# Export report: {m['name']}", "",
             f"- source: `{m['source']}`",
             f"- input: int8 log-mel {m['input_shape']} ({m['segment_seconds']:g} s), {m['classes']} classes, "
             f"{m['parameters']:,} parameters",
             f"- split off (run on the device as front-end constants): {', '.join(m['split_off']) or 'nothing'}",
             f"- front end: {m['sources'].get('frontend')}; normalisation: {m['sources'].get('normalization')}",
             f"- deployed int8 model: **{report['deployed'].upper()}**, flash {report['flash_bytes']:,} B, "
             f"tensor arena {report['arena_bytes']:,} B (measured minimum {report['arena_min_bytes']:,} B); "
             f"front-end constants {report.get('frontend_flash_bytes', 0):,} B flash"]
    if report.get("command"):
        lines.append(f"- command: `{report['command']}`")
    lines += [f"- note: {note}" for note in m.get("notes") or []]
    lines += ["", "## Data", ""]
    lines += [f"- {key}: " + ", ".join(f"{k} {v}" for k, v in report["data"][key].items())
              for key in ("calibration", "evaluation", "verification") if report["data"].get(key)]
    return lines


def _md_metrics(m: Optional[dict]) -> str:
    """``accuracy | log loss | clip accuracy | clip log loss`` cells."""
    m = m or {}
    clip = m.get("clip") or {}
    return (f"{_pct(m.get('accuracy'))} | {_num(m.get('log_loss'))} | {_pct(clip.get('accuracy'))} | "
            f"{_num(clip.get('log_loss'))}")


def _exact_cell(be: dict) -> str:
    """``yes (16 inputs + 1,410 evaluation examples)`` or ``NO: 4 of 21,150 values, max 1 step``."""
    ev = be.get("evaluation")
    inputs = f"{be['inputs']} inputs" + (f" + {ev['inputs']:,} evaluation examples" if ev else "")
    if be["bit_exact"]:
        return f"yes ({inputs})"
    parts = [e for e in (be, ev) if e]
    differ = sum(e["values"] - e["equal"] for e in parts)
    values = sum(e["values"] for e in parts)
    return f"NO: {differ:,} of {values:,} values differ, max {max(e['max_step'] for e in parts)} step(s) ({inputs})"


def _md_table(report: dict) -> List[str]:
    lines = ["", "## Accuracy and size", "",
             "| model | accuracy | log loss | clip accuracy | clip log loss | file bytes | int8 weight bytes | "
             "arena bytes (min / recommended) | TFLM bit-exact |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---|",
             f"| float (Keras) | {_md_metrics(report['float'].get('metrics'))} | "
             f"{report['float']['bytes']:,} (float TFLite) | - | - | - |"]
    for name, v in report["int8"].items():
        lines.append(
            f"| int8 {name.upper()}{' (deployed)' if name == report['deployed'] else ''} | "
            f"{_md_metrics(v.get('metrics'))} | {v['bytes']['file']:,} | {v['bytes']['int8_weights']:,} | "
            f"{v['arena']['min_bytes']:,} / {v['arena']['recommended_bytes']:,} | {_exact_cell(v['bit_exactness'])} |")
    if report.get("deployed_accuracy_drop_points") is not None:
        exact = report["int8"][report["deployed"]]["bit_exactness"]["bit_exact"]
        lines += ["", f"Deployed int8 accuracy is {report['deployed_accuracy_drop_points']:+.2f} points below float "
                      "(negative: above). int8 numbers come from TFLite's reference kernels, "
                      + ("which TFLM matched bit for bit on every input compared." if exact else
                         "which TFLM did NOT match on every value: see \"TFLM vs TFLite reference kernels\" for "
                         "the counts and the decisions that changed.")]
    return lines + _md_exactness(report)


def _md_exactness_row(model: str, where: str, e: dict) -> str:
    outputs = ", ".join(f"{k} ({v})" for k, v in e.get("differing_outputs", {}).items()) or "-"
    def with_margins(text: str, margins: list) -> str:
        return text + (f" (reference-path margins {', '.join(f'{m:g}' for m in margins)} steps)" if margins else "")

    seg = with_margins(f"{e.get('segment_decisions_changed', 0)} / {e['inputs']:,}", e.get("segment_flip_margins", []))
    clip = with_margins(f"{e.get('clip_decisions_changed', 0)} / {e.get('clips', e['inputs']):,}",
                        e.get("clip_flip_margins", []))
    return (f"| {model} | {where} | {e['values']:,} | {e['equal']:,} | {e.get('max_step', e.get('max_abs_diff', 0))} "
            f"| {outputs} | {seg} | {clip} |")


def _md_exactness(report: dict) -> List[str]:
    """Per int8 model: TFLM vs the reference kernels on the verification inputs and the evaluation set."""
    rows = []
    for name, v in report["int8"].items():
        be = v["bit_exactness"]
        if "values" not in be:
            continue  # a report written before the counts existed
        rows.append(_md_exactness_row(name.upper(), "verification inputs", be))
        if be.get("evaluation"):
            rows.append(_md_exactness_row(name.upper(), "evaluation set (every example)", be["evaluation"]))
    if not rows:
        return []
    return ["", "## TFLM vs TFLite reference kernels", "",
            "Every int8 output value of TFLM compared with LiteRT's reference kernels on the same int8 inputs. "
            "\"Bit-exact\" is claimed only where every value matched. Decisions: argmax per segment, and of the "
            "outputs averaged over a clip; a changed decision fails the export unless the reference kernels' top "
            f"two classes were within {TIE_STEPS:g} output steps (a near-tie, the rule of the C front end's check).",
            "",
            "| model | inputs | values | equal | max step | outputs that differed (inputs) | segment decisions "
            "changed | clip decisions changed |", "|---|---|---:|---:|---:|---|---:|---:|"] + rows


def _md_budget_and_operators(report: dict) -> List[str]:
    b = report["dcase_budget"]
    return ["", "## DCASE budget", "",
            f"- parameters {b['parameters']:,} (limit {b['parameters_limit']:,}); int8 weights "
            f"{b['int8_weight_bytes']:,} B (limit {b['int8_bytes_limit']:,} B): "
            f"{'fits' if b['fits'] else 'does NOT fit'}",
            "", "## Operators (TFLM resolver)", "", ", ".join(report["int8"][report["deployed"]]["operators"])]


def _md_qat(q: Optional[dict]) -> List[str]:
    if not q:
        return []
    return ["", "## Quantisation-aware training", "",
            f"- epochs {q.get('epochs')}, learning rate {q.get('learning_rate')}, examples {q.get('examples')}, "
            f"mirror max |diff| vs Keras 3 {_num(q.get('mirror_max_abs_diff'), '{:.2e}')}",
            f"- history: {json.dumps(q.get('history'))}"] + (
        [f"- distilled: targets (1 - {q['distilled']['kd_weight']:g}) x labels + {q['distilled']['kd_weight']:g} x "
         f"teacher probabilities (T = 1) from {q['distilled']['teacher']}"] if q.get("distilled") else [])


def _md_parity_row(what: str, entry: dict) -> str:
    p, d = entry["parity"], entry["decisions"]
    return (f"| {what} | {p['values']:,} | {100 * p['equal_fraction']:.4f} % | {p['max_step']} | "
            f"{d['segments_agreeing']} / {d['segments']} | {d['clips_agreeing']} / {d['clips']}"
            + (f" ({d['near_tie_flips']} near-tie flips)" if d.get("near_tie_flips") else "") + " |")


def _ring_label(ring: Optional[dict]) -> str:
    if not ring:
        return "audio buffer"
    return (f"audio ring (`kAudioRingSamples` {ring['samples']:,} int16: one Invoke() of "
            f"{1000 * ring['invoke_seconds']:.1f} ms, estimated as {ring['macs']:,} MACs x "
            f"{ring['cycles_per_mac']:g} cycles / {ring['clock_hz'] / 1e6:g} MHz, at {ring['sample_rate']:,} Hz, "
            "+ two hops)")


def _md_part(part: Optional[dict], ring: Optional[dict]) -> List[str]:
    """The headroom on a 128 KB part and what it takes when the total does not fit."""
    if not part:
        return []
    line = (f"On a part with {part['part_bytes']:,} B of RAM: headroom {part['headroom_bytes']:+,} B "
            f"({'fits' if part['fits'] else 'does NOT fit'}).")
    clock = part.get("min_clock_hz")
    if ring and not part["fits"]:
        line += (f" The audio ring would fit at a clock of {math.ceil(clock / 1e6)} MHz or more (same cycles per MAC)"
                 if clock else " Even an instant Invoke() would not fit: a smaller arena or front end is needed")
        line += "; or fewer mel bands, or a lower sample rate (frontend.sample_rate: the ring scales with it)."
    elif ring and clock:
        line += f" The ring fits down to a clock of {math.ceil(clock / 1e6)} MHz (same cycles per MAC)."
    if part.get("keeps_up") is False:
        line += (" The estimated Invoke() is longer than the segment it classifies: the model cannot keep up with "
                 "the audio at this clock, and no ring size helps.")
    return ["", line, "The Invoke() time is an estimate: MACs x cycles per MAC (default "
            "keras_dssdn.analysis.ram.MODEL_CYCLES_PER_MAC, the instructions per MAC measured with CMSIS-NN on an "
            "emulated Cortex-M4F, docs/firmware.md; real cycles are at least that many) at the named clock; the front "
            "end's own time is not in it."]


def _md_device(report: dict) -> List[str]:
    """Memory totals and the C front end's host check."""
    mem, check, cuts = report.get("device_memory"), report.get("c_frontend"), report.get("flash_cuts")
    lines = []
    if mem:
        f, r = mem["flash"], mem["ram"]
        model_row = "flash: model (`dssdn_model_data.cc`)"
        if cuts:
            model_row += (f"; the converter's {cuts['bytes_before']:,} B less {cuts['saved']:,} B: tensor names "
                          f"({cuts['name_bytes']:,} characters) and {cuts['zero_points_removed']:,} repeated 64-bit "
                          f"zero points; TFLM outputs identical on {cuts['tflm_identical_inputs']} inputs")
        lines += ["", "## On the device", "",
                  "| | bytes |", "|---|---:|",
                  f"| {model_row} | {f['model']:,} |",
                  f"| flash: front-end constants (`dssdn_frontend.c`) | {f['frontend_constants']:,} |",
                  f"| **flash total** (without code) | **{f['total']:,}** |",
                  f"| RAM: tensor arena (recommended; measured minimum {r['arena_min']:,}) | {r['arena']:,} |",
                  f"| RAM: front end (`DSSDN_FE_RAM_BYTES`) | {r['frontend']:,} |",
                  f"| RAM: {_ring_label(mem.get('audio_ring'))} | {r['audio_buffer']:,} |",
                  f"| **RAM total** | **{r['total']:,}** |"]
        lines += _md_part(mem.get("part"), mem.get("audio_ring"))
    if check:
        lines += ["", "## C front end vs the training front end (host)", ""]
        if check.get("skipped"):
            return lines + [f"Not checked: {check['skipped']}."]
        lines += [f"`micro/dssdn_frontend.c` compiled with {check['compiler']} ({check['cflags']}) and streamed in "
                  "uneven chunks; int8 tensors compared with the Python front end's on the same int16 PCM, class "
                  "decisions of TFLM on both.", "",
                  "| audio | int8 values | equal | max step | segment decisions equal | clip decisions equal |",
                  "|---|---:|---:|---:|---:|---:|",
                  _md_parity_row("test signals (" + ", ".join(check["signals"]["names"]) + ")", check["signals"])]
        if check.get("clips"):
            lines.append(_md_parity_row(f"{check['clips']['count']} clips of {check['clips']['source']}",
                                        check["clips"]))
    return lines


def report_markdown(report: dict) -> str:
    """report.md: the numbers of report.json as tables."""
    lines = (_md_summary(report) + _md_table(report) + _md_device(report) + _md_budget_and_operators(report)
             + _md_qat(report.get("qat"))
             + ["", f"Versions: {json.dumps(report['versions'])}", ""])
    return "\n".join(lines)


def summary_line(r: dict) -> str:
    """``bundle B; float acc A %; PTQ acc A % bit-exact yes; ...; deployed PTQ: F B flash, A B arena``."""
    parts = [f"bundle {r.get('bundle') or ''}".strip()]
    fm = r["float"].get("metrics")
    if fm:
        parts.append(f"float acc {_pct(fm['accuracy'])}")
    for name, v in r["int8"].items():
        mm = v.get("metrics")
        acc = f" acc {_pct(mm['accuracy'])}" if mm else ""
        be = v["bit_exactness"]
        if be["bit_exact"]:
            exact = "bit-exact yes"
        else:
            parts_ = [e for e in (be, be.get("evaluation")) if e and "values" in e]
            differ = sum(e["values"] - e["equal"] for e in parts_)
            exact = (f"bit-exact NO ({differ:,} of {sum(e['values'] for e in parts_):,} values, max "
                     f"{max((e['max_step'] for e in parts_), default=0)} step(s))") if parts_ else "bit-exact NO"
        parts.append(f"{name.upper()}{acc} {exact}")
    parts.append(f"deployed {r['deployed'].upper()}: {r['flash_bytes']:,} B flash, {r['arena_bytes']:,} B arena")
    return "; ".join(p for p in parts if p)
