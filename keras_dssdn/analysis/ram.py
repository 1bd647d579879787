"""RAM of a model on a microcontroller: the TensorFlow Lite Micro tensor arena, estimated or measured.

* :func:`plan_arena` -- an estimate from a ``.tflite`` flatbuffer alone, without running it and without
  representative data: the activation tensors' sizes (int8, one byte per element, whatever the file's
  type) and lifetimes (first producer / last consumer in operator order) placed by a greedy first-fit
  planner, largest first, as TFLM's ``GreedyMemoryPlanner`` does (the arena *head*), plus TFLM's
  persistent allocations (the *tail*): one ``TfLiteEvalTensor`` per tensor, one ``NodeAndRegistration``
  per operator, per-channel requantisation data of convolutions / fully connected layers and a fixed
  part (constants below, read off TFLM's ``RecordingMicroAllocator`` on this 64-bit host).
* :func:`estimate_model_arena` -- the same for a Keras model: converted to a float TFLite flatbuffer
  (no calibration; the graph is the int8 one's), then planned as int8.
* :func:`measured_arena` -- the smallest arena that allocates and runs in the TFLM interpreter
  (:func:`keras_dssdn.deploy.micro.measure_arena`, bisection to the byte).
* :func:`device_ram` -- arena + the C front end's state + an audio buffer: what a chip must hold.

How close the estimate is to TFLM's figure is measured in docs/deployment.md ("RAM"). Sizes in bytes.
"""

from __future__ import annotations

import dataclasses
from typing import Dict, List, Optional

import numpy as np

#: TFLM tail on a 64-bit host (RecordingMicroAllocator, dcase_small_1s): bytes per TfLiteEvalTensor, per
#: NodeAndRegistration, per output channel of a CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED (int32
#: multiplier + shift), each operator's op data (none for pure reshapes), and a fixed part (allocator,
#: subgraph, input / output TfLiteTensors).
EVAL_TENSOR_BYTES = 24
NODE_BYTES = 64
PER_CHANNEL_BYTES = 8
PER_CHANNEL_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")
OP_DATA_BYTES = {"CONV_2D": 96, "DEPTHWISE_CONV_2D": 96, "RESHAPE": 0, "EXPAND_DIMS": 0, "SQUEEZE": 0}
DEFAULT_OP_DATA_BYTES = 64
FIXED_TAIL_BYTES = 4096
#: TFLM aligns every planned buffer to 16 bytes.
ALIGNMENT = 16


@dataclasses.dataclass(frozen=True)
class ArenaEstimate:
    """``head``: planned activations (bytes); ``tail``: persistent allocations; ``total = head + tail``;
    ``largest``: the biggest activation tensor; ``tensors`` / ``operators``: counts in the graph."""

    head: int
    tail: int
    largest: int
    tensors: int
    operators: int

    @property
    def total(self) -> int:
        return self.head + self.tail

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "total": self.total}


def _align(n: int) -> int:
    return (n + ALIGNMENT - 1) // ALIGNMENT * ALIGNMENT


def greedy_plan(sizes: List[int], first: List[int], last: List[int]) -> int:
    """Peak bytes of a first-fit placement of buffers (``sizes``, alive from operator ``first[i]`` to
    ``last[i]`` inclusive), largest first: each goes at the lowest offset that overlaps no placed buffer
    alive at the same time."""
    order = sorted(range(len(sizes)), key=lambda i: (-sizes[i], first[i]))
    placed = []  # (offset, size, first, last)
    peak = 0
    for i in order:
        busy = sorted((o, s) for o, s, f, l in placed if f <= last[i] and first[i] <= l)
        offset = 0
        for o, s in busy:
            if offset + sizes[i] <= o:
                break
            offset = max(offset, o + s)
        placed.append((offset, sizes[i], first[i], last[i]))
        peak = max(peak, offset + sizes[i])
    return peak


def _subgraph(flatbuffer: bytes):
    from keras_dssdn.deploy.flatbuffer import opcode_name, read_model

    model = read_model(flatbuffer)
    return model, model.Subgraphs(0), opcode_name


