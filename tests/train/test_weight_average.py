"""Stochastic weight averaging (swa_epochs): the running mean survives a repeated epoch, batch norm is
re-estimated as the mean of the batch statistics, a tiny run's best.keras holds the average; bad values refused."""

import json

import keras
import numpy as np
import pytest

from keras_dssdn import runs
from keras_dssdn.data.synthetic import make_synthetic_dataset
from keras_dssdn.errors import ConfigError, ResumeError
from keras_dssdn.train import load_checkpoint, load_train_config, train
from keras_dssdn.train.weight_average import WeightAverage, finish_weight_average, reestimate_batchnorm

TINY = ["widths=[4,4,8,8,8]", "clip_seconds=2.0", "segment_seconds=null", "batch_size=6", "warmup_epochs=1",
        "verbose=0", "monitor=last", "run_eagerly=true"]


def _dense_bn():
    inputs = keras.Input((3,))
    return keras.Model(inputs, keras.layers.BatchNormalization()(keras.layers.Dense(3)(inputs)))


def test_batchnorm_is_the_mean_of_the_batch_statistics():
    inputs = keras.Input((2,))
    model = keras.Model(inputs, keras.layers.BatchNormalization(momentum=0.99)(inputs))
    rng = np.random.default_rng(0)
    batches = [rng.normal(loc, scale, (8, 2)).astype(np.float32) for loc, scale in ((0, 1), (5, 2), (-3, 0.5))]
    assert reestimate_batchnorm(model, batches) == 3
    bn = model.layers[-1]
    np.testing.assert_allclose(bn.moving_mean.numpy(), np.mean([b.mean(0) for b in batches], 0), rtol=1e-5)
    np.testing.assert_allclose(bn.moving_variance.numpy(), np.mean([b.var(0) for b in batches], 0), rtol=1e-4)
    assert bn.momentum == 0.99  # restored


def test_running_mean_counts_each_epoch_once(tmp_path):
    model = _dense_bn()
    callback = WeightAverage(tmp_path, epochs=5, swa_epochs=2)
    callback.set_model(model)
    for epoch in (2, 3, 3, 4):  # 0-based; epoch 3 repeated (a resumed run); epoch 2 is before the window
        for v in model.trainable_variables:
            v.assign(np.full(v.shape, float(epoch), np.float32))
        callback.on_epoch_end(epoch)
    with np.load(tmp_path / runs.WEIGHT_AVERAGE) as z:
        assert int(z["count"]) == 2 and int(z["last_epoch"]) == 5
        np.testing.assert_allclose(z["v0"], 3.5)  # mean of epochs 4 and 5 (values 3 and 4)
    (tmp_path / runs.WEIGHT_AVERAGE).write_bytes(b"not an npz")
    with pytest.raises(ResumeError, match="weight_average.npz.*corrupt.*train again"):
        finish_weight_average(model, tmp_path, [])


def test_tiny_run_keeps_the_average_with_batchnorm_reestimated(tmp_path):
    data = make_synthetic_dataset(tmp_path / "data", num_classes=3, seconds=2.0, train_locations=2,
                                  eval_locations=1, clips_per_location=3, seed=1)
    recorded = []

    class Record(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            recorded.append([v.numpy().copy() for v in self.model.trainable_variables])

    cfg = load_train_config("small", [f"data={data}", f"out_dir={tmp_path}", "name=swa", *TINY, "epochs=2",
                                      "swa_epochs=2"])
    result = train(cfg, callbacks=[Record()])
    best = keras.models.load_model(tmp_path / "swa" / runs.BEST, compile=False)
    for b, e1, e2 in zip(best.trainable_variables, recorded[0], recorded[1]):
        np.testing.assert_allclose(b.numpy(), (e1 + e2) / 2, rtol=1e-5, atol=1e-7)
    last, _ = load_checkpoint(tmp_path / "swa")  # the raw weights of epoch 2, the running statistics of training
    assert all(np.array_equal(v.numpy(), r) for v, r in zip(last.trainable_variables, recorded[1]))
    moving = [(b.numpy(), r.numpy()) for b, r in zip(best.non_trainable_variables, last.non_trainable_variables)
              if "moving_mean" in b.path]
    assert moving and all(not np.allclose(b, r) for b, r in moving)
    state = json.loads((tmp_path / "swa" / runs.STATE).read_text())
    assert state["weight_average"]["epochs_averaged"] == 2 and state["weight_average"]["batchnorm_batches"] >= 1
    assert result.best_epoch == 2


@pytest.mark.parametrize("overrides, message", [
    (["swa_epochs=16"], r"swa_epochs=16 must be between 0 \(off\) and epochs \(15\)"),
    (["swa_epochs=-1"], r"swa_epochs=-1 must be between"),
    (["swa_epochs=3", "ema_momentum=0.9"], r"needs ema_momentum=0.*got ema_momentum=0.9"),
    (["swa_epochs=3", "monitor=val_accuracy"], r"got monitor=val_accuracy"),
])
def test_bad_weight_average_settings_are_refused(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_train_config("dcase_mcu_1s", overrides)
