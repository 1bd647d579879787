"""Every use of KerasTuner beyond its documented extension points, in one place.

The rest of :mod:`keras_dssdn.tune` uses KerasTuner's public API only:
``HyperModel.build`` / ``fit``, ``Tuner.run_trial`` (returning metrics),
``Oracle.populate_space`` / ``update_trial`` / ``end_trial`` / ``get_state`` /
``set_state``, ``keras_tuner.synchronized``, ``Objective``, ``HyperParameters``,
a trial's ``status`` / ``metrics`` / ``hyperparameters`` / ``score`` and
``FailedTrialError``. What follows is not documented by KerasTuner (1.4.8);
each entry says what we use, why, and what breaks without it.
``tests/tune/test_kt_private.py`` checks every entry of :data:`REQUIRED`
against the installed keras-tuner and names the one that changed.

1. ``Oracle._save_trial(self, trial)`` (private, overridden by
   :class:`AtomicStateFiles`): KerasTuner writes ``trial_<id>/trial.json``
   through it after every create / update / end of a trial, truncating the
   file first. We write the same JSON to a temporary file and rename it,
   so a search killed mid-write still resumes (KerasTuner cannot reload a torn
   ``trial.json``). Without the hook: writes are KerasTuner's own, non-atomic.
2. ``Oracle._get_trial_dir(self, trial_id)`` (private, called): that folder
   (created on demand) under the project directory.
3. ``Oracle.save(self)`` (public name, undocumented; overridden) and
   ``Oracle._get_oracle_fname(self)`` (private, called): ``oracle.json``, written
   atomically for the same reason. (``<tuner_id>.json`` stays KerasTuner's own
   write: it holds ``{}``.)
4. ``BayesianOptimizationOracle.gpr`` and ``.beta`` (public names, undocumented
   attributes; read by :func:`acquisition`): once ``populate_space`` has fitted
   the Gaussian process (from ``num_initial_points`` COMPLETED trials on),
   ``gpr.predict(x, return_std=True)`` and ``beta`` give the acquisition
   KerasTuner minimises, ``mu - beta * sigma``. The budget-aware oracle ranks
   extra candidates with it when KerasTuner's own proposal is over budget or
   already tried. Without it: candidates would be drawn at random.
5. The GP's input encoding (undocumented; :func:`gp_vector`): one column per
   non-``Fixed`` hyper-parameter of ``oracle.hyperparameters.space``, in order,
   ``hp.value_to_prob(value)`` (as ``BayesianOptimizationOracle._vectorize_trials``
   builds them; the test compares with the GP's training inputs).
"""

from __future__ import annotations

import inspect
import json
import os
from typing import Callable, Dict, List, Sequence, Tuple

import keras_tuner
import numpy as np

from keras_dssdn.fileio import write_text_atomic

#: (owner, attribute, parameters of a method or None for a plain attribute): what this module relies on.
REQUIRED: Tuple[Tuple[type, str, Sequence[str]], ...] = (
    (keras_tuner.Oracle, "_save_trial", ("self", "trial")),
    (keras_tuner.Oracle, "_get_trial_dir", ("self", "trial_id")),
    (keras_tuner.Oracle, "save", ("self",)),
    (keras_tuner.Oracle, "_get_oracle_fname", ("self",)),
)
#: Attributes set on an instance (checked on a fresh BayesianOptimizationOracle).
REQUIRED_GP_ATTRIBUTES = ("gpr", "beta", "num_initial_points")


def missing() -> List[str]:
    """Each entry of :data:`REQUIRED` that the installed keras-tuner lacks or has changed, as a sentence."""
    problems = []
    for owner, name, params in REQUIRED:
        method = getattr(owner, name, None)
        if method is None:
            problems.append(f"keras_tuner.{owner.__name__}.{name} is gone")
        elif list(inspect.signature(method).parameters) != list(params):
            problems.append(f"keras_tuner.{owner.__name__}.{name}{inspect.signature(method)} is no longer "
                            f"({', '.join(params)})")
    oracle = keras_tuner.oracles.BayesianOptimizationOracle(objective=keras_tuner.Objective("x", "max"))
    problems += [f"BayesianOptimizationOracle().{a} is gone" for a in REQUIRED_GP_ATTRIBUTES if not hasattr(oracle, a)]
    return problems


class AtomicStateFiles:
    """Oracle mixin (entries 1-3): ``trial.json`` and ``oracle.json`` are written whole or not at all.

    The JSON is what KerasTuner writes (``json.dumps`` of ``get_state()``, NaN kept as ``NaN``) so it reloads it.
    """

    def _save_trial(self, trial) -> None:
        path = os.path.join(self._get_trial_dir(trial.trial_id), "trial.json")
        write_text_atomic(path, json.dumps(trial.get_state()))

    def save(self) -> None:
        write_text_atomic(self._get_oracle_fname(), json.dumps(self.get_state()))


def gp_vector(hyperparameters: keras_tuner.HyperParameters, values: Dict) -> List[float]:
    """Entry 5: ``values`` in the GP's input space, one number in [0, 1] per non-Fixed hyper-parameter."""
    return [hp.value_to_prob(values.get(hp.name, hp.default)) for hp in hyperparameters.space
            if not isinstance(hp, keras_tuner.engine.hyperparameters.Fixed)]


def acquisition(oracle) -> Callable[[np.ndarray], np.ndarray]:
    """Entry 4: the upper confidence bound of ``oracle``'s fitted GP, ``(n, d) vectors -> (n,)``, lower is better
    (the score is negated when the objective is maximised, as KerasTuner fits it)."""
    gpr, beta = oracle.gpr, oracle.beta

    def ucb(vectors: np.ndarray) -> np.ndarray:
        mu, sigma = gpr.predict(np.asarray(vectors, np.float64), return_std=True)
        return np.ravel(mu) - beta * np.ravel(sigma)

    return ucb
