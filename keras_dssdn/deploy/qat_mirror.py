"""The QAT mirror: a Keras 3 model described as tf_keras built-in layers (parent side of :mod:`keras_dssdn.deploy.qat`).

:func:`build_mirror_spec` walks the Keras 3 graph and describes an equivalent
tf_keras model made of built-in layers only, with the trained weights:

* batch norms are folded into the convolution before them (as the TFLite
  converter does); a batch norm elsewhere is a 1x1 depthwise convolution;
* :class:`~keras_dssdn.layers.frequency.FrequencySplit` becomes two ``Cropping2D``;
* SC / OSC / SPC become 1x1 ``Conv2D`` (SPC's pointwise split in two: the
  filtered channels and the pass-through ones, no channel slicing),
  ``(k,1)`` and ``(1,k)`` ``DepthwiseConv2D``, ``Add`` and ``Concatenate``;
* :class:`~keras_dssdn.layers.attention.ECA` becomes ``GlobalAveragePooling2D ->
  Reshape -> Conv2D (1,k) -> Reshape -> sigmoid -> Multiply``;
* a ``Dense`` on a vector becomes ``Reshape -> 1x1 Conv2D -> Reshape
  [-> activation]`` so that its weights are quantised per output channel, as
  post-training quantisation does (tfmot's per-tensor Dense weights give a
  FULLY_CONNECTED on which TFLM and TFLite's reference kernels round
  differently, measured; per-channel Dense does not convert);
* :class:`~keras_dssdn.layers.labels.ClassNames` (an identity) is dropped.

The spec is plain JSON (``{"nodes": [{"name", "op", "inputs", "args"}], "output",
"model_name"}``) and the weights ``{"<node>/<i>": array}``; the child
(:mod:`keras_dssdn.deploy.qat_child`) builds the tf_keras model from them.
"""

from __future__ import annotations

from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

from keras_dssdn.errors import QATError

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
        raise QATError(f"BatchNormalization {bn.name} normalises axis {bn.axis}; only the channel axis (-1) is "
                       "supported.")
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



class _Walk:
    """The graph being mirrored: which node holds each Keras output, who consumes it, which batch norms are folded."""

    def __init__(self, model):
        import keras

        self.b = _SpecBuilder()
        self.out_of: Dict[Tuple[str, int], str] = {}
        self.consumers: Dict[Tuple[str, int], list] = {}
        self.folded = set()
        self.layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
        for layer in self.layers:
            if len(layer._inbound_nodes) != 1:
                raise QATError(f"Layer {layer.name} is used {len(layer._inbound_nodes)} times; shared layers are not "
                               "supported by the QAT mirror.")
            for t in layer._inbound_nodes[0].input_tensors:
                op, _, idx = t._keras_history
                self.consumers.setdefault((op.name, idx), []).append(layer)

    def inputs_of(self, layer) -> List[str]:
        names = []
        for t in layer._inbound_nodes[0].input_tensors:
            op, _, idx = t._keras_history
            if (op.name, idx) not in self.out_of:
                raise QATError(f"Layer {layer.name} consumes {op.name} before it is built (graph order).")
            names.append(self.out_of[(op.name, idx)])
        return names

    def foldable_bn(self, layer):
        """The BatchNormalization that alone consumes ``layer`` (a linear convolution), else None."""
        import keras

        users = self.consumers.get((layer.name, 0), [])
        if len(users) == 1 and isinstance(users[0], keras.layers.BatchNormalization) and _activation(layer) == "linear":
            return users[0]
        return None


def _input_features(layer) -> int:
    return int(layer._inbound_nodes[0].input_tensors[0].shape[-1])


def _mirror_conv(w: _Walk, layer, ins: List[str]) -> str:
    import keras

    depthwise = isinstance(layer, keras.layers.DepthwiseConv2D)
    kernel = np.asarray(layer.kernel)
    bias = np.asarray(layer.bias) if layer.use_bias else None
    bn = w.foldable_bn(layer)
    if bn is not None:
        kernel, bias = _fold(kernel, bias, bn, depthwise=depthwise)
        w.folded.add(bn.name)
        w.out_of[(bn.name, 0)] = layer.name
    args = _conv_args(layer, depthwise, bias is not None)
    return w.b.add(layer.name, "depthwise" if depthwise else "conv2d", ins, args,
                   [kernel] + ([bias] if bias is not None else []))


