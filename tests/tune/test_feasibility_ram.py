"""The RAM budget of the search: a configuration over --max-ram is infeasible before any training."""

import pytest

import keras_dssdn
from keras_dssdn.analysis.budgets import Budget
from keras_dssdn.cli import tune as tune_cli
from keras_dssdn.data.synthetic import make_synthetic_dataset
from keras_dssdn.errors import BudgetError
from keras_dssdn.params import FrontEndParams
from keras_dssdn.tune.feasibility import infeasible_metrics, measure

TINY = keras_dssdn.SMALL.replace(input_shape=[32, 16, 1], widths=[8, 12], pools=[[2, 2], [1, 1]], head_blocks=[1, 2],
                                 classes=4, stem_width=8)
FE = FrontEndParams(n_mels=32)


def test_measure_estimates_ram_only_when_the_budget_has_a_limit_and_rejects_a_configuration_over_it():
    assert measure(TINY, Budget(10**6, 10**9, 1.0), FE).ram is None
    fits = measure(TINY, Budget(10**6, 10**9, 1.0, max_ram=10**7), FE)
    assert fits.fits and 12_304 + 4_096 < fits.ram < 10**6  # front end + audio buffer + an arena
    over = measure(TINY, Budget(10**6, 10**9, 1.0, max_ram=fits.ram - 1), FE)
    assert not over.fits and over.reason == f"RAM {fits.ram:,} B > {fits.ram - 1:,} B (over budget)"
    assert infeasible_metrics(over, "accuracy")["ram"] == float(fits.ram)
    # already over the parameter limit: no conversion, no RAM figure
    assert measure(TINY, Budget(10, 10**9, 1.0, max_ram=10**7), FE).ram is None


def test_tune_refuses_a_ram_budget_no_configuration_meets(tmp_path, capsys):
    data = make_synthetic_dataset(tmp_path / "synthetic", num_classes=3, seconds=2.0, train_locations=2,
                                  eval_locations=1, clips_per_location=2, devices=("a",), seed=1)
    out = tmp_path / "search"
    args = ["--size", "small", "--data", str(data), "--out", str(out), "--algorithm", "random", "--epochs", "1",
            "--width-scale", "1:2", "--width-step", "4", "--quiet", "--max-ram", "20e3", "widths=[4,4,8,8,8]",
            "clip_seconds=2.0", "segment_seconds=1.0", "warmup_epochs=1", "verbose=0"]
    assert tune_cli.main(args) == BudgetError.exit_code
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: No configuration can fit the budget") and "<= 20,000 B of RAM" in err
    assert "B of RAM. Raise --max-params / --max-macs / --max-ram" in err
    assert not (out / "keras_tuner").exists()


@pytest.mark.parametrize("value", ["abc", "-5"])
def test_max_ram_must_be_a_positive_number(value, capsys):
    with pytest.raises(SystemExit):
        tune_cli.parse_settings(["--size", "small", "--data", "x", "--max-ram", value])


def test_the_microcontroller_size_searches_under_its_ram_limit_unless_told_otherwise():
    from keras_dssdn.tune.search import SearchSettings

    assert SearchSettings(size="dcase_mcu_1s").budget().max_ram == 128 * 1024
    assert SearchSettings(size="dcase_mcu_1s", max_ram=200_000).budget().max_ram == 200_000
    assert SearchSettings(size="dcase_small_1s").budget().max_ram is None
