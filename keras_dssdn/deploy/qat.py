"""Quantisation-aware training (QAT) of a Keras 3 model with tensorflow-model-optimization, in a child process.

tensorflow-model-optimization 0.8.1 quantises tf_keras (Keras 2) models only,
and importing it switches the whole process to tf_keras (SPEC.md). So QAT runs
in its own process, ``python -m keras_dssdn.deploy.qat WORKDIR``, and the two sides
talk through files:

Parent (Keras 3, :func:`run_qat`):
  1. :func:`build_mirror_spec` walks the Keras 3 graph and describes an
     equivalent tf_keras model made of built-in layers only: batch norms are
     folded into the convolution before them (as the TFLite converter does);
     :class:`~keras_dssdn.layers.frequency.FrequencySplit` becomes two ``Cropping2D``;
     SC / OSC / SPC become 1x1 ``Conv2D`` (SPC's pointwise split in two: the
     filtered channels and the pass-through ones, no channel slicing),
     ``(k,1)`` and ``(1,k)`` ``DepthwiseConv2D``, ``Add`` and ``Concatenate``;
     :class:`~keras_dssdn.models.blocks.ECA` becomes ``GlobalAveragePooling2D ->
     Reshape -> Conv2D (1,k) -> Reshape -> sigmoid -> Multiply`` (``Multiply``
     has no tfmot default, it gets an output-only QuantizeConfig); a ``Dense``
     on a vector becomes ``Reshape -> 1x1 Conv2D -> Reshape [-> activation]``
     so that its weights are quantised per output channel, as post-training
     quantisation does (tfmot's per-tensor Dense weights give a
     FULLY_CONNECTED on which TFLM and TFLite's reference kernels round
     differently, measured; per-channel Dense does not convert). Weights are
     copied over by layer.
  2. Writes ``spec.json``, ``weights.npz``, the check inputs and the Keras 3
     outputs for them, the calibration inputs and the training data (``.npy``
     chunks per epoch folder: normalised log-mel ``(N, n_mels, frames, 1)``
     float32 and int class ids ``(N,)`` or soft labels ``(N, classes)``; one
     folder reused every epoch, or a fresh augmented pass per epoch).

Child (tf_keras, :func:`main`):
  3. Builds the mirror and checks it reproduces the Keras 3 float outputs
     (max absolute difference <= ``tolerance``, default 1e-4) -- else fails.
  4. ``quantize_annotate`` + ``quantize_apply`` (8-bit default scheme),
     activation ranges calibrated on the calibration inputs (tfmot starts them
     at [-6, 6] with a slow EMA), Adam fine-tuning for ``epochs`` on the training data (cross-entropy with
     ``label_smoothing``), conversion to a full-integer int8 TFLite model at
     batch 1 (int8 input / output).
  5. Writes ``qat_int8.tflite`` and ``result.json`` (history, checks, timings).

The OSC orthonormality regulariser is not carried into the mirror: QAT
fine-tunes a trained model for a few epochs with the cross-entropy alone.
:func:`keras_dssdn.deploy.export.export_bundle` feeds it the training run's
augmentation and label smoothing (from the run's config.json) by default.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

from keras_dssdn.errors import ExportError, QATError

#: Mirror outputs must match the Keras 3 model's to this (max absolute difference).
MIRROR_TOLERANCE = 1e-4
CHUNK = 1024




# ---------------------------------------------------------------------------
# Parent side: describe the model for tf_keras
# ---------------------------------------------------------------------------

_ACTIVATIONS = ("linear", "relu", "sigmoid", "softmax", "tanh")


def _activation(layer) -> str:
    act = layer.get_config().get("activation", "linear")
    if act is None:
        return "linear"
    if not isinstance(act, str) or act not in _ACTIVATIONS:
        raise QATError(f"Layer {layer.name}: activation {act!r} is not supported by the QAT mirror "
                       f"(supported: {', '.join(_ACTIVATIONS)}); use a separate activation layer.")
    return act


def _bn_affine(bn) -> Tuple[np.ndarray, np.ndarray]:
    """Per-channel ``(scale, shift)`` of an inference-mode BatchNormalization."""
    axis = bn.axis if isinstance(bn.axis, int) else bn.axis[0]
    if axis not in (-1, 3):
        raise QATError(f"BatchNormalization {bn.name} normalises axis {bn.axis}; only the channel axis (-1) is supported.")
    var = np.asarray(bn.moving_variance)
    mean = np.asarray(bn.moving_mean)
    gamma = np.asarray(bn.gamma) if bn.scale else np.ones_like(var)
    beta = np.asarray(bn.beta) if bn.center else np.zeros_like(var)
    scale = gamma / np.sqrt(var + bn.epsilon)
    return scale.astype(np.float64), (beta - mean * scale).astype(np.float64)


def _fold(kernel: np.ndarray, bias: Optional[np.ndarray], bn, depthwise: bool):
    scale, shift = _bn_affine(bn)
    kernel = np.asarray(kernel, np.float64)
    if depthwise:  # (kh, kw, C, mult): output channel c * mult + m
        kh, kw, c, mult = kernel.shape
        kernel = kernel * scale.reshape(c, mult)[None, None]
    else:
        kernel = kernel * scale
    b = np.zeros_like(scale) if bias is None else np.asarray(bias, np.float64)
    return kernel.astype(np.float32), (b * scale + shift).astype(np.float32)


class _SpecBuilder:
    def __init__(self):
        self.nodes: List[dict] = []
        self.weights: Dict[str, np.ndarray] = {}
        self.names = set()

    def add(self, name: str, op: str, inputs: List[str], args: Optional[dict] = None, weights=None) -> str:
        if name in self.names:
            raise QATError(f"Duplicate layer name {name!r} in the QAT mirror.")
        self.names.add(name)
        self.nodes.append({"name": name, "op": op, "inputs": list(inputs), "args": args or {}})
        for i, w in enumerate(weights or []):
            self.weights[f"{name}/{i}"] = np.asarray(w, np.float32)
        return name


def _conv_args(layer, depthwise: bool, use_bias: bool) -> dict:
    cfg = layer.get_config()
    if cfg.get("data_format", "channels_last") != "channels_last":
        raise QATError(f"Layer {layer.name}: only channels_last is supported.")
    if int(cfg.get("groups", 1)) != 1:
        raise QATError(f"Layer {layer.name}: grouped convolutions are not supported by the QAT mirror.")
    args = {"kernel_size": list(cfg["kernel_size"]), "strides": list(cfg["strides"]), "padding": cfg["padding"],
            "dilation_rate": list(cfg["dilation_rate"]), "use_bias": use_bias, "activation": _activation(layer)}
    if depthwise:
        args["depth_multiplier"] = int(cfg.get("depth_multiplier", 1))
    else:
        args["filters"] = int(cfg["filters"])
    return args


def build_mirror_spec(model) -> Tuple[dict, Dict[str, np.ndarray]]:
    """Describe a Keras 3 functional model as tf_keras built-in layers (see the module doc).

    Returns ``(spec, weights)``: ``spec["nodes"]`` in topological order, each
    ``{"name", "op", "inputs", "args"}``; ``weights["<node>/<i>"]`` arrays in
    ``layer.get_weights()`` order. Raises :class:`QATError` naming any layer it
    cannot mirror.
    """
    import keras

    from keras_dssdn.models.blocks import ECA
    from keras_dssdn.layers.frequency import FrequencySplit, split_point
    from keras_dssdn.layers.labels import ClassNames
    from keras_dssdn.layers.operators import _SeparableOperator

    L = keras.layers
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise QATError("The QAT mirror supports single-input, single-output models.")
    b = _SpecBuilder()
    out_of: Dict[Tuple[str, int], str] = {}
    consumers: Dict[Tuple[str, int], list] = {}
    layers = [layer for layer in model.layers if not isinstance(layer, L.InputLayer)]
    for layer in layers:
        if len(layer._inbound_nodes) != 1:
            raise QATError(f"Layer {layer.name} is used {len(layer._inbound_nodes)} times; shared layers are not "
                           "supported by the QAT mirror.")
        for t in layer._inbound_nodes[0].input_tensors:
            op, _, idx = t._keras_history
            consumers.setdefault((op.name, idx), []).append(layer)

    inp = model.inputs[0]
    in_layer = inp._keras_history[0]
    b.add(in_layer.name, "input", [], {"shape": [int(d) for d in inp.shape[1:]]})
    out_of[(in_layer.name, 0)] = in_layer.name
    folded = set()

    def inputs_of(layer):
        names = []
        for t in layer._inbound_nodes[0].input_tensors:
            op, _, idx = t._keras_history
            if (op.name, idx) not in out_of:
                raise QATError(f"Layer {layer.name} consumes {op.name} before it is built (graph order).")
            names.append(out_of[(op.name, idx)])
        return names

    def foldable_bn(layer):
        users = consumers.get((layer.name, 0), [])
        if len(users) == 1 and isinstance(users[0], L.BatchNormalization) and _activation(layer) == "linear":
            return users[0]
        return None

    for layer in layers:
        name = layer.name
        if name in folded:
            continue
        ins = inputs_of(layer)
        if isinstance(layer, (L.DepthwiseConv2D, L.Conv2D)):
            depthwise = isinstance(layer, L.DepthwiseConv2D)
            bn = foldable_bn(layer)
            kernel = np.asarray(layer.kernel)
            bias = np.asarray(layer.bias) if layer.use_bias else None
            if bn is not None:
                kernel, bias = _fold(kernel, bias, bn, depthwise=depthwise)
                folded.add(bn.name)
                out_of[(bn.name, 0)] = name
            args = _conv_args(layer, depthwise, bias is not None)
            b.add(name, "depthwise" if depthwise else "conv2d", ins, args, [kernel] + ([bias] if bias is not None else []))
        elif isinstance(layer, L.BatchNormalization):
            # Not after a convolution: an exact per-channel affine map = 1x1 depthwise convolution with bias.
            scale, shift = _bn_affine(layer)
            b.add(name, "depthwise", ins, {"kernel_size": [1, 1], "strides": [1, 1], "padding": "valid",
                                           "dilation_rate": [1, 1], "use_bias": True, "activation": "linear",
                                           "depth_multiplier": 1},
                  [scale.reshape(1, 1, -1, 1), shift])
        elif isinstance(layer, L.Dense):
            act = _activation(layer)
            w = [np.asarray(layer.kernel)] + ([np.asarray(layer.bias)] if layer.use_bias else [])
            features = int(layer._inbound_nodes[0].input_tensors[0].shape[-1])
            if len(layer._inbound_nodes[0].input_tensors[0].shape) == 2:
                # A 1x1 Conv2D: its weights quantise per output channel like post-training quantisation's
                # FULLY_CONNECTED. tfmot quantises Dense per tensor, and for per-tensor FULLY_CONNECTED TFLM
                # rounds differently from TFLite's reference kernel (measured); per-channel Dense does not convert.
                x = b.add(f"{name}__as_map", "reshape", ins, {"target_shape": [1, 1, features]})
                x = b.add(f"{name}__conv", "conv2d", [x], {
                    "filters": int(layer.units), "kernel_size": [1, 1], "strides": [1, 1], "padding": "valid",
                    "dilation_rate": [1, 1], "use_bias": bool(layer.use_bias), "activation": "linear"},
                    [w[0].reshape(1, 1, features, -1)] + w[1:])
                x = b.add(f"{name}__flat" if act != "linear" else name, "reshape", [x],
                          {"target_shape": [int(layer.units)]})
                if act != "linear":
                    b.add(name, "activation", [x], {"activation": act})
            else:
                b.add(name, "dense", ins, {"units": int(layer.units), "activation": act,
                                           "use_bias": bool(layer.use_bias)}, w)
        elif isinstance(layer, L.ReLU):
            cfg = layer.get_config()
            if float(cfg.get("negative_slope") or 0) != 0 or float(cfg.get("threshold") or 0) != 0:
                raise QATError(f"ReLU {name}: negative_slope / threshold are not supported by the QAT mirror.")
            b.add(name, "relu", ins, {"max_value": cfg.get("max_value")})
        elif isinstance(layer, L.Activation):
            b.add(name, "activation", ins, {"activation": _activation(layer)})
        elif isinstance(layer, L.Softmax):
            b.add(name, "softmax", ins, {"axis": layer.get_config().get("axis", -1)})
        elif isinstance(layer, L.Add):
            b.add(name, "add", ins)
        elif isinstance(layer, L.Multiply):
            b.add(name, "multiply", ins)
        elif isinstance(layer, L.Concatenate):
            b.add(name, "concat", ins, {"axis": int(layer.axis)})
        elif isinstance(layer, (L.AveragePooling2D, L.MaxPooling2D)):
            cfg = layer.get_config()
            b.add(name, "avgpool" if isinstance(layer, L.AveragePooling2D) else "maxpool", ins,
                  {"pool_size": list(cfg["pool_size"]), "strides": list(cfg["strides"]), "padding": cfg["padding"]})
        elif isinstance(layer, (L.GlobalAveragePooling2D, L.GlobalMaxPooling2D)):
            op = "gap" if isinstance(layer, L.GlobalAveragePooling2D) else "gmp"
            b.add(name, op, ins, {"keepdims": bool(layer.get_config().get("keepdims", False))})
        elif isinstance(layer, L.Dropout):
            b.add(name, "dropout", ins, {"rate": float(layer.rate)})
        elif isinstance(layer, L.Flatten):
            b.add(name, "flatten", ins)
        elif isinstance(layer, L.Reshape):
            b.add(name, "reshape", ins, {"target_shape": [int(d) for d in layer.target_shape]})
        elif isinstance(layer, L.ZeroPadding2D):
            b.add(name, "zeropad", ins, {"padding": [list(p) for p in layer.padding]})
        elif isinstance(layer, L.Cropping2D):
            b.add(name, "crop", ins, {"cropping": [list(p) for p in layer.cropping]})
        elif isinstance(layer, FrequencySplit):
            f = int(layer._inbound_nodes[0].input_tensors[0].shape[1])
            k = split_point(f, layer.low_ratio)
            low = b.add(f"{name}__low", "crop", ins, {"cropping": [[0, f - k], [0, 0]]})
            high = b.add(f"{name}__high", "crop", ins, {"cropping": [[k, 0], [0, 0]]})
            out_of[(name, 0)], out_of[(name, 1)] = low, high
            continue
        elif isinstance(layer, _SeparableOperator):
            out_of[(name, 0)] = _mirror_operator(b, layer, ins[0])
            continue
        elif isinstance(layer, ECA):
            out_of[(name, 0)] = _mirror_eca(b, layer, ins[0])
            continue
        elif isinstance(layer, ClassNames):
            out_of[(name, 0)] = ins[0]
            continue
        else:
            raise QATError(
                f"Layer {name} ({type(layer).__name__}) has no tf_keras mirror for QAT. Supported: Conv2D, "
                "DepthwiseConv2D, BatchNormalization, Dense, ReLU, Activation, Softmax, Add, Multiply, Concatenate, "
                "AveragePooling2D, MaxPooling2D, GlobalAverage/MaxPooling2D, Dropout, Flatten, Reshape, "
                "ZeroPadding2D, Cropping2D and keras_dssdn's FrequencySplit, SC, OSC, SPC, ECA, ClassNames. Split "
                "front-end layers off first (keras_dssdn.deploy.export.prepare_model).")
        out_of[(name, 0)] = name
    out = model.outputs[0]._keras_history
    spec = {"nodes": b.nodes, "output": out_of[(out[0].name, out[2])], "model_name": model.name}
    return spec, b.weights


def _mirror_operator(b: _SpecBuilder, op, x: str) -> str:
    """SC / OSC / SPC as built-in layers; returns the output node name."""
    n = op.name
    filters, sp = op.filters, op.spatial_channels
    partial = sp < filters
    if op.reduce is not None:
        x = b.add(f"{n}__pointwise_reduce", "conv2d", [x], {
            "filters": int(op.reduce.filters), "kernel_size": [1, 1], "strides": [1, 1], "padding": "valid",
            "dilation_rate": [1, 1], "use_bias": False, "activation": "linear"}, [np.asarray(op.reduce.kernel)])
    rest = None
    if op.expand is not None:
        w = np.asarray(op.expand.kernel)
        pw = {"kernel_size": [1, 1], "strides": [1, 1], "padding": "valid", "dilation_rate": [1, 1],
              "use_bias": False, "activation": "linear"}
        if partial:
            part = b.add(f"{n}__pointwise_filtered", "conv2d", [x], {**pw, "filters": sp}, [w[..., :sp]])
            rest = b.add(f"{n}__pointwise_passthrough", "conv2d", [x], {**pw, "filters": filters - sp}, [w[..., sp:]])
        else:
            part = b.add(f"{n}__pointwise", "conv2d", [x], {**pw, "filters": filters}, [w])
    else:
        if partial:
            raise QATError(f"{n}: SPC with pointwise=False and partial_ratio < 1 needs a channel slice, which the "
                           "QAT mirror does not support.")
        part = x
    k = op.kernel_size
    branches = []
    for tag, dw, bn, ks in (("freq", op.freq_depthwise, op.freq_bn, [k, 1]), ("time", op.time_depthwise, op.time_bn, [1, k])):
        kernel, bias = _fold(np.asarray(dw.kernel), None, bn, depthwise=True)
        branches.append(b.add(f"{n}__{tag}", "depthwise", [part], {
            "kernel_size": ks, "strides": [1, 1], "padding": "same", "dilation_rate": [1, 1], "use_bias": True,
            "activation": "linear", "depth_multiplier": 1}, [kernel, bias]))
    if not partial:
        return b.add(n, "add", branches)
    summed = b.add(f"{n}__sum", "add", branches)
    return b.add(n, "concat", [summed, rest], {"axis": -1})


def _mirror_eca(b: _SpecBuilder, eca, x: str) -> str:
    n = eca.name
    channels = int(eca._inbound_nodes[0].input_tensors[0].shape[-1])
    k = int(eca.k)
    g = b.add(f"{n}__pool", "gap", [x], {"keepdims": False})
    g = b.add(f"{n}__row", "reshape", [g], {"target_shape": [1, channels, 1]})
    g = b.add(f"{n}__conv", "conv2d", [g], {
        "filters": 1, "kernel_size": [1, k], "strides": [1, 1], "padding": "same", "dilation_rate": [1, 1],
        "use_bias": False, "activation": "linear"}, [np.asarray(eca.kernel).reshape(1, k, 1, 1)])
    g = b.add(f"{n}__gate_shape", "reshape", [g], {"target_shape": [1, 1, channels]})
    g = b.add(f"{n}__gate", "activation", [g], {"activation": "sigmoid"})
    return b.add(n, "multiply", [x, g])


# ---------------------------------------------------------------------------
# Parent side: run the child
# ---------------------------------------------------------------------------


def _write_chunks(folder: str, train, max_examples: Optional[int], input_shape) -> int:
    """Stream ``(x, y)`` training data into ``x_###.npy`` / ``y_###.npy`` chunks; returns the count."""
    from keras_dssdn.deploy.export import _batches, _check_examples

    n, idx = 0, 0
    buf_x, buf_y = [], []

    def flush():
        nonlocal idx
        if buf_x:
            np.save(os.path.join(folder, f"x_{idx:04d}.npy"), np.concatenate(buf_x))
            np.save(os.path.join(folder, f"y_{idx:04d}.npy"), np.concatenate(buf_y))
            idx += 1
            buf_x.clear()
            buf_y.clear()

    for x, y, _ in _batches(train):
        if y is None:
            raise QATError("QAT training data has no labels; pass (x, y) batches or arrays.")
        x = _check_examples(x, input_shape, "The QAT training data")
        y = np.asarray(y)
        y = y.astype(np.float32) if y.ndim == 2 else y.astype(np.int32)  # soft (mixup) or class-id labels
        if max_examples is not None:
            x, y = x[: max_examples - n], y[: max_examples - n]
        buf_x.append(x)
        buf_y.append(y)
        n += len(x)
        if sum(len(v) for v in buf_x) >= CHUNK:
            flush()
        if max_examples is not None and n >= max_examples:
            break
    flush()
    if n == 0:
        raise QATError("The QAT training data is empty.")
    return n


