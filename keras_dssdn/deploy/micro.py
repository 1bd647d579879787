"""TensorFlow Lite Micro in Python: which operators it has, running it, measuring its tensor arena.

Everything here works on a TFLite flatbuffer (``bytes``) and the real TFLite
Micro interpreter shipped in the ``tflite-micro`` PyPI package:

* :func:`model_operators` -- the builtin operators a flatbuffer uses, e.g.
  ``["ADD", "AVERAGE_POOL_2D", "CONCATENATION", "CONV_2D", ...]``.
* :func:`micro_supported_operators` -- the builtin operators the installed TFLM
  interpreter registers, read from its compiled library (each TFLM kernel is a
  ``Register_<OP>()`` symbol in ``tflite_micro/python/tflite_micro/_runtime.so``);
  :data:`ADD_METHODS` (the ``MicroMutableOpResolver::Add...`` method of each
  builtin, from ``micro_mutable_op_resolver.h``) is the fallback when the
  library cannot be read.
* :func:`check_micro_operators` -- raises :class:`UnsupportedOperatorError`
  naming every operator TFLM lacks and the tensors it produces.
* :func:`measure_arena` -- the smallest tensor arena (bytes) that allocates and
  runs, found by bisection (1-byte resolution) with the TFLM interpreter in a
  child process (``templates/arena_probe.py``: TFLM segfaults on arenas of a
  few hundred bytes, so probes never run in the caller's process), plus a
  recommended size with a safety margin.
* :func:`micro_invoke` -- int8 outputs of TFLM for int8 inputs.

The C / C++ files of a bundle are written by :mod:`keras_dssdn.deploy.csources`.
Sizes are bytes.
"""

from __future__ import annotations

import functools
import json
import math
import os
import re
import subprocess
import sys
import tempfile
from typing import Dict, List, Optional

import numpy as np

from keras_dssdn.deploy.flatbuffer import builtin_operator_names, opcode_name, read_model
from keras_dssdn.deploy.resources import template_text
from keras_dssdn.errors import ExportError, UnsupportedOperatorError
from keras_dssdn.fileio import write_bytes_atomic


# ---------------------------------------------------------------------------
# Operators
# ---------------------------------------------------------------------------

