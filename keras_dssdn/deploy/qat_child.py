"""The child side of quantisation-aware training: ``python -m keras_dssdn.deploy.qat_child WORKDIR``.

tensorflow-model-optimization 0.8.1 quantises tf_keras (Keras 2) models only,
and importing it switches the process to tf_keras, so this runs in its own
process with ``TF_USE_LEGACY_KERAS=1`` (started by
:func:`keras_dssdn.deploy.qat.run_qat`). It reads the work folder the parent
wrote and, in order (:func:`child_main`):

1. builds the tf_keras mirror of :func:`keras_dssdn.deploy.qat_mirror.build_mirror_spec`
   and checks it reproduces the Keras 3 float outputs (max absolute difference
   <= ``tolerance``) -- else fails;
2. ``quantize_annotate`` + ``quantize_apply`` (8-bit default scheme); activation
   ranges calibrated on the calibration inputs (tfmot starts them at [-6, 6]
   with a slow EMA);
3. Adam fine-tuning for ``epochs`` on the training chunks (cross-entropy with
   ``label_smoothing``);
4. widens sigmoid / tanh input ranges off int8 rounding ties, converts to a
   full-integer int8 TFLite model at batch 1 (int8 input / output).

Work folder (the protocol between parent and child; file names below):
``spec.json`` (mirror spec + training settings), ``weights.npz``,
``check_x.npy`` / ``check_y.npy`` (inputs and Keras 3 outputs), ``calibration.npy``
(float inputs ``(N, n_mels, frames, 1)``), ``epoch_###/x_####.npy`` /
``y_####.npy`` training chunks (one folder reused every epoch, or one per
epoch), and written back ``qat_int8.tflite`` and ``result.json`` (``ok``,
history, checks, timings; ``error`` on failure).
"""

from __future__ import annotations

import glob
import json
import os
import sys
import time
from typing import Callable, Dict, List, Tuple

import numpy as np

from keras_dssdn.errors import QATError

SPEC = "spec.json"
WEIGHTS = "weights.npz"
CHECK_X = "check_x.npy"
CHECK_Y = "check_y.npy"
CALIBRATION = "calibration.npy"
OUTPUT = "qat_int8.tflite"
RESULT = "result.json"


def epoch_folder(work: str, epoch: int) -> str:
    """The training chunks of ``epoch`` (0-based)."""
    return os.path.join(work, f"epoch_{epoch:03d}")


def write_result(work: str, result: dict) -> None:
    """``result.json`` (the parent reads it after the child exits)."""
    from keras_dssdn.fileio import write_json_atomic

    write_json_atomic(os.path.join(work, RESULT), result)


# ---------------------------------------------------------------------------
# The tf_keras mirror
# ---------------------------------------------------------------------------


def _layer_factories(L) -> Dict[str, Callable]:
    """``{mirror op: (args, name) -> tf_keras layer}`` (``L`` is ``tf_keras.layers``)."""
    t = tuple
    return {
        "conv2d": lambda a, n: L.Conv2D(a["filters"], t(a["kernel_size"]), strides=t(a["strides"]),
                                        padding=a["padding"], dilation_rate=t(a["dilation_rate"]),
                                        activation=a["activation"], use_bias=a["use_bias"], name=n),
        "depthwise": lambda a, n: L.DepthwiseConv2D(t(a["kernel_size"]), strides=t(a["strides"]), padding=a["padding"],
                                                    depth_multiplier=a["depth_multiplier"],
                                                    dilation_rate=t(a["dilation_rate"]), activation=a["activation"],
                                                    use_bias=a["use_bias"], name=n),
        "dense": lambda a, n: L.Dense(a["units"], activation=a["activation"], use_bias=a["use_bias"], name=n),
        "relu": lambda a, n: L.ReLU(max_value=a.get("max_value"), name=n),
        "activation": lambda a, n: L.Activation(a["activation"], name=n),
        "softmax": lambda a, n: L.Softmax(axis=a["axis"], name=n),
        "add": lambda a, n: L.Add(name=n),
        "multiply": lambda a, n: L.Multiply(name=n),
        "concat": lambda a, n: L.Concatenate(axis=a["axis"], name=n),
        "avgpool": lambda a, n: L.AveragePooling2D(t(a["pool_size"]), strides=t(a["strides"]), padding=a["padding"],
                                                   name=n),
        "maxpool": lambda a, n: L.MaxPooling2D(t(a["pool_size"]), strides=t(a["strides"]), padding=a["padding"],
                                               name=n),
        "gap": lambda a, n: L.GlobalAveragePooling2D(keepdims=a["keepdims"], name=n),
        "gmp": lambda a, n: L.GlobalMaxPooling2D(keepdims=a["keepdims"], name=n),
        "dropout": lambda a, n: L.Dropout(a["rate"], name=n),
        "flatten": lambda a, n: L.Flatten(name=n),
        "reshape": lambda a, n: L.Reshape(t(a["target_shape"]), name=n),
        "zeropad": lambda a, n: L.ZeroPadding2D(t(t(p) for p in a["padding"]), name=n),
        "crop": lambda a, n: L.Cropping2D(t(t(p) for p in a["cropping"]), name=n),
    }


