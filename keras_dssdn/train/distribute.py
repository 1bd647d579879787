"""Training on several devices or machines with TensorFlow's own engines (``tf.distribute``).

Strategies (``TrainConfig.strategy``, ``tools/train.py --strategy``):

``default``
    TensorFlow's default strategy: one device, exactly the single-process path.
``mirrored``
    :class:`tf.distribute.MirroredStrategy` over every local GPU; on a machine without a GPU, over
    the logical CPU devices that :func:`configure_cpu_devices` made (``KERAS_DSSDN_CPU_DEVICES=N``
    or ``tools/train.py --cpu-devices N``: it must run before TensorFlow initialises its devices,
    i.e. at process start). Synchronous data parallelism in one process.
``multiworker``
    :class:`tf.distribute.MultiWorkerMirroredStrategy`: one process per machine (each on its local
    GPUs, or its CPU), the cluster described by the ``TF_CONFIG`` environment variable
    (``{"cluster": {"worker": ["host1:port", "host2:port"]}, "task": {"type": "worker", "index": i}}``).
    Gradients are all-reduced with collective ops (ring over gRPC, NCCL between GPUs). Without
    ``TF_CONFIG`` it runs as one worker on the local devices.

What stays the same as one device (measured in ``tests/test_distribute.py``):

* **Batch size**: ``batch_size`` is the batch *per replica*; every optimiser step sees a global batch of
  ``batch_size x replicas`` (replicas = devices per worker x workers). The tf.data pipeline builds
  global batches (decoding, log-mel, mixup / SpecAugment / Freq-MixStyle on the global batch), Keras
  splits each one across the replicas (:meth:`Strategy.experimental_distribute_dataset`), and with
  several workers each worker keeps its replicas' share of every global batch
  (``AutoShardPolicy.DATA``: every worker runs the same seeded pipeline and drops the other workers'
  examples; right for an in-memory cache, where there is no file list worth splitting).
* **Learning rate**: scaled with the global batch by ``lr_scaling``: ``linear`` (default; Goyal et al.
  2017: ``learning_rate x replicas``, with the recipe's warm-up), ``sqrt`` (``x sqrt(replicas)``) or
  ``none``. One replica: unchanged.
* **Batch normalisation**: ``sync_batchnorm`` (default on) makes every BatchNormalization layer use
  the statistics of the global batch (``keras.layers.BatchNormalization(synchronized=True)``, TF's
  cross-replica all-reduce), so N replicas of batch B train like one device with batch N x B.
  Off: each replica normalises its own B examples (cheaper, not the same model). Saved models keep
  ``synchronized=False`` in their config (:func:`local_batchnorm_config`), whatever trained them.
* **Loss and metrics**: Keras divides each replica's mean loss by the replica count and sums the
  gradients; accuracy and loss are summed over all replicas before the epoch logs, so early
  stopping and ``best.keras`` see the global values, identical on every worker.
* **Checkpoints**: model and optimizer variables are built (or loaded for ``--resume``) inside
  ``strategy.scope()``. With several workers, only the chief (task 0) writes the run folder; the
  others write the same files, in lockstep, into a temporary folder that is deleted at the end
  (TensorFlow's prescription: saving may read synchronised variables). Resuming reads the run
  folder in every worker (on several machines: a shared disk, or a copy of it), and needs the same
  number of replicas (the global batch and the step count of the learning-rate schedule depend on it).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Dict, Iterator, List, Optional

import keras
import tensorflow as tf

from keras_dssdn.errors import DistributeError

STRATEGIES = ("default", "mirrored", "multiworker")
LR_SCALINGS = ("linear", "sqrt", "none")
#: Environment variable: split the CPU into this many logical devices at start (``mirrored`` without GPU).
CPU_DEVICES_ENV = "KERAS_DSSDN_CPU_DEVICES"



# ----------------------------------------------------------------------------
# Devices
# ----------------------------------------------------------------------------


def configure_cpu_devices(count: int) -> int:
    """Split the host CPU into ``count`` logical devices (``/cpu:0`` ... ``/cpu:count-1``) so that
    ``MirroredStrategy`` can run several replicas without a GPU (they share the cores).

    Must run before TensorFlow initialises its devices (before any tensor is made); afterwards it
    only succeeds if the count already matches. Returns the number of logical CPU devices.
    """
    count = int(count)
    if count < 1:
        raise ValueError(f"The CPU device count must be >= 1, got {count}.")
    cpus = tf.config.list_physical_devices("CPU")
    current = tf.config.get_logical_device_configuration(cpus[0])
    if current is not None and len(current) == count:
        return count
    try:
        tf.config.set_logical_device_configuration(cpus[0], [tf.config.LogicalDeviceConfiguration()] * count)
    except RuntimeError:
        have = len(tf.config.list_logical_devices("CPU"))
        if have == count:
            return count
        raise DistributeError(
            f"Cannot split the CPU into {count} logical devices: TensorFlow has already initialised "
            f"{have}. Set {CPU_DEVICES_ENV}={count} in the environment (or pass tools/train.py --cpu-devices "
            f"{count}) so that it happens at process start.") from None
    return count


def cpu_devices_from_env() -> Optional[int]:
    """The ``KERAS_DSSDN_CPU_DEVICES`` count, or None when unset."""
    text = os.environ.get(CPU_DEVICES_ENV, "").strip()
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        raise DistributeError(f"{CPU_DEVICES_ENV} must be an integer, got {text!r}.") from None


def mirrored_devices() -> List[str]:
    """The devices ``mirrored`` uses: every local GPU, else every logical CPU device."""
    env = cpu_devices_from_env()
    if env and not tf.config.list_physical_devices("GPU"):
        configure_cpu_devices(env)
    gpus = tf.config.list_logical_devices("GPU")
    if gpus:
        return [d.name for d in gpus]
    return [d.name for d in tf.config.list_logical_devices("CPU")]


# ----------------------------------------------------------------------------
# Cluster (TF_CONFIG)
# ----------------------------------------------------------------------------


def tf_config() -> dict:
    """The parsed ``TF_CONFIG`` (``{}`` when unset)."""
    text = os.environ.get("TF_CONFIG", "").strip()
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise DistributeError(f"TF_CONFIG is not valid JSON ({e}): {text[:200]!r}") from None
    if not isinstance(value, dict):
        raise DistributeError(f"TF_CONFIG must be a JSON object, got {text[:200]!r}.")
    return value


def cluster_workers(config: Optional[dict] = None) -> int:
    """Number of training tasks (``chief`` + ``worker``) in ``TF_CONFIG``; 1 without one."""
    config = tf_config() if config is None else config
    cluster = config.get("cluster") or {}
    return max(1, len(cluster.get("chief", [])) + len(cluster.get("worker", [])))


def is_chief_task(task_type: Optional[str], task_id: Optional[int], cluster: Optional[dict] = None) -> bool:
    """TensorFlow's rule: the ``chief`` task, else ``worker`` 0 when the cluster has no chief; a process
    outside any cluster is its own chief."""
    if task_type is None:
        return True
    if task_type == "chief":
        return True
    return task_type == "worker" and int(task_id or 0) == 0 and "chief" not in (cluster or {})


def local_cluster(workers: int, host: str = "127.0.0.1") -> List[str]:
    """``TF_CONFIG`` values (one per task) for a ``workers``-process cluster on free ports of ``host``;
    for tests and one-machine trials of multi-worker training."""
    ports = free_ports(workers, host)
    addresses = [f"{host}:{p}" for p in ports]
    return [json.dumps({"cluster": {"worker": addresses}, "task": {"type": "worker", "index": i}})
            for i in range(workers)]


def free_ports(count: int, host: str = "127.0.0.1") -> List[int]:
    """``count`` distinct TCP ports that are free on ``host`` right now."""
    socks, ports = [], []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((host, 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


# ----------------------------------------------------------------------------
# Strategy
# ----------------------------------------------------------------------------

_CACHE: Dict[str, tf.distribute.Strategy] = {}


def make_strategy(name: str) -> tf.distribute.Strategy:
    """The ``tf.distribute`` strategy for ``name`` (one per process and name: a
    ``MultiWorkerMirroredStrategy`` can only be created once, before any TensorFlow op)."""
    if name not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {name!r}.")
    if name == "default":
        return tf.distribute.get_strategy()
    if name in _CACHE:
        return _CACHE[name]
    if name == "mirrored":
        strategy = tf.distribute.MirroredStrategy(mirrored_devices())
    else:
        tf_config()  # a clear error for bad JSON
        try:
            strategy = tf.distribute.MultiWorkerMirroredStrategy()
        except RuntimeError as e:
            if "program startup" in str(e) or "initialized" in str(e):
                raise DistributeError(
                    "MultiWorkerMirroredStrategy must be created before TensorFlow runs anything in this process: "
                    "start a fresh process (tools/train.py --strategy multiworker) and call train() first.") from None
            raise
    _CACHE[name] = strategy
    return strategy


@dataclasses.dataclass
class Distribution:
    """Where a training runs: the strategy and what this process is within it."""

    name: str
    strategy: tf.distribute.Strategy
    replicas: int = 1
    workers: int = 1
    task_type: Optional[str] = None
    task_id: Optional[int] = None
    is_chief: bool = True
    devices: tuple = ()

    @property
    def distributed(self) -> bool:
        """True for ``mirrored`` / ``multiworker`` (even with one replica)."""
        return self.name != "default"

    def scope(self):
        """``strategy.scope()`` (a no-op context for ``default``): build, compile and load models inside."""
        return self.strategy.scope() if self.distributed else contextlib.nullcontext()

    def describe(self) -> str:
        where = f"{self.workers} workers x {self.replicas // max(self.workers, 1)} devices" if self.workers > 1 \
            else ", ".join(d.split("/")[-1] for d in self.devices) or "one device"
        task = f"; this process: {self.task_type} {self.task_id}{' (chief)' if self.is_chief else ''}" \
            if self.task_type is not None else ""
        return f"strategy {self.name}: {self.replicas} replica{'s' if self.replicas != 1 else ''} ({where}){task}"

    def agree(self, error: Optional[BaseException]) -> None:
        """All workers learn whether any of them failed (an all-reduce of error flags); raises ``error``
        here, or :class:`DistributeError` where another worker failed, so no worker is left waiting in a
        collective. A no-op with one worker."""
        if self.workers > 1:
            strategy = self.strategy

            @tf.function
            def count(flag):
                return strategy.reduce(tf.distribute.ReduceOp.SUM, strategy.run(tf.identity, args=(flag,)), axis=None)

            failed = float(count(tf.constant(0.0 if error is None else 1.0)).numpy())
            if error is None and failed > 0:
                raise DistributeError(f"Another worker of the cluster failed before training (see its output); "
                                      f"this one ({self.task_type} {self.task_id}) stops too.")
        if error is not None:
            raise error


def setup(name: str = "default") -> Distribution:
    """The :class:`Distribution` for a strategy name. Call it before any other TensorFlow work in the
    process (``multiworker`` connects to the cluster here and waits for every worker)."""
    if name not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {name!r}.")
    strategy = make_strategy(name)
    if name == "default":
        return Distribution(name, strategy)
    devices = tuple(strategy.extended.worker_devices)
    if name == "mirrored":
        return Distribution(name, strategy, strategy.num_replicas_in_sync, 1, None, None, True, devices)
    resolver = strategy.cluster_resolver
    task_type, task_id = resolver.task_type, resolver.task_id
    cluster = resolver.cluster_spec().as_dict() if task_type is not None else {}
    workers = max(1, len(cluster.get("chief", [])) + len(cluster.get("worker", [])))
    return Distribution(name, strategy, strategy.num_replicas_in_sync, workers, task_type,
                        None if task_id is None else int(task_id), is_chief_task(task_type, task_id, cluster), devices)


# ----------------------------------------------------------------------------
# Batch size, learning rate, data
# ----------------------------------------------------------------------------


def lr_scale(replicas: int, rule: str = "linear") -> float:
    """Learning-rate factor for ``replicas`` replicas (each with the configured batch size)."""
    if rule not in LR_SCALINGS:
        raise ValueError(f"lr_scaling must be one of {LR_SCALINGS}, got {rule!r}.")
    if rule == "linear":
        return float(replicas)
    if rule == "sqrt":
        return math.sqrt(replicas)
    return 1.0


def shard_by_data(dataset: tf.data.Dataset) -> tf.data.Dataset:
    """``dataset`` with ``AutoShardPolicy.DATA``: each worker runs the whole (seeded, cached) pipeline and
    keeps its replicas' part of every global batch. The default (``AUTO``) would look for files to
    split, and the pipeline's sources are tensors (the clip table), not file readers."""
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)


