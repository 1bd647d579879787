"""Trial records and the search's reports: ``trials.csv``, ``trials.md``, ``pareto.png`` and a terminal table.

A record is one dict per trial, read from the oracle's trials (public Trial
fields only): ``trial`` (id), ``status`` (``feasible`` = trained,
``infeasible`` = over budget, not trained, ``failed`` = crashed, ``running`` =
interrupted), ``widths`` (channels per block), the searched ratios, ``params``,
``macs`` (per budget clip), ``accuracy`` (fraction), ``log_loss`` (nats),
``score`` (the objective of the best epoch), ``epochs``, ``seconds`` (wall
time), ``hyperband`` (its ``tuner/*`` values or None) and ``reason``.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import List, Optional, Sequence

from keras_dssdn.analysis.budgets import Budget, format_macs
from keras_dssdn.fileio import save_figure_atomic, write_text_atomic
from keras_dssdn.tune.feasibility import is_infeasible
from keras_dssdn.tune.tuner import OBJECTIVES

COLUMNS = ("trial", "status", "widths", "low_ratio", "partial_ratio", "bottleneck_ratio", "params", "macs",
           "accuracy", "log_loss", "score", "epochs", "seconds", "pareto", "reason")
_NUMERIC = ("params", "macs", "accuracy", "log_loss", "score", "epochs", "seconds")
_RATIOS = ("low_ratio", "partial_ratio", "bottleneck_ratio")


# ---------------------------------------------------------------------------- records


def _metric(trial, name: str) -> Optional[float]:
    if not trial.metrics.exists(name):
        return None
    value = trial.metrics.get_best_value(name)
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


def _as_int(value: Optional[float]) -> Optional[int]:
    return None if value is None else int(value)


def _trial_order(trial_id: str):
    """KerasTuner numbers trials in the order it creates them."""
    return (0, int(trial_id), "") if trial_id.isdigit() else (1, 0, trial_id)


def _status_and_reason(trial, budget: Budget, params, macs, ram=None):
    if is_infeasible(trial):
        if params is None:
            return "infeasible", "over budget"
        return "infeasible", budget.reason(int(params), int(macs), ram_bytes=None if ram is None else int(ram))
    if trial.status == "COMPLETED":
        return "feasible", ""
    if trial.status in ("FAILED", "INVALID"):
        lines = [line for line in (trial.message or "").strip().splitlines() if line.strip()]
        return "failed", lines[-1].strip()[:200] if lines else "failed (no message reached the oracle)"
    return trial.status.lower(), ""


def trial_record(trial, hypermodel) -> dict:
    """One trial's record (see the module docstring) for a DSSDNHyperModel ``hypermodel``."""
    values = trial.hyperparameters.values
    config = hypermodel.config(values)
    params, macs = _metric(trial, "params"), _metric(trial, "macs")
    status, reason = _status_and_reason(trial, hypermodel.budget, params, macs, _metric(trial, "ram"))
    trained = status == "feasible"
    return {
        "trial": trial.trial_id, "status": status, "widths": list(config.widths),
        **{k: getattr(config, k) for k in hypermodel.space.searched_ratios()},
        "params": _as_int(params), "macs": _as_int(macs),
        "accuracy": _metric(trial, "eval_accuracy") if trained else None,
        "log_loss": _metric(trial, "eval_log_loss") if trained else None,
        "score": trial.score if trained else None,
        "epochs": _as_int(_metric(trial, "epochs")), "seconds": _metric(trial, "seconds"),
        "hyperband": {k.split("/")[1]: v for k, v in values.items() if k.startswith("tuner/")} or None,
        "reason": reason,
    }


def trial_records(oracle, hypermodel) -> List[dict]:
    """One record per trial of ``oracle``, in the order the trials were created."""
    return [trial_record(oracle.trials[t], hypermodel) for t in sorted(oracle.trials, key=_trial_order)]


def pareto_front(records: Sequence[dict], direction: str = "max") -> List[str]:
    """Trial ids of the trained trials that no other trained trial beats on both MACs (fewer) and score."""
    pts = [r for r in records if r["status"] == "feasible" and r["score"] is not None and r["macs"] is not None]
    sign = 1.0 if direction == "max" else -1.0

    def dominates(o, r):
        return (o["macs"] <= r["macs"] and sign * o["score"] >= sign * r["score"]
                and (o["macs"] < r["macs"] or sign * o["score"] > sign * r["score"]))

    return [r["trial"] for r in pts if not any(o is not r and dominates(o, r) for o in pts)]


# ---------------------------------------------------------------------------- tables


def _cell(value, key=None, markdown=False) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return "[" + ", ".join(str(v) for v in value) + "]" if markdown else " ".join(str(v) for v in value)
    if markdown and key == "macs":
        return format_macs(value)
    if markdown and key == "params":
        return f"{value:,}"
    if markdown and key == "accuracy":
        return f"{100 * value:.1f} %"
    if isinstance(value, float):
        if key in ("log_loss", "score"):
            return f"{value:.4f}"
        return f"{value:.1f}" if key == "seconds" else f"{value:g}"
    if isinstance(value, bool):
        return "yes" if value else ""
    return str(value)


def _columns(records: Sequence[dict]) -> List[str]:
    return [c for c in COLUMNS if c not in _RATIOS or any(c in r for r in records)]


