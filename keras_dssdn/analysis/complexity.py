"""Parameters and multiply-accumulates (MACs) of any Keras model, per layer.

MACs are read off the TensorFlow graph of the model's forward pass (batch of
one, ``training=False``): every ``Conv2D``, ``DepthwiseConv2dNative``,
``Conv3D``, ``Conv2DBackpropInput``, ``MatMul``, ``BatchMatMul*`` and ``Einsum``
op is counted from its real operand shapes, and attributed to the top-level
Keras layer whose name scope it ran in. No per-model formula is involved, so
custom layers (SC/OSC/SPC, ECA, ...) are counted like built-ins. Element-wise
work (batch-norm, activations, additions, pooling) is not counted as MACs,
following the DCASE convention.

Command line::

    python -m keras_dssdn.analysis.complexity                 # summary of every preset
    python -m keras_dssdn.analysis.complexity --size small --table --seconds 1
    python -m keras_dssdn.analysis.complexity --model run/best.keras --seconds 10 --int8
    dssdn-complexity --size dcase_small_1s --ram        # + device RAM (TFLM arena estimate, front end, audio)
"""

from __future__ import annotations

import dataclasses
import re
from typing import Dict, List, Optional, Sequence

import numpy as np

import keras
import tensorflow as tf

from keras_dssdn.analysis.budgets import DEFAULT_BUDGETS, PAPER_BUDGET
from keras_dssdn.models.resize import with_input_shape
from keras_dssdn.params import DEFAULT_FRONTEND, FrontEndParams

#: Budgets for a 10-s clip from the foundation issue (params, MACs).

_UNATTRIBUTED = "(outside any layer)"


def op_macs(op) -> int:
    """MACs of one TF graph op for the shapes it was traced with (0 if not a MAC op)."""
    t = op.type
    shape = lambda tensor: [int(d) for d in tensor.shape]  # noqa: E731
    if t in ("Conv2D", "Conv3D"):
        out, filt = shape(op.outputs[0]), shape(op.inputs[1])
        return int(np.prod(out) * np.prod(filt[:-1]))
    if t == "DepthwiseConv2dNative":
        out, filt = shape(op.outputs[0]), shape(op.inputs[1])
        return int(np.prod(out) * filt[0] * filt[1])
    if t == "Conv2DBackpropInput":  # transposed convolution
        grad, filt = shape(op.inputs[2]), shape(op.inputs[1])
        return int(np.prod(grad) * filt[0] * filt[1] * filt[2])
    if t == "MatMul":
        a = shape(op.inputs[0])
        k = a[0] if op.get_attr("transpose_a") else a[1]
        return int(np.prod(shape(op.outputs[0])) * k)
    if t.startswith("BatchMatMul"):
        a = shape(op.inputs[0])
        k = a[-2] if op.get_attr("adj_x") else a[-1]
        return int(np.prod(shape(op.outputs[0])) * k)
    if t == "Einsum":
        lhs = op.get_attr("equation").decode().split("->")[0].split(",")
        sizes = {}
        for term, tensor in zip(lhs, op.inputs):
            dims = shape(tensor)
            letters = [c for c in term if c.isalpha()]
            for c, d in zip(letters, dims[-len(letters):] if letters else []):
                sizes[c] = d
        return int(np.prod(list(sizes.values())))
    return 0


def _layer_for_scope(op_name: str, layer_names: Sequence[str]) -> str:
    """The top-level layer whose name scope ``op_name`` lies in."""
    names = set(layer_names)
    for part in op_name.split("/")[:-1]:
        if part in names:
            return part
        base = re.sub(r"_\d+$", "", part)
        if base in names:
            return base
    return _UNATTRIBUTED


def graph_macs(model: keras.Model, input_shape: Sequence[int]) -> Dict[str, int]:
    """MACs per top-level layer name for one example of ``input_shape`` (no batch axis)."""
    spec = tf.TensorSpec([1, *input_shape], model.inputs[0].dtype)
    fn = tf.function(lambda x: model(x, training=False), autograph=False)
    graph = fn.get_concrete_function(spec).graph
    names = [layer.name for layer in model.layers]
    macs: Dict[str, int] = {}
    for op in graph.get_operations():
        n = op_macs(op)
        if n:
            key = _layer_for_scope(op.name, names)
            macs[key] = macs.get(key, 0) + n
    return macs


@dataclasses.dataclass
class LayerCost:
    name: str
    kind: str
    output_shape: str
    params: int
    macs: int