def _build_tf_keras(spec: dict, weights: dict):
    """The tf_keras model of a mirror spec, with its weights set."""
    import tf_keras

    L = tf_keras.layers
    factories = _layer_factories(L)
    made, layers = {}, {}
    for node in spec["nodes"]:
        op, a, name = node["op"], node["args"], node["name"]
        if op == "input":
            made[name] = L.Input(shape=tuple(a["shape"]), name=name)
            continue
        if op not in factories:
            raise QATError(f"Unknown mirror op {op!r} for {name}.")
        layer = factories[op](a, name)
        ins = [made[i] for i in node["inputs"]]
        made[name] = layer(ins if len(ins) > 1 else ins[0])
        layers[name] = layer
    inputs = [made[n["name"]] for n in spec["nodes"] if n["op"] == "input"]
    model = tf_keras.Model(inputs[0], made[spec["output"]], name=spec.get("model_name", "mirror"))
    for name, layer in layers.items():
        count = sum(1 for k in weights if k.startswith(name + "/"))
        if count:
            layer.set_weights([weights[f"{name}/{i}"] for i in range(count)])
    return model


# ---------------------------------------------------------------------------
# Quantisation
# ---------------------------------------------------------------------------


def _annotate_and_apply(mirror):
    import tensorflow_model_optimization as tfmot
    import tf_keras
    from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
        default_8bit_quantize_configs as configs,
    )

    q = tfmot.quantization.keras

    def annotate(layer):
        if isinstance(layer, tf_keras.layers.Multiply):  # no tfmot default: quantise its output only
            return q.quantize_annotate_layer(layer, quantize_config=configs.Default8BitOutputQuantizeConfig())
        return q.quantize_annotate_layer(layer)

    annotated = tf_keras.models.clone_model(mirror, clone_function=annotate)
    annotated.set_weights(mirror.get_weights())
    with q.quantize_scope({"Default8BitOutputQuantizeConfig": configs.Default8BitOutputQuantizeConfig}):
        return q.quantize_apply(annotated)


def _calibrate_ranges(qmodel, calib: np.ndarray, batch_size: int = 32) -> int:
    """Set every activation quantizer's range to the mean of its per-batch min / max on ``calib``.

    tfmot starts activation ranges at [-6, 6] and moves them by an EMA with
    decay 0.999, so a few epochs of fine-tuning leave them far from the real
    ranges (clipped logits, coarse steps). This pass sets them as post-training
    calibration would, before fine-tuning; dropout is off during it. Returns
    the number of batches.
    """
    import tf_keras
    from tensorflow_model_optimization.python.core.quantization.keras import quant_ops

    original = quant_ops.MovingAvgQuantize
    state = {"decay": 0.0}

    def calibrating(*args, **kwargs):
        kwargs["ema_decay"] = state["decay"]
        return original(*args, **kwargs)

    dropouts = [(layer, layer.rate) for layer in qmodel._flatten_layers() if isinstance(layer, tf_keras.layers.Dropout)]
    quant_ops.MovingAvgQuantize = calibrating
    try:
        for layer, _ in dropouts:
            layer.rate = 0.0
        n = 0
        for i in range(0, len(calib), batch_size):
            state["decay"] = n / (n + 1.0)  # running mean of the batch ranges
            qmodel(calib[i:i + batch_size], training=True)
            n += 1
    finally:
        quant_ops.MovingAvgQuantize = original
        for layer, rate in dropouts:
            layer.rate = rate
    return n


