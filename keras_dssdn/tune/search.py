"""The whole width search: settings, set-up, the run (resumable) and its results.

:func:`run_search` checks a rerun against the folder's settings, builds the
:class:`~keras_dssdn.tune.hypermodel.DSSDNHyperModel` (no audio decoded),
stops with :class:`~keras_dssdn.errors.BudgetError` if even the smallest
configuration is over budget, decodes the data once, runs the budget-aware
tuner (:mod:`keras_dssdn.tune.tuner`) and writes the reports
(:mod:`keras_dssdn.tune.reports`) and the best configuration.

Output folder::

    <out>/search.json         the search settings (a rerun must match them to resume)
    <out>/keras_tuner/        KerasTuner's project (oracle.json, trial_*/trial.json, checkpoints)
    <out>/best_config.json    DSSDNConfig JSON of the best trained trial (DSSDNSmall(config=...),
                              tools/train.py model=...)
    <out>/best_trial.json     its trial id, score, params, MACs, budget and the train command
    <out>/trials.csv, trials.md   every trial: widths, other hps, params, MACs, score, status, reason
    <out>/pareto.png          score against MACs, the Pareto front and the MAC budget

Distributed (KerasTuner's ``KERASTUNER_*`` variables, ``tools/launch_tune.sh``):
the chief only serves the oracle (no data decoded) and writes the reports; a
worker trains and returns a :class:`SearchResult` without records.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import keras

from keras_dssdn.analysis.budgets import DEFAULT_BUDGETS, Budget, format_macs
from keras_dssdn.errors import SearchSettingsError
from keras_dssdn.fileio import write_json_atomic
from keras_dssdn.models.presets import resolve_config
from keras_dssdn.tune.tuning_data import prepare_data
from keras_dssdn.tune.hypermodel import DSSDNHyperModel
from keras_dssdn.tune.reports import trial_records, write_reports
from keras_dssdn.tune.space import SearchSpace
from keras_dssdn.tune.tuner import OBJECTIVES, TunerSpec, distributed_role, make_tuner

#: Size -> (packaged training config, operator-specific ratio hyper-parameter or None).
SIZES = {
    "small": ("small", "partial_ratio"),
    "middle": ("middle", "bottleneck_ratio"),
    "large": ("large", None),
    "dcase_small_1s": ("dcase_small_1s", "partial_ratio"),
    "dcase_mcu_1s": ("dcase_mcu_1s", "partial_ratio"),
}
#: Files of a finished search (removed by ``overwrite``).
RESULT_FILES = ("best_config.json", "best_trial.json", "trials.csv", "trials.md", "pareto.png")


@dataclasses.dataclass
class SearchSettings:
    """What ``tools/tune.py`` takes. ``overrides``: training-recipe ``key=value`` (as tools/train.py);
    budgets default to :data:`~keras_dssdn.analysis.budgets.DEFAULT_BUDGETS`; widths range over
    ``width_scale`` x the size's widths (channels, multiples of ``width_step``)."""

    size: str = "small"
    data: Optional[str] = None
    out: str = "runs/tune/small"
    algorithm: str = "bayesian"
    max_trials: int = 10
    epochs: int = 8
    objective: str = "accuracy"
    max_params: Optional[int] = None
    max_macs: Optional[int] = None  # per budget_seconds clip
    max_ram: Optional[int] = None  # bytes of device RAM: TFLM arena + C front end + audio buffer
    budget_seconds: Optional[float] = None
    width_scale: Tuple[float, float] = (0.5, 2.0)
    width_step: int = 8
    min_width: Optional[int] = None
    max_width: Optional[int] = None
    ratios: bool = True
    config: Optional[str] = None  # training config (default: the size's packaged one)
    overrides: Tuple[str, ...] = ()
    seed: int = 0
    initial_points: Optional[int] = None
    hyperband_factor: int = 3
    overwrite: bool = False
    verbose: int = 1

    #: settings a rerun may change without starting over
    RESUMABLE_CHANGES = ("max_trials", "overwrite", "verbose", "out")

    def tuner_spec(self) -> TunerSpec:
        """The algorithm settings (:class:`~keras_dssdn.tune.tuner.TunerSpec`) of :func:`make_tuner`."""
        return TunerSpec(algorithm=self.algorithm, objective=self.objective, max_trials=self.max_trials,
                         epochs=self.epochs, seed=self.seed, initial_points=self.initial_points,
                         hyperband_factor=self.hyperband_factor)

    def budget(self) -> Budget:
        if self.size not in SIZES:
            raise SearchSettingsError(f"size must be one of {sorted(SIZES)}, got {self.size!r}.")
        default = DEFAULT_BUDGETS[self.size]
        return Budget(int(self.max_params or default.max_params), int(self.max_macs or default.max_macs),
                      float(self.budget_seconds or default.seconds),
                      max_ram=int(self.max_ram) if self.max_ram is not None else default.max_ram)

    def signature(self) -> dict:
        """The settings a resumed search must share (what ``search.json`` holds)."""
        d = json.loads(json.dumps(dataclasses.asdict(self)))
        for key in self.RESUMABLE_CHANGES:
            d.pop(key, None)
        d["data"] = str(Path(self.data).resolve()) if self.data else None
        return d

    def train_command(self, best_config: Path) -> str:
        return (f"python tools/train.py --config {self.config or SIZES[self.size][0]} model={best_config} "
                f"data={self.data} name=tuned-{self.size}")