@dataclasses.dataclass
class ComplexityReport:
    """Per-layer and total parameters / MACs of a model for one input shape."""

    model_name: str
    input_shape: tuple
    rows: List[LayerCost]
    params: int
    trainable_params: int
    macs: int
    seconds: Optional[float] = None
    int8: Optional[Dict[str, int]] = None  # see tflite_constant_bytes
    ram: Optional[Dict[str, int]] = None  # see keras_dssdn.analysis.ram.device_ram (bytes)

    def table(self) -> str:
        """A fixed-width per-layer table with totals (DCASE-baseline style)."""
        w = max([len(r.name) for r in self.rows] + [10])
        k = max([len(r.kind) for r in self.rows] + [4])
        o = max([len(r.output_shape) for r in self.rows] + [12])
        rule = "-" * (w + k + o + 40)
        lines = [f"Model {self.model_name}: input {self.input_shape}"
                 + (f" ({self.seconds:g} s)" if self.seconds else ""),
                 f"{'layer':<{w}}  {'type':<{k}}  {'output shape':<{o}}  {'params':>9} {'MACs':>13} {'%MACs':>6}",
                 rule]
        for r in self.rows:
            pct = 100.0 * r.macs / self.macs if self.macs else 0.0
            lines.append(f"{r.name:<{w}}  {r.kind:<{k}}  {r.output_shape:<{o}}  {r.params:>9,} {r.macs:>13,} {pct:>6.1f}")
        lines.append(rule)
        lines.append(f"{'total':<{w}}  {'':<{k}}  {'':<{o}}  {self.params:>9,} {self.macs:>13,} {100.0 if self.macs else 0:>6.1f}")
        lines.append(self.summary_line())
        return "\n".join(lines)

    def summary_line(self) -> str:
        s = f"params {self.params:,} (trainable {self.trainable_params:,}), MACs {self.macs:,}"
        if self.seconds:
            s += f" per {self.seconds:g} s"
        if self.int8 is not None:
            s += (f", int8 TFLite: {self.int8['int8']:,} bytes of int8 weights, {self.int8['int32']:,} of int32 "
                  f"biases/shapes, {self.int8['file']:,} bytes in the file")
        if self.ram is not None:
            s += (f", device RAM {self.ram['total']:,} B (TFLM arena estimate {self.ram['arena']:,} + front end "
                  f"{self.ram['frontend']:,} + audio ring {self.ram['audio_buffer']:,})")
        return s

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def profile(model: keras.Model, input_shape: Optional[Sequence[int]] = None, *, seconds: Optional[float] = None,
            frontend: FrontEndParams = DEFAULT_FRONTEND, int8: bool = False, ram: bool = False) -> ComplexityReport:
    """Count parameters and MACs of ``model`` per layer.

    ``input_shape`` (no batch axis) defaults to the model's own; give it, or
    ``seconds`` (a log-mel input of that clip length under ``frontend``), to
    count another input length (the model is cloned for that shape).
    ``int8=True`` also converts to a full-integer TFLite model and reports its
    size in bytes (slow: seconds to a minute). ``ram=True`` also estimates the device RAM
    (:func:`keras_dssdn.analysis.ram.device_ram`: the TFLM arena planned from the converted graph, the C
    front end of ``frontend`` and an audio buffer; also seconds).
    """
    if len(model.inputs) != 1:
        raise ValueError(f"profile() supports single-input models; {model.name} has {len(model.inputs)} inputs.")
    if seconds is not None:
        input_shape = frontend.input_shape(seconds)
    shape = tuple(model.inputs[0].shape[1:]) if input_shape is None else tuple(int(d) for d in input_shape)
    if any(d is None for d in shape):
        raise ValueError(f"Input shape {shape} of {model.name} has an unknown dimension; pass input_shape= "
                         "(e.g. keras_dssdn.DEFAULT_FRONTEND.input_shape(10.0)).")
    sized = with_input_shape(model, shape)
    macs = graph_macs(sized, shape)
    rows = []
    for layer in sized.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        out = layer.output
        out_shape = ", ".join(str(tuple(o.shape[1:])) for o in (out if isinstance(out, (list, tuple)) else [out]))
        rows.append(LayerCost(layer.name, type(layer).__name__, out_shape, layer.count_params(), macs.get(layer.name, 0)))
    if macs.get(_UNATTRIBUTED):
        rows.append(LayerCost(_UNATTRIBUTED, "-", "-", 0, macs[_UNATTRIBUTED]))
    if seconds is None and len(shape) == 3 and shape[0] == frontend.n_mels:
        seconds = frontend.seconds_for_frames(shape[1])
    trainable = int(sum(np.prod(w.shape) for w in sized.trainable_weights))
    report = ComplexityReport(model.name, shape, rows, int(sized.count_params()), trainable,
                              int(sum(macs.values())), seconds)
    flatbuffer = int8_tflite_bytes(sized, shape) if int8 else None
    if int8:
        report.int8 = tflite_constant_bytes(flatbuffer)
    if ram:
        from keras_dssdn.analysis import ram as ram_module

        arena = ram_module.plan_arena(flatbuffer) if flatbuffer else ram_module.estimate_model_arena(sized)
        report.ram = ram_module.device_ram(arena.total, frontend, report.macs)
    return report


