"""Child process of tests/test_distribute.py: single-device vs MirroredStrategy on 2 logical CPU devices.

Usage: python tests/train/_distribute_mirrored.py DATA OUT  (KERAS_DSSDN_CPU_DEVICES=2 in the environment).
Trains the same model from the same seed on the same batches (no shuffle, no augmentation, no dropout):
``single`` (batch 6, one device) for 2 epochs, and ``mirrored`` (2 replicas x batch 3 = global batch 6,
lr_scaling=none) killed after epoch 1 and resumed for epoch 2. Writes OUT/result.json.
"""

import json
import dataclasses
import sys
from pathlib import Path

import numpy as np

from keras_dssdn.train.distribute import configure_cpu_devices, cpu_devices_from_env

configure_cpu_devices(cpu_devices_from_env() or 2)  # before TensorFlow initialises its devices

import keras  # noqa: E402

import keras_dssdn.data.pipeline as pipeline  # noqa: E402
from keras_dssdn.models.presets import resolve_config  # noqa: E402
from keras_dssdn.data.datasets import read_clips  # noqa: E402
from keras_dssdn.data.pipeline import evaluation_dataset  # noqa: E402
from keras_dssdn.data.spec import PipelineSpec  # noqa: E402
from keras_dssdn.errors import ResumeError
from keras_dssdn.train import load_train_config, train  # noqa: E402

data, out = sys.argv[1], Path(sys.argv[2])
out.mkdir(parents=True, exist_ok=True)

# the same batches in both runs: the training pipeline's shuffle off (Keras draws one extra batch to build the
# model under a strategy, which would move the seeded shuffle on by one epoch)
_training_dataset = pipeline.training_dataset


def _unshuffled(clips, spec, options, **kwargs):
    return _training_dataset(clips, spec, dataclasses.replace(options, shuffle_buffer=1), **kwargs)


pipeline.training_dataset = _unshuffled

resolve_config("small").replace(widths=[4, 4, 8, 8, 8], dropout=0.0).save(out / "model.json")
common = [f"data={data}", f"out_dir={out}", f"model={out / 'model.json'}", "clip_seconds=2.0", "segment_seconds=null",
          "label_smoothing=0.1", "monitor=val_accuracy",  # the recipe this comparison was measured with (round 1)
          "warmup_epochs=1",
          "verbose=0", "augment.mixup_alpha=0", "augment.freq_masks=0", "augment.time_masks=0",
          "augment.mixstyle_prob=0"]


class StopAfterFirstEpoch(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        raise KeyboardInterrupt("simulated kill after epoch 1")


single = train(load_train_config("small", common + ["name=single", "batch_size=6", "epochs=2"]))
mirrored_cfg = load_train_config("small", common + ["name=mirrored", "batch_size=3", "epochs=2",
                                                    "strategy=mirrored", "lr_scaling=none"])
try:
    train(mirrored_cfg, callbacks=[StopAfterFirstEpoch()])
except KeyboardInterrupt:
    pass
# resuming on another replica count is refused
try:
    train(load_train_config("small", common + ["name=mirrored", "epochs=2"]), resume=True)
    refused = None
except ResumeError as e:
    refused = str(e)
mirrored = train(mirrored_cfg, resume=True)


def history(name):
    return json.loads((out / name / "checkpoint" / "state.json").read_text())["history"]


models = {name: keras.models.load_model(out / name / "checkpoint" / "last.keras") for name in ("single", "mirrored")}
x = next(iter(evaluation_dataset(read_clips(data, split="evaluate"), PipelineSpec(clip_seconds=2.0, batch_size=64))))[0]
probs = {name: np.asarray(m.predict(x, verbose=0)) for name, m in models.items()}
best = keras.models.load_model(out / "mirrored" / "best.keras")
sync_saved = [layer.synchronized for layer in best._flatten_layers()
              if isinstance(layer, keras.layers.BatchNormalization)]
(out / "result.json").write_text(json.dumps({
    "history": {"single": history("single"), "mirrored": history("mirrored")},
    "max_prob_diff": float(np.max(np.abs(probs["single"] - probs["mirrored"]))),
    "distribution": json.loads((out / "mirrored" / "distribution.json").read_text()),
    "mirrored_accuracy": mirrored.metrics["accuracy"], "single_accuracy": single.metrics["accuracy"],
    "refused": refused, "batchnorm_synchronized_in_saved_model": any(sync_saved), "batchnorm_layers": len(sync_saved),
}, indent=1))
