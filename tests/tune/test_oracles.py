"""Budget-aware oracles: infeasible trials are not failures, crashes still stop the search, state survives a resume."""

import json

import keras_tuner
import pytest

from keras_dssdn.tune.feasibility import Complexity, infeasible_metrics, is_infeasible
from keras_dssdn.tune.oracles import BudgetRandomSearchOracle
from keras_dssdn.tune.tuner import BudgetedTuner


def _oracle(tmp_path, limit=3):
    hp = keras_tuner.HyperParameters()
    hp.Int("width_1", 1, 1000)
    oracle = BudgetRandomSearchOracle(objective=keras_tuner.Objective("score", "max"), max_trials=50,
                                      hyperparameters=hp, seed=1, max_consecutive_failed_trials=limit)
    tuner = BudgetedTuner(oracle=oracle, directory=str(tmp_path), project_name="p")
    return oracle, tuner


def _run(oracle, status, infeasible=False):
    trial = oracle.create_trial("tuner0")
    if infeasible:
        oracle.update_trial(trial.trial_id, infeasible_metrics(Complexity(10, 20, "params 10 > 5 (over budget)"),
                                                               "score"))
    elif status == "COMPLETED":
        oracle.update_trial(trial.trial_id, {"score": 0.5})
    # BudgetedTuner.run_trial returns the infeasible metrics, so KerasTuner hands the trial back as COMPLETED
    trial.status = "COMPLETED" if infeasible else status
    trial.message = None if status == "COMPLETED" else "Traceback ...\nValueError: boom"
    oracle.end_trial(trial)
    ended = oracle.get_trial(trial.trial_id)
    if infeasible:  # the oracle ends it FAILED with one line, unscored
        assert ended.status == "FAILED" and ended.score is None and is_infeasible(ended)
        assert ended.message == "infeasible, not trained: 10 params, 0.00 M MACs over budget"


def test_infeasible_trials_do_not_count_as_consecutive_failures(tmp_path):
    oracle, tuner = _oracle(tmp_path)
    for _ in range(5):  # more than the limit in a row: not failures
        _run(oracle, "FAILED", infeasible=True)
    _run(oracle, "FAILED")
    _run(oracle, "FAILED")
    _run(oracle, "COMPLETED")  # a trained trial resets the count
    _run(oracle, "FAILED")
    _run(oracle, "FAILED")
    _run(oracle, "FAILED", infeasible=True)  # does not break the streak either
    with pytest.raises(RuntimeError, match="consecutive failures exceeded the limit of 3.\nTraceback"):
        _run(oracle, "FAILED")
    state = json.loads((tmp_path / "p" / "oracle.json").read_text())
    assert state["failure_streak"] == 3 and len(state["end_order"]) == 12

    tuner.save()  # as the tuner does after every trial
    resumed, _ = _oracle(tmp_path)  # the count is part of the oracle's state
    assert resumed.failure_streak == 3 and resumed.failure_limit == 3