def _mirror_batch_norm(w: _Walk, layer, ins: List[str]) -> str:
    """Not after a convolution: an exact per-channel affine map = 1x1 depthwise convolution with bias."""
    scale, shift = _bn_affine(layer)
    return w.b.add(layer.name, "depthwise", ins, {
        "kernel_size": [1, 1], "strides": [1, 1], "padding": "valid", "dilation_rate": [1, 1], "use_bias": True,
        "activation": "linear", "depth_multiplier": 1}, [scale.reshape(1, 1, -1, 1), shift])


def _mirror_dense(w: _Walk, layer, ins: List[str]) -> str:
    """On a vector: a 1x1 Conv2D, whose weights quantise per output channel like post-training quantisation's
    FULLY_CONNECTED (tfmot quantises Dense per tensor, and for per-tensor FULLY_CONNECTED TFLM rounds differently
    from TFLite's reference kernel, measured; per-channel Dense does not convert)."""
    name, act, features = layer.name, _activation(layer), _input_features(layer)
    weights = [np.asarray(layer.kernel)] + ([np.asarray(layer.bias)] if layer.use_bias else [])
    if len(layer._inbound_nodes[0].input_tensors[0].shape) != 2:
        return w.b.add(name, "dense", ins, {"units": int(layer.units), "activation": act,
                                            "use_bias": bool(layer.use_bias)}, weights)
    x = w.b.add(f"{name}__as_map", "reshape", ins, {"target_shape": [1, 1, features]})
    x = w.b.add(f"{name}__conv", "conv2d", [x], {
        "filters": int(layer.units), "kernel_size": [1, 1], "strides": [1, 1], "padding": "valid",
        "dilation_rate": [1, 1], "use_bias": bool(layer.use_bias), "activation": "linear"},
        [weights[0].reshape(1, 1, features, -1)] + weights[1:])
    x = w.b.add(f"{name}__flat" if act != "linear" else name, "reshape", [x], {"target_shape": [int(layer.units)]})
    return w.b.add(name, "activation", [x], {"activation": act}) if act != "linear" else x


def _relu_args(layer) -> dict:
    cfg = layer.get_config()
    if float(cfg.get("negative_slope") or 0) != 0 or float(cfg.get("threshold") or 0) != 0:
        raise QATError(f"ReLU {layer.name}: negative_slope / threshold are not supported by the QAT mirror.")
    return {"max_value": cfg.get("max_value")}


def _pool_args(layer) -> dict:
    cfg = layer.get_config()
    return {"pool_size": list(cfg["pool_size"]), "strides": list(cfg["strides"]), "padding": cfg["padding"]}


def _mirror_frequency_split(w: _Walk, layer, ins: List[str]) -> List[str]:
    from keras_dssdn.layers.frequency import split_point

    f = int(layer._inbound_nodes[0].input_tensors[0].shape[1])
    k = split_point(f, layer.low_ratio)
    return [w.b.add(f"{layer.name}__low", "crop", ins, {"cropping": [[0, f - k], [0, 0]]}),
            w.b.add(f"{layer.name}__high", "crop", ins, {"cropping": [[k, 0], [0, 0]]})]


def _simple_layers() -> List[Tuple[type, str, Callable]]:
    """``(Keras layer class, mirror op, layer -> args)`` of the layers mirrored one to one."""
    import keras

    L = keras.layers
    return [
        (L.ReLU, "relu", _relu_args),
        (L.Activation, "activation", lambda layer: {"activation": _activation(layer)}),
        (L.Softmax, "softmax", lambda layer: {"axis": layer.get_config().get("axis", -1)}),
        (L.Add, "add", lambda layer: {}),
        (L.Multiply, "multiply", lambda layer: {}),
        (L.Concatenate, "concat", lambda layer: {"axis": int(layer.axis)}),
        (L.AveragePooling2D, "avgpool", _pool_args),
        (L.MaxPooling2D, "maxpool", _pool_args),
        (L.GlobalAveragePooling2D, "gap", lambda layer: {"keepdims": bool(layer.get_config().get("keepdims", False))}),
        (L.GlobalMaxPooling2D, "gmp", lambda layer: {"keepdims": bool(layer.get_config().get("keepdims", False))}),
        (L.Dropout, "dropout", lambda layer: {"rate": float(layer.rate)}),
        (L.Flatten, "flatten", lambda layer: {}),
        (L.Reshape, "reshape", lambda layer: {"target_shape": [int(d) for d in layer.target_shape]}),
        (L.ZeroPadding2D, "zeropad", lambda layer: {"padding": [list(p) for p in layer.padding]}),
        (L.Cropping2D, "crop", lambda layer: {"cropping": [list(p) for p in layer.cropping]}),
    ]