#: Output scale of TFLite's int8 LOGISTIC / TANH (fixed by the converter).
_LUT_ACTIVATIONS = {"sigmoid": (lambda x: 1.0 / (1.0 + np.exp(-x)), 1.0 / 256), "tanh": (np.tanh, 1.0 / 128)}


def _near_rounding_tie(lo: float, hi: float, fn, out_scale: float, margin: float = 1e-4) -> bool:
    """Whether an int8 input range ``[lo, hi]`` (after TF's fake-quant nudging) maps some input to an output
    within ``margin`` of a rounding tie (``k + 0.5`` output steps)."""
    lo, hi = np.float32(min(lo, 0.0)), np.float32(max(hi, 0.0))
    scale = (hi - lo) / np.float32(255.0)
    if scale <= 0:
        return False
    zero = np.clip(np.floor(-lo / scale + 0.5), 0, 255)
    u = fn((np.arange(256) - zero) * np.float64(scale)) / out_scale
    return bool(np.any(np.abs(u - np.floor(u) - 0.5) < margin))


def _output_range_vars(wrapper):
    """``(min_var, max_var)`` quantising a tfmot wrapper's output, or None for a pass-through layer."""
    names = {v.name.split("/")[-1].split(":")[0]: v for v in wrapper.weights}
    for lo, hi in (("post_activation_min", "post_activation_max"), ("output_min", "output_max"),
                   ("quantize_layer_min", "quantize_layer_max")):
        if lo in names and hi in names:
            return names[lo], names[hi]
    return None


def _activation_input_range(wrapper):
    """The range variables that quantise the input of a sigmoid / tanh: its own pre-activation range, or the
    output range of the nearest producer through pass-through layers (Reshape, Cropping2D, Dropout, ...)."""
    act = getattr(wrapper.layer, "activation", None)
    pre = getattr(act, "_pre_activation_vars", None)
    if pre is not None:
        return pre["min_var"], pre["max_var"]
    layer = wrapper
    for _ in range(20):
        inbound = layer.inbound_nodes[0].inbound_layers if layer.inbound_nodes else []
        if isinstance(inbound, (list, tuple)):
            if len(inbound) != 1:
                return None
            inbound = inbound[0]
        layer = inbound
        found = _output_range_vars(layer)
        if found is not None:
            return found
    return None


def _avoid_lut_rounding_ties(qmodel) -> List[str]:
    """Widen (by 0.1 % steps) any sigmoid / tanh input range that puts an int8 input on a rounding tie.

    TFLite's reference int8 LOGISTIC / TANH kernels use a float lookup table,
    TFLM's compute in fixed point; they agree except where ``f(x) / out_scale``
    lies on a ``k + 0.5`` tie (measured: an ECA gate whose input scale came out
    at 1/128 put ``x = +-1/128`` on a tie and TFLM differed by one step). A
    slightly wider range changes nothing else. Returns the adjusted layers.
    """
    adjusted = []
    for layer in qmodel._flatten_layers():
        inner = getattr(layer, "layer", None)
        if inner is None:
            continue
        act = getattr(inner, "activation", None)
        name = getattr(getattr(act, "activation", act), "__name__", "")
        if name not in _LUT_ACTIVATIONS:
            continue
        found = _activation_input_range(layer)
        if found is None:
            continue
        fn, out_scale = _LUT_ACTIVATIONS[name]
        lo_var, hi_var = found
        lo, hi = float(np.ravel(lo_var.numpy())[0]), float(np.ravel(hi_var.numpy())[0])
        tries = 0
        while _near_rounding_tie(lo, hi, fn, out_scale) and tries < 100:
            hi, lo = (hi * 1.001, lo) if hi > -lo else (hi, lo * 1.001)
            tries += 1
        if tries:
            lo_var.assign(np.full(lo_var.shape, lo, np.float32))
            hi_var.assign(np.full(hi_var.shape, hi, np.float32))
            adjusted.append(f"{layer.name} ({tries * 0.1:.1f} %)")
    return adjusted