#: ``MicroMutableOpResolver`` method for each builtin operator, as declared in
#: tensorflow/lite/micro/micro_mutable_op_resolver.h (tflite-micro, 2025). The
#: single hand-kept list of the module: used to write the resolver snippet, and
#: as the supported set when the TFLM library cannot be scanned.
ADD_METHODS: Dict[str, str] = {
    "ABS": "AddAbs", "ADD": "AddAdd", "ADD_N": "AddAddN", "ARG_MAX": "AddArgMax", "ARG_MIN": "AddArgMin",
    "ASSIGN_VARIABLE": "AddAssignVariable", "AVERAGE_POOL_2D": "AddAveragePool2D",
    "BATCH_MATMUL": "AddBatchMatMul", "BATCH_TO_SPACE_ND": "AddBatchToSpaceNd",
    "BROADCAST_ARGS": "AddBroadcastArgs", "BROADCAST_TO": "AddBroadcastTo", "CALL_ONCE": "AddCallOnce",
    "CAST": "AddCast", "CEIL": "AddCeil", "CONCATENATION": "AddConcatenation", "CONV_2D": "AddConv2D",
    "COS": "AddCos", "CUMSUM": "AddCumSum", "DEPTH_TO_SPACE": "AddDepthToSpace",
    "DEPTHWISE_CONV_2D": "AddDepthwiseConv2D", "DEQUANTIZE": "AddDequantize", "DIV": "AddDiv",
    "EMBEDDING_LOOKUP": "AddEmbeddingLookup", "ELU": "AddElu", "EQUAL": "AddEqual", "EXP": "AddExp",
    "EXPAND_DIMS": "AddExpandDims", "FILL": "AddFill", "FLOOR": "AddFloor", "FLOOR_DIV": "AddFloorDiv",
    "FLOOR_MOD": "AddFloorMod", "FULLY_CONNECTED": "AddFullyConnected", "GATHER": "AddGather",
    "GATHER_ND": "AddGatherNd", "GREATER": "AddGreater", "GREATER_EQUAL": "AddGreaterEqual",
    "HARD_SWISH": "AddHardSwish", "IF": "AddIf", "L2_NORMALIZATION": "AddL2Normalization",
    "L2_POOL_2D": "AddL2Pool2D", "LEAKY_RELU": "AddLeakyRelu", "LESS": "AddLess", "LESS_EQUAL": "AddLessEqual",
    "LOG": "AddLog", "LOGICAL_AND": "AddLogicalAnd", "LOGICAL_NOT": "AddLogicalNot",
    "LOGICAL_OR": "AddLogicalOr", "LOGISTIC": "AddLogistic", "LOG_SOFTMAX": "AddLogSoftmax",
    "MAXIMUM": "AddMaximum", "MAX_POOL_2D": "AddMaxPool2D", "MIRROR_PAD": "AddMirrorPad", "MEAN": "AddMean",
    "MINIMUM": "AddMinimum", "MUL": "AddMul", "NEG": "AddNeg", "NOT_EQUAL": "AddNotEqual", "PACK": "AddPack",
    "PAD": "AddPad", "PADV2": "AddPadV2", "PRELU": "AddPrelu", "QUANTIZE": "AddQuantize",
    "READ_VARIABLE": "AddReadVariable", "REDUCE_MAX": "AddReduceMax", "REDUCE_MIN": "AddReduceMin",
    "RELU": "AddRelu", "RELU6": "AddRelu6", "RESHAPE": "AddReshape", "RESIZE_BILINEAR": "AddResizeBilinear",
    "RESIZE_NEAREST_NEIGHBOR": "AddResizeNearestNeighbor", "REVERSE_V2": "AddReverseV2", "ROUND": "AddRound",
    "RSQRT": "AddRsqrt", "SELECT_V2": "AddSelectV2", "SHAPE": "AddShape", "SIN": "AddSin", "SLICE": "AddSlice",
    "SOFTMAX": "AddSoftmax", "SPACE_TO_BATCH_ND": "AddSpaceToBatchNd", "SPACE_TO_DEPTH": "AddSpaceToDepth",
    "SPLIT": "AddSplit", "SPLIT_V": "AddSplitV", "SQUEEZE": "AddSqueeze", "SQRT": "AddSqrt",
    "SQUARE": "AddSquare", "SQUARED_DIFFERENCE": "AddSquaredDifference", "STRIDED_SLICE": "AddStridedSlice",
    "SUB": "AddSub", "SUM": "AddSum", "SVDF": "AddSvdf", "TANH": "AddTanh", "TRANSPOSE_CONV": "AddTransposeConv",
    "TRANSPOSE": "AddTranspose", "UNPACK": "AddUnpack",
    "UNIDIRECTIONAL_SEQUENCE_LSTM": "AddUnidirectionalSequenceLSTM", "VAR_HANDLE": "AddVarHandle",
    "WHILE": "AddWhile", "ZEROS_LIKE": "AddZerosLike",
}

#: Operators TFLM runs but whose int8 output is known to differ from TFLite's
#: reference kernels (SPEC.md, measured): named in verification errors.
KNOWN_MISMATCH_HINTS = {
    "SPACE_TO_BATCH_ND": "a dilated depthwise convolution converts to SPACE_TO_BATCH_ND / DEPTHWISE_CONV_2D / "
                         "BATCH_TO_SPACE_ND and TFLM's int8 output for that pattern differs from TFLite's "
                         "reference kernels; use undilated kernels (dilation_rate=1)",
    "LOGISTIC": "TFLite's reference int8 LOGISTIC uses a float lookup table and TFLM fixed point; they differ by "
                "one step where an input lands on a rounding tie (e.g. an input scale of exactly 1/128); a slightly "
                "different input range avoids it (another --num-calibration for PTQ; QAT widens such ranges itself)",
    "TANH": "as LOGISTIC: float lookup table (TFLite reference) vs fixed point (TFLM) at rounding ties",
    "FULLY_CONNECTED": "TFLM requantises FULLY_CONNECTED outputs with double rounding, TFLite's reference kernel "
                       "with single rounding: 1-step differences where an accumulator lies next to a .5 tie, "
                       "frequent with per-tensor int8 weights (e.g. tfmot's default for Dense), rare with per-channel "
                       "weights (as post-training quantisation makes them), where the export counts and tolerates "
                       "them unless a decision changes beyond a near-tie; quantise its weights per output channel",
}


