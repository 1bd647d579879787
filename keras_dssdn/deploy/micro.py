"""TensorFlow Lite Micro side of an export: operator check, arena size, C sources.

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
  runs, found by bisection (1-byte resolution) with the TFLM interpreter in a child process (TFLM
  segfaults on arenas of a few hundred bytes, so probes never run in the caller's
  process), plus a recommended size with a safety margin.
* :func:`micro_invoke` -- int8 outputs of TFLM for int8 inputs.
* :func:`c_array_source`, :func:`op_resolver_header`,
  :func:`model_settings_sources`, :func:`frontend_constants`,
  :func:`frontend_sources` -- the text of the C/C++ files of a bundle.

Sizes are bytes. Log-mel inputs are ``(1, n_mels, frames, 1)`` int8, mel band 0
(lowest frequency) first, time along the second axis (row-major: element
``(m, t)`` at offset ``m * frames + t``).
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
from typing import Dict, Iterable, List, Optional, Sequence

import numpy as np


from keras_dssdn.errors import ExportError, UnsupportedOperatorError, VerificationError  # noqa: F401 (re-exported)


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
    "FULLY_CONNECTED": "with per-tensor int8 weights (e.g. tfmot's default for Dense) TFLM requantises "
                       "FULLY_CONNECTED outputs with a different rounding than TFLite's reference kernel (1-step "
                       "differences, measured); quantise its weights per output channel, as post-training "
                       "quantisation does",
}


def _schema():
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

    return schema


@functools.lru_cache(maxsize=1)
def builtin_operator_names() -> Dict[int, str]:
    """``{builtin code: name}`` from the TFLite schema shipped with tflite-micro."""
    ops = _schema().BuiltinOperator
    return {v: k for k, v in vars(ops).items() if not k.startswith("_") and isinstance(v, int)}


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


def _opcode_name(model, index: int) -> str:
    code = model.OperatorCodes(index)
    builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
    name = builtin_operator_names().get(builtin, f"BUILTIN_{builtin}")
    if name == "CUSTOM":
        custom = code.CustomCode()
        return "CUSTOM:" + (custom.decode() if custom else "?")
    return name


def _root(flatbuffer: bytes):
    schema = _schema()
    if not flatbuffer or len(flatbuffer) < 8 or flatbuffer[4:8] != b"TFL3":
        raise ExportError("Not a TFLite flatbuffer (missing the 'TFL3' identifier); pass the bytes of a .tflite file.")
    return schema.Model.GetRootAsModel(flatbuffer, 0)


def model_operators(flatbuffer: bytes) -> List[str]:
    """Sorted names of the operators used by a TFLite model (custom ones as ``"CUSTOM:<name>"``)."""
    model = _root(flatbuffer)
    used = set()
    for g in range(model.SubgraphsLength()):
        sub = model.Subgraphs(g)
        for i in range(sub.OperatorsLength()):
            used.add(_opcode_name(model, sub.Operators(i).OpcodeIndex()))
    return sorted(used)


def operator_outputs(flatbuffer: bytes, op_name: str, limit: int = 3) -> List[str]:
    """Names of (up to ``limit``) tensors produced by ``op_name``: they carry the Keras layer names."""
    model = _root(flatbuffer)
    out = []
    for g in range(model.SubgraphsLength()):
        sub = model.Subgraphs(g)
        for i in range(sub.OperatorsLength()):
            op = sub.Operators(i)
            if _opcode_name(model, op.OpcodeIndex()) == op_name:
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
    interp = micro_interpreter(flatbuffer, arena_size)
    outs = []
    for x in inputs:
        interp.set_input(np.ascontiguousarray(x[None]), 0)
        interp.invoke()
        outs.append(np.array(interp.get_output(0)).reshape(-1))
    return np.stack(outs)


# Runs in a child process: imports only the TFLM runtime (no TensorFlow).
_ARENA_PROBE = r"""
import json, sys
import numpy as np
from tflite_micro.python.tflite_micro import runtime
model = open(sys.argv[1], "rb").read()
upper = int(sys.argv[2])
result = {}
def ok(n):
    try:
        it = runtime.Interpreter.from_bytes(model, arena_size=n)
        d = it.get_input_details(0)
        it.set_input(np.zeros(d["shape"], d["dtype"]), 0)
        it.invoke()
        return it
    except RuntimeError:
        return None