def trials_csv(records: Sequence[dict]) -> str:
    """The records as CSV text (lists space-separated)."""
    columns = _columns(records)
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(columns)
    for r in records:
        writer.writerow([_cell(r.get(c), c) for c in columns])
    return buf.getvalue()


def trials_markdown(records: Sequence[dict], budget: Budget, objective: str, title: str = "") -> str:
    """The records as a Markdown table under a title, the budget and the counts."""
    metric, direction = OBJECTIVES[objective]
    columns = _columns(records)
    counts = {s: sum(r["status"] == s for r in records) for s in ("feasible", "infeasible", "failed")}
    lines = [f"# {title or 'DSSDN width search'}", "",
             f"Budget: {budget.describe()}. Score: {metric} ({direction}) on the evaluate fold. Trials: "
             f"{len(records)} ({counts['feasible']} trained, {counts['infeasible']} infeasible, {counts['failed']} "
             "failed). `pareto`: on the front of score against MACs.", "",
             "| " + " | ".join(columns) + " |",
             "|" + "|".join("---:" if c in _NUMERIC else "---" for c in columns) + "|"]
    for r in records:
        lines.append("| " + " | ".join(_cell(r.get(c), c, markdown=True).replace("|", "/") for c in columns) + " |")
    return "\n".join(lines) + "\n"


def write_reports(out: Path, records: List[dict], hypermodel, objective: str, title: str = "") -> None:
    """``trials.csv``, ``trials.md`` and ``pareto.png`` in ``out`` (each written atomically); sets each
    record's ``pareto``."""
    front = set(pareto_front(records, OBJECTIVES[objective][1]))
    for r in records:
        r["pareto"] = r["trial"] in front
    write_text_atomic(Path(out) / "trials.csv", trials_csv(records))
    write_text_atomic(Path(out) / "trials.md", trials_markdown(records, hypermodel.budget, objective, title))
    plot_pareto(records, Path(out) / "pareto.png", hypermodel.budget, objective, front)


def format_records(records: Sequence[dict]) -> str:
    """A short plain-text table for the terminal."""
    lines = [f"{'trial':>5}  {'status':<10}  {'widths':<22} {'params':>9} {'MACs':>11} {'accuracy':>8} "
             f"{'log loss':>8}"]
    for r in records:
        acc = "" if r["accuracy"] is None else f"{100 * r['accuracy']:.1f} %"
        ll = "" if r["log_loss"] is None else f"{r['log_loss']:.3f}"
        params = "" if r["params"] is None else f"{r['params']:,}"
        macs = "" if r["macs"] is None else format_macs(r["macs"])
        lines.append(f"{r['trial']:>5}  {r['status']:<10}  {str(r['widths']):<22} {params:>9} {macs:>11} "
                     f"{acc:>8} {ll:>8}" + (f"  {r['reason']}" if r["reason"] else ""))
    return "\n".join(lines)


# ---------------------------------------------------------------------------- plot


def plot_pareto(records: Sequence[dict], path, budget: Budget, objective: str, front=None) -> None:
    """Score against MACs (millions per budget clip): trained trials, the Pareto front (line), infeasible
    trials (x on the bottom axis) and the MAC budget (dashed line). Written atomically."""
    # a Figure of its own (Agg canvas), not pyplot: the caller's backend (a notebook's inline plots) is left alone
    from matplotlib.figure import Figure

    front = set(front if front is not None else pareto_front(records, OBJECTIVES[objective][1]))
    scale = 100.0 if objective == "accuracy" else 1.0
    fig = Figure(figsize=(6.4, 4.4))
    ax = fig.subplots()
    done = [r for r in records if r["status"] == "feasible" and r["score"] is not None and r["macs"]]
    ys = _plot_trained(ax, done, front, scale)
    bad = [r for r in records if r["status"] == "infeasible" and r["macs"]]
    if bad:
        ax.scatter([r["macs"] / 1e6 for r in bad], [min(ys) if ys else 0.0] * len(bad), marker="x", color="grey",
                   label="infeasible (not trained)", zorder=2)
    ax.axvline(budget.max_macs / 1e6, color="black", linestyle="--", label=f"MAC budget {format_macs(budget.max_macs)}")
    ax.set_xlabel(f"MACs per {budget.seconds:g}-s clip (M)")
    ax.set_ylabel("evaluate accuracy (%)" if objective == "accuracy" else "evaluate log loss")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    ax.set_title("DSSDN width search: score against MACs", fontsize=10)
    fig.tight_layout()
    save_figure_atomic(fig, path, dpi=120)


def _plot_trained(ax, done: Sequence[dict], front: set, scale: float) -> List[float]:
    """Trained trials (annotated with their ids) and the Pareto front; returns their y values."""
    xs = [r["macs"] / 1e6 for r in done]
    ys = [scale * r["score"] for r in done]
    ax.scatter(xs, ys, color="tab:blue", label="trained trials", zorder=3)
    for r, x, y in zip(done, xs, ys):
        ax.annotate(r["trial"], (x, y), textcoords="offset points", xytext=(4, 3), fontsize=7)
    pf = sorted((r["macs"] / 1e6, scale * r["score"]) for r in done if r["trial"] in front)
    if pf:
        ax.plot(*zip(*pf), color="tab:red", marker="o", label="Pareto front", zorder=4)
    return ys