def run_qat(model, train, *, calibration: np.ndarray, check_inputs: np.ndarray, epochs: int = 2,
            batch_size: int = 32, learning_rate: float = 1e-4, label_smoothing: float = 0.0,
            max_examples: Optional[int] = None, tolerance: float = MIRROR_TOLERANCE, timeout: float = 3 * 3600,
            workdir: Optional[str] = None, seed: int = 0, log: Callable = print) -> Tuple[bytes, dict]:
    """Quantisation-aware training of a Keras 3 log-mel classifier; returns ``(int8 flatbuffer, info)``.

    ``model`` takes normalised log-mel (no front-end layers: see
    :func:`keras_dssdn.deploy.export.prepare_model`). ``train``: ``(x, y)`` arrays, a
    ``tf.data`` dataset of ``(x, y[, metadata])`` batches (class ids or soft /
    one-hot labels), used every epoch, or a function ``epoch -> dataset``
    giving a fresh (e.g. augmented) pass per epoch; at most ``max_examples``
    per epoch. The loss is cross-entropy with ``label_smoothing``.
    ``calibration``: float inputs for the converter; ``check_inputs``:
    a few inputs on which the tf_keras mirror must reproduce ``model``'s
    outputs within ``tolerance``. Runs ``python -m keras_dssdn.deploy.qat`` with
    ``TF_USE_LEGACY_KERAS=1``; its output is passed to ``log``.
    """
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}.")
    input_shape = tuple(int(d) for d in model.inputs[0].shape[1:])
    spec, weights = build_mirror_spec(model)
    check_inputs = np.asarray(check_inputs, np.float32)
    check_outputs = np.asarray(model(check_inputs, training=False))
    probabilities = bool(np.all(check_outputs >= -1e-6) and np.allclose(check_outputs.sum(axis=1), 1.0, atol=1e-3))
    own = workdir is None
    work = workdir or tempfile.mkdtemp(prefix="dssdn_qat_")
    os.makedirs(work, exist_ok=True)
    try:
        if callable(train):
            counts = []
            for e in range(epochs):
                folder = os.path.join(work, f"epoch_{e:03d}")
                os.makedirs(folder)
                counts.append(_write_chunks(folder, train(e), max_examples, input_shape))
            n = counts[0]
        else:
            os.makedirs(os.path.join(work, "epoch_000"))
            n = _write_chunks(os.path.join(work, "epoch_000"), train, max_examples, input_shape)
        spec.update({"epochs": int(epochs), "batch_size": int(batch_size), "learning_rate": float(learning_rate),
                     "label_smoothing": float(label_smoothing), "tolerance": float(tolerance),
                     "probabilities": probabilities, "seed": int(seed), "examples": n,
                     "fresh_data_per_epoch": callable(train), "classes": int(check_outputs.shape[-1])})
        with open(os.path.join(work, "spec.json"), "w") as f:
            json.dump(spec, f, indent=1)
        np.savez(os.path.join(work, "weights.npz"), **weights)
        np.save(os.path.join(work, "check_x.npy"), check_inputs)
        np.save(os.path.join(work, "check_y.npy"), check_outputs)
        np.save(os.path.join(work, "calibration.npy"), np.asarray(calibration, np.float32))
        log(f"  QAT: mirror of {len(spec['nodes'])} tf_keras layers, {n} training examples"
            f"{' (a fresh augmented pass per epoch)' if callable(train) else ''}, {epochs} epochs "
            f"(child process, work folder {work})")
        result = _run_child(work, timeout, log)
        with open(os.path.join(work, "qat_int8.tflite"), "rb") as f:
            flatbuffer = f.read()
        result.pop("ok", None)
        return flatbuffer, result
    finally:
        if own:
            shutil.rmtree(work, ignore_errors=True)


