"""Is a configuration within budget, and how an over-budget trial is reported.

Every configuration is profiled before any training, in the process that
would train it: parameters (all Keras parameters, batch-norm statistics
included) and MACs per clip of ``budget.seconds``, as
:func:`keras_dssdn.analysis.complexity.profile` counts them, and, when the
budget has ``max_ram``, the device RAM of the model's own input
(:func:`keras_dssdn.analysis.ram.estimate_device_ram`: TFLM arena planned from
the converted graph, no data needed, + front end + audio buffer; seconds per
configuration, so only for those within the parameter and MAC limits).

An over-budget trial is *infeasible*: the tuner's ``run_trial`` returns the
metrics of :func:`infeasible_metrics` (``params``, ``macs``, ``infeasible = 1``,
objective NaN) without building or training anything, and the budget-aware
oracle's ``end_trial`` ends it ``FAILED`` with the one-line
:func:`infeasible_message` (no traceback, no retry, no score). Metrics reach a
distributed chief over KerasTuner's gRPC protocol, a trial's message does not,
so both the oracle and :func:`is_infeasible` read the metric.
:class:`InfeasibleTrialError` (KerasTuner's public ``FailedTrialError``) is
what :meth:`DSSDNHyperModel.fit` raises if any tuner asks it to train an
over-budget configuration.
"""

from __future__ import annotations

import dataclasses
from typing import Dict, Optional

import keras_tuner

from keras_dssdn.analysis.budgets import Budget, format_macs
from keras_dssdn.models.dssdn import DSSDNConfig, build_dssdn

#: The metric that marks an infeasible trial (value 1.0).
INFEASIBLE = "infeasible"


@dataclasses.dataclass(frozen=True)
class Complexity:
    """Parameters and MACs (per ``budget.seconds`` clip) of one configuration against a budget, and its device
    RAM in bytes (None when the budget has no ``max_ram`` or the configuration is already over)."""

    params: int
    macs: int
    reason: Optional[str]  # None: fits; else a one-line reason ("params 5,000 > 4,000 (over budget)")
    ram: Optional[int] = None

    @property
    def fits(self) -> bool:
        return self.reason is None


def measure(config: DSSDNConfig, budget: Budget, frontend=None) -> Complexity:
    """Build ``config`` and count it for a ``budget.seconds`` clip of ``frontend``
    (default: :data:`~keras_dssdn.params.DEFAULT_FRONTEND`)."""
    from keras_dssdn.analysis.complexity import profile
    from keras_dssdn.params import DEFAULT_FRONTEND

    frontend = frontend or DEFAULT_FRONTEND
    model = build_dssdn(config, name="budget_check")
    report = profile(model, seconds=budget.seconds, frontend=frontend)
    reason = budget.reason(report.params, report.macs)
    if budget.max_ram is None or reason is not None:
        return Complexity(report.params, report.macs, reason)
    from keras_dssdn.analysis.complexity import graph_macs
    from keras_dssdn.analysis.ram import estimate_device_ram

    invoke_macs = sum(graph_macs(model, tuple(model.inputs[0].shape[1:])).values())  # one Invoke(): its own input
    ram = estimate_device_ram(model, frontend, invoke_macs)["total"]
    return Complexity(report.params, report.macs, budget.reason(report.params, report.macs, ram_bytes=ram), ram)


class InfeasibleTrialError(keras_tuner.errors.FailedTrialError):
    """A trial whose configuration is over budget: KerasTuner marks it FAILED (no retry) and moves on."""

    def __init__(self, check: Complexity):
        super().__init__(f"infeasible, not trained: {check.reason}")
        self.check = check


def infeasible_metrics(check: Complexity, objective: str) -> Dict[str, float]:
    """What an infeasible trial reports: its cost, the marker, and a NaN objective (the oracle requires one)."""
    out = {objective: float("nan"), "params": float(check.params), "macs": float(check.macs), INFEASIBLE: 1.0}
    if check.ram is not None:
        out["ram"] = float(check.ram)
    return out


def reported_infeasible(trial) -> bool:
    """True for a trial whose metrics mark it over budget (whatever its status)."""
    return trial.metrics.exists(INFEASIBLE)


def infeasible_message(trial) -> str:
    """A one-line message for an infeasible trial, from its reported ``params`` and ``macs``."""
    params, macs, ram = (trial.metrics.get_last_value(k) if trial.metrics.exists(k) else None
                         for k in ("params", "macs", "ram"))
    cost = f"{int(params):,} params, {format_macs(macs)} MACs" if params is not None and macs is not None else "cost"
    cost += f", {int(ram):,} B RAM" if ram is not None else ""
    return f"infeasible, not trained: {cost} over budget"


def is_infeasible(trial) -> bool:
    """True for a trial reported over budget (FAILED, with the ``infeasible`` metric)."""
    return trial.status == "FAILED" and reported_infeasible(trial)