def plan_arena(flatbuffer: bytes) -> ArenaEstimate:
    """Arena estimate for a TFLite model (int8 or float: planned as int8); see the module doc."""
    model, sub, opcode_name = _subgraph(flatbuffer)
    n_ops = sub.OperatorsLength()
    first: Dict[int, int] = {}
    last: Dict[int, int] = {}
    for j in range(sub.InputsLength()):
        first[sub.Inputs(j)] = 0
    for j in range(sub.OutputsLength()):
        last[sub.Outputs(j)] = n_ops - 1
    tail = FIXED_TAIL_BYTES + NODE_BYTES * n_ops + EVAL_TENSOR_BYTES * sub.TensorsLength()
    for k in range(n_ops):
        op = sub.Operators(k)
        for j in range(op.InputsLength()):
            t = op.Inputs(j)
            if t >= 0:
                last[t] = max(last.get(t, k), k)
                first.setdefault(t, k)
        for j in range(op.OutputsLength()):
            t = op.Outputs(j)
            first[t] = min(first.get(t, k), k)
            last[t] = max(last.get(t, k), k)
        name = opcode_name(model, op.OpcodeIndex())
        tail += OP_DATA_BYTES.get(name, DEFAULT_OP_DATA_BYTES)
        if name in PER_CHANNEL_OPS and op.OutputsLength():
            shape = sub.Tensors(op.Outputs(0)).ShapeAsNumpy()
            tail += PER_CHANNEL_BYTES * (int(shape[-1]) if hasattr(shape, "__len__") and len(shape) else 1)
    sizes, starts, ends = [], [], []
    for t in first:
        tensor = sub.Tensors(t)
        buffer = model.Buffers(tensor.Buffer())
        if buffer.DataLength() > 0 or buffer.Size() > 0 or tensor.IsVariable():
            continue  # a constant (weights, biases, shapes) lives in flash
        shape = tensor.ShapeAsNumpy()
        elements = int(np.prod(shape)) if hasattr(shape, "__len__") else 1
        sizes.append(_align(max(elements, 1)))
        starts.append(first[t])
        ends.append(last.get(t, first[t]))
    head = greedy_plan(sizes, starts, ends)
    return ArenaEstimate(head, tail, max(sizes, default=0), sub.TensorsLength(), n_ops)


def float_tflite(model, input_shape=None) -> bytes:
    """Float TFLite flatbuffer of a Keras model (batch 1), for planning only; ``input_shape`` without batch."""
    import tensorflow as tf

    from keras_dssdn.models.resize import with_input_shape

    if input_shape is not None:
        model = with_input_shape(model, tuple(input_shape))
    return tf.lite.TFLiteConverter.from_keras_model(model).convert()


def estimate_model_arena(model, input_shape=None) -> ArenaEstimate:
    """:func:`plan_arena` of a Keras model (converted to float TFLite, planned as int8; seconds per model)."""
    return plan_arena(float_tflite(model, input_shape))


def measured_arena(flatbuffer: bytes) -> int:
    """Smallest TFLM arena (bytes) that allocates and runs an int8 ``flatbuffer`` (TFLM interpreter, this host)."""
    from keras_dssdn.deploy.micro import measure_arena

    return int(measure_arena(flatbuffer)["min_bytes"])


def device_ram(arena_bytes: int, frontend) -> Dict[str, int]:
    """``{"arena", "frontend", "audio_buffer", "total"}`` bytes for a model whose log-mel front end is
    ``frontend`` (:class:`~keras_dssdn.params.FrontEndParams`): the C front end's state
    (:func:`keras_dssdn.deploy.cfrontend.frontend_ram_bytes`) and two hops of int16 audio."""
    from keras_dssdn.deploy.cfrontend import audio_buffer_bytes, frontend_ram_bytes

    c = {"n_fft": frontend.n_fft, "hop_length": frontend.hop_length}
    out = {"arena": int(arena_bytes), "frontend": frontend_ram_bytes(c), "audio_buffer": audio_buffer_bytes(c)}
    out["total"] = sum(out.values())
    return out


def estimate_device_ram(model, frontend, seconds: Optional[float] = None) -> Dict[str, int]:
    """:func:`device_ram` with the arena of :func:`estimate_model_arena` (``seconds``: the input length under
    ``frontend``; default the model's own input)."""
    shape = frontend.input_shape(seconds) if seconds is not None else None
    return device_ram(estimate_model_arena(model, shape).total, frontend)
