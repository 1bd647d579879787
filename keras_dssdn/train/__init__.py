"""Training: configuration (:mod:`.config`), recipe (:mod:`.recipe`), learning-rate schedule (:mod:`.schedule`),
the run loop (:mod:`.trainer`), stochastic weight averaging (:mod:`.weight_average`) and tf.distribute strategies
(:mod:`.distribute`).

The public names below are loaded on first use, so that importing one submodule (e.g. the schedule, which
``import keras_dssdn`` registers) does not load the whole training stack.
"""

import importlib as _importlib

_LAZY = {
    "CONFIG_DIR": "config", "TrainConfig": "config", "load_train_config": "config", "resume_train_config": "config",
    "WarmupCosine": "schedule",
    "build_network": "recipe", "compile_for_training": "recipe", "input_seconds": "recipe",
    "make_optimizer": "recipe", "normalization_stats": "recipe", "pipeline_spec": "recipe",
    "teacher_targets": "recipe", "training_options": "recipe", "use_mixed_precision": "recipe",
    "training_data": "recipe", "wrap_network": "recipe",
    "RunCheckpoint": "trainer", "RunResult": "trainer", "load_checkpoint": "trainer", "train": "trainer",
}
__all__ = sorted(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        value = getattr(_importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