class _Chunks:
    """Memory-mapped ``x_###.npy`` / ``y_###.npy`` chunks as one indexable set."""

    def __init__(self, folder):
        xs = sorted(glob.glob(os.path.join(folder, "x_*.npy")))
        self.x = [np.load(p, mmap_mode="r") for p in xs]
        self.y = [np.load(os.path.join(folder, "y_" + os.path.basename(p)[2:])) for p in xs]
        self.where = np.concatenate([np.stack([np.full(len(x), i), np.arange(len(x))], 1)
                                     for i, x in enumerate(self.x)])

    def __len__(self):
        return len(self.where)

    def take(self, idx, classes: int):
        """``(x, one-hot or soft labels)`` float32 for the examples at ``idx``."""
        rows = self.where[np.sort(idx)]
        y = np.stack([self.y[c][r] for c, r in rows])
        if y.ndim == 1:
            y = np.eye(classes, dtype=np.float32)[y.astype(np.int64)]
        return np.stack([self.x[c][r] for c, r in rows]).astype(np.float32), y.astype(np.float32)


def _say(*parts):
    print("[qat]", *parts, flush=True)


def _max_diff(model, check_x: np.ndarray, check_y: np.ndarray) -> float:
    return float(np.max(np.abs(model(check_x, training=False).numpy() - check_y)))


def _checked_mirror(work: str, spec: dict):
    """``(mirror, check_x, check_y, max |diff|)``; QATError when the mirror does not reproduce Keras 3."""
    import tf_keras

    with np.load(os.path.join(work, WEIGHTS)) as z:
        weights = {k: z[k] for k in z.files}
    tf_keras.utils.set_random_seed(spec.get("seed", 0))
    mirror = _build_tf_keras(spec, weights)
    check_x, check_y = np.load(os.path.join(work, CHECK_X)), np.load(os.path.join(work, CHECK_Y))
    diff = _max_diff(mirror, check_x, check_y)
    _say(f"tf_keras mirror: {len(mirror.layers)} layers, max |diff| vs Keras 3 = {diff:.2e} on {len(check_x)} inputs")
    if not diff <= spec["tolerance"]:
        raise QATError(f"The tf_keras mirror does not reproduce the Keras 3 model: max |diff| {diff:.3e} > "
                       f"{spec['tolerance']:g} on the check inputs. The layer translation is wrong for this model.")
    return mirror, check_x, check_y, diff


def _quantized(mirror, calib: np.ndarray, check_x: np.ndarray, check_y: np.ndarray) -> Tuple[object, dict]:
    """The fake-quant model with calibrated activation ranges, and its max |diff| before / after calibration."""
    t = time.time()
    qmodel = _annotate_and_apply(mirror)
    uncalibrated = _max_diff(qmodel, check_x, check_y)
    batches = _calibrate_ranges(qmodel, calib)
    initial = _max_diff(qmodel, check_x, check_y)
    _say(f"quantize_apply: {len(qmodel.layers)} layers; activation ranges calibrated on {len(calib)} examples "
         f"({batches} batches); fake-quant model max |diff| vs float = {initial:.3e} (before calibration "
         f"{uncalibrated:.3e}) ({time.time() - t:.1f} s)")
    return qmodel, {"fake_quant_initial_max_abs_diff": initial, "fake_quant_uncalibrated_max_abs_diff": uncalibrated}