it = ok(upper)
if it is None:
    print(json.dumps({"error": "does not allocate with %d bytes" % upper}))
    sys.exit(3)
sys.stderr.flush()
print("@@ALLOCATIONS@@", file=sys.stderr, flush=True)
it.print_allocations()
sys.stderr.flush()
lo, hi = 1024, upper
if ok(lo) is not None:
    hi = lo
while hi - lo > 1:
    mid = (lo + hi) // 2
    if ok(mid) is not None:
        hi = mid
    else:
        lo = mid
print(json.dumps({"min_bytes": hi, "probe_upper": upper}))
"""


def measure_arena(flatbuffer: bytes, margin: float = 0.10, min_margin: int = 2048, upper: Optional[int] = None,
                  timeout: float = 600.0) -> Dict[str, object]:
    """Smallest TFLM tensor arena for ``flatbuffer`` (bisection to the byte) and a recommended size.

    Each probe builds the interpreter with ``arena_size`` bytes and runs one
    inference on a zero input, in a child process. Returns ``min_bytes``
    (smallest size that allocated and ran), ``recommended_bytes`` (``min_bytes``
    plus ``max(margin * min_bytes, min_margin)``, rounded up to 1 KiB),
    ``recording_total_bytes`` (the RecordingMicroAllocator's own total) and
    ``allocations`` (its report). Measured on this 64-bit host with TFLM's
    reference kernels; see docs/deployment.md for what changes on a device.
    """
    flatbuffer = bytes(flatbuffer)
    upper = int(upper or max(16 * len(flatbuffer), 8 << 20))
    with tempfile.TemporaryDirectory(prefix="dssdn_arena_") as tmp:
        path = os.path.join(tmp, "model.tflite")
        with open(path, "wb") as f:
            f.write(flatbuffer)
        proc = subprocess.run([sys.executable, "-c", _ARENA_PROBE, path, str(upper)], capture_output=True,
                              text=True, timeout=timeout)
    last = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
    if proc.returncode != 0 or not last.startswith("{"):
        err = proc.stderr.strip()
        missing = re.findall(r"Didn't find op for builtin opcode '([A-Z0-9_]+)'", err)
        if missing:
            raise UnsupportedOperatorError(
                f"The TFLM interpreter refused the model: no kernel for {', '.join(sorted(set(missing)))}. "
                "Replace the Keras layers that produce it and export again.")
        raise ExportError(
            f"Measuring the TFLM tensor arena failed (exit code {proc.returncode}, probe up to {upper:,} bytes): "
            f"{last or ''} {err[-1500:]}".strip())
    result = json.loads(last)
    report = proc.stderr.split("@@ALLOCATIONS@@", 1)[-1]
    allocations = [line.strip() for line in report.splitlines() if "[RecordingMicroAllocator]" in line]
    m = re.search(r"Arena allocation total (\d+) bytes", report)
    min_bytes = int(result["min_bytes"])
    recommended = int(math.ceil((min_bytes + max(margin * min_bytes, min_margin)) / 1024.0) * 1024)
    return {
        "min_bytes": min_bytes,
        "recommended_bytes": recommended,
        "margin": f"max({margin:.0%}, {min_margin} B), rounded up to 1 KiB",
        "recording_total_bytes": int(m.group(1)) if m else None,
        "allocations": allocations,
    }


# ---------------------------------------------------------------------------
# C / C++ sources
# ---------------------------------------------------------------------------

_GENERATED = "// Generated by keras_dssdn (python -m keras_dssdn.deploy.export / tools/export.py). Do not edit.\n"


def _c_ident(name: str) -> str:
    ident = re.sub(r"[^0-9A-Za-z_]", "_", name)
    if not ident or ident[0].isdigit():
        ident = "_" + ident
    return ident


def _guard(filename: str) -> str:
    return _c_ident(filename).upper() + "_"


def c_array_source(data: bytes, var_name: str, header_name: str, alignment: int = 16,
                   comment: str = "") -> Dict[str, str]:
    """``{header_name: text, <stem>.cc: text}``: ``data`` as an aligned ``const unsigned char`` array.

    The array is ``alignas(alignment)`` (TFLM reads the flatbuffer in place and
    needs at least 4-byte, better 16-byte, alignment) and its length is a
    ``const unsigned int <var_name>_len``.
    """
    var = _c_ident(var_name)
    stem = os.path.splitext(header_name)[0]
    guard = _guard(header_name)
    h = (f"{_GENERATED}{('// ' + comment + chr(10)) if comment else ''}#ifndef {guard}\n#define {guard}\n\n"
         f"// {len(data):,} bytes, aligned to {alignment} bytes.\n"
         f"extern const unsigned char {var}[];\nextern const unsigned int {var}_len;\n\n#endif  // {guard}\n")
    lines = []
    for i in range(0, len(data), 12):
        lines.append("  " + ", ".join(f"0x{b:02x}" for b in data[i:i + 12]) + ",")
    cc = (f"{_GENERATED}#include \"{header_name}\"\n\n"
          f"alignas({alignment}) const unsigned char {var}[] = {{\n" + "\n".join(lines) + "\n};\n"
          f"const unsigned int {var}_len = {len(data)};\n")
    return {header_name: h, f"{stem}.cc": cc}


def parse_c_array(cc_text: str) -> bytes:
    """Bytes of the array written by :func:`c_array_source` (for checks and tests)."""
    body = cc_text.split("{", 1)[1].split("}", 1)[0]
    return bytes(int(v, 16) for v in re.findall(r"0x([0-9a-fA-F]{2})", body))


def op_resolver_header(ops: Sequence[str], header_name: str = "dssdn_op_resolver.h", namespace: str = "dssdn",
                       model_file: str = "model_int8.tflite") -> str:
    """A header with ``MicroMutableOpResolver<N>`` and one ``Add...()`` call per operator in ``ops``."""
    builtins = [op for op in ops if not op.startswith("CUSTOM:")]
    custom = [op for op in ops if op.startswith("CUSTOM:")]
    if custom:
        raise UnsupportedOperatorError(f"Custom operators {custom} have no TFLM registration; remove them from the model.")
    guard = _guard(header_name)
    calls = "\n".join(f"  if (resolver.{add_method(op)}() != kTfLiteOk) return kTfLiteError;  // {op}"
                      for op in builtins)
    return (f"{_GENERATED}// Operators of {model_file}: exactly the {len(builtins)} builtins its flatbuffer uses.\n"
            f"#ifndef {guard}\n#define {guard}\n\n"
            "#include \"tensorflow/lite/micro/micro_mutable_op_resolver.h\"\n\n"
            f"namespace {namespace} {{\n\n"
            f"constexpr int kNumOperators = {len(builtins)};\n"
            f"using OpResolver = tflite::MicroMutableOpResolver<kNumOperators>;\n\n"
            "// Registers every operator the model needs; returns kTfLiteError if one fails.\n"
            "inline TfLiteStatus RegisterOperators(OpResolver& resolver) {\n"
            f"{calls}\n  return kTfLiteOk;\n}}\n\n}}  // namespace {namespace}\n\n#endif  // {guard}\n")


def _c_float(v: float) -> str:
    v = float(v)
    if not math.isfinite(v):
        raise ValueError(f"non-finite constant {v}")
    return f"{v:.9g}f" if ("e" in f"{v:.9g}" or "." in f"{v:.9g}") else f"{v:.9g}.0f"


def _c_list(values: Iterable, fmt, per_line: int = 8) -> str:
    items = [fmt(v) for v in values]
    return "\n".join("  " + ", ".join(items[i:i + per_line]) + "," for i in range(0, len(items), per_line))


def _c_string(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def model_settings_sources(settings: dict, namespace: str = "dssdn",
                           header_name: str = "dssdn_model_settings.h") -> Dict[str, str]:
    """Header + source with the arena size, tensor shapes, quantisation and class names.

    ``settings`` keys: ``arena_bytes``, ``arena_min_bytes``, ``model_bytes``,
    ``input_shape`` (with batch), ``input_scale``, ``input_zero_point``,
    ``output_scale``, ``output_zero_point``, ``class_names``.
    """
    guard = _guard(header_name)
    shape = list(settings["input_shape"])
    n_classes = len(settings["class_names"])
    h = (f"{_GENERATED}#ifndef {guard}\n#define {guard}\n\n#include <cstdint>\n\nnamespace {namespace} {{\n\n"
         f"// Tensor arena: measured minimum {settings['arena_min_bytes']} B with the TFLM interpreter (host,\n"
         f"// reference kernels) plus a safety margin. Declare it alignas(16).\n"
         f"constexpr int kTensorArenaSize = {settings['arena_bytes']};\n"
         f"constexpr int kTensorArenaMeasuredMinimum = {settings['arena_min_bytes']};\n"
         f"constexpr int kModelBytes = {settings['model_bytes']};  // flash for the model array\n\n"
         f"// Input: int8 log-mel, shape {shape} (batch, mel bands, frames, channel); band 0 is the lowest.\n"
         f"constexpr int kNumMelBands = {shape[1]};\n"
         f"constexpr int kNumFrames = {shape[2]};\n"
         f"constexpr int kInputElements = {int(np.prod(shape))};\n"
         f"constexpr float kInputScale = {_c_float(settings['input_scale'])};\n"
         f"constexpr int kInputZeroPoint = {int(settings['input_zero_point'])};\n\n"
         f"// Output: int8 class scores; probability = (q - kOutputZeroPoint) * kOutputScale.\n"
         f"constexpr int kNumClasses = {n_classes};\n"
         f"constexpr float kOutputScale = {_c_float(settings['output_scale'])};\n"
         f"constexpr int kOutputZeroPoint = {int(settings['output_zero_point'])};\n"
         f"extern const char* const kClassNames[kNumClasses];\n\n"
         f"}}  // namespace {namespace}\n\n#endif  // {guard}\n")
    names = ",\n".join("  " + _c_string(n) for n in settings["class_names"])
    cc = (f"{_GENERATED}#include \"{header_name}\"\n\nnamespace {namespace} {{\n\n"
          f"const char* const kClassNames[kNumClasses] = {{\n{names},\n}};\n\n}}  // namespace {namespace}\n")
    return {header_name: h, os.path.splitext(header_name)[0] + ".cc": cc}


def sparse_filterbank(weights: np.ndarray) -> dict:
    """Compress a ``(n_freq, n_mels)`` mel filterbank to per-band runs of non-zero weights.

    Returns ``start_bin``, ``num_bins`` and ``offset`` (into ``weights``) per
    band and the concatenated ``weights``: band ``m`` is
    ``sum_k power[start_bin[m] + k] * weights[offset[m] + k]`` for
    ``k < num_bins[m]``.
    """
    weights = np.asarray(weights, np.float32)
    starts, counts, offsets, flat = [], [], [], []
    for m in range(weights.shape[1]):
        nz = np.nonzero(weights[:, m])[0]
        start = int(nz[0]) if nz.size else 0
        stop = int(nz[-1]) + 1 if nz.size else 0
        starts.append(start)
        counts.append(stop - start)
        offsets.append(len(flat))
        flat.extend(weights[start:stop, m].tolist())
    return {"n_freq_bins": int(weights.shape[0]), "start_bin": starts, "num_bins": counts, "offset": offsets,
            "weights": flat}


def dense_filterbank(sparse: dict, n_mels: Optional[int] = None) -> np.ndarray:
    """Inverse of :func:`sparse_filterbank`: ``(n_freq, n_mels)`` float32."""
    n_mels = n_mels or len(sparse["start_bin"])
    out = np.zeros((sparse["n_freq_bins"], n_mels), np.float32)
    w = np.asarray(sparse["weights"], np.float32)
    for m in range(n_mels):
        s, n, o = sparse["start_bin"][m], sparse["num_bins"][m], sparse["offset"][m]
        out[s:s + n, m] = w[o:o + n]
    return out


def frontend_constants(frontend, input_shape: Sequence[int], input_scale: float, input_zero_point: int,
                       normalization=None, class_names: Optional[Sequence[str]] = None,
                       output_scale: Optional[float] = None, output_zero_point: Optional[int] = None,
                       seconds: Optional[float] = None) -> dict:
    """Everything a device needs to turn audio into the model's int8 input, as plain JSON values.

    ``frontend``: :class:`~keras_dssdn.params.FrontEndParams`; ``input_shape``
    ``(1, n_mels, frames, 1)``; ``seconds``: audio per inference (default:
    read off ``frames``); ``normalization``:
    :class:`~keras_dssdn.layers.frontend.NormalizationStats` or None. Besides the
    STFT / mel settings, the periodic Hann window, the sparse Slaney mel
    filterbank and the normalisation statistics, it holds the fused per-band
    affine map ``q = clamp(round(logmel * logmel_to_int8.scale[m] +
    logmel_to_int8.offset[m]), -128, 127)`` that normalises and quantises in
    one step.
    """
    from keras_dssdn.layers.frontend import mel_filterbank, stft_window

    p = frontend
    n_mels, frames = int(input_shape[1]), int(input_shape[2])
    if n_mels != p.n_mels:
        raise ExportError(f"The model takes {n_mels} mel bands but the front end makes {p.n_mels}; "
                          "pass the front-end parameters the model was trained with.")
    if seconds is None:
        seconds = p.seconds_for_frames(frames)
    if p.num_frames(seconds) != frames:
        raise ExportError(f"{seconds:g} s of audio make {p.num_frames(seconds)} frames, but the model takes {frames}; "
                          "pass the segment length the model was trained on (--segment).")
    if normalization is not None:
        mean = np.broadcast_to(np.asarray(normalization.mean, np.float64), (n_mels,))
        std = np.broadcast_to(np.asarray(normalization.std, np.float64), (n_mels,))
        norm = {"mode": normalization.mode, "mean": [float(v) for v in normalization.mean],
                "std": [float(v) for v in normalization.std]}
    else:
        mean, std = np.zeros(n_mels), np.ones(n_mels)
        norm = None
    scale = 1.0 / (std * float(input_scale))
    offset = float(input_zero_point) - mean * scale
    return {
        "sample_rate": p.sample_rate,
        "n_fft": p.n_fft,
        "win_length": p.win_length,
        "hop_length": p.hop_length,
        "n_mels": p.n_mels,
        "fmin": float(p.fmin),
        "fmax": float(p.effective_fmax),
        "center": bool(p.center),
        "pad_mode": "reflect",
        "power": 2,
        "mel_scale": "slaney",
        "mel_norm": "slaney",
        "log": "natural",
        "log_offset": float(p.log_offset),
        "frames": frames,
        "num_samples": int(p.num_samples(seconds)),
        "seconds": float(seconds),
        "input_layout": f"int8 [1, {n_mels}, {frames}, 1] row-major: log-mel (band m, frame t) at m * {frames} + t; "
                        "band 0 is the lowest frequency",
        "window": [float(v) for v in stft_window(p)],
        "mel_filterbank": sparse_filterbank(mel_filterbank(p)),
        "normalization": norm,
        "input_quantization": {"scale": float(input_scale), "zero_point": int(input_zero_point)},
        "logmel_to_int8": {"scale": [float(v) for v in scale], "offset": [float(v) for v in offset]},
        "output_quantization": None if output_scale is None else
        {"scale": float(output_scale), "zero_point": int(output_zero_point)},
        "class_names": list(class_names) if class_names else None,
    }


def frontend_constant_bytes(constants: dict) -> int:
    """Flash taken by the arrays of :func:`frontend_sources` (window, sparse filterbank, four per-band arrays)."""
    fb = constants["mel_filterbank"]
    n_mels = constants["n_mels"]
    return 4 * len(constants["window"]) + 4 * len(fb["weights"]) + n_mels * (2 + 2 + 4) + 4 * 4 * n_mels


def frontend_sources(constants: dict, namespace: str = "dssdn", header_name: str = "dssdn_frontend.h") -> Dict[str, str]:
    """Header + source with the front-end constants of :func:`frontend_constants` as C arrays."""
    c = constants
    guard = _guard(header_name)
    fb = c["mel_filterbank"]
    n_w = len(fb["weights"])
    norm = c["normalization"]
    h = (f"{_GENERATED}#ifndef {guard}\n#define {guard}\n\n#include <cstdint>\n\nnamespace {namespace} {{\n\n"
         "// Log-mel front end (librosa.feature.melspectrogram(power=2, center=True, pad_mode='reflect',\n"
         "// htk=False, norm='slaney') then log(mel + kLogOffset)); see docs/deployment.md.\n"
         f"constexpr int kSampleRate = {c['sample_rate']};  // Hz\n"
         f"constexpr int kFftSize = {c['n_fft']};\n"
         f"constexpr int kWindowLength = {c['win_length']};\n"
         f"constexpr int kHopLength = {c['hop_length']};  // samples\n"
         f"constexpr bool kCenter = {'true' if c['center'] else 'false'};  // reflect-pad kFftSize / 2 both sides\n"
         f"constexpr int kNumSamples = {c['num_samples']};  // audio per inference\n"
         f"constexpr int kFrontendFrames = {c['frames']};\n"
         f"constexpr int kFrontendMelBands = {c['n_mels']};\n"
         f"constexpr int kFftBins = {fb['n_freq_bins']};  // kFftSize / 2 + 1\n"
         f"constexpr float kMelFmin = {_c_float(c['fmin'])};  // Hz\n"
         f"constexpr float kMelFmax = {_c_float(c['fmax'])};  // Hz\n"
         f"constexpr float kLogOffset = {_c_float(c['log_offset'])};  // natural log of (mel power + kLogOffset)\n"
         f"constexpr int kMelWeightCount = {n_w};\n"
         f"constexpr bool kHasNormalization = {'true' if norm else 'false'};\n\n"
         "// Periodic Hann window of kWindowLength samples centred in kFftSize (zeros outside).\n"
         "extern const float kWindow[kFftSize];\n"
         "// Sparse Slaney mel filterbank: band m = sum_k power[kMelStartBin[m] + k] * kMelWeights[kMelOffset[m] + k],\n"
         "// k < kMelNumBins[m].\n"
         "extern const int16_t kMelStartBin[kFrontendMelBands];\n"
         "extern const int16_t kMelNumBins[kFrontendMelBands];\n"
         "extern const int32_t kMelOffset[kFrontendMelBands];\n"
         "extern const float kMelWeights[kMelWeightCount];\n"
         "// Normalisation (x - mean) / std per band (1 / 0 when the model has none).\n"
         "extern const float kNormMean[kFrontendMelBands];\n"
         "extern const float kNormStd[kFrontendMelBands];\n"
         "// Normalise + quantise in one step: q = clamp(roundf(logmel * kLogMelToInt8Scale[m]\n"
         "//                                         + kLogMelToInt8Offset[m]), -128, 127).\n"
         "extern const float kLogMelToInt8Scale[kFrontendMelBands];\n"
         "extern const float kLogMelToInt8Offset[kFrontendMelBands];\n\n"
         f"}}  // namespace {namespace}\n\n#endif  // {guard}\n")
    n_mels = c["n_mels"]
    mean = np.broadcast_to(np.asarray(norm["mean"] if norm else [0.0]), (n_mels,))
    std = np.broadcast_to(np.asarray(norm["std"] if norm else [1.0]), (n_mels,))
    cc = (f"{_GENERATED}#include \"{header_name}\"\n\nnamespace {namespace} {{\n\n"
          f"const float kWindow[kFftSize] = {{\n{_c_list(c['window'], _c_float)}\n}};\n\n"
          f"const int16_t kMelStartBin[kFrontendMelBands] = {{\n{_c_list(fb['start_bin'], str, 16)}\n}};\n"
          f"const int16_t kMelNumBins[kFrontendMelBands] = {{\n{_c_list(fb['num_bins'], str, 16)}\n}};\n"
          f"const int32_t kMelOffset[kFrontendMelBands] = {{\n{_c_list(fb['offset'], str, 16)}\n}};\n"
          f"const float kMelWeights[kMelWeightCount] = {{\n{_c_list(fb['weights'], _c_float)}\n}};\n\n"
          f"const float kNormMean[kFrontendMelBands] = {{\n{_c_list(mean, _c_float)}\n}};\n"
          f"const float kNormStd[kFrontendMelBands] = {{\n{_c_list(std, _c_float)}\n}};\n\n"
          f"const float kLogMelToInt8Scale[kFrontendMelBands] = {{\n{_c_list(c['logmel_to_int8']['scale'], _c_float)}\n}};\n"
          f"const float kLogMelToInt8Offset[kFrontendMelBands] = {{\n{_c_list(c['logmel_to_int8']['offset'], _c_float)}\n}};\n\n"
          f"}}  // namespace {namespace}\n")
    return {header_name: h, os.path.splitext(header_name)[0] + ".cc": cc}


EXAMPLE_SOURCE = """\
// Generated by keras_dssdn. A minimal TFLM program for this bundle (not built here).
// Build it with the TFLM sources of your platform plus the other .cc files of this folder.
#include <cstdint>
#include <cstdio>

#include "dssdn_model_data.h"
#include "dssdn_model_settings.h"
#include "dssdn_op_resolver.h"
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/schema/schema_generated.h"

namespace {
alignas(16) uint8_t tensor_arena[dssdn::kTensorArenaSize];
}

// `input` holds kInputElements int8 values computed with dssdn_frontend.h (band-major:
// element (m, t) at m * kNumFrames + t). Returns the best class, or -1 on error.
int ClassifyScene(const int8_t* input, float* probabilities /* kNumClasses */) {
  const tflite::Model* model = tflite::GetModel(g_dssdn_model_data);
  static dssdn::OpResolver resolver;
  static bool registered = false;
  if (!registered) {
    if (dssdn::RegisterOperators(resolver) != kTfLiteOk) return -1;
    registered = true;
  }
  tflite::MicroInterpreter interpreter(model, resolver, tensor_arena, dssdn::kTensorArenaSize);
  if (interpreter.AllocateTensors() != kTfLiteOk) return -1;
  TfLiteTensor* in = interpreter.input(0);
  for (int i = 0; i < dssdn::kInputElements; ++i) in->data.int8[i] = input[i];
  if (interpreter.Invoke() != kTfLiteOk) return -1;
  const TfLiteTensor* out = interpreter.output(0);
  int best = 0;
  for (int c = 0; c < dssdn::kNumClasses; ++c) {
    probabilities[c] = (out->data.int8[c] - dssdn::kOutputZeroPoint) * dssdn::kOutputScale;
    if (probabilities[c] > probabilities[best]) best = c;
  }
  return best;
}
"""
