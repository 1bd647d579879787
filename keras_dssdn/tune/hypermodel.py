"""The KerasTuner HyperModel: DSSDN configurations of one size, trained with the package's recipe.

:class:`DSSDNHyperModel` implements KerasTuner's public ``HyperModel``
interface: ``build(hp)`` declares the space and returns a compiled model,
``fit(hp, model, ...)`` trains it on the shared :class:`~keras_dssdn.tune.tuning_data.TuningData`
(AdamW, warm-up + cosine over the epochs this call runs, label smoothing,
augmentation) and scores it after every epoch on the evaluate fold
(:class:`EvaluateFold`). The budget holds here too: ``fit`` refuses an
over-budget configuration, whichever tuner calls it.
"""

from __future__ import annotations

import dataclasses
from typing import Dict, Optional, Tuple

import keras
import keras_tuner
import numpy as np

from keras_dssdn.analysis.budgets import Budget, format_macs
from keras_dssdn.analysis.metrics import aggregate_clips, log_loss
from keras_dssdn.errors import BudgetError, SearchSettingsError
from keras_dssdn.models.dssdn import DSSDNConfig, build_dssdn
from keras_dssdn.tune.tuning_data import TuningData
from keras_dssdn.tune.feasibility import Complexity, InfeasibleTrialError, measure
from keras_dssdn.tune.space import SearchSpace


def evaluate_clips(model: keras.Model, dataset) -> Tuple[float, float]:
    """Clip-level ``(accuracy, log loss)`` of ``model`` on ``(x, one-hot y, metadata)`` batches.

    Segment probabilities ``(N, K)`` are averaged per clip (``metadata["clip_index"]``) with
    :func:`~keras_dssdn.analysis.metrics.aggregate_clips`; accuracy is a fraction in [0, 1], log loss in nats
    (:func:`~keras_dssdn.analysis.metrics.log_loss`, no label smoothing).
    """
    from keras_dssdn.inference.evaluate import predict_probabilities

    probs, y, meta = predict_probabilities(model, dataset)
    clip_probs, _, clip_labels = aggregate_clips(np.asarray(probs, np.float64), meta["clip_index"],
                                                 np.argmax(y, axis=1))
    return float(np.mean(clip_probs.argmax(axis=1) == clip_labels)), log_loss(clip_labels, clip_probs)


class EvaluateFold(keras.callbacks.Callback):
    """After each epoch: ``eval_accuracy`` and ``eval_log_loss`` on the evaluate fold (clip level) and the
    trial's ``params`` / ``macs`` into the epoch logs, for the tuner's objective and checkpoints."""

    def __init__(self, data: TuningData, check: Complexity):
        super().__init__()
        self.data = data
        self.check = check

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        logs["eval_accuracy"], logs["eval_log_loss"] = evaluate_clips(self.model, self.data.evaluate)
        logs["params"], logs["macs"] = float(self.check.params), float(self.check.macs)


class DSSDNHyperModel(keras_tuner.HyperModel):
    """DSSDN configurations of one size under a budget, trained with the package's recipe.

    ``base``: the size's DSSDNConfig with the data's ``input_shape`` and ``classes``;
    ``space``: the :class:`~keras_dssdn.tune.space.SearchSpace` (one width range per block of ``base``);
    ``budget``: the :class:`~keras_dssdn.analysis.budgets.Budget` every trained configuration meets;
    ``train_cfg``: a :class:`~keras_dssdn.train.config.TrainConfig` (recipe, epochs per trial);
    ``data``: :func:`~keras_dssdn.tune.tuning_data.prepare_data`'s result (needed by :meth:`fit`, not by :meth:`check`).
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
        self._checks: Dict[str, Complexity] = {}  # DSSDNConfig JSON -> its profile

    # -- budget -------------------------------------------------------------------------------

    def config(self, hp) -> DSSDNConfig:
        """The DSSDNConfig of ``hp`` (HyperParameters or a values dict)."""
        return self.space.config(hp, self.base)

    def check_config(self, config: DSSDNConfig) -> Complexity:
        """``config``'s params / MACs against the budget (profiled once, then cached)."""
        key = config.to_json()
        if key not in self._checks:
            frontend = self.train_cfg.frontend_params() if self.train_cfg is not None else None
            self._checks[key] = measure(config, self.budget, frontend)
        return self._checks[key]

    def check(self, hp) -> Complexity:
        """Params / MACs of the configuration ``hp`` (HyperParameters or a values dict) against the budget."""
        return self.check_config(self.config(hp))

    def feasible(self, values: Dict) -> bool:
        """Whether hyper-parameter ``values`` fit the budget (the oracles' feasibility test)."""
        return self.check(values).fits

    def check_space(self) -> Tuple[Complexity, Complexity]:
        """``(smallest, largest)`` complexity of the space; :class:`BudgetError` when even the smallest is over."""
        smallest_cfg = self.space.corner(self.base)
        smallest = self.check_config(smallest_cfg)
        if not smallest.fits:
            raise BudgetError(self._impossible(smallest_cfg, smallest))
        return smallest, self.check_config(self.space.corner(self.base, largest=True))

    def _impossible(self, config: DSSDNConfig, cost: Complexity) -> str:
        ratios = "".join(f", {k} {getattr(config, k)}" for k in self.space.searched_ratios())
        return (f"No configuration can fit the budget ({self.budget.describe()}): the smallest in the search space "
                f"(widths {list(config.widths)}{ratios}) has {cost.params:,} params and {format_macs(cost.macs)} "
                f"MACs per {self.budget.seconds:g} s"
                + (f" and needs {cost.ram:,} B of RAM" if cost.ram is not None else "")
                + ". Raise --max-params / --max-macs / --max-ram, or lower the smallest widths "
                "(--width-scale, --min-width).")

    # -- KerasTuner HyperModel ----------------------------------------------------------------

    def _recipe(self, epochs: int):
        return dataclasses.replace(self.train_cfg, epochs=max(1, int(epochs)))

    def build(self, hp):
        """Declare the space in ``hp``; return the bare network (no ``data`` or ``train_cfg``: log-mel
        ``(B, n_mels, frames, 1)`` in, probabilities ``(B, classes)`` out) or the wrapped, compiled model."""
        from keras_dssdn.train import compile_for_training, wrap_network

        self.space.declare(hp, self.base)
        config = self.config(hp)
        keras.utils.set_random_seed(self.train_cfg.seed if self.train_cfg is not None else 0)  # same init stream
        net = build_dssdn(config, name=f"dssdn_{config.operator}")
        if self.data is None or self.train_cfg is None:
            return net
        model = wrap_network(net, self.train_cfg, self.data.stats, self.data.vocabulary)
        return compile_for_training(model, self._recipe(self.train_cfg.epochs), self.data.steps_per_epoch)

    def fit(self, hp, model, *args, epochs=None, initial_epoch=0, callbacks=None, verbose=None, **kwargs):
        """Train ``model`` on the cached data up to epoch ``epochs`` (default: the recipe's) from
        ``initial_epoch``; returns the Keras History (per epoch: loss, accuracy, eval_accuracy, eval_log_loss,
        params, macs). :class:`InfeasibleTrialError` for an over-budget configuration."""
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
        return model.fit(self.data.train, epochs=epochs, initial_epoch=initial_epoch, callbacks=cbs, shuffle=False,
                         verbose=self.train_cfg.verbose if verbose is None else verbose)  # shuffle: as train/trainer
