"""The KerasTuner internals keras_dssdn.tune relies on (keras_dssdn/tune/_kt_private.py) still exist and behave.

Each failure names the entry of _kt_private's docstring that the installed keras-tuner changed.
"""

from pathlib import Path

import keras_tuner
import numpy as np
import pytest

from keras_dssdn.tune import _kt_private
from keras_dssdn.tune.feasibility import Complexity, infeasible_metrics, is_infeasible
from keras_dssdn.tune.oracles import BudgetBayesianOptimizationOracle, BudgetRandomSearchOracle
from keras_dssdn.tune.tuner import BudgetedTuner


def _fail(entry: str, detail: str):
    pytest.fail(f"keras-tuner {keras_tuner.__version__}: {entry}: {detail}. keras_dssdn/tune/_kt_private.py relies on "
                "it (see its docstring): adapt that module, or pin keras-tuner==1.4.8.", pytrace=False)


def _space():
    hp = keras_tuner.HyperParameters()
    hp.Int("width_1", 8, 64, step=8)
    hp.Choice("low_ratio", [0.25, 0.5])
    hp.Fixed("width_2", 16)
    return hp


def _project(oracle, tmp_path):
    return BudgetedTuner(oracle=oracle, directory=str(tmp_path), project_name="p")


def test_private_names_and_signatures_exist():
    problems = _kt_private.missing()
    if problems:
        _fail("; ".join(problems), "renamed, removed or re-signed")


def test_state_files_are_written_atomically_and_reload(tmp_path, monkeypatch):
    """Entries 1-3: KerasTuner saves trial.json through Oracle._save_trial and oracle.json through Oracle.save."""
    written = []
    real = _kt_private.write_text_atomic

    def recording(path, text):
        written.append(Path(path).relative_to(tmp_path).as_posix())
        return real(path, text)

    monkeypatch.setattr(_kt_private, "write_text_atomic", recording)
    oracle = BudgetRandomSearchOracle(objective=keras_tuner.Objective("score", "max"), max_trials=3,
                                      hyperparameters=_space(), seed=1)
    tuner = _project(oracle, tmp_path)
    trial = oracle.create_trial("tuner0")
    if f"p/trial_{trial.trial_id}/trial.json" not in written:
        _fail("Oracle._save_trial(self, trial)", "create_trial no longer saves the trial through it")
    if "p/oracle.json" not in written:
        _fail("Oracle.save(self)", "create_trial no longer saves the oracle through it")
    oracle.update_trial(trial.trial_id, infeasible_metrics(Complexity(10, 20, "over"), "score"))  # NaN objective
    trial.status = "FAILED"
    oracle.end_trial(trial)
    tuner.save()
    assert not list(tmp_path.rglob("*.tmp*"))
    again = BudgetRandomSearchOracle(objective=keras_tuner.Objective("score", "max"), max_trials=3,
                                     hyperparameters=_space(), seed=1)
    _project(again, tmp_path)  # reloads the project from the files we wrote
    if trial.trial_id not in again.trials or not is_infeasible(again.trials[trial.trial_id]):
        _fail("Oracle.reload", "cannot read back the trial.json / oracle.json written by AtomicStateFiles")


def test_gp_attributes_and_input_encoding(tmp_path):
    """Entries 4-5: after populate_space, oracle.gpr is fitted on the trained trials only, encoded as gp_vector."""
    oracle = BudgetBayesianOptimizationOracle(objective=keras_tuner.Objective("score", "max"), max_trials=10,
                                              num_initial_points=3, hyperparameters=_space(), seed=3)
    _project(oracle, tmp_path)
    done = [{"width_1": 8, "low_ratio": 0.25, "width_2": 16}, {"width_1": 24, "low_ratio": 0.5, "width_2": 16},
            {"width_1": 56, "low_ratio": 0.25, "width_2": 16}]
    for i, values in enumerate(done + [{"width_1": 64, "low_ratio": 0.5, "width_2": 16}]):
        trial = oracle.create_trial("tuner0")
        trial.hyperparameters.values.update(values)
        metrics = {"score": 0.1 * i} if i < 3 else infeasible_metrics(Complexity(10, 20, "over"), "score")
        oracle.update_trial(trial.trial_id, metrics)
        trial.status = "COMPLETED" if i < 3 else "FAILED"
        oracle.end_trial(trial)
    oracle.populate_space("x")
    x_train = getattr(getattr(oracle, "gpr", None), "X_train_", None)
    if x_train is None or not hasattr(oracle, "beta"):
        _fail("BayesianOptimizationOracle.gpr / .beta", "populate_space no longer fits oracle.gpr (or beta is gone)")
    expected = sorted(_kt_private.gp_vector(oracle.hyperparameters, v) for v in done)
    if len(x_train) != 3 or sorted(map(list, np.asarray(x_train))) != expected:
        _fail("the GP input encoding (value_to_prob of the non-Fixed hyper-parameters; trained trials only)",
              f"the GP was fitted on {np.asarray(x_train).tolist()}, expected {expected}")
    scores = _kt_private.acquisition(oracle)(np.asarray(expected))
    assert scores.shape == (3,) and np.all(np.isfinite(scores))