def _fine_tune(qmodel, work: str, spec: dict) -> Tuple[dict, int]:
    """Adam fine-tuning for ``spec["epochs"]`` epochs; ``(history, examples per epoch)``."""
    import tf_keras

    qmodel.compile(optimizer=tf_keras.optimizers.Adam(spec["learning_rate"]),
                   loss=tf_keras.losses.CategoricalCrossentropy(from_logits=not spec["probabilities"],
                                                              label_smoothing=spec.get("label_smoothing", 0.0)),
                   metrics=[tf_keras.metrics.CategoricalAccuracy(name="accuracy")])
    rng = np.random.default_rng(spec.get("seed", 0))
    bs = spec["batch_size"]
    history = {"loss": [], "accuracy": []}
    data = None
    for epoch in range(spec["epochs"]):
        folder = epoch_folder(work, epoch)
        if data is None or os.path.isdir(folder):
            data = _Chunks(folder if os.path.isdir(folder) else epoch_folder(work, 0))
        order = rng.permutation(len(data))
        losses, accs, t = [], [], time.time()
        for i in range(0, len(order), bs):
            x, y = data.take(order[i:i + bs], spec["classes"])
            loss, acc = qmodel.train_on_batch(x, y)
            losses.append(loss * len(y))
            accs.append(acc * len(y))
        history["loss"].append(float(sum(losses) / len(data)))
        history["accuracy"].append(float(sum(accs) / len(data)))
        _say(f"epoch {epoch + 1}/{spec['epochs']}: loss {history['loss'][-1]:.4f}, accuracy "
             f"{history['accuracy'][-1]:.4f} ({time.time() - t:.1f} s)")
    return history, len(data)


def _convert_int8(qmodel, calib: np.ndarray) -> bytes:
    """Full-integer int8 TFLite at batch 1, as on the device: static shapes (no SHAPE / PACK ops for reshapes)."""
    import tensorflow as tf

    fn = tf.function(lambda x: qmodel(x, training=False))
    concrete = fn.get_concrete_function(tf.TensorSpec([1, *calib.shape[1:]], tf.float32))
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], qmodel)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([x[None].astype(np.float32)] for x in calib)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    return converter.convert()


def child_main(work: str) -> int:
    """Entry point of ``python -m keras_dssdn.deploy.qat_child WORKDIR`` (tf_keras process)."""
    if os.environ.get("TF_USE_LEGACY_KERAS") != "1":
        raise QATError("Run the QAT child with TF_USE_LEGACY_KERAS=1 (keras_dssdn.deploy.qat.run_qat does).")
    t0 = time.time()
    with open(os.path.join(work, SPEC), encoding="utf-8") as f:
        spec = json.load(f)
    mirror, check_x, check_y, diff = _checked_mirror(work, spec)
    result = {"ok": True, "mirror_layers": len(mirror.layers), "mirror_max_abs_diff": diff}
    if spec.get("check_only"):
        write_result(work, result)
        return 0
    calib = np.load(os.path.join(work, CALIBRATION))
    qmodel, fake_quant = _quantized(mirror, calib, check_x, check_y)
    history, examples = _fine_tune(qmodel, work, spec)
    adjusted = _avoid_lut_rounding_ties(qmodel)
    if adjusted:
        _say(f"widened the sigmoid/tanh input range of {', '.join(adjusted)} to avoid int8 rounding ties")
    t = time.time()
    flatbuffer = _convert_int8(qmodel, calib)
    from keras_dssdn.fileio import write_bytes_atomic

    write_bytes_atomic(os.path.join(work, OUTPUT), flatbuffer)
    import tensorflow_model_optimization as tfmot
    import tf_keras

    result.update({**fake_quant, "epochs": spec["epochs"], "learning_rate": spec["learning_rate"],
                   "label_smoothing": spec.get("label_smoothing", 0.0),
                   "fresh_data_per_epoch": spec.get("fresh_data_per_epoch", False), "batch_size": spec["batch_size"],
                   "ranges_widened_against_rounding_ties": adjusted, "examples": examples, "history": history,
                   "child_seconds": round(time.time() - t0, 1), "tf_keras": tf_keras.__version__,
                   "tfmot": tfmot.__version__})
    write_result(work, result)
    _say(f"converted: {len(flatbuffer):,} B int8 TFLite ({time.time() - t:.1f} s)")
    return 0


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1 or not os.path.isdir(argv[0]):
        print("usage: TF_USE_LEGACY_KERAS=1 python -m keras_dssdn.deploy.qat_child WORKDIR  (written by "
              "keras_dssdn.deploy.qat.run_qat)", file=sys.stderr)
        return 2
    work = argv[0]
    try:
        return child_main(work)
    except Exception as e:  # noqa: BLE001 - reported to the parent through result.json
        import traceback

        traceback.print_exc()
        write_result(work, {"ok": False, "error": f"{type(e).__name__}: {e}"})
        return 1


if __name__ == "__main__":
    sys.exit(main())
