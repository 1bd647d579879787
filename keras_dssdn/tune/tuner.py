"""The budget-aware KerasTuner tuner (one class for random search, Bayesian optimisation and Hyperband).

:class:`BudgetedTuner` subclasses ``keras_tuner.Tuner`` and overrides its
public ``run_trial``, which returns the trial's metrics:

1. profile the trial's configuration (:meth:`DSSDNHyperModel.check`); over
   budget: return ``params``, ``macs``, ``infeasible = 1`` (objective NaN) and
   nothing is built or trained; the budget-aware oracle ends the trial FAILED
   (:mod:`keras_dssdn.tune.oracles`).
2. otherwise build the model (``HyperModel.build``), continue from the parent
   trial's best weights when Hyperband promotes a trial (``tuner/trial_id``,
   ``tuner/epochs``, ``tuner/initial_epoch``), train it (``HyperModel.fit``)
   with the best epoch's weights kept in ``trial_<id>/checkpoint.weights.h5``
   (written atomically), and return the best epoch's metrics plus ``params``,
   ``macs``, ``seconds`` (wall time) and ``epochs`` (all the weights have seen).

In a distributed search (KerasTuner's ``KERASTUNER_*`` variables) each worker
does both steps; only the metrics reach the chief.
"""

from __future__ import annotations

import copy
import dataclasses
import gc
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

import keras
import keras_tuner

from keras_dssdn.errors import SearchSettingsError
from keras_dssdn.fileio import write_atomic
from keras_dssdn.tune.feasibility import infeasible_metrics
from keras_dssdn.tune.oracles import (BudgetBayesianOptimizationOracle, BudgetHyperbandOracle, BudgetOracleMixin,
                                      BudgetRandomSearchOracle)

#: ``--objective`` -> (metric logged by EvaluateFold, direction).
OBJECTIVES = {"accuracy": ("eval_accuracy", "max"), "log_loss": ("eval_log_loss", "min")}
ALGORITHMS = ("random", "bayesian", "hyperband")
#: A trained trial's best-epoch weights, in its KerasTuner trial folder.
CHECKPOINT = "checkpoint.weights.h5"


def distributed_role() -> Optional[str]:
    """KerasTuner's distributed tuning, read from its documented environment: ``"chief"`` (``KERASTUNER_TUNER_ID``
    contains ``chief``: it serves the oracle and trains nothing), ``"worker"`` (another id), or None (one process,
    ``KERASTUNER_ORACLE_IP`` unset)."""
    if "KERASTUNER_ORACLE_IP" not in os.environ:
        return None
    return "chief" if "chief" in os.environ.get("KERASTUNER_TUNER_ID", "") else "worker"


def save_weights_atomic(model: keras.Model, path) -> Path:
    """``model.save_weights`` to ``path`` (``*.weights.h5``) through :func:`keras_dssdn.fileio.write_atomic`."""
    def write(tmp: Path) -> None:
        staged = tmp.with_suffix(".weights.h5")  # Keras wants the suffix; the temporary name lacks it
        try:
            model.save_weights(staged)
            os.replace(staged, tmp)
        finally:
            staged.unlink(missing_ok=True)

    return write_atomic(path, write)


class BestEpochCheckpoint(keras.callbacks.Callback):
    """Save the weights (atomically) whenever the objective improves; every epoch when it is not logged."""

    def __init__(self, objective: keras_tuner.Objective, path):
        super().__init__()
        self.objective, self.path = objective, path
        self.best = float("-inf") if objective.direction == "max" else float("inf")

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.objective.has_value(logs):
            value = self.objective.get_value(logs)
            if not self.objective.better_than(value, self.best):
                return
            self.best = value
        save_weights_atomic(self.model, self.path)


def best_epoch_metrics(history: keras.callbacks.History, objective: keras_tuner.Objective) -> Dict[str, float]:
    """The logged metrics of the epoch with the best objective (the first of equals), as floats."""
    epochs = [{k: float(v[i]) for k, v in history.history.items() if i < len(v)} for i in range(len(history.epoch))]
    if not epochs:
        return {objective.name: float("nan")}
    best = epochs[0]
    for logs in epochs[1:]:
        if objective.better_than(objective.get_value(logs), objective.get_value(best)):
            best = logs
    return best


