"""Training: configuration (:mod:`.config`), recipe (:mod:`.recipe`), the run loop (:mod:`.trainer`) and
tf.distribute strategies (:mod:`.distribute`)."""

from keras_dssdn.train.config import CONFIG_DIR, TrainConfig, load_train_config
from keras_dssdn.train.recipe import (WarmupCosine, build_network, compile_for_training, dataset_options,
                                      input_seconds, make_optimizer, normalization_stats, training_data, wrap_network)
from keras_dssdn.train.trainer import RunCheckpoint, RunResult, load_checkpoint, train

__all__ = ["CONFIG_DIR", "RunCheckpoint", "RunResult", "TrainConfig", "WarmupCosine", "build_network",
           "compile_for_training", "dataset_options", "input_seconds", "load_checkpoint", "load_train_config",
           "make_optimizer", "normalization_stats", "train", "training_data", "wrap_network"]