@dataclasses.dataclass
class SearchResult:
    out: Path
    records: List[dict]  # empty on a distributed worker
    best: Optional[dict]  # the best trained trial's record
    best_config: Optional[Path]
    tuner: object  # the BudgetedTuner


# ---------------------------------------------------------------------------- set-up


def train_config(settings: SearchSettings):
    """The trials' TrainConfig: the size's (or ``settings.config``) with the overrides, data, epochs, seed."""
    from keras_dssdn.train import load_train_config

    name = settings.config or SIZES[settings.size][0]
    cfg = load_train_config(name, [*settings.overrides, f"data={settings.data}", f"epochs={settings.epochs}",
                                   f"seed={settings.seed}"])
    if cfg.model == "baseline":
        raise SearchSettingsError("The baseline has no widths to tune; use a DSSDN config.")
    return cfg


def setup(settings: SearchSettings, clips=None) -> DSSDNHyperModel:
    """The hypermodel for ``settings`` (clip lists read, no audio decoded, budget not yet checked)."""
    from keras_dssdn.train import input_seconds, training_data

    if settings.data is None:
        raise SearchSettingsError("No dataset: give --data <DCASE folder> (or a CSV with eval_data=...).")
    cfg = train_config(settings)
    clips = clips or training_data(cfg)
    shape = cfg.frontend_params().input_shape(input_seconds(cfg))
    base = resolve_config(cfg.model).replace(input_shape=list(shape), classes=len(clips[2]))
    if cfg.widths:
        base = base.replace(widths=list(cfg.widths))
    space = SearchSpace.around(base, scale=tuple(settings.width_scale), width_step=settings.width_step,
                               min_width=settings.min_width, max_width=settings.max_width, ratios=settings.ratios)
    hm = DSSDNHyperModel(base, space, settings.budget(), cfg)
    hm.clips = clips
    return hm


def check_folder(out: Path, settings: SearchSettings) -> None:
    """:class:`SearchSettingsError` listing the differences when ``out`` holds a search with other settings."""
    saved_path = Path(out) / "search.json"
    if settings.overwrite or not saved_path.is_file():
        return
    from keras_dssdn.fileio import read_json

    saved = read_json(saved_path, "tuner state file", f"delete {saved_path} (the trials stay) or pass --overwrite "
                      "to start the search again")
    mine = settings.signature()
    diff = sorted(k for k in set(saved) | set(mine) if saved.get(k) != mine.get(k))
    if diff:
        changes = ", ".join(f"{k}: {saved.get(k)!r} -> {mine.get(k)!r}" for k in diff)
        raise SearchSettingsError(
            f"{out} holds a search with other settings ({changes}). Rerun with the same settings to resume it "
            "(only --max-trials may grow), choose another --out, or pass --overwrite to start again.")