# ----------------------------------------------------------------------------
# Batch normalisation
# ----------------------------------------------------------------------------


def batchnorm_layers(model: keras.Model) -> List[keras.layers.BatchNormalization]:
    """Every BatchNormalization layer in ``model``, nested ones included."""
    return [layer for layer in model._flatten_layers(include_self=False, recursive=True)
            if isinstance(layer, keras.layers.BatchNormalization)]


def synchronize_batchnorm(model: keras.Model, on: bool = True) -> int:
    """Set ``synchronized`` on every BatchNormalization layer (before the first training step: the
    training function reads it when it is traced). Returns the number of layers."""
    layers = batchnorm_layers(model)
    for layer in layers:
        layer.synchronized = bool(on)
    return len(layers)


@contextlib.contextmanager
def local_batchnorm_config(model: keras.Model) -> Iterator[None]:
    """While saving: synchronised BatchNormalization layers report ``synchronized=False`` in their config,
    so a saved model does not depend on how it was trained. The traced training step is unaffected."""
    flipped = [layer for layer in batchnorm_layers(model) if layer.synchronized]
    for layer in flipped:
        layer.synchronized = False
    try:
        yield
    finally:
        for layer in flipped:
            layer.synchronized = True


# ----------------------------------------------------------------------------
# Keras 3 + MultiWorkerMirroredStrategy
# ----------------------------------------------------------------------------


