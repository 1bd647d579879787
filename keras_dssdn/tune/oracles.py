"""Budget-aware KerasTuner oracles: random search, Bayesian optimisation and Hyperband.

What they add to KerasTuner's oracles, through its documented hooks:

* ``end_trial``: a trial the tuner reported infeasible (its ``infeasible``
  metric) is ended ``FAILED`` with a one-line message, never scored or
  retried, and left out of the consecutive-failure count; ``max_consecutive_failed_trials``
  real failures in a row (crashes) still stop the search with KerasTuner's
  ``RuntimeError``. The count lives in the oracle state (``get_state`` /
  ``set_state``), so it survives a resume.
* ``update_trial``: an infeasible report's NaN objective is stored without numpy's
  "All-NaN" warning.
* ``populate_space`` (Bayesian only): KerasTuner's proposal is kept when it is
  untried and within budget; otherwise the best untried candidate within
  budget by the acquisition is proposed (see
  :class:`BudgetBayesianOptimizationOracle`). Infeasible trials are ``FAILED``,
  which KerasTuner's Gaussian process leaves out: it never sees a made-up score.
* State files are written atomically (:class:`~keras_dssdn.tune._kt_private.AtomicStateFiles`).

``feasibility`` (hyper-parameter values -> bool) is set by the tuner that owns
the oracle (:class:`~keras_dssdn.tune.tuner.BudgetedTuner`); in a distributed
search that is the chief's.
"""

from __future__ import annotations

import sys
import warnings
from typing import Callable, Dict, Iterable, List, Optional

import keras_tuner
import numpy as np

from keras_dssdn.tune import _kt_private
from keras_dssdn.tune.feasibility import INFEASIBLE, infeasible_message, is_infeasible, reported_infeasible

#: What KerasTuner's own consecutive-failure check is given: never reached (the mixin counts instead).
_NEVER = sys.maxsize


class BudgetOracleMixin(_kt_private.AtomicStateFiles):
    """For KerasTuner oracles: infeasible trials do not count as consecutive failures; state written atomically.

    ``max_consecutive_failed_trials``: real failures (FAILED, not infeasible) in a row that stop the search.
    """

    feasibility: Optional[Callable[[Dict], bool]] = None

    def __init__(self, *args, max_consecutive_failed_trials: int = 3, **kwargs):
        super().__init__(*args, max_consecutive_failed_trials=_NEVER, **kwargs)
        self.failure_limit = int(max_consecutive_failed_trials)
        self.failure_streak = 0

    @keras_tuner.synchronized
    def update_trial(self, trial_id, metrics, step=0):
        if INFEASIBLE not in metrics:
            return super().update_trial(trial_id, metrics, step=step)
        with warnings.catch_warnings():  # the objective is NaN by design: numpy's "All-NaN slice" adds nothing
            warnings.simplefilter("ignore", RuntimeWarning)
            return super().update_trial(trial_id, metrics, step=step)

    @keras_tuner.synchronized
    def end_trial(self, trial):
        reported = self.get_trial(trial.trial_id)  # the oracle's copy holds the metrics, also from a remote worker
        if reported_infeasible(reported):  # over budget: not trained, so neither scored nor retried
            trial.status, trial.message = "FAILED", infeasible_message(reported)
        super().end_trial(trial)
        streak = self.failure_streak
        self._count_failure(self.get_trial(trial.trial_id))
        if self.failure_streak != streak:
            self.save()
        if self.failure_streak >= self.failure_limit:
            message = self.get_trial(trial.trial_id).message or ""
            raise RuntimeError(f"Number of consecutive failures exceeded the limit of {self.failure_limit}.\n"
                               + message)

    def _count_failure(self, trial) -> None:
        if trial.status == "INVALID" or is_infeasible(trial):  # INVALID: queued for a retry; infeasible: not trained
            return
        self.failure_streak = self.failure_streak + 1 if trial.status == "FAILED" else 0

    def get_state(self):
        state = super().get_state()
        state["failure_streak"] = self.failure_streak
        return state

    def set_state(self, state):
        super().set_state(state)
        self.failure_streak = int(state.get("failure_streak", 0))


class BudgetRandomSearchOracle(BudgetOracleMixin, keras_tuner.oracles.RandomSearchOracle):
    """KerasTuner's random search; its draws are not filtered (an over-budget draw is recorded as infeasible)."""


class BudgetHyperbandOracle(BudgetOracleMixin, keras_tuner.oracles.HyperbandOracle):
    """KerasTuner's Hyperband; it promotes COMPLETED trials only, so an infeasible one leaves its bracket short."""


class BudgetBayesianOptimizationOracle(BudgetOracleMixin, keras_tuner.oracles.BayesianOptimizationOracle):
    """Gaussian-process proposals restricted to untried configurations within budget.

    The first ``num_initial_points`` trials are KerasTuner's random draws (not filtered). From then on
    KerasTuner fits the GP to the trained trials and proposes the optimum of its acquisition; if that
    configuration is already tried or over budget, ``random_candidates`` random configurations are ranked by
    the same acquisition and the first untried one that ``feasibility`` accepts is proposed (at most
    ``max_checks`` profiled in that order, then up to ``max_checks`` more in random order). If none fits, an
    untried one is proposed anyway and recorded as infeasible when it is run.
    """

    max_checks = 24
    random_candidates = 1024

    def populate_space(self, trial_id):
        response = super().populate_space(trial_id)
        if response["status"] != "RUNNING" or self.feasibility is None or not self._gp_phase():
            return response
        return self._feasible_response(response["values"])

    def _gp_phase(self) -> bool:
        """Whether KerasTuner proposed from the GP (documented rule: ``num_initial_points`` COMPLETED trials,
        default 3 x the number of hyper-parameters, at least 3)."""
        completed = sum(t.status == "COMPLETED" for t in self.trials.values())
        return completed >= (self.num_initial_points or max(3 * len(self.hyperparameters.space), 3))

    def _feasible_response(self, proposal: Dict) -> Dict:
        rng = np.random.default_rng([int(self.seed), len(self.trials)])  # reproducible, and again on resume
        tried = {_key(t.hyperparameters.values) for t in self.trials.values()}
        fresh = [v for v in _unique([proposal, *self._ranked_candidates(rng)]) if _key(v) not in tried]
        ranked, rest = fresh[:self.max_checks], fresh[self.max_checks:]
        rng.shuffle(rest)
        for values in ranked + rest[:self.max_checks]:
            if self.feasibility(values):
                return {"status": "RUNNING", "values": values}
        if not fresh:
            return {"status": "STOPPED", "values": None}
        unchecked = rest[self.max_checks:]
        return {"status": "RUNNING", "values": (unchecked or rest or ranked)[0]}

    def _ranked_candidates(self, rng: np.random.Generator) -> List[Dict]:
        """``random_candidates`` random configurations, best acquisition first."""
        space = self.hyperparameters.space
        samples = [{hp.name: hp.random_sample(int(rng.integers(2**31))) for hp in space}
                   for _ in range(self.random_candidates)]
        vectors = np.array([_kt_private.gp_vector(self.hyperparameters, v) for v in samples])
        scores = _kt_private.acquisition(self)(vectors)
        return [samples[i] for i in np.argsort(scores, kind="stable")]


def _key(values: Dict) -> tuple:
    return tuple(sorted(values.items()))


def _unique(candidates: Iterable[Dict]) -> List[Dict]:
    seen, out = set(), []
    for values in candidates:
        key = _key(values)
        if key not in seen:
            seen.add(key)
            out.append(values)
    return out