def _composite_layers() -> List[Tuple[type, Callable]]:
    """``(layer class, (walk, layer, input names) -> output name or names)`` of layers mirrored by several nodes."""
    import keras

    from keras_dssdn.layers.attention import ECA
    from keras_dssdn.layers.frequency import FrequencySplit
    from keras_dssdn.layers.labels import ClassNames
    from keras_dssdn.layers.operators import _SeparableOperator

    L = keras.layers
    return [
        ((L.DepthwiseConv2D, L.Conv2D), _mirror_conv),
        (L.BatchNormalization, _mirror_batch_norm),
        (L.Dense, _mirror_dense),
        (FrequencySplit, _mirror_frequency_split),
        (_SeparableOperator, lambda w, layer, ins: _mirror_operator(w.b, layer, ins[0])),
        (ECA, lambda w, layer, ins: _mirror_eca(w.b, layer, ins[0])),
        (ClassNames, lambda w, layer, ins: ins[0]),  # an identity
    ]


_UNSUPPORTED = (
    "has no tf_keras mirror for QAT. Supported: Conv2D, DepthwiseConv2D, BatchNormalization, Dense, ReLU, Activation, "
    "Softmax, Add, Multiply, Concatenate, AveragePooling2D, MaxPooling2D, GlobalAverage/MaxPooling2D, Dropout, "
    "Flatten, Reshape, ZeroPadding2D, Cropping2D and keras_dssdn's FrequencySplit, SC, OSC, SPC, ECA, ClassNames. "
    "Split front-end layers off first (keras_dssdn.deploy.prepare.prepare_model).")


def _mirror_layer(w: _Walk, layer, simple, composite) -> List[str]:
    """The node names holding ``layer``'s outputs (by output index)."""
    ins = w.inputs_of(layer)
    for kind, mirror in composite:
        if isinstance(layer, kind):
            out = mirror(w, layer, ins)
            return out if isinstance(out, list) else [out]
    for kind, op, args in simple:
        if isinstance(layer, kind):
            return [w.b.add(layer.name, op, ins, args(layer))]
    raise QATError(f"Layer {layer.name} ({type(layer).__name__}) {_UNSUPPORTED}")


def build_mirror_spec(model) -> Tuple[dict, Dict[str, np.ndarray]]:
    """Describe a Keras 3 functional model as tf_keras built-in layers (see the module doc).

    Returns ``(spec, weights)``: ``spec["nodes"]`` in topological order, each
    ``{"name", "op", "inputs", "args"}``; ``weights["<node>/<i>"]`` arrays in
    ``layer.get_weights()`` order. Raises :class:`QATError` naming any layer it
    cannot mirror.
    """
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise QATError("The QAT mirror supports single-input, single-output models.")
    w = _Walk(model)
    inp = model.inputs[0]
    in_layer = inp._keras_history[0]
    w.out_of[(in_layer.name, 0)] = w.b.add(in_layer.name, "input", [], {"shape": [int(d) for d in inp.shape[1:]]})
    simple, composite = _simple_layers(), _composite_layers()
    for layer in w.layers:
        if layer.name not in w.folded:
            for index, node in enumerate(_mirror_layer(w, layer, simple, composite)):
                w.out_of[(layer.name, index)] = node
    out = model.outputs[0]._keras_history
    return {"nodes": w.b.nodes, "output": w.out_of[(out[0].name, out[2])], "model_name": model.name}, w.b.weights


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
    for tag, dw, bn, ks in (("freq", op.freq_depthwise, op.freq_bn, [k, 1]),
                            ("time", op.time_depthwise, op.time_bn, [1, k])):
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