class BudgetedTuner(keras_tuner.Tuner):
    """A KerasTuner tuner that never trains a configuration over budget (any of the three oracles).

    ``trained``: ids of the trials this process trained (resumed trials included, infeasible ones never).
    """

    def __init__(self, oracle, hypermodel=None, **kwargs):
        super().__init__(oracle=oracle, hypermodel=hypermodel, **kwargs)
        self.trained: List[str] = []
        if isinstance(self.oracle, BudgetOracleMixin):  # the proposing oracle: here, or on a distributed chief
            self.oracle.feasibility = getattr(self.hypermodel, "feasible", None)

    def run_trial(self, trial, *args, **kwargs) -> Dict[str, float]:
        """Profile, then (within budget) train; returns the best epoch's metrics, ``params``, ``macs``,
        ``seconds`` and ``epochs``, or over budget :func:`infeasible_metrics` without training."""
        check = self.hypermodel.check(trial.hyperparameters)
        if not check.fits:
            if getattr(self.oracle, "verbose", 1):
                print(f"Trial {trial.trial_id}: {check.reason}; not trained.")
            return infeasible_metrics(check, self.oracle.objective.name)
        self.trained.append(trial.trial_id)
        start = time.perf_counter()
        history = self.train(trial, *args, **kwargs)
        metrics = best_epoch_metrics(history, self.oracle.objective)
        seen = len(history.epoch) + trial.hyperparameters.values.get("tuner/initial_epoch", 0)
        metrics.update(params=float(check.params), macs=float(check.macs), seconds=time.perf_counter() - start,
                       epochs=float(seen))
        return metrics

    def train(self, trial, *args, callbacks=(), **kwargs) -> keras.callbacks.History:
        """Build and fit the trial's model; the best epoch's weights go to :meth:`checkpoint_path`."""
        hp = trial.hyperparameters
        if "tuner/epochs" in hp.values:  # Hyperband: this round's epochs, after the parent's
            kwargs.update(epochs=hp.values["tuner/epochs"], initial_epoch=hp.values["tuner/initial_epoch"])
        keras.backend.clear_session()  # as KerasTuner does between trials
        gc.collect()
        model = self.hypermodel.build(hp)
        if "tuner/trial_id" in hp.values:  # Hyperband promotion: continue from the parent's best epoch
            model.load_weights(self.checkpoint_path(hp.values["tuner/trial_id"]))
        checkpoint = BestEpochCheckpoint(self.oracle.objective, self.checkpoint_path(trial.trial_id))
        callbacks = [*copy.deepcopy(list(callbacks)), checkpoint]  # fresh copies for every trial
        return self.hypermodel.fit(hp, model, *args, callbacks=callbacks, **kwargs)

    def checkpoint_path(self, trial_id: str) -> str:
        return os.path.join(self.get_trial_dir(trial_id), CHECKPOINT)


@dataclass(frozen=True)
class TunerSpec:
    """The search algorithm and its settings (:func:`make_tuner`).

    ``algorithm``: one of :data:`ALGORITHMS`; ``objective``: a key of :data:`OBJECTIVES`; ``max_trials`` counts
    every trial, infeasible ones included (Hyperband sets its own count); ``epochs`` per trial (Hyperband: the most
    any trial gets); ``seed``; ``initial_points``: Bayesian random trials first (None: half of ``max_trials``, 3 to
    3 x blocks + 6); ``hyperband_factor`` and ``hyperband_iterations``; ``max_consecutive_failed_trials``.
    """

    algorithm: str = "bayesian"
    objective: str = "accuracy"
    max_trials: int = 10
    epochs: int = 8
    seed: int = 0
    initial_points: Optional[int] = None
    hyperband_factor: int = 3
    hyperband_iterations: int = 1
    max_consecutive_failed_trials: int = 3


def make_oracle(spec: TunerSpec) -> BudgetOracleMixin:
    """The budget-aware oracle of ``spec.algorithm`` for ``spec.objective`` (seeded with ``spec.seed + 1``)."""
    if spec.algorithm not in ALGORITHMS:
        raise SearchSettingsError(f"algorithm must be one of {ALGORITHMS}, got {spec.algorithm!r}.")
    if spec.objective not in OBJECTIVES:
        raise SearchSettingsError(f"objective must be one of {sorted(OBJECTIVES)}, got {spec.objective!r}.")
    common = dict(objective=keras_tuner.Objective(*OBJECTIVES[spec.objective]), seed=spec.seed + 1,
                  max_consecutive_failed_trials=spec.max_consecutive_failed_trials)
    if spec.algorithm == "random":
        return BudgetRandomSearchOracle(max_trials=spec.max_trials, **common)
    if spec.algorithm == "bayesian":
        return BudgetBayesianOptimizationOracle(max_trials=spec.max_trials, num_initial_points=spec.initial_points,
                                                **common)
    return BudgetHyperbandOracle(max_epochs=spec.epochs, factor=spec.hyperband_factor,
                                 hyperband_iterations=spec.hyperband_iterations, **common)


def make_tuner(hypermodel, spec: TunerSpec, directory, project_name: str = "keras_tuner",
               overwrite: bool = False) -> BudgetedTuner:
    """A budget-aware tuner over ``hypermodel`` (a DSSDNHyperModel) with the algorithm of ``spec``
    (:class:`TunerSpec`), its state in ``directory/project_name``."""
    if spec.algorithm == "bayesian" and spec.initial_points is None:  # KerasTuner's 3 x dimensions leaves the GP
        points = min(3 * len(hypermodel.space.widths_min) + 6, max(3, spec.max_trials // 2))  # nothing
        spec = dataclasses.replace(spec, initial_points=points)
    return BudgetedTuner(oracle=make_oracle(spec), hypermodel=hypermodel, directory=str(directory),
                         project_name=project_name, overwrite=overwrite)