def tflite_constant_bytes(flatbuffer: bytes) -> Dict[str, int]:
    """Bytes of the constant tensors of a TFLite model by type, and of the whole file.

    Returns ``{"int8": weights, "int32": biases and shape constants, "other": rest,
    "file": len(flatbuffer)}``; ``int8`` is what the DCASE parameter-memory limit counts.
    """
    from keras_dssdn.deploy.flatbuffer import read_model, schema

    model = read_model(flatbuffer)
    types = schema().TensorType
    out = {"int8": 0, "int32": 0, "other": 0, "file": len(flatbuffer)}
    seen = set()
    for g in range(model.SubgraphsLength()):
        subgraph = model.Subgraphs(g)
        for t in range(subgraph.TensorsLength()):
            tensor = subgraph.Tensors(t)
            index = tensor.Buffer()
            size = model.Buffers(index).DataLength() if index > 0 else 0
            if size == 0 or index in seen:
                continue
            seen.add(index)
            key = {types.INT8: "int8", types.INT32: "int32"}.get(tensor.Type(), "other")
            out[key] += size
    return out


def int8_tflite_bytes(model: keras.Model, input_shape: Sequence[int], samples: int = 4) -> bytes:
    """Full-integer int8 TFLite flatbuffer of ``model`` calibrated on random inputs.

    For sizing only (the bytes do not depend on calibration data); use the
    export tools for a deployable model.
    """
    rng = np.random.default_rng(0)

    def representative():
        for _ in range(samples):
            yield [rng.standard_normal((1, *input_shape)).astype(np.float32)]

    converter = tf.lite.TFLiteConverter.from_keras_model(with_input_shape(model, input_shape))
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    return converter.convert()


def preset_summary(sizes: Sequence[str], *, int8: bool = False, ram: bool = False) -> str:
    """Markdown table of params, MACs per 10 s and per 1 s, int8 bytes, device RAM and budget checks for presets.

    Each preset is counted under its own front end (:func:`~keras_dssdn.models.presets.preset_frontend`: the
    default one with the preset's mel bands). Device RAM (1-s input) is estimated with ``ram=True`` and always
    for a preset whose budget limits RAM.
    """
    from keras_dssdn.models.presets import PRESETS, preset_frontend
    from keras_dssdn.models.dssdn import build_dssdn

    header = ("| model | operator | widths | input (1 s) | params | MACs / 10 s | MACs / 1 s | int8 weight bytes | "
              "int8 .tflite bytes | device RAM (1 s) | budget |\n|---|---|---|---|---:|---:|---:|---:|---:|---:|---|")
    lines = [header]
    for size in sizes:
        cfg = PRESETS[size]
        frontend = preset_frontend(cfg)
        limit = DEFAULT_BUDGETS.get(size, PAPER_BUDGET)
        model = build_dssdn(cfg, name=f"dssdn_{size}")
        r10 = profile(model, seconds=10.0, frontend=frontend)
        r1 = profile(model, seconds=1.0, frontend=frontend, int8=int8,  # int8 bytes, RAM: 1-s model
                     ram=ram or limit.max_ram is not None)
        r = r1 if limit.seconds == 1.0 else r10
        ok = limit.fits(r.params, r.macs, r1.int8["int8"] if r1.int8 is not None else None,
                        r1.ram["total"] if r1.ram is not None else None)
        budget = f"{limit.describe()}: {'OK' if ok else 'OVER'}"
        size_bytes = f"{r1.int8['int8']:,} | {r1.int8['file']:,}" if r1.int8 is not None else "- | -"
        ram_bytes = f"{r1.ram['total']:,}" if r1.ram is not None else "-"
        lines.append(f"| {size} | {cfg.operator.upper()} | {list(cfg.widths)} | {tuple(r1.input_shape)} | "
                     f"{r10.params:,} | {r10.macs / 1e6:,.1f} M | {r1.macs / 1e6:,.2f} M | {size_bytes} | {ram_bytes} | "
                     f"{budget} |")
    return "\n".join(lines)
