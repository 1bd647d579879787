"""Width search (keras_dssdn.tune, dssdn-tune): end to end, budgets, infeasible trials, kill-and-resume, best config."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
import keras
import keras_tuner

import keras_dssdn
from keras_dssdn.cli import tune as tune_cli
from keras_dssdn.data.synthetic import make_synthetic_dataset
from keras_dssdn.errors import BudgetError, SearchSettingsError
from keras_dssdn.train import build_network, load_train_config
from keras_dssdn.analysis.budgets import Budget
from keras_dssdn.tune import (
    BudgetBayesianOptimizationOracle,
    BudgetedTuner,
    SearchSpace,
    pareto_front,
    run_search,
    setup,
)

REPO = Path(__file__).resolve().parents[2]

# Widths 4..8 (blocks 1-2) and 8..16 (blocks 3-5) in steps of 4, split and SPC ratios searched; 1 epoch per trial;
# trials on whole 2-s clips (87 frames), whatever segment length the packaged recipe uses.
RECIPE = ["widths=[4,4,8,8,8]", "clip_seconds=2.0", "segment_seconds=null", "batch_size=6", "warmup_epochs=1",
          "verbose=0", "run_eagerly=true"]  # trials of a few steps: no tracing (20-40 s per model here)


def _args(data, out, *extra):
    return ["--size", "small", "--data", str(data), "--out", str(out), "--algorithm", "random", "--epochs", "1",
            "--width-scale", "1:2", "--width-step", "4", "--quiet", *extra, *RECIPE]


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data") / "synthetic"
    return make_synthetic_dataset(root, num_classes=3, seconds=2.0, train_locations=2, eval_locations=1,
                                  clips_per_location=3, devices=("a", "b"), seed=1)


def _rows(out):
    with open(out / "trials.csv") as f:
        return list(csv.DictReader(f))


class _KillAtTrainBegin(keras.callbacks.Callback):
    """Simulates a kill: the ``kill_at``-th training that starts in this process raises KeyboardInterrupt
    (counted on the class: KerasTuner deep-copies callbacks for every trial)."""

    starts = 0
    kill_at = 1

    def on_train_begin(self, logs=None):
        type(self).starts += 1
        if type(self).starts == type(self).kill_at:
            raise KeyboardInterrupt("simulated kill")


@pytest.mark.slow
def test_search_end_to_end_infeasible_kill_resume_and_best_config(tiny_data, tmp_path):
    out = tmp_path / "search"
    # 4,000 params: the seeded random search draws feasible trials 0 and 1, then an over-budget trial 2
    budget = ["--max-params", "4000"]

    # 1. one trial through the command line
    assert tune_cli.main(_args(tiny_data, out, "--max-trials", "1", *budget)) == 0
    for name in ("search.json", "best_config.json", "best_trial.json", "trials.csv", "trials.md", "pareto.png",
                 "keras_tuner/oracle.json", "keras_tuner/trial_0/trial.json"):
        assert (out / name).is_file(), name
    assert not list(out.rglob("*.tmp*"))
    ckpt0 = out / "keras_tuner" / "trial_0" / "checkpoint.weights.h5"
    stamp0 = ckpt0.stat().st_mtime_ns

    # 2. the same search with more trials, killed when the next training starts
    settings = tune_cli.parse_settings(_args(tiny_data, out, "--max-trials", "3", *budget))
    _KillAtTrainBegin.starts, _KillAtTrainBegin.kill_at = 0, 1
    with pytest.raises(KeyboardInterrupt):
        run_search(settings, callbacks=[_KillAtTrainBegin()])
    oracle_state = json.loads((out / "keras_tuner" / "oracle.json").read_text())
    killed = list(oracle_state["ongoing_trials"].values())
    assert len(killed) == 1

    # 3. rerun: finished trials are kept, only the killed one and the rest are trained
    result = run_search(settings)
    assert result.tuner.trained == killed  # trial 0 (finished) is not trained again, infeasible ones never
    assert ckpt0.stat().st_mtime_ns == stamp0

    records = {r["trial"]: r for r in result.records}
    assert set(records) == {"0", "1", "2"}
    statuses = {r["status"] for r in records.values()}
    assert statuses == {"feasible", "infeasible"}, records
    for r in records.values():
        assert r["params"] is not None and r["macs"] is not None
        if r["status"] == "feasible":  # no trained trial exceeds its budget
            assert r["params"] <= 4000 and r["macs"] <= 700_000_000
            assert 0.0 <= r["accuracy"] <= 1.0 and r["log_loss"] > 0 and r["epochs"] == 1
        else:
            assert r["params"] > 4000 and "over budget" in r["reason"] and r["accuracy"] is None
            assert r["trial"] not in killed
            assert not (out / "keras_tuner" / f"trial_{r['trial']}" / "checkpoint.weights.h5").exists()
    rows = _rows(out)
    assert [row["status"] for row in rows] == [records[str(i)]["status"] for i in range(3)]
    assert all(row["params"] and row["macs"] for row in rows)
    assert "infeasible" in (out / "trials.md").read_text()

    # the best configuration: a trained trial, loadable by the constructors and tools/train.py
    best = json.loads((out / "best_trial.json").read_text())
    assert records[best["trial"]]["status"] == "feasible"
    assert best["score"] == max(r["score"] for r in records.values() if r["status"] == "feasible")
    model = keras_dssdn.DSSDNSmall(config=str(out / "best_config.json"))
    assert model.input_shape == (None, 128, 87, 1) and model.output_shape == (None, 3)
    assert list(model.dssdn_config.widths) == best["widths"]
    assert keras_dssdn.profile(model, seconds=10).params == best["params"]
    cfg = load_train_config("small", [f"model={out / 'best_config.json'}", f"data={tiny_data}", *RECIPE[1:]])
    assert list(build_network(cfg, 3).dssdn_config.widths) == best["widths"]

    # a rerun with other settings is refused, naming the difference
    with pytest.raises(SearchSettingsError, match="epochs"):
        run_search(tune_cli.parse_settings(_args(tiny_data, out, "--max-trials", "3", "--epochs", "2", *budget)))


def test_over_budget_trials_are_recorded_never_trained_and_do_not_stop_the_search(tiny_data, tmp_path):
    out = tmp_path / "tight"
    probe = tune_cli.parse_settings(_args(tiny_data, out, "--max-trials", "4"))
    smallest, _ = setup(probe).check_space()
    # only the very smallest configuration fits: four random trials are (almost surely) all over budget,
    # more in a row than KerasTuner's max_consecutive_failed_trials (3)
    settings = tune_cli.parse_settings(_args(tiny_data, out, "--max-trials", "4", "--max-params",
                                             str(smallest.params)))
    result = run_search(settings)
    assert result.tuner.trained == [] and result.best is None
    assert [r["status"] for r in result.records] == ["infeasible"] * 4
    for r in result.records:
        assert r["params"] > smallest.params and r["reason"].startswith(f"params {r['params']:,} > ")
    assert not (out / "best_config.json").exists()
    assert [row["status"] for row in _rows(out)] == ["infeasible"] * 4
    assert (out / "pareto.png").is_file()


def test_impossible_budget_is_reported_at_start(tiny_data, tmp_path, capsys):
    out = tmp_path / "impossible"
    # exit status: BudgetError.exit_code (5; was a hard-coded 2 before keras_dssdn.errors gave budgets their own)
    assert BudgetError.exit_code == 5
    assert tune_cli.main(_args(tiny_data, out, "--max-trials", "2", "--max-params", "100")) == BudgetError.exit_code
    err = capsys.readouterr().err
    assert [line for line in err.splitlines() if line.startswith("error: ")] == [err.strip().splitlines()[-1]]
    assert "Traceback" not in err  # one line, no traceback
    assert "No configuration can fit the budget (<= 100 params" in err
    assert "the smallest in the search space (widths [4, 4, 8, 8, 8]" in err and "--max-params" in err
    assert not (out / "keras_tuner").exists()  # nothing decoded, no search started
    assert tune_cli.main(_args(tiny_data, out, "--max-macs", "1e6")) == BudgetError.exit_code
    assert "MACs per 10 s" in capsys.readouterr().err
    # a settings error is one line too, with ConfigError's status
    assert tune_cli.main(_args(tiny_data, out, "epochs=3")) == SearchSettingsError.exit_code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == "error: set epochs with --epochs, not 'epochs=3'"


def test_search_space_ranges_and_corners():
    space = SearchSpace.around(keras_dssdn.SMALL)
    assert space.widths_min == (16, 16, 24, 32, 32) and space.widths_max == (48, 64, 96, 128, 128)
    assert space.partial_ratios == (0.125, 0.25, 0.5) and not space.bottleneck_ratios
    small = space.corner(keras_dssdn.SMALL)
    assert small.widths == (16, 16, 24, 32, 32) and small.partial_ratio == 0.125 and small.low_ratio == 0.375
    assert SearchSpace.around(keras_dssdn.MIDDLE).bottleneck_ratios == (0.125, 0.25, 0.5)
    widths_only = SearchSpace.around(keras_dssdn.LARGE, ratios=False)
    hp = keras_tuner.HyperParameters()
    widths_only.declare(hp, keras_dssdn.LARGE)
    assert sorted(hp.values) == [f"width_{i}" for i in range(1, 6)]
    assert widths_only.config(hp.values, keras_dssdn.LARGE) == keras_dssdn.LARGE  # defaults: the preset
    assert Budget(100, 10**6).reason(101, 2 * 10**6) == "params 101 > 100, MACs 2.00 M > 1.00 M per 10 s (over budget)"
    recs = [{"trial": t, "status": "feasible", "macs": m, "score": s}
            for t, m, s in [("a", 1, 0.5), ("b", 2, 0.4), ("c", 3, 0.7), ("d", 3, 0.6)]]
    assert pareto_front(recs, "max") == ["a", "c"] and pareto_front(recs, "min") == ["a", "b"]


def test_bayesian_oracle_proposes_feasible_configurations(tmp_path):
    hp = keras_tuner.HyperParameters()
    hp.Int("width_1", 8, 64, step=8)
    oracle = BudgetBayesianOptimizationOracle(objective=keras_tuner.Objective("score", "max"), max_trials=20,
                                              num_initial_points=3, hyperparameters=hp, seed=3)
    BudgetedTuner(oracle=oracle, directory=str(tmp_path), project_name="bo")  # gives the oracle its folder
    for width in (8, 16, 48):  # bigger is better: an unconstrained GP goes for the top of the range
        trial = oracle.create_trial("tuner0")
        trial.hyperparameters.values["width_1"] = width
        oracle.update_trial(trial.trial_id, {"score": width / 64})
        trial.status = "COMPLETED"
        oracle.end_trial(trial)
    assert oracle.populate_space("x")["values"]["width_1"] > 32
    checked = []
    oracle.feasibility = lambda values: checked.append(values["width_1"]) or values["width_1"] <= 32
    proposal = oracle.populate_space("y")["values"]["width_1"]
    assert proposal in (24, 32) and len(checked) <= 4  # the best untried candidate within budget


def test_tools_wrapper_reports_user_errors_in_one_line(tiny_data, tmp_path):
    """tools/tune.py is a thin wrapper of keras_dssdn.cli.tune.main: its exit status, one line, no traceback."""
    out = tmp_path / "wrapped"
    proc = subprocess.run([sys.executable, str(REPO / "tools" / "tune.py"),
                           *_args(tiny_data, out, "--max-params", "100")], capture_output=True, text=True, timeout=600)
    assert proc.returncode == BudgetError.exit_code, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error: ") or "Traceback" in line]
    assert len(lines) == 1 and lines[0].startswith("error: No configuration can fit the budget"), proc.stderr[-2000:]