def _run_child(work: str, timeout: float, log: Callable) -> dict:
    """Run ``python -m keras_dssdn.deploy.qat WORK`` with tf_keras; its ``[qat]`` lines go to ``log``."""
    env = dict(os.environ)
    env["TF_USE_LEGACY_KERAS"] = "1"
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the folder holding keras_dssdn/
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    t = time.time()
    proc = subprocess.Popen([sys.executable, "-m", "keras_dssdn.deploy.qat", work], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    tail: List[str] = []
    try:
        for line in proc.stdout:
            line = line.rstrip()
            tail = (tail + [line])[-60:]
            if line.startswith("[qat]"):
                log("    " + line)
            if time.time() - t > timeout:
                raise subprocess.TimeoutExpired(proc.args, timeout)
        proc.wait(timeout=max(1.0, timeout - (time.time() - t)))
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise QATError(f"QAT did not finish within {timeout:.0f} s; lower --qat-epochs or the data size.") from None
    result_path = os.path.join(work, "result.json")
    result = json.load(open(result_path)) if os.path.isfile(result_path) else {}
    if proc.returncode != 0 or not result.get("ok"):
        msg = result.get("error") or "\n".join(tail[-25:])
        raise QATError(f"Quantisation-aware training failed (exit code {proc.returncode}): {msg}")
    result["seconds"] = round(time.time() - t, 1)
    return result


def check_mirror(model, inputs: np.ndarray, tolerance: float = MIRROR_TOLERANCE, timeout: float = 600,
                 log: Callable = print) -> dict:
    """Build the tf_keras mirror of ``model`` in a child process and compare its outputs on ``inputs``.

    Raises :class:`QATError` if it differs by more than ``tolerance``; returns
    ``{"mirror_layers", "mirror_max_abs_diff", ...}``. No training, no conversion.
    """
    spec, weights = build_mirror_spec(model)
    inputs = np.asarray(inputs, np.float32)
    with tempfile.TemporaryDirectory(prefix="dssdn_mirror_") as work:
        spec.update({"check_only": True, "tolerance": float(tolerance)})
        with open(os.path.join(work, "spec.json"), "w") as f:
            json.dump(spec, f)
        np.savez(os.path.join(work, "weights.npz"), **weights)
        np.save(os.path.join(work, "check_x.npy"), inputs)
        np.save(os.path.join(work, "check_y.npy"), np.asarray(model(inputs, training=False)))
        result = _run_child(work, timeout, log)
    result.pop("ok", None)
    return result


# ---------------------------------------------------------------------------
# Child side (tf_keras + tfmot)
# ---------------------------------------------------------------------------


def _build_tf_keras(spec: dict, weights: dict):
    import tf_keras

    L = tf_keras.layers
    made, layers = {}, {}
    for node in spec["nodes"]:
        op, a, name = node["op"], node["args"], node["name"]
        if op == "input":
            made[name] = L.Input(shape=tuple(a["shape"]), name=name)
            continue
        if op == "conv2d":
            layer = L.Conv2D(a["filters"], tuple(a["kernel_size"]), strides=tuple(a["strides"]), padding=a["padding"],
                             dilation_rate=tuple(a["dilation_rate"]), activation=a["activation"],
                             use_bias=a["use_bias"], name=name)
        elif op == "depthwise":
            layer = L.DepthwiseConv2D(tuple(a["kernel_size"]), strides=tuple(a["strides"]), padding=a["padding"],
                                      depth_multiplier=a["depth_multiplier"], dilation_rate=tuple(a["dilation_rate"]),
                                      activation=a["activation"], use_bias=a["use_bias"], name=name)
        elif op == "dense":
            layer = L.Dense(a["units"], activation=a["activation"], use_bias=a["use_bias"], name=name)
        elif op == "relu":
            layer = L.ReLU(max_value=a.get("max_value"), name=name)
        elif op == "activation":
            layer = L.Activation(a["activation"], name=name)
        elif op == "softmax":
            layer = L.Softmax(axis=a["axis"], name=name)
        elif op == "add":
            layer = L.Add(name=name)
        elif op == "multiply":
            layer = L.Multiply(name=name)
        elif op == "concat":
            layer = L.Concatenate(axis=a["axis"], name=name)
        elif op == "avgpool":
            layer = L.AveragePooling2D(tuple(a["pool_size"]), strides=tuple(a["strides"]), padding=a["padding"], name=name)
        elif op == "maxpool":
            layer = L.MaxPooling2D(tuple(a["pool_size"]), strides=tuple(a["strides"]), padding=a["padding"], name=name)
        elif op == "gap":
            layer = L.GlobalAveragePooling2D(keepdims=a["keepdims"], name=name)
        elif op == "gmp":
            layer = L.GlobalMaxPooling2D(keepdims=a["keepdims"], name=name)
        elif op == "dropout":
            layer = L.Dropout(a["rate"], name=name)
        elif op == "flatten":
            layer = L.Flatten(name=name)
        elif op == "reshape":
            layer = L.Reshape(tuple(a["target_shape"]), name=name)
        elif op == "zeropad":
            layer = L.ZeroPadding2D(tuple(tuple(p) for p in a["padding"]), name=name)
        elif op == "crop":
            layer = L.Cropping2D(tuple(tuple(p) for p in a["cropping"]), name=name)
        else:
            raise QATError(f"Unknown mirror op {op!r} for {name}.")
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
        import glob

        xs = sorted(glob.glob(os.path.join(folder, "x_*.npy")))
        self.x = [np.load(p, mmap_mode="r") for p in xs]
        self.y = [np.load(p.replace("x_", "y_")) for p in xs]
        self.where = np.concatenate([np.stack([np.full(len(x), i), np.arange(len(x))], 1) for i, x in enumerate(self.x)])

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


def child_main(work: str) -> int:
    """Entry point of ``python -m keras_dssdn.deploy.qat WORKDIR`` (tf_keras process)."""
    if os.environ.get("TF_USE_LEGACY_KERAS") != "1":
        raise QATError("Run the QAT child with TF_USE_LEGACY_KERAS=1 (keras_dssdn.deploy.qat.run_qat does).")
    t0 = time.time()
    import tensorflow as tf
    import tf_keras

    spec = json.load(open(os.path.join(work, "spec.json")))
    with np.load(os.path.join(work, "weights.npz")) as z:
        weights = {k: z[k] for k in z.files}
    tf_keras.utils.set_random_seed(spec.get("seed", 0))
    mirror = _build_tf_keras(spec, weights)
    check_x = np.load(os.path.join(work, "check_x.npy"))
    check_y = np.load(os.path.join(work, "check_y.npy"))
    diff = float(np.max(np.abs(mirror(check_x, training=False).numpy() - check_y)))
    _say(f"tf_keras mirror: {len(mirror.layers)} layers, max |diff| vs Keras 3 = {diff:.2e} on {len(check_x)} inputs")
    if not diff <= spec["tolerance"]:
        raise QATError(f"The tf_keras mirror does not reproduce the Keras 3 model: max |diff| {diff:.3e} > "
                       f"{spec['tolerance']:g} on the check inputs. The layer translation is wrong for this model.")
    if spec.get("check_only"):
        with open(os.path.join(work, "result.json"), "w") as f:
            json.dump({"ok": True, "mirror_layers": len(mirror.layers), "mirror_max_abs_diff": diff}, f)
        return 0
    t = time.time()
    qmodel = _annotate_and_apply(mirror)
    uncalibrated = float(np.max(np.abs(qmodel(check_x, training=False).numpy() - check_y)))
    calib = np.load(os.path.join(work, "calibration.npy"))
    batches = _calibrate_ranges(qmodel, calib)
    initial = float(np.max(np.abs(qmodel(check_x, training=False).numpy() - check_y)))
    _say(f"quantize_apply: {len(qmodel.layers)} layers; activation ranges calibrated on {len(calib)} examples "
         f"({batches} batches); fake-quant model max |diff| vs float = {initial:.3e} (before calibration "
         f"{uncalibrated:.3e}) ({time.time() - t:.1f} s)")
    probs = spec["probabilities"]
    qmodel.compile(optimizer=tf_keras.optimizers.Adam(spec["learning_rate"]),
                   loss=tf_keras.losses.CategoricalCrossentropy(from_logits=not probs,
                                                              label_smoothing=spec.get("label_smoothing", 0.0)),
                   metrics=[tf_keras.metrics.CategoricalAccuracy(name="accuracy")])
    rng = np.random.default_rng(spec.get("seed", 0))
    bs = spec["batch_size"]
    history = {"loss": [], "accuracy": []}
    data = None
    for epoch in range(spec["epochs"]):
        folder = os.path.join(work, f"epoch_{epoch:03d}")
        if data is None or os.path.isdir(folder):
            data = _Chunks(folder if os.path.isdir(folder) else os.path.join(work, "epoch_000"))
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

    def representative():
        for x in calib:
            yield [x[None].astype(np.float32)]

    adjusted = _avoid_lut_rounding_ties(qmodel)
    if adjusted:
        _say(f"widened the sigmoid/tanh input range of {', '.join(adjusted)} to avoid int8 rounding ties")
    t = time.time()
    # Batch 1, as on the device: static shapes (no SHAPE / PACK ops for the reshapes).
    fn = tf.function(lambda x: qmodel(x, training=False))
    concrete = fn.get_concrete_function(tf.TensorSpec([1, *calib.shape[1:]], tf.float32))
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], qmodel)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    flatbuffer = converter.convert()
    with open(os.path.join(work, "qat_int8.tflite"), "wb") as f:
        f.write(flatbuffer)
    import tensorflow_model_optimization as tfmot

    result = {"ok": True, "mirror_layers": len(mirror.layers), "mirror_max_abs_diff": diff,
              "fake_quant_initial_max_abs_diff": initial, "fake_quant_uncalibrated_max_abs_diff": uncalibrated,
              "epochs": spec["epochs"],
              "learning_rate": spec["learning_rate"], "label_smoothing": spec.get("label_smoothing", 0.0),
              "fresh_data_per_epoch": spec.get("fresh_data_per_epoch", False), "batch_size": bs,
              "ranges_widened_against_rounding_ties": adjusted,
              "examples": len(data), "history": history,
              "child_seconds": round(time.time() - t0, 1), "tf_keras": tf_keras.__version__,
              "tfmot": tfmot.__version__}
    with open(os.path.join(work, "result.json"), "w") as f:
        json.dump(result, f, indent=1)
    _say(f"converted: {len(flatbuffer):,} B int8 TFLite ({time.time() - t:.1f} s)")
    return 0


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1 or not os.path.isdir(argv[0]):
        print("usage: TF_USE_LEGACY_KERAS=1 python -m keras_dssdn.deploy.qat WORKDIR  (written by keras_dssdn.deploy.qat.run_qat)",
              file=sys.stderr)
        return 2
    work = argv[0]
    try:
        return child_main(work)
    except Exception as e:  # noqa: BLE001 - reported to the parent through result.json
        import traceback

        traceback.print_exc()
        with open(os.path.join(work, "result.json"), "w") as f:
            json.dump({"ok": False, "error": f"{type(e).__name__}: {e}"}, f)
        return 1


if __name__ == "__main__":
    sys.exit(main())