def announce(hm: DSSDNHyperModel, verbose: int) -> None:
    """Profile the space's corners (:class:`BudgetError` if even the smallest is over) and print them."""
    smallest, largest = hm.check_space()
    if not verbose:
        return
    print(f"Search space: {hm.space.describe(hm.base.operator)}.")
    fits = " (every configuration fits)." if largest.fits else f" ({largest.reason})."
    print(f"Budget {hm.budget.describe()}: smallest {smallest.params:,} params / {format_macs(smallest.macs)} MACs, "
          f"largest {largest.params:,} params / {format_macs(largest.macs)} MACs{fits}")


def prepare_folder(out: Path, settings: SearchSettings) -> None:
    """Create ``out`` (clearing old results with ``overwrite``) and record the settings in ``search.json``."""
    out.mkdir(parents=True, exist_ok=True)
    if settings.overwrite:
        for name in RESULT_FILES:
            (out / name).unlink(missing_ok=True)
    write_json_atomic(out / "search.json", settings.signature())


# ---------------------------------------------------------------------------- the search


def run_search(settings: SearchSettings, *, callbacks: Sequence[keras.callbacks.Callback] = ()) -> SearchResult:
    """Check the folder and the budget, decode the data once, search (resuming ``settings.out`` if it holds
    this search), then write ``best_config.json``, ``best_trial.json``, ``trials.csv``, ``trials.md`` and
    ``pareto.png`` (a distributed worker writes none of them)."""
    out = Path(settings.out)
    check_folder(out, settings)
    hm = setup(settings)
    announce(hm, settings.verbose)
    prepare_folder(out, settings)
    tuner = run_tuner(hm, settings, out, callbacks)
    if distributed_role() == "worker":  # the chief writes the reports
        return SearchResult(out, [], None, None, tuner)
    return finish(out, hm, tuner.oracle, settings, tuner)


def run_tuner(hm: DSSDNHyperModel, settings: SearchSettings, out: Path, callbacks=()):
    """Decode the data (not on a distributed chief) and run the tuner; returns it."""
    from keras_dssdn.train.recipe import use_mixed_precision

    role = distributed_role()
    if use_mixed_precision(hm.train_cfg):
        keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        if role != "chief":  # a chief only serves the oracle
            hm.data = prepare_data(hm.train_cfg, hm.clips)
        tuner = make_tuner(hm, settings.tuner_spec(), out, overwrite=settings.overwrite)
        if role != "worker":
            tuner.oracle.verbose = settings.verbose  # KerasTuner's trial display; fit follows the recipe's verbose=
        tuner.search(callbacks=list(callbacks))
    finally:
        keras.mixed_precision.set_global_policy("float32")
    return tuner


# ---------------------------------------------------------------------------- results


def best_record(records: Sequence[dict], objective: str) -> Optional[dict]:
    """The trained trial with the best score (None when no trial was trained)."""
    trained = [r for r in records if r["status"] == "feasible" and r["score"] is not None]
    if not trained:
        return None
    pick = max if OBJECTIVES[objective][1] == "max" else min
    return pick(trained, key=lambda r: r["score"])


def finish(out: Path, hm: DSSDNHyperModel, oracle, settings: SearchSettings, tuner=None) -> SearchResult:
    """Write the reports and the best configuration from the oracle's trials."""
    records = trial_records(oracle, hm)
    title = f"DSSDN-{settings.size} width search ({settings.algorithm}, {settings.epochs} epochs per trial)"
    write_reports(out, records, hm, settings.objective, title)
    best = best_record(records, settings.objective)
    if best is None:
        return SearchResult(out, records, None, None, tuner)
    if not hm.budget.fits(best["params"], best["macs"]):  # cannot happen: guarded before training, twice
        raise AssertionError(f"trial {best['trial']} is over budget")
    config = hm.config(oracle.get_trial(best["trial"]).hyperparameters.values)
    config.save(out / "best_config.json")
    write_json_atomic(out / "best_trial.json", {
        **{k: v for k, v in best.items() if k != "pareto"}, "objective": OBJECTIVES[settings.objective][0],
        "budget": hm.budget.to_dict(), "size": settings.size, "model": config.to_dict(),
        "train_command": settings.train_command(out / "best_config.json"),
    })
    return SearchResult(out, records, best, out / "best_config.json", tuner)
