"""KerasTuner search of DSSDN channel widths under a parameter and a MAC budget.

The search space (:class:`SearchSpace`) is the five block widths of a size,
and, unless ``ratios=False``, the frequency split (``low_ratio``) and the
operator's own ratio (SPC ``partial_ratio`` for Small, OSC
``bottleneck_ratio`` for Middle). :class:`DSSDNHyperModel` turns KerasTuner
hyper-parameters into a :class:`~keras_dssdn.models.dssdn.DSSDNConfig` and trains it
with the package's recipe (:mod:`keras_dssdn.train.trainer`: AdamW, warm-up +
cosine, label smoothing, augmentation) on one cached tf.data pipeline that is
decoded once and shared by all trials; the score is read on the evaluate fold
after every epoch (``eval_accuracy``, ``eval_log_loss``: clip level, segment
probabilities averaged per clip).

Budgets (:class:`Budget`): parameters (all Keras parameters, batch-norm
statistics included, as :func:`keras_dssdn.analysis.complexity.profile` counts them)
and MACs per clip of ``budget.seconds`` (10 s for the three sizes, 1 s for
the DCASE 2022-2024 setting), both "at most". Every configuration is
profiled *before* any training, in the worker that would train it
(:class:`BudgetTunerMixin.run_trial` and again in
:meth:`DSSDNHyperModel.fit`): one over budget is never trained; its trial is
reported to the oracle as FAILED with the metrics ``params``, ``macs`` and
``infeasible = 1`` (they travel to a chief oracle over gRPC, a trial's
message does not) and the search moves on. Budget-aware oracles
(:class:`BudgetRandomSearchOracle`, ...) leave infeasible trials out of
``max_consecutive_failed_trials`` (real crashes still count), are never fed a
made-up score for them (the Gaussian process only sees trained trials), make
the Bayesian oracle pick its best *feasible* untried candidate, and write
their state files atomically so a killed search resumes.

Output folder of :func:`run_search`::

    <out>/search.json         the search settings (a rerun must match them to resume)
    <out>/keras_tuner/        KerasTuner's project (oracle.json, trial_*/trial.json, checkpoints)
    <out>/best_config.json    DSSDNConfig JSON of the best trained trial (DSSDNSmall(config=...),
                              tools/train.py model=...)
    <out>/best_trial.json     its trial id, score, params, MACs, budget and the train command
    <out>/trials.csv, trials.md   every trial: widths, other hps, params, MACs, score, status, reason
    <out>/pareto.png          score against MACs, the Pareto front and the MAC budget

Command line: ``tools/tune.py``; docs/tuning.md has the tune -> train -> export flow.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

import keras
import keras_tuner
import tensorflow as tf
from keras_tuner.src.distribute import utils as dist_utils
from keras_tuner.src.engine import tuner_utils

from keras_dssdn.models.dssdn import PRESETS, DSSDNConfig, build_dssdn, resolve_config
from keras_dssdn.analysis.budgets import DEFAULT_BUDGETS, Budget, format_macs
from keras_dssdn.errors import BudgetError, SearchSettingsError
from keras_dssdn.fileio import save_figure_atomic, write_json_atomic, write_text_atomic

#: Size -> (packaged training config, operator-specific ratio hyper-parameter or None).
SIZES = {
    "small": ("small", "partial_ratio"),
    "middle": ("middle", "bottleneck_ratio"),
    "large": ("large", None),
    "dcase_small_1s": ("dcase_small_1s", "partial_ratio"),
}
ALGORITHMS = ("random", "bayesian", "hyperband")
OBJECTIVES = {"accuracy": ("eval_accuracy", "max"), "log_loss": ("eval_log_loss", "min")}


class InfeasibleTrialError(keras_tuner.errors.FailedTrialError):
    """A trial whose configuration is over budget: KerasTuner marks it FAILED and moves on."""

    def __init__(self, check: "Complexity"):
        super().__init__(f"infeasible, not trained: {check.reason}")
        self.check = check


# ----------------------------------------------------------------------------
# Budgets and complexity
# ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Complexity:
    """Parameters and MACs of one configuration against a budget."""

    params: int
    macs: int
    reason: Optional[str]  # None: fits

    @property
    def fits(self) -> bool:
        return self.reason is None


def measure(config: DSSDNConfig, budget: Budget, frontend=None) -> Complexity:
    """Build ``config`` and count it with :func:`~keras_dssdn.analysis.complexity.profile` for a ``budget.seconds`` clip
    of ``frontend`` (default: :data:`~keras_dssdn.params.DEFAULT_FRONTEND`)."""
    from keras_dssdn.analysis.complexity import profile
    from keras_dssdn.params import DEFAULT_FRONTEND

    frontend = frontend or DEFAULT_FRONTEND
    report = profile(build_dssdn(config, name="budget_check"), seconds=budget.seconds, frontend=frontend)
    return Complexity(report.params, report.macs, budget.reason(report.params, report.macs))


# ----------------------------------------------------------------------------
# Search space
# ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class SearchSpace:
    """Per-block width ranges (``hp.Int`` from ``widths_min[i]`` to ``widths_max[i]`` in steps of
    ``width_step``), and choice lists for the split and operator ratios (empty: not searched)."""

    widths_min: Tuple[int, ...]
    widths_max: Tuple[int, ...]
    width_step: int = 8
    low_ratios: Tuple[float, ...] = (0.375, 0.5, 0.625)
    partial_ratios: Tuple[float, ...] = ()
    bottleneck_ratios: Tuple[float, ...] = ()

    def __post_init__(self):
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731
        for key in ("widths_min", "widths_max"):
            set_(key, tuple(int(w) for w in getattr(self, key)))
        for key in ("low_ratios", "partial_ratios", "bottleneck_ratios"):
            set_(key, tuple(sorted(float(r) for r in getattr(self, key))))
        if len(self.widths_min) != len(self.widths_max) or not self.widths_min:
            raise ValueError(f"widths_min {self.widths_min} and widths_max {self.widths_max} need one entry per block.")
        if self.width_step < 1:
            raise ValueError(f"width_step must be >= 1, got {self.width_step}.")
        for i, (lo, hi) in enumerate(zip(self.widths_min, self.widths_max), start=1):
            if not 1 <= lo <= hi:
                raise ValueError(f"block {i}: width range {lo}..{hi} is empty or below 1.")
        for key in ("low_ratios", "partial_ratios", "bottleneck_ratios"):
            if any(not 0.0 < r <= 1.0 for r in getattr(self, key)):
                raise ValueError(f"{key} must lie in (0, 1], got {getattr(self, key)}.")

    @classmethod
    def around(cls, base: DSSDNConfig, *, scale: Tuple[float, float] = (0.5, 2.0), width_step: int = 8,
               min_width: Optional[int] = None, max_width: Optional[int] = None, ratios: bool = True) -> "SearchSpace":
        """Widths from ``scale[0]`` to ``scale[1]`` times ``base.widths`` (rounded to ``width_step``,
        clipped to ``[min_width, max_width]``); ratios around the operator's defaults when ``ratios``."""
        lo_s, hi_s = scale
        if not 0 < lo_s <= hi_s:
            raise ValueError(f"scale must be (low, high) with 0 < low <= high, got {scale}.")
        step = int(width_step)
        floor = max(step, int(min_width or step))
        lo = [max(floor, step * round(w * lo_s / step)) for w in base.widths]
        hi = [max(floor, step * round(w * hi_s / step)) for w in base.widths]
        if max_width:
            hi = [min(h, int(max_width)) for h in hi]
            lo = [min(l, h) for l, h in zip(lo, hi)]
        extra = {}
        if ratios:
            extra["low_ratios"] = (0.375, 0.5, 0.625)
            if base.operator == "spc":
                extra["partial_ratios"] = (0.125, 0.25, 0.5)
            if base.operator == "osc":
                extra["bottleneck_ratios"] = (0.125, 0.25, 0.5)
        else:
            extra["low_ratios"] = ()
        return cls(tuple(lo), tuple(hi), step, **extra)

    # -- KerasTuner hyper-parameters ------------------------------------------------------

    def _ratio_keys(self):
        return [("low_ratio", self.low_ratios), ("partial_ratio", self.partial_ratios),
                ("bottleneck_ratio", self.bottleneck_ratios)]

    def declare(self, hp: keras_tuner.HyperParameters, base: DSSDNConfig) -> None:
        """Register the hyper-parameters (defaults: ``base``'s values where they lie in the space)."""
        for i, (lo, hi) in enumerate(zip(self.widths_min, self.widths_max), start=1):
            default = min(max(base.widths[i - 1], lo), hi)
            default = lo + self.width_step * ((default - lo) // self.width_step)
            if lo == hi:
                hp.Fixed(f"width_{i}", lo)
            else:
                hp.Int(f"width_{i}", lo, hi, step=self.width_step, default=default)
        for key, choices in self._ratio_keys():
            if choices:
                value = getattr(base, key)
                hp.Choice(key, list(choices), default=value if value in choices else choices[0])

    def config(self, values: Dict, base: DSSDNConfig) -> DSSDNConfig:
        """The DSSDNConfig for hyper-parameter ``values`` (a dict or HyperParameters)."""
        if isinstance(values, keras_tuner.HyperParameters):
            values = values.values
        changes = {"widths": [int(values.get(f"width_{i}", w)) for i, w in enumerate(base.widths, start=1)]}
        for key, choices in self._ratio_keys():
            if choices and key in values:
                changes[key] = float(values[key])
        return base.replace(**changes)

    def corner(self, base: DSSDNConfig, largest: bool = False) -> DSSDNConfig:
        """The smallest (or largest) configuration: every width and ratio at its low (high) end.
        Parameters and MACs grow with each of them (more channels; a larger deep, low-frequency part)."""
        pick = max if largest else min
        values = {f"width_{i}": (hi if largest else lo)
                  for i, (lo, hi) in enumerate(zip(self.widths_min, self.widths_max), start=1)}
        for key, choices in self._ratio_keys():
            if choices:
                values[key] = pick(choices)
        return self.config(values, base)

    def size(self) -> int:
        n = 1
        for lo, hi in zip(self.widths_min, self.widths_max):
            n *= (hi - lo) // self.width_step + 1
        for _, choices in self._ratio_keys():
            n *= max(1, len(choices))
        return n

    def to_dict(self) -> dict:
        return json.loads(json.dumps(dataclasses.asdict(self)))


# ----------------------------------------------------------------------------
# Data shared by all trials
# ----------------------------------------------------------------------------


@dataclasses.dataclass
class TuningData:
    """The cached training pipeline and the evaluate fold, decoded once for the whole search."""

    train: tf.data.Dataset  # (x (B, n_mels, frames, 1), one-hot y), augmented, cached before augmentation
    evaluate: tf.data.Dataset  # (x, one-hot y, metadata) in a fixed order, cached
    steps_per_epoch: int
    vocabulary: object
    stats: object  # NormalizationStats or None
    train_clips: object
    eval_clips: object


def prepare_data(cfg, clips=None) -> TuningData:
    """Datasets for a :class:`~keras_dssdn.train.trainer.TrainConfig` (``clips``: ``training_data(cfg)``'s result)."""
    from keras_dssdn.data.pipeline import make_dataset
    from keras_dssdn.train import dataset_options, normalization_stats, training_data

    train_clips, eval_clips, vocab = clips or training_data(cfg)
    if eval_clips is None:
        raise SearchSettingsError(f"{cfg.data}: a search needs an evaluate split to score trials; give a DCASE "
                                  "folder (fold files) or eval_data=<CSV>.")
    common = dataset_options(cfg, vocab)
    train = make_dataset(train_clips, training=True, augment=cfg.augment_config(), seed=cfg.seed, **common)
    evaluate = make_dataset(eval_clips, training=False, with_metadata=True, **common)
    stats = normalization_stats(cfg, train_clips, vocab)
    return TuningData(train, evaluate, int(train.cardinality().numpy()), vocab, stats, train_clips, eval_clips)


class EvaluateFold(keras.callbacks.Callback):
    """After each epoch: ``eval_accuracy`` and ``eval_log_loss`` on the evaluate fold (clip level) and the
    trial's ``params`` / ``macs`` into the epoch logs, for the tuner's objective and checkpoints."""

    def __init__(self, data: TuningData, check: Complexity):
        super().__init__()
        self.data = data
        self.check = check

    def scores(self) -> Tuple[float, float]:
        from keras_dssdn.analysis.metrics import aggregate_clips, log_loss

        probs, labels, clip_index = [], [], []
        for x, y, meta in self.data.evaluate:
            probs.append(np.asarray(self.model.predict_on_batch(x), np.float64))
            labels.append(np.argmax(np.asarray(y), axis=1))
            clip_index.append(np.asarray(meta["clip_index"]))
        probs, labels, clip_index = np.concatenate(probs), np.concatenate(labels), np.concatenate(clip_index)
        probs, _, labels = aggregate_clips(probs, clip_index, labels)
        return float(np.mean(probs.argmax(axis=1) == labels)), log_loss(labels, probs)

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        logs["eval_accuracy"], logs["eval_log_loss"] = self.scores()
        logs["params"], logs["macs"] = float(self.check.params), float(self.check.macs)


# ----------------------------------------------------------------------------
# HyperModel
# ----------------------------------------------------------------------------


class DSSDNHyperModel(keras_tuner.HyperModel):
    """DSSDN configurations of one size under a budget, trained with the package's recipe.

    ``base``: the size's DSSDNConfig with the data's ``input_shape`` and ``classes``;
    ``train_cfg``: a :class:`~keras_dssdn.train.trainer.TrainConfig` (recipe, epochs per trial);
    ``data``: :func:`prepare_data`'s result (needed by :meth:`build` / :meth:`fit`, not by :meth:`check`).
    The budget holds here too: :meth:`fit` refuses an over-budget model.
    """

    def __init__(self, base: DSSDNConfig, space: SearchSpace, budget: Budget, train_cfg=None,
                 data: Optional[TuningData] = None, name: str = "dssdn"):
        super().__init__(name=name, tunable=True)
        if len(space.widths_min) != len(base.widths):
            raise ValueError(f"The search space has {len(space.widths_min)} width ranges; the model has "
                             f"{len(base.widths)} blocks.")
        self.base, self.space, self.budget = base, space, budget
        self.train_cfg, self.data = train_cfg, data
        self.clips = None  # (train ClipList, evaluate ClipList, vocabulary) once read
        self._checks: Dict[str, Complexity] = {}

    def declare_hyperparameters(self, hp):
        self.space.declare(hp, self.base)

    def config(self, hp) -> DSSDNConfig:
        return self.space.config(hp, self.base)

    def check_config(self, config: DSSDNConfig) -> Complexity:
        key = config.to_json()
        if key not in self._checks:
            frontend = self.train_cfg.frontend_params() if self.train_cfg is not None else None
            self._checks[key] = measure(config, self.budget, frontend)
        return self._checks[key]

    def check(self, hp) -> Complexity:
        """Params / MACs of the configuration ``hp`` (HyperParameters or a values dict) against the budget."""
        return self.check_config(self.config(hp))

    def feasible(self, values: Dict) -> bool:
        return self.check(values).fits

    def check_space(self) -> Tuple[Complexity, Complexity]:
        """``(smallest, largest)`` complexity of the space; :class:`BudgetError` when even the smallest is over."""
        smallest_cfg = self.space.corner(self.base)
        smallest = self.check_config(smallest_cfg)
        if not smallest.fits:
            ratios = ", ".join(f"{k} {getattr(smallest_cfg, k)}" for k, c in self.space._ratio_keys() if c)
            raise BudgetError(
                f"No configuration can fit the budget ({self.budget.describe()}): the smallest in the search space "
                f"(widths {list(smallest_cfg.widths)}{', ' + ratios if ratios else ''}) has {smallest.params:,} "
                f"params and {format_macs(smallest.macs)} MACs per {self.budget.seconds:g} s. Raise --max-params / "
                "--max-macs, or lower the smallest widths (--width-scale, --min-width)."
            )
        return smallest, self.check_config(self.space.corner(self.base, largest=True))

    def _recipe(self, epochs: int):
        return dataclasses.replace(self.train_cfg, epochs=max(1, int(epochs)))

    def build(self, hp):
        from keras_dssdn.train import compile_for_training, wrap_network

        config = self.config(hp)
        seed = self.train_cfg.seed if self.train_cfg is not None else 0
        keras.utils.set_random_seed(seed)  # the same initialisation stream for every trial
        net = build_dssdn(config, name=f"dssdn_{config.operator}")
        if self.data is None or self.train_cfg is None:
            return net
        model = wrap_network(net, self.train_cfg, self.data.stats, self.data.vocabulary)
        return compile_for_training(model, self._recipe(self.train_cfg.epochs), self.data.steps_per_epoch)

    def fit(self, hp, model, *args, epochs=None, initial_epoch=0, callbacks=None, verbose=None, **kwargs):
        """Train ``model`` on the cached data for ``epochs`` (default: the recipe's), scored on the evaluate fold."""
        from keras_dssdn.train import compile_for_training

        if self.data is None or self.train_cfg is None:
            raise SearchSettingsError("DSSDNHyperModel.fit needs train_cfg= and data= (prepare_data).")
        check = self.check(hp)
        if not check.fits:
            raise InfeasibleTrialError(check)
        epochs = int(epochs or self.train_cfg.epochs)
        # the learning-rate schedule spans the epochs this call runs (Hyperband continues from initial_epoch)
        compile_for_training(model, self._recipe(epochs - initial_epoch), self.data.steps_per_epoch)
        cbs = [EvaluateFold(self.data, check), *(callbacks or [])]
        return model.fit(self.data.train, epochs=epochs, initial_epoch=initial_epoch, callbacks=cbs,
                         verbose=self.train_cfg.verbose if verbose is None else verbose)


# ----------------------------------------------------------------------------
# Budget-aware oracles and tuners
# ----------------------------------------------------------------------------


def is_infeasible(trial) -> bool:
    """True for a trial reported over budget (FAILED, with the ``infeasible`` metric)."""
    return trial.status == "FAILED" and trial.metrics.exists("infeasible")


class BudgetOracleMixin:
    """For KerasTuner oracles: infeasible trials do not count as consecutive failures, state is written atomically,
    and ``feasibility`` (values -> bool, set by the tuner) lets an oracle skip candidates over budget."""

    feasibility: Optional[Callable[[Dict], bool]] = None

    def _check_consecutive_failures(self):
        consecutive = 0
        for trial_id in self.end_order:
            trial = self.trials[trial_id]
            if is_infeasible(trial):
                continue  # neither a failure nor a success: it was never trained
            consecutive = consecutive + 1 if trial.status == "FAILED" else 0
            if consecutive == self.max_consecutive_failed_trials:
                raise RuntimeError(f"Number of consecutive failures exceeded the limit of "
                                   f"{self.max_consecutive_failed_trials}.\n" + (trial.message or ""))

    def save(self):
        write_json_atomic(self._get_oracle_fname(), self.get_state())

    def _save_trial(self, trial):
        write_json_atomic(os.path.join(self._get_trial_dir(trial.trial_id), "trial.json"), trial.get_state())


class BudgetRandomSearchOracle(BudgetOracleMixin, keras_tuner.oracles.RandomSearchOracle):
    pass


class BudgetHyperbandOracle(BudgetOracleMixin, keras_tuner.oracles.HyperbandOracle):
    pass


class BudgetBayesianOptimizationOracle(BudgetOracleMixin, keras_tuner.oracles.BayesianOptimizationOracle):
    """Gaussian-process proposals restricted to untried configurations within budget.

    Infeasible trials are left out of the GP fit (no made-up score). The
    acquisition (upper confidence bound, as KerasTuner's) is evaluated at its
    local optima (50 L-BFGS-B restarts) and at 256 random points; candidates
    are tried best first and the first untried one that ``feasibility``
    accepts is proposed (at most ``max_checks`` are profiled, each cached).
    Failing that, a random untried configuration within budget is drawn.
    """

    max_checks = 24
    random_candidates = 256

    def _random_feasible(self):
        values = None
        for _ in range(self.max_checks if self.feasibility is not None else 1):
            values = self._random_values()
            if values is None or self.feasibility is None or self.feasibility(values):
                break
        if values is None:
            return {"status": "STOPPED", "values": None}
        return {"status": "RUNNING", "values": values}

    def populate_space(self, trial_id):
        import scipy.optimize

        completed = [t for t in self.trials.values() if t.status == "COMPLETED"]
        dimensions = len(self.hyperparameters.space)
        num_initial = self.num_initial_points or max(3 * dimensions, 3)
        if len(completed) < num_initial or not self._nonfixed_space():
            return self._random_populate_space()
        x, y = self._vectorize_trials()
        self.gpr.fit(np.nan_to_num(x, posinf=0, neginf=0), np.nan_to_num(y, posinf=0, neginf=0))

        def ucb(v):
            mu, sigma = self.gpr.predict(np.reshape(v, (-1, x.shape[1])), return_std=True)
            return np.ravel(mu) - self.beta * np.ravel(sigma)

        bounds = self._get_hp_bounds()
        candidates = []
        for x0 in self._random_state.uniform(bounds[:, 0], bounds[:, 1], size=(50, bounds.shape[0])):
            res = scipy.optimize.minimize(lambda v: float(ucb(v)[0]), x0=x0, bounds=bounds, method="L-BFGS-B")
            candidates.append((float(np.ravel(res.fun)[0]), res.x))
        samples = self._random_state.uniform(bounds[:, 0], bounds[:, 1],
                                             size=(self.random_candidates, bounds.shape[0]))
        candidates += list(zip(ucb(samples).tolist(), samples))
        candidates.sort(key=lambda item: item[0])
        seen, checks = set(), 0
        for _, vector in candidates:
            values = self._vector_to_values(vector)
            digest = self._compute_values_hash(values)
            if digest in seen or digest in self._tried_so_far:
                continue
            seen.add(digest)
            if self.feasibility is not None:
                if checks >= self.max_checks:
                    break
                checks += 1
                if not self.feasibility(values):
                    continue
            return {"status": "RUNNING", "values": values}
        return self._random_feasible()


class BudgetTunerMixin:
    """For KerasTuner tuners: profile each trial's configuration before training; an over-budget one is
    reported with its params/MACs (``infeasible = 1``) and raised as :class:`InfeasibleTrialError`."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.trained: List[str] = []  # trial ids this process trained (tests use it)
        self.oracle_feasibility()

    def oracle_feasibility(self):
        # the oracle that proposes trials (here, or on the chief); a worker's OracleClient proposes nothing
        if isinstance(self.oracle, BudgetOracleMixin):
            self.oracle.feasibility = self.hypermodel.feasible

    def _report_infeasible(self, trial, check: Complexity) -> None:
        objective = self.oracle.objective.name
        self.oracle.update_trial(trial.trial_id, {objective: float("nan"), "params": float(check.params),
                                                  "macs": float(check.macs), "infeasible": 1.0})
        if getattr(self.oracle, "verbose", 1):
            print(f"Trial {trial.trial_id}: {check.reason}; not trained.")

    def _try_run_and_update_trial(self, trial, *args, **kwargs):
        try:
            check = self.hypermodel.check(trial.hyperparameters)
        except Exception:  # noqa: BLE001 - a configuration that cannot be built fails inside run_trial
            check = None
        if check is not None and not check.fits:  # FAILED with a one-line message, no traceback
            self._report_infeasible(trial, check)
            trial.status = "FAILED"
            trial.message = str(InfeasibleTrialError(check))
            return
        super()._try_run_and_update_trial(trial, *args, **kwargs)

    def run_trial(self, trial, *args, **kwargs):
        check = self.hypermodel.check(trial.hyperparameters)
        if not check.fits:
            self._report_infeasible(trial, check)
            raise InfeasibleTrialError(check)
        self.trained.append(trial.trial_id)
        start = time.perf_counter()
        results = super().run_trial(trial, *args, **kwargs)
        metrics = tuner_utils.convert_to_metrics_dict(results, self.oracle.objective)
        histories = results if isinstance(results, list) else [results]
        epochs = [len(h.history.get(self.oracle.objective.name, [])) for h in histories
                  if isinstance(h, keras.callbacks.History)]
        metrics = {k: float(v) for k, v in metrics.items()}
        metrics.update(params=float(check.params), macs=float(check.macs), seconds=time.perf_counter() - start)
        if epochs:  # all epochs the weights have seen (Hyperband continues a parent trial's)
            metrics["epochs"] = float(max(epochs) + trial.hyperparameters.values.get("tuner/initial_epoch", 0))
        return metrics

    def save(self):
        if not self._is_worker():
            self.oracle.save()
        write_json_atomic(self._get_tuner_fname(), self.get_state())


class BudgetedTuner(BudgetTunerMixin, keras_tuner.Tuner):
    """A Keras tuner (random search or Bayesian optimisation, by its oracle) that never trains over budget."""


class BudgetedHyperband(BudgetTunerMixin, keras_tuner.Hyperband):
    """Hyperband (successive halving over epochs) that never trains over budget."""

    def __init__(self, oracle, hypermodel, **kwargs):  # skip Hyperband.__init__: it builds its own oracle
        keras_tuner.Tuner.__init__(self, oracle=oracle, hypermodel=hypermodel, **kwargs)
        self.trained = []
        self.oracle_feasibility()


def make_tuner(hypermodel: DSSDNHyperModel, *, algorithm: str = "bayesian", objective: str = "accuracy",
               max_trials: int = 10, epochs: int = 8, directory, project_name: str = "keras_tuner",
               seed: int = 0, overwrite: bool = False, initial_points: Optional[int] = None,
               hyperband_factor: int = 3, hyperband_iterations: int = 1, max_consecutive_failed_trials: int = 3):
    """A budget-aware KerasTuner tuner over ``hypermodel``. ``epochs`` is per trial (Hyperband: the most any
    trial gets); ``max_trials`` counts every trial, infeasible ones included (Hyperband sets its own count)."""
    if algorithm not in ALGORITHMS:
        raise SearchSettingsError(f"algorithm must be one of {ALGORITHMS}, got {algorithm!r}.")
    if objective not in OBJECTIVES:
        raise SearchSettingsError(f"objective must be one of {sorted(OBJECTIVES)}, got {objective!r}.")
    obj = keras_tuner.Objective(*OBJECTIVES[objective])
    common = dict(objective=obj, seed=seed + 1, max_consecutive_failed_trials=max_consecutive_failed_trials)
    if algorithm == "random":
        oracle = BudgetRandomSearchOracle(max_trials=max_trials, **common)
    elif algorithm == "bayesian":
        if initial_points is None:  # KerasTuner's 3 x dimensions would leave nothing to the GP in a short search
            initial_points = min(3 * len(hypermodel.space.widths_min) + 6, max(3, max_trials // 2))
        oracle = BudgetBayesianOptimizationOracle(max_trials=max_trials, num_initial_points=initial_points, **common)
    else:
        oracle = BudgetHyperbandOracle(max_epochs=epochs, factor=hyperband_factor,
                                       hyperband_iterations=hyperband_iterations, **common)
    cls = BudgetedHyperband if algorithm == "hyperband" else BudgetedTuner
    return cls(oracle=oracle, hypermodel=hypermodel, directory=str(directory), project_name=project_name,
               overwrite=overwrite)


# ----------------------------------------------------------------------------
# Trial records, tables, Pareto plot
# ----------------------------------------------------------------------------


def _metric(trial, name):
    if not trial.metrics.exists(name):
        return None
    value = trial.metrics.get_best_value(name)
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


def trial_records(oracle, hypermodel: DSSDNHyperModel) -> List[dict]:
    """One dict per trial (in start order): id, status (feasible / infeasible / failed / running), widths,
    ratios, params, MACs, accuracy, log loss, score, epochs, seconds, reason."""
    records = []
    order = list(oracle.start_order) + [t for t in oracle.trials if t not in oracle.start_order]
    for trial_id in order:
        trial = oracle.trials[trial_id]
        values = trial.hyperparameters.values
        config = hypermodel.config(values)
        params, macs = _metric(trial, "params"), _metric(trial, "macs")
        reason = ""
        if is_infeasible(trial):
            status = "infeasible"
            reason = hypermodel.budget.reason(int(params), int(macs)) if params is not None else "over budget"
        elif trial.status == "COMPLETED":
            status = "feasible"
        elif trial.status in ("FAILED", "INVALID"):
            status = "failed"
            lines = [line for line in (trial.message or "").strip().splitlines() if line.strip()]
            reason = lines[-1].strip()[:200] if lines else "failed (no message reached the oracle)"
        else:
            status = trial.status.lower()
        record = {
            "trial": trial_id, "status": status, "widths": list(config.widths),
            **{k: getattr(config, k) for k, c in hypermodel.space._ratio_keys() if c},
            "params": None if params is None else int(params), "macs": None if macs is None else int(macs),
            "accuracy": _metric(trial, "eval_accuracy") if status == "feasible" else None,
            "log_loss": _metric(trial, "eval_log_loss") if status == "feasible" else None,
            "score": trial.score if status == "feasible" else None,
            "epochs": None if _metric(trial, "epochs") is None else int(_metric(trial, "epochs")),
            "seconds": _metric(trial, "seconds"),
            "hyperband": {k.split("/")[1]: v for k, v in values.items() if k.startswith("tuner/")} or None,
            "reason": reason,
        }
        records.append(record)
    return records


def pareto_front(records: Sequence[dict], direction: str = "max") -> List[str]:
    """Trial ids of the trained trials that no other trained trial beats on both MACs (fewer) and score."""
    pts = [r for r in records if r["status"] == "feasible" and r["score"] is not None and r["macs"] is not None]
    sign = 1.0 if direction == "max" else -1.0
    front = []
    for r in pts:
        dominated = any(
            o is not r and o["macs"] <= r["macs"] and sign * o["score"] >= sign * r["score"]
            and (o["macs"] < r["macs"] or sign * o["score"] > sign * r["score"]) for o in pts)
        if not dominated:
            front.append(r["trial"])
    return front


_COLUMNS = ("trial", "status", "widths", "low_ratio", "partial_ratio", "bottleneck_ratio", "params", "macs",
            "accuracy", "log_loss", "score", "epochs", "seconds", "pareto", "reason")


def _cell(value, key=None, markdown=False):
    if value is None:
        return ""
    if isinstance(value, list):
        return "[" + ", ".join(str(v) for v in value) + "]" if markdown else " ".join(str(v) for v in value)
    if markdown and key == "macs":
        return format_macs(value)
    if markdown and key == "params":
        return f"{value:,}"
    if markdown and key == "accuracy":
        return f"{100 * value:.1f} %"
    if isinstance(value, float):
        return f"{value:.4f}" if key in ("log_loss", "score") else (f"{value:.1f}" if key == "seconds" else f"{value:g}")
    if isinstance(value, bool):
        return "yes" if value else ""
    return str(value)


def write_reports(out: Path, records: List[dict], hypermodel: DSSDNHyperModel, objective: str,
                  title: str = "") -> None:
    """``trials.csv``, ``trials.md`` and ``pareto.png`` in ``out`` (each written atomically)."""
    direction = OBJECTIVES[objective][1]
    front = set(pareto_front(records, direction))
    columns = [c for c in _COLUMNS if c not in ("partial_ratio", "bottleneck_ratio", "low_ratio")
               or any(c in r for r in records)]
    for r in records:
        r["pareto"] = r["trial"] in front
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(columns)
    for r in records:
        writer.writerow([_cell(r.get(c), c) for c in columns])
    write_text_atomic(out / "trials.csv", buf.getvalue())

    counts = {s: sum(r["status"] == s for r in records) for s in ("feasible", "infeasible", "failed")}
    lines = [f"# {title or 'DSSDN width search'}", "",
             f"Budget: {hypermodel.budget.describe()}. Score: {OBJECTIVES[objective][0]} ({direction}) on the "
             f"evaluate fold. Trials: {len(records)} ({counts['feasible']} trained, {counts['infeasible']} "
             f"infeasible, {counts['failed']} failed). `pareto`: on the front of score against MACs.", "",
             "| " + " | ".join(columns) + " |", "|" + "|".join("---:" if c in ("params", "macs", "accuracy",
                                                                                 "log_loss", "score", "epochs",
                                                                                 "seconds") else "---"
                                                             for c in columns) + "|"]
    for r in records:
        lines.append("| " + " | ".join(_cell(r.get(c), c, markdown=True).replace("|", "/") for c in columns) + " |")
    write_text_atomic(out / "trials.md", "\n".join(lines) + "\n")
    plot_pareto(records, out / "pareto.png", hypermodel.budget, objective, front)


def plot_pareto(records: Sequence[dict], path, budget: Budget, objective: str, front=None) -> None:
    """Score against MACs: trained trials, the Pareto front (line), infeasible trials (x on the bottom axis)
    and the MAC budget (dashed line)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    direction = OBJECTIVES[objective][1]
    front = set(front if front is not None else pareto_front(records, direction))
    scale = 100.0 if objective == "accuracy" else 1.0
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    done = [r for r in records if r["status"] == "feasible" and r["score"] is not None and r["macs"]]
    xs = [r["macs"] / 1e6 for r in done]
    ys = [scale * r["score"] for r in done]
    ax.scatter(xs, ys, color="tab:blue", label="trained trials", zorder=3)
    for r, x, y in zip(done, xs, ys):
        ax.annotate(r["trial"], (x, y), textcoords="offset points", xytext=(4, 3), fontsize=7)
    pf = sorted((r["macs"] / 1e6, scale * r["score"]) for r in done if r["trial"] in front)
    if pf:
        ax.plot(*zip(*pf), color="tab:red", marker="o", label="Pareto front", zorder=4)
    bad = [r for r in records if r["status"] == "infeasible" and r["macs"]]
    if bad:
        y0 = min(ys) if ys else 0.0
        ax.scatter([r["macs"] / 1e6 for r in bad], [y0] * len(bad), marker="x", color="grey",
                   label="infeasible (not trained)", zorder=2)
    ax.axvline(budget.max_macs / 1e6, color="black", linestyle="--", label=f"MAC budget {format_macs(budget.max_macs)}")
    ax.set_xlabel(f"MACs per {budget.seconds:g}-s clip (M)")
    ax.set_ylabel("evaluate accuracy (%)" if objective == "accuracy" else "evaluate log loss")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    ax.set_title("DSSDN width search: score against MACs", fontsize=10)
    fig.tight_layout()
    save_figure_atomic(fig, path, dpi=120)
    plt.close(fig)


# ----------------------------------------------------------------------------
# The whole search
# ----------------------------------------------------------------------------


@dataclasses.dataclass
class SearchSettings:
    """What ``tools/tune.py`` takes. ``overrides``: training-recipe ``key=value`` (as tools/train.py);
    budgets default to :data:`DEFAULT_BUDGETS`; widths range over ``width_scale`` x the size's widths."""

    size: str = "small"
    data: Optional[str] = None
    out: str = "runs/tune/small"
    algorithm: str = "bayesian"
    max_trials: int = 10
    epochs: int = 8
    objective: str = "accuracy"
    max_params: Optional[int] = None
    max_macs: Optional[int] = None
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

    def budget(self) -> Budget:
        if self.size not in SIZES:
            raise SearchSettingsError(f"size must be one of {sorted(SIZES)}, got {self.size!r}.")
        default = DEFAULT_BUDGETS[self.size]
        return Budget(int(self.max_params or default.max_params), int(self.max_macs or default.max_macs),
                      float(self.budget_seconds or default.seconds))

    def signature(self) -> dict:
        d = json.loads(json.dumps(dataclasses.asdict(self)))
        for key in self.RESUMABLE_CHANGES:
            d.pop(key, None)
        d["data"] = str(Path(self.data).resolve()) if self.data else None
        return d


@dataclasses.dataclass
class SearchResult:
    out: Path
    records: List[dict]
    best: Optional[dict]
    best_config: Optional[Path]
    tuner: object


def _train_config(settings: SearchSettings):
    from keras_dssdn.train import load_train_config

    name = settings.config or SIZES[settings.size][0]
    cfg = load_train_config(name, [*settings.overrides, f"data={settings.data}", f"epochs={settings.epochs}",
                                   f"seed={settings.seed}"])
    if cfg.model == "baseline":
        raise SearchSettingsError("The baseline has no widths to tune; use a DSSDN config.")
    return cfg


def setup(settings: SearchSettings, clips=None) -> DSSDNHyperModel:
    """The hypermodel for ``settings`` with its budget checked against the space (no audio decoded)."""
    from keras_dssdn.train import input_seconds, training_data

    if settings.data is None:
        raise SearchSettingsError("No dataset: give --data <DCASE folder> (or a CSV with eval_data=...).")
    cfg = _train_config(settings)
    budget = settings.budget()
    clips = clips or training_data(cfg)
    shape = cfg.frontend_params().input_shape(input_seconds(cfg))
    base = resolve_config(cfg.model).replace(input_shape=list(shape), classes=len(clips[2]))
    if cfg.widths:
        base = base.replace(widths=list(cfg.widths))
    space = SearchSpace.around(base, scale=tuple(settings.width_scale), width_step=settings.width_step,
                               min_width=settings.min_width, max_width=settings.max_width, ratios=settings.ratios)
    hm = DSSDNHyperModel(base, space, budget, cfg)
    hm.clips = clips
    return hm


def _check_folder(out: Path, settings: SearchSettings) -> None:
    saved_path = out / "search.json"
    if settings.overwrite or not saved_path.is_file():
        return
    saved = json.loads(saved_path.read_text())
    mine = settings.signature()
    diff = sorted(k for k in set(saved) | set(mine) if saved.get(k) != mine.get(k))
    if diff:
        changes = ", ".join(f"{k}: {saved.get(k)!r} -> {mine.get(k)!r}" for k in diff)
        raise SearchSettingsError(
            f"{out} holds a search with other settings ({changes}). Rerun with the same settings to resume it "
            "(only --max-trials may grow), choose another --out, or pass --overwrite to start again.")


def run_search(settings: SearchSettings, *, callbacks: Sequence[keras.callbacks.Callback] = ()) -> SearchResult:
    """Check the budget, decode the data once, search (resuming ``settings.out`` if it holds this search),
    then write ``best_config.json``, ``best_trial.json``, ``trials.csv``, ``trials.md`` and ``pareto.png``."""
    from keras_dssdn.train.recipe import _use_mixed_precision

    out = Path(settings.out)
    _check_folder(out, settings)
    hm = setup(settings)
    smallest, largest = hm.check_space()
    say = print if settings.verbose else (lambda *a, **k: None)
    say(f"Search space: {hm.space.size():,} configurations of {hm.base.operator.upper()} widths "
        f"{list(hm.space.widths_min)}..{list(hm.space.widths_max)} (step {hm.space.width_step})"
        + "".join(f", {k} {list(c)}" for k, c in hm.space._ratio_keys() if c) + ".")
    say(f"Budget {hm.budget.describe()}: smallest {smallest.params:,} params / {format_macs(smallest.macs)} MACs, largest "
        f"{largest.params:,} params / {format_macs(largest.macs)} MACs"
        + (" (every configuration fits)." if largest.fits else f" ({largest.reason})."))
    out.mkdir(parents=True, exist_ok=True)
    if settings.overwrite:
        for name in ("best_config.json", "best_trial.json", "trials.csv", "trials.md", "pareto.png"):
            (out / name).unlink(missing_ok=True)
    write_json_atomic(out / "search.json", settings.signature())

    if _use_mixed_precision(hm.train_cfg):
        keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        if not dist_utils.is_chief_oracle():  # a distributed chief only runs the oracle: no data needed
            hm.data = prepare_data(hm.train_cfg, hm.clips)
        tuner = make_tuner(hm, algorithm=settings.algorithm, objective=settings.objective,
                           max_trials=settings.max_trials, epochs=settings.epochs, directory=out,
                           seed=settings.seed, overwrite=settings.overwrite, initial_points=settings.initial_points,
                           hyperband_factor=settings.hyperband_factor)
        worker = dist_utils.has_chief_oracle() and not dist_utils.is_chief_oracle()
        if not worker:
            tuner.oracle.verbose = settings.verbose  # KerasTuner's trial display; fit follows the recipe's verbose=
        tuner.search(callbacks=list(callbacks))
    finally:
        keras.mixed_precision.set_global_policy("float32")
    if worker:  # a distributed worker: the chief writes the reports
        return SearchResult(out, [], None, None, tuner)
    return finish(out, hm, tuner.oracle, settings, tuner)


def finish(out: Path, hm: DSSDNHyperModel, oracle, settings: SearchSettings, tuner=None) -> SearchResult:
    """Write the reports and the best configuration from the oracle's trials."""
    records = trial_records(oracle, hm)
    title = f"DSSDN-{settings.size} width search ({settings.algorithm}, {settings.epochs} epochs per trial)"
    write_reports(out, records, hm, settings.objective, title)
    trained = [r for r in records if r["status"] == "feasible" and r["score"] is not None]
    if not trained:
        return SearchResult(out, records, None, None, tuner)
    direction = OBJECTIVES[settings.objective][1]
    best = (max if direction == "max" else min)(trained, key=lambda r: r["score"])
    if best["params"] > hm.budget.max_params or best["macs"] > hm.budget.max_macs:  # cannot happen: guarded twice
        raise AssertionError(f"trial {best['trial']} is over budget")
    config = hm.config(oracle.trials[best["trial"]].hyperparameters.values)
    config.save(out / "best_config.json")
    data = settings.data
    write_json_atomic(out / "best_trial.json", {
        **{k: v for k, v in best.items() if k != "pareto"}, "objective": OBJECTIVES[settings.objective][0],
        "budget": hm.budget.to_dict(), "size": settings.size, "model": config.to_dict(),
        "train_command": f"python tools/train.py --config {settings.config or SIZES[settings.size][0]} "
                         f"model={out / 'best_config.json'} data={data} name=tuned-{settings.size}",
    })
    return SearchResult(out, records, best, out / "best_config.json", tuner)


def format_records(records: Sequence[dict]) -> str:
    """A short plain-text table for the terminal."""
    lines = [f"{'trial':>5}  {'status':<10}  {'widths':<22} {'params':>9} {'MACs':>11} {'accuracy':>8} "
             f"{'log loss':>8}"]
    for r in records:
        acc = "" if r["accuracy"] is None else f"{100 * r['accuracy']:.1f} %"
        ll = "" if r["log_loss"] is None else f"{r['log_loss']:.3f}"
        params = "" if r["params"] is None else f"{r['params']:,}"
        macs = "" if r["macs"] is None else format_macs(r["macs"])
        lines.append(f"{r['trial']:>5}  {r['status']:<10}  {str(r['widths']):<22} {params:>9} {macs:>11} "
                     f"{acc:>8} {ll:>8}" + (f"  {r['reason']}" if r["reason"] else ""))
    return "\n".join(lines)


__all__ = [
    "ALGORITHMS", "Budget", "BudgetBayesianOptimizationOracle", "BudgetError", "BudgetHyperbandOracle",
    "BudgetOracleMixin", "BudgetRandomSearchOracle", "BudgetTunerMixin", "BudgetedHyperband", "BudgetedTuner",
    "Complexity", "DEFAULT_BUDGETS", "DSSDNHyperModel", "EvaluateFold", "InfeasibleTrialError", "OBJECTIVES",
    "SIZES", "SearchResult", "SearchSettings", "SearchSettingsError", "SearchSpace", "TuningData", "finish",
    "format_records", "is_infeasible", "make_tuner", "measure", "pareto_front", "plot_pareto", "prepare_data",
    "run_search", "setup", "trial_records", "write_reports",
]