def add_method(op: str) -> str:
    """``MicroMutableOpResolver`` method that registers builtin ``op`` (``"CONV_2D"`` -> ``"AddConv2D"``)."""
    if op in ADD_METHODS:
        return ADD_METHODS[op]
    return "Add" + "".join(part.capitalize() for part in op.split("_"))  # newer ops follow this pattern


def micro_library_path() -> str:
    """Path of the compiled TFLM interpreter of the ``tflite-micro`` package."""
    import tflite_micro

    return os.path.join(os.path.dirname(tflite_micro.__file__), "python", "tflite_micro", "_runtime.so")


@functools.lru_cache(maxsize=1)
def micro_supported_operators() -> frozenset:
    """Builtin operators the installed TFLM Python interpreter can run.

    Read from the ``Register_<OP>`` kernel symbols of the TFLM library, kept
    where ``<OP>`` is a builtin operator name. Falls back to :data:`ADD_METHODS`
    (with a warning) if the library cannot be read.
    """
    names = set(builtin_operator_names().values())
    try:
        with open(micro_library_path(), "rb") as f:
            blob = f.read()
        found = {m.group(1).decode() for m in re.finditer(rb"\d+Register_([A-Z][A-Z0-9_]*)Ev", blob)}
        found &= names
    except OSError:
        found = set()
    if not found:
        import warnings

        warnings.warn(f"Could not read TFLM kernels from {micro_library_path()}; using the built-in operator list.")
        found = set(ADD_METHODS)
    return frozenset(found)


def model_operators(flatbuffer: bytes) -> List[str]:
    """Sorted names of the operators used by a TFLite model (custom ones as ``"CUSTOM:<name>"``)."""
    model = read_model(flatbuffer)
    used = set()
    for g in range(model.SubgraphsLength()):
        sub = model.Subgraphs(g)
        for i in range(sub.OperatorsLength()):
            used.add(opcode_name(model, sub.Operators(i).OpcodeIndex()))
    return sorted(used)


def operator_outputs(flatbuffer: bytes, op_name: str, limit: int = 3) -> List[str]:
    """Names of (up to ``limit``) tensors produced by ``op_name``: they carry the Keras layer names."""
    model = read_model(flatbuffer)
    out = []
    for g in range(model.SubgraphsLength()):
        sub = model.Subgraphs(g)
        for i in range(sub.OperatorsLength()):
            op = sub.Operators(i)
            if opcode_name(model, op.OpcodeIndex()) == op_name:
                for j in range(op.OutputsLength()):
                    out.append(sub.Tensors(op.Outputs(j)).Name().decode(errors="replace"))
                if len(out) >= limit:
                    return out[:limit]
    return out


def check_micro_operators(flatbuffer: bytes, where: str = "the model") -> List[str]:
    """The model's operators; :class:`UnsupportedOperatorError` if TFLM lacks any of them.

    The message names each missing operator and the tensors it produces
    (whose names carry the Keras layer), and says what to do.
    """
    ops = model_operators(flatbuffer)
    supported = micro_supported_operators()
    missing = [op for op in ops if op not in supported]
    if missing:
        details = "; ".join(f"{op} (produces {', '.join(operator_outputs(flatbuffer, op)) or '?'})" for op in missing)
        raise UnsupportedOperatorError(
            f"{where} uses operator(s) that TensorFlow Lite Micro does not have: {details}. "
            f"Replace the Keras layer(s) that produce them with ones that convert to TFLM operators "
            f"(supported here: {', '.join(sorted(supported))}) and export again."
        )
    return ops


# ---------------------------------------------------------------------------
# Running TFLM
# ---------------------------------------------------------------------------


def micro_interpreter(flatbuffer: bytes, arena_size: int):
    """A TFLM interpreter for ``flatbuffer`` with an arena of ``arena_size`` bytes (allocated)."""
    from tflite_micro.python.tflite_micro import runtime

    if arena_size < 1024:
        raise ValueError(f"arena_size={arena_size} is below 1024 bytes; TFLM crashes on tiny arenas.")
    return runtime.Interpreter.from_bytes(bytes(flatbuffer), arena_size=int(arena_size))


