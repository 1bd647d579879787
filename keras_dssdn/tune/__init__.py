"""KerasTuner search of DSSDN channel widths under a parameter and a MAC budget (``tools/tune.py``).

One module per idea (imports only go down this list, no cycle):

* :mod:`.space`: :class:`SearchSpace`, the widths and ratios searched;
* :mod:`.feasibility`: :class:`Complexity`, :func:`measure`, :class:`InfeasibleTrialError`: within budget or not;
* :mod:`.data`: :class:`TuningData`, :func:`prepare_data`: the pipelines all trials share;
* :mod:`.hypermodel`: :class:`DSSDNHyperModel`, :class:`EvaluateFold`: build and train one configuration;
* :mod:`.oracles`: budget-aware random search, Bayesian optimisation and Hyperband oracles;
* :mod:`.tuner`: :class:`BudgetedTuner`, :func:`make_tuner`: profile before training, never train over budget;
* :mod:`.reports`: trial records, ``trials.csv`` / ``trials.md``, the Pareto front and plot;
* :mod:`.search`: :class:`SearchSettings`, :func:`run_search`: the whole, resumable search;
* :mod:`._kt_private`: the few KerasTuner internals relied on, listed and checked.

Budgets: :class:`keras_dssdn.analysis.budgets.Budget`; errors: :mod:`keras_dssdn.errors`
(``BudgetError``, ``SearchSettingsError``). docs/tuning.md has the tune -> train -> export flow.
"""

from keras_dssdn.tune.tuning_data import TuningData, prepare_data
from keras_dssdn.tune.feasibility import Complexity, InfeasibleTrialError, is_infeasible, measure
from keras_dssdn.tune.hypermodel import DSSDNHyperModel, EvaluateFold
from keras_dssdn.tune.oracles import (BudgetBayesianOptimizationOracle, BudgetHyperbandOracle, BudgetOracleMixin,
                                      BudgetRandomSearchOracle)
from keras_dssdn.tune.reports import format_records, pareto_front, plot_pareto, trial_records, write_reports
from keras_dssdn.tune.search import SIZES, SearchResult, SearchSettings, finish, run_search, setup
from keras_dssdn.tune.space import SearchSpace
from keras_dssdn.tune.tuner import ALGORITHMS, OBJECTIVES, BudgetedTuner, TunerSpec, make_oracle, make_tuner

__all__ = [
    "ALGORITHMS", "BudgetBayesianOptimizationOracle", "BudgetHyperbandOracle", "BudgetOracleMixin",
    "BudgetRandomSearchOracle", "BudgetedTuner", "Complexity", "DSSDNHyperModel", "EvaluateFold",
    "InfeasibleTrialError", "OBJECTIVES", "SIZES", "SearchResult", "SearchSettings", "SearchSpace", "TuningData",
    "TunerSpec", "finish", "format_records", "is_infeasible", "make_oracle", "make_tuner", "measure",
    "pareto_front", "plot_pareto", "prepare_data", "run_search", "setup", "trial_records", "write_reports",
]