def patch_for_multiworker(model: keras.Model) -> keras.Model:
    """Work around two places where Keras 3.11's ``fit`` / ``evaluate`` fail under
    ``MultiWorkerMirroredStrategy`` with more than one worker (keras-team/keras#20585,
    tensorflow/tensorflow#72388: TensorFlow's own multi-worker Keras tutorial fails the same way).
    Instance-level, nothing else changes; returns ``model``.

    1. Before training, Keras builds the model symbolically from one batch, which it gets by
       ``strategy.reduce("MEAN", (x, y))`` over the whole ``(x, y)`` tuple; the multi-worker strategy
       reduces single tensors only ("Attempt to convert a value (PerReplica ...) to a Tensor"). The
       build only needs shapes and dtypes: this takes the first local replica's batch (no collective).
    2. Every step's logs are reduced across workers with ``strategy.reduce("MEAN", v, axis=0)``,
       which fails for the scalar loss / metric values ("Invalid reduction dimension 0 for input
       with 0 dimensions"). Train and test steps here return them as shape ``(1,)``, so that reduction
       is their mean over the replicas, a scalar again. (Only the progress bar sees these step
       values: the epoch logs are read from the metrics, summed over all replicas.)
    """
    build = model._maybe_symbolic_build
    strategy = model.distribute_strategy

    def _maybe_symbolic_build(iterator=None, data_batch=None):
        if iterator is not None and data_batch is None:
            for _, _, it in iterator:
                batch = next(it)
                data_batch = tf.nest.map_structure(
                    lambda v: strategy.experimental_local_results(v)[0]
                    if isinstance(v, tf.distribute.DistributedValues) else v, batch)
                break
        return build(iterator=None, data_batch=data_batch)

    def rank_one(step):
        def wrapped(data):
            return tf.nest.map_structure(lambda t: tf.reshape(t, [-1]) if t.shape.rank == 0 else t, step(data))
        return wrapped

    model._maybe_symbolic_build = _maybe_symbolic_build
    model.train_step = rank_one(model.train_step)
    model.test_step = rank_one(model.test_step)
    return model


# ----------------------------------------------------------------------------
# Folders
# ----------------------------------------------------------------------------


def worker_dir(dist: Distribution) -> Path:
    """A temporary folder for a non-chief worker's copies of the run files (deleted by :func:`remove_worker_dir`)."""
    return Path(tempfile.mkdtemp(prefix=f"keras_dssdn-{dist.task_type}{dist.task_id}-"))


def remove_worker_dir(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


__all__ = [
    "CPU_DEVICES_ENV", "Distribution", "DistributeError", "LR_SCALINGS", "STRATEGIES", "batchnorm_layers",
    "cluster_workers", "configure_cpu_devices", "cpu_devices_from_env", "patch_for_multiworker", "free_ports",
    "is_chief_task",
    "local_batchnorm_config", "local_cluster", "lr_scale", "make_strategy", "mirrored_devices", "setup",
    "shard_by_data", "synchronize_batchnorm", "tf_config", "worker_dir", "remove_worker_dir",
]
