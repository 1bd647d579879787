"""Stochastic weight averaging (``swa_epochs``): the model kept is the mean of the weights at the end of the
last N epochs, with its batch-normalisation statistics re-estimated for those averaged weights.

Izmailov et al. (2018), "Averaging Weights Leads to Wider Optima and Better Generalization". Unlike the
optimizer's exponential average (``ema_momentum``), the batch-norm statistics are not the running ones of the raw
weights: one pass over the training data in training mode recomputes them as the plain mean of the batches'
statistics (PyTorch's ``update_bn`` with ``momentum=None`` does the same).

The running mean lives in the run folder (``checkpoint/weight_average.npz``: one array per trainable variable,
``count`` epochs averaged, ``last_epoch`` the last one in it), so a killed run resumes it without counting an
epoch twice; :func:`finish_weight_average` turns it into ``best.keras``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import keras
import numpy as np

from keras_dssdn import runs
from keras_dssdn.errors import ResumeError
from keras_dssdn.fileio import save_model_atomic, write_atomic
from keras_dssdn.train.distribute import batchnorm_layers, local_batchnorm_config


def _read_average(path: Path, variables) -> dict:
    """``{"values": [arrays], "count": int, "last_epoch": int}`` from ``path``; empty when it does not exist."""
    if not path.is_file():
        return {"values": None, "count": 0, "last_epoch": 0}
    try:
        with np.load(path) as z:
            values = [z[f"v{i}"] for i in range(len(variables))]
            count, last = int(z["count"]), int(z["last_epoch"])
    except Exception as e:  # noqa: BLE001 - any failure here means a corrupt file
        raise ResumeError(f"{path} (the run's weight average) is corrupt ({type(e).__name__}: {str(e)[:120]}); "
                          "delete the run folder and train again.") from None
    if any(v.shape != tuple(var.shape) for v, var in zip(values, variables)):
        raise ResumeError(f"{path} does not match the model's weights; delete the run folder and train again.")
    return {"values": values, "count": count, "last_epoch": last}


def _write_average(path: Path, average: dict) -> None:
    arrays = {f"v{i}": v for i, v in enumerate(average["values"])}

    def write(tmp: Path):
        with tmp.open("wb") as f:
            np.savez(f, count=average["count"], last_epoch=average["last_epoch"], **arrays)

    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, write)


class WeightAverage(keras.callbacks.Callback):
    """At the end of each of the last ``swa_epochs`` of ``epochs``: fold the trainable weights into the running
    mean and write it to ``run_dir/checkpoint/weight_average.npz`` (before the epoch's checkpoint, so a resumed
    run that repeats an epoch finds it already counted and skips it). The file is read once, when training
    starts (a resumed run continues its mean)."""

    def __init__(self, run_dir: Path, epochs: int, swa_epochs: int):
        super().__init__()
        self.path = Path(run_dir) / runs.WEIGHT_AVERAGE
        self.first_epoch = epochs - swa_epochs + 1  # 1-based
        self.average = None

    def on_train_begin(self, logs=None):
        self.average = _read_average(self.path, self.model.trainable_variables)

    def on_epoch_end(self, epoch, logs=None):
        if self.average is None:
            self.on_train_begin()
        if epoch + 1 < self.first_epoch or epoch + 1 <= self.average["last_epoch"]:
            return
        weights = [np.asarray(v.numpy(), np.float64) for v in self.model.trainable_variables]
        n = self.average["count"]
        values = weights if n == 0 else [a + (w - a) / (n + 1) for a, w in zip(self.average["values"], weights)]
        self.average = {"values": values, "count": n + 1, "last_epoch": epoch + 1}
        _write_average(self.path, self.average)


def reestimate_batchnorm(model: keras.Model, inputs: Iterable) -> int:
    """Reset every BatchNormalization layer's moving statistics and set them to the mean of the batch statistics
    over ``inputs`` (batches of model inputs), computed in training mode. Returns the number of batches."""
    layers = batchnorm_layers(model)
    momenta = [layer.momentum for layer in layers]
    for layer in layers:
        layer.moving_mean.assign(np.zeros(layer.moving_mean.shape, np.float32))
        layer.moving_variance.assign(np.ones(layer.moving_variance.shape, np.float32))
    n = 0
    try:
        for x in inputs:
            for layer in layers:
                layer.momentum = n / (n + 1)  # cumulative mean: batch n gets weight 1 / (n + 1)
            model(x, training=True)
            n += 1
    finally:
        for layer, momentum in zip(layers, momenta):
            layer.momentum = momentum
    return n


def finish_weight_average(model: keras.Model, run_dir: Path, train_ds) -> dict:
    """Load the run's weight average into ``model``, re-estimate batch norm on one pass of ``train_ds`` (its
    inputs; labels ignored) and save ``best.keras``. The model keeps the averaged weights afterwards.
    Returns ``{"epochs_averaged", "last_epoch", "batchnorm_batches"}`` for the run's state."""
    path = Path(run_dir) / runs.WEIGHT_AVERAGE
    average = _read_average(path, model.trainable_variables)
    if not average["count"]:
        raise ResumeError(f"{path} is missing: the run's weight average was not written; train the run again.")
    for variable, value in zip(model.trainable_variables, average["values"]):
        variable.assign(value.astype(variable.dtype))
    batches = reestimate_batchnorm(model, (batch[0] for batch in train_ds))
    with local_batchnorm_config(model):
        save_model_atomic(model, Path(run_dir) / runs.BEST)
    return {"epochs_averaged": average["count"], "last_epoch": average["last_epoch"], "batchnorm_batches": batches}