def micro_invoke(flatbuffer: bytes, inputs: np.ndarray, arena_size: int) -> np.ndarray:
    """Run TFLM on each row of ``inputs`` (already in the input tensor's dtype, one example per row).

    Returns the stacked raw outputs (e.g. int8 ``(N, classes)``).
    """
    return micro_outputs(micro_interpreter(flatbuffer, arena_size), inputs)


def micro_outputs(interpreter, inputs: np.ndarray) -> np.ndarray:
    """Run an already allocated TFLM ``interpreter`` on each row of ``inputs`` (one example per row, in the input
    tensor's dtype); the stacked raw outputs, e.g. int8 ``(N, classes)``. Reusing one interpreter over many
    batches saves its allocation each time."""
    outs = []
    for x in inputs:
        interpreter.set_input(np.ascontiguousarray(x[None]), 0)
        interpreter.invoke()
        outs.append(np.array(interpreter.get_output(0)).reshape(-1))
    return np.stack(outs)


def _run_arena_probe(flatbuffer: bytes, upper: int, timeout: float) -> subprocess.CompletedProcess:
    """``templates/arena_probe.py`` on ``flatbuffer`` in a child process (text output captured)."""
    with tempfile.TemporaryDirectory(prefix="dssdn_arena_") as tmp:
        path = write_bytes_atomic(os.path.join(tmp, "model.tflite"), flatbuffer)
        return subprocess.run([sys.executable, "-c", template_text("arena_probe.py"), str(path), str(upper)],
                              capture_output=True, text=True, timeout=timeout)


def _probe_failure(proc: subprocess.CompletedProcess, upper: int, last: str) -> ExportError:
    """The error for a probe that did not print its result: a missing kernel, or whatever TFLM said."""
    err = proc.stderr.strip()
    missing = re.findall(r"Didn't find op for builtin opcode '([A-Z0-9_]+)'", err)
    if missing:
        return UnsupportedOperatorError(
            f"The TFLM interpreter refused the model: no kernel for {', '.join(sorted(set(missing)))}. "
            "Replace the Keras layers that produce it and export again.")
    detail = " ".join(f"{last or ''} {err[-1500:]}".split())  # one line
    return ExportError(f"Measuring the TFLM tensor arena failed (exit code {proc.returncode}, probe up to "
                       f"{upper:,} bytes): {detail}".strip())


def measure_arena(flatbuffer: bytes, margin: float = 0.10, min_margin: int = 2048, upper: Optional[int] = None,
                  timeout: float = 600.0) -> Dict[str, object]:
    """Smallest TFLM tensor arena for ``flatbuffer`` (bisection to the byte) and a recommended size.

    Each probe builds the interpreter with ``arena_size`` bytes and runs one
    inference on a zero input, in a child process; ``upper`` (bytes, default
    ``max(16 * model bytes, 8 MiB)``) must allocate. Returns ``min_bytes``
    (smallest size that allocated and ran), ``recommended_bytes`` (``min_bytes``
    plus ``max(margin * min_bytes, min_margin)``, rounded up to 1 KiB),
    ``recording_total_bytes`` (the RecordingMicroAllocator's own total) and
    ``allocations`` (its report). Measured on this 64-bit host with TFLM's
    reference kernels; see docs/deployment.md for what changes on a device.
    """
    flatbuffer = bytes(flatbuffer)
    upper = int(upper or max(16 * len(flatbuffer), 8 << 20))
    proc = _run_arena_probe(flatbuffer, upper, timeout)
    last = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
    if proc.returncode != 0 or not last.startswith("{"):
        raise _probe_failure(proc, upper, last)
    report = proc.stderr.split("@@ALLOCATIONS@@", 1)[-1]
    total = re.search(r"Arena allocation total (\d+) bytes", report)
    min_bytes = int(json.loads(last)["min_bytes"])
    return {
        "min_bytes": min_bytes,
        "recommended_bytes": int(math.ceil((min_bytes + max(margin * min_bytes, min_margin)) / 1024.0) * 1024),
        "margin": f"max({margin:.0%}, {min_margin} B), rounded up to 1 KiB",
        "recording_total_bytes": int(total.group(1)) if total else None,
        "allocations": [line.strip() for line in report.splitlines() if "[RecordingMicroAllocator]" in line],
    }
