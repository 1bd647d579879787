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
* :func:`audio_ring` -- the audio that arrives while ``Invoke()`` runs: the ring buffer of the streaming
  example (``micro/dssdn_example.cc``), sized from the model's MACs, a cycles-per-MAC figure and a clock
  (:data:`MODEL_CYCLES_PER_MAC`, :data:`DEFAULT_MCU_CLOCK_HZ`); :func:`flatbuffer_macs` counts the MACs of a
  ``.tflite``;
* :func:`device_ram` -- arena + the C front end's state + the audio ring: what a chip must hold;
  :func:`ram_headroom` -- what is left of a part's RAM, and the clock at which the ring would fit.

How close the estimate is to TFLM's figure is measured in docs/deployment.md ("RAM"). Sizes in bytes.
"""

from __future__ import annotations

import dataclasses
import math
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

#: The clock the audio ring is sized for by default (Hz; ``ExportSettings.mcu_clock_hz``): 100 MHz, the clock of
#: the Cortex-M4F parts with 128 KB of SRAM and 512 KB of flash that dcase_mcu_1s targets (e.g. STM32F411: 100 MHz,
#: 128 KB, 512 KB); a faster part needs a smaller ring (the report gives the clock that fits).
DEFAULT_MCU_CLOCK_HZ = 100_000_000
#: Cycles per multiply-accumulate of an int8 DSSDN in TFLM with CMSIS-NN kernels on a Cortex-M4F: MEASURED as
#: instructions, in an emulator (docs/firmware.md, "Cost"): a dcase_mcu_1s model of 2,100,960 MACs executed
#: 16,924,670 instructions per Invoke() with CMSIS-NN kernels on QEMU's mps2-an386 (8.06 per MAC). A Cortex-M4
#: issues at most one instruction per cycle, so this is a lower bound on its cycles (flash wait states and
#: multi-cycle loads add more); ``ExportSettings.mcu_cycles_per_mac`` overrides it per export.
MODEL_CYCLES_PER_MAC = 8.06
#: Hops of audio the ring holds besides one Invoke(): the DMA block being written (at most a hop) and the column
#: the front end is computing when a segment completes.
RING_EXTRA_HOPS = 2
#: The RAM of the part the microcontroller budget names (dcase_mcu_1s): 128 KB.
PART_RAM_BYTES = 128 * 1024


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


def flatbuffer_macs(flatbuffer: bytes) -> int:
    """Multiply-accumulates of one Invoke() of a ``.tflite``: CONV_2D (output elements x kernel height x width x
    input channels), DEPTHWISE_CONV_2D (output elements x kernel height x width), FULLY_CONNECTED (output elements x
    input features); other operators count 0, as in :func:`keras_dssdn.analysis.complexity.graph_macs`."""
    model, sub, opcode_name = _subgraph(flatbuffer)
    total = 0
    for k in range(sub.OperatorsLength()):
        op = sub.Operators(k)
        name = opcode_name(model, op.OpcodeIndex())
        if name not in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
            continue
        out = int(np.prod(sub.Tensors(op.Outputs(0)).ShapeAsNumpy()))
        weights = [int(d) for d in sub.Tensors(op.Inputs(1)).ShapeAsNumpy()]
        if name == "CONV_2D":  # weights (out channels, kh, kw, in channels)
            total += out * int(np.prod(weights[1:]))
        elif name == "DEPTHWISE_CONV_2D":  # weights (1, kh, kw, channels)
            total += out * weights[1] * weights[2]
        else:  # weights (outputs, inputs)
            total += out * weights[-1]
    return int(total)


def audio_ring(sample_rate: int, hop_length: int, macs: int, clock_hz: float = DEFAULT_MCU_CLOCK_HZ,
               cycles_per_mac: float = MODEL_CYCLES_PER_MAC) -> Dict[str, float]:
    """The audio ring of the streaming example: what arrives during one Invoke() plus :data:`RING_EXTRA_HOPS`.

    ``macs``: per Invoke (one segment); ``clock_hz``, ``cycles_per_mac``: the estimate of its time
    (``invoke_cycles = macs * cycles_per_mac``, ``invoke_seconds = invoke_cycles / clock_hz``). Returns
    ``sample_rate``, ``macs``, ``cycles_per_mac``, ``clock_hz``, ``invoke_cycles``, ``invoke_seconds``,
    ``samples`` (``ceil(rate * invoke_seconds) + 2 hops``) and ``bytes`` (int16, plus the one empty slot of a
    lock-free ring). Raises ValueError when a clock or cycle figure is not positive."""
    if not clock_hz > 0 or not cycles_per_mac > 0:
        raise ValueError(f"clock_hz and cycles_per_mac must be > 0, got {clock_hz!r} and {cycles_per_mac!r}.")
    cycles = int(math.ceil(macs * cycles_per_mac))
    seconds = cycles / float(clock_hz)
    samples = int(math.ceil(sample_rate * seconds)) + RING_EXTRA_HOPS * int(hop_length)
    return {"sample_rate": int(sample_rate), "macs": int(macs), "cycles_per_mac": float(cycles_per_mac),
            "clock_hz": float(clock_hz), "invoke_cycles": cycles, "invoke_seconds": seconds, "samples": samples,
            "bytes": 2 * (samples + 1)}


def device_ram(arena_bytes: int, frontend, macs: int, clock_hz: float = DEFAULT_MCU_CLOCK_HZ,
               cycles_per_mac: float = MODEL_CYCLES_PER_MAC) -> Dict[str, int]:
    """``{"arena", "frontend", "audio_buffer", "total"}`` bytes for a model of ``macs`` per segment whose log-mel
    front end is ``frontend`` (:class:`~keras_dssdn.params.FrontEndParams`): the C front end's state
    (:func:`keras_dssdn.deploy.cfrontend.frontend_ram_bytes`) and the audio ring (:func:`audio_ring`: the audio of
    one Invoke() at ``clock_hz`` plus two hops), int16."""
    from keras_dssdn.deploy.cfrontend import frontend_ram_bytes

    ring = audio_ring(frontend.sample_rate, frontend.hop_length, macs, clock_hz, cycles_per_mac)
    out = {"arena": int(arena_bytes), "frontend": frontend_ram_bytes(frontend.n_fft),
           "audio_buffer": int(ring["bytes"])}
    out["total"] = out["arena"] + out["frontend"] + out["audio_buffer"]
    return out


def ram_headroom(total_bytes: int, arena_bytes: int, frontend_bytes: int, ring: Dict[str, float],
                 hop_length: int, part_bytes: int = PART_RAM_BYTES) -> dict:
    """What is left of a part's RAM (``part_bytes``) and what it would take to fit: ``part_bytes``,
    ``headroom_bytes`` (negative: over), ``fits``, and ``min_clock_hz`` (the lowest clock at which the ring of
    ``ring`` (:func:`audio_ring`) fits beside the arena and the front end; None when even an instant Invoke()
    would not fit)."""
    free = part_bytes - arena_bytes - frontend_bytes - 2 * (RING_EXTRA_HOPS * hop_length + 1)
    samples = free // 2  # samples that may arrive during Invoke()
    min_clock = None
    if samples > 0:
        min_clock = float(math.ceil(ring["invoke_cycles"] * ring["sample_rate"] / samples))
    return {"part_bytes": int(part_bytes), "headroom_bytes": int(part_bytes - total_bytes),
            "fits": bool(total_bytes <= part_bytes), "min_clock_hz": min_clock}


def estimate_device_ram(model, frontend, macs: int, seconds: Optional[float] = None, **timing) -> Dict[str, int]:
    """:func:`device_ram` with the arena of :func:`estimate_model_arena` for a model of ``macs`` per Invoke()
    (``seconds``: the input length under ``frontend``; default the model's own input; ``timing``: ``clock_hz``,
    ``cycles_per_mac``). The caller counts the MACs (:func:`keras_dssdn.analysis.complexity.graph_macs`), so that
    this module does not import the complexity module, which imports it."""
    shape = frontend.input_shape(seconds) if seconds is not None else None
    return device_ram(estimate_model_arena(model, shape).total, frontend, macs, **timing)
