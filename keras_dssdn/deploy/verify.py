"""Step 5 of an export: the checks every export runs before anything is written.

* the float TFLite model reproduces the Keras model (:func:`check_float_parity`);
* per int8 model (:func:`check_int8`): every operator exists in TFLite Micro,
  input and output are int8, the tensor arena is measured with TFLM, and
  TFLM's int8 outputs are compared with the TFLite reference interpreter's on
  the verification inputs (:func:`verify_bit_exact`) and on every example of
  the evaluation set (:func:`compare_on_evaluation`).

The comparison counts rather than assumes (:class:`ExactnessTally`): values
compared and equal, the largest difference in output quantisation steps, which
outputs differed, and the class decisions that changed per segment and per
clip. ``bit_exact`` is claimed only where every value matched. The known
exception: the classifier FULLY_CONNECTED with per-channel weights, where an
accumulator that lands within ~1e-4 of a .5 rounding tie is rounded once by
LiteRT's reference kernel and twice (gemmlowp-style) by TFLM: one step apart
in the classifier's logits, one or a few steps after the softmax, on a handful
of inputs in a thousand. The check fails
(:class:`~keras_dssdn.errors.VerificationError`) when a segment or clip
decision changes where the reference path's top two classes were more than
:data:`~keras_dssdn.deploy.host_check.TIE_STEPS` output steps apart (the
near-tie rule of the C front end's host check), or when more inputs differ
than ties explain (:data:`MAX_DIFFERING_FRACTION`).

Any failure raises (:class:`~keras_dssdn.errors.VerificationError`,
:class:`~keras_dssdn.errors.UnsupportedOperatorError`). Inputs are float
normalised log-mel ``(N, n_mels, frames, 1)``, quantised here; sizes in bytes.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Callable, Dict, List, Optional, Tuple

import keras
import numpy as np

from keras_dssdn.deploy import micro
from keras_dssdn.utils.arrays import check_examples, evenly_spaced, example_batches
from keras_dssdn.deploy.convert import Conversion
from keras_dssdn.deploy.flatbuffer import opcode_name, read_model
from keras_dssdn.deploy.host_check import TIE_STEPS
from keras_dssdn.errors import VerificationError
from keras_dssdn.inference.tflite import TFLiteRunner

#: Float TFLite outputs must match the Keras model's to this (probabilities).
FLOAT_TOLERANCE = 1e-3
#: Rounding ties touch a few inputs in a thousand; when more than this fraction of the inputs (and at least
#: :data:`MIN_DIFFERING_INPUTS` of them) differ at all, it is not ties but a kernel that computes something else
#: (e.g. a dilated depthwise convolution: up to 251 steps on most inputs), and the export fails.
MAX_DIFFERING_FRACTION = 0.05
MIN_DIFFERING_INPUTS = 2
INTERPRETERS = "tflite-micro (TFLM) vs ai-edge-litert BUILTIN_REF"


def verification_inputs(given, evaluation_pool: Optional[np.ndarray], calibration: np.ndarray, num_verify: int,
                        input_shape) -> Tuple[np.ndarray, dict]:
    """``(inputs (k, *input_shape) float32, report entry)``: ``given``, else the examples spread over the
    evaluation set, else ``num_verify`` of the calibration set."""
    if given is not None:
        inputs, source = given, "given"
    elif evaluation_pool is not None:
        inputs, source = evaluation_pool, f"{len(evaluation_pool)} examples spread over the evaluation set"
    else:
        inputs = calibration[evenly_spaced(len(calibration), num_verify)]
        source = f"{len(inputs)} examples of the calibration set (no evaluation set given)"
    return check_examples(inputs, input_shape, "The verification inputs"), {"source": source}


class ExactnessTally:
    """TFLM vs reference-kernel int8 outputs, counted batch by batch (memory: one sum per clip).

    :meth:`add` takes the int8 ``(N, classes)`` outputs of both and the clip of each row (None: every row is a
    clip of its own); :meth:`result` gives the report entry, :meth:`problems` what fails the export. Clip
    decisions are the argmax of the outputs averaged over the clip's segments (as the host check and the
    streaming example do; dequantising is affine, so the argmax is that of the raw sums).
    """

    def __init__(self):
        self.inputs = self.values = self.equal = self.max_step = self.inputs_differing = 0
        self.by_output: Dict[int, int] = {}
        self.segment_flips: List[int] = []  # reference-path margin (output steps) of each changed segment decision
        self.clips: Dict[object, list] = {}  # clip -> [sum of TFLM outputs, sum of reference outputs, segments]

    def add(self, got: np.ndarray, expected: np.ndarray, clip_index: Optional[np.ndarray] = None) -> None:
        got, expected = np.asarray(got, np.int64), np.asarray(expected, np.int64)
        diff = np.abs(got - expected)
        self.values += int(diff.size)
        self.equal += int(np.sum(diff == 0))
        self.max_step = max(self.max_step, int(diff.max()) if diff.size else 0)
        self.inputs_differing += int(np.sum(diff.max(axis=1) > 0)) if diff.size else 0
        for k in np.flatnonzero(diff.sum(axis=0)):
            self.by_output[int(k)] = self.by_output.get(int(k), 0) + int(np.sum(diff[:, k] > 0))
        top_ref, top_got = expected.argmax(axis=1), got.argmax(axis=1)
        self.segment_flips += [int(expected[r, top_ref[r]] - expected[r, top_got[r]])
                               for r in np.flatnonzero(top_ref != top_got)]
        keys = (np.asarray(clip_index).tolist() if clip_index is not None
                else [("row", self.inputs + i) for i in range(len(got))])
        for i, key in enumerate(keys):
            sums = self.clips.setdefault(key, [np.zeros(got.shape[1]), np.zeros(got.shape[1]), 0])
            sums[0] += got[i]
            sums[1] += expected[i]
            sums[2] += 1
        self.inputs += len(got)

    def clip_flip_margins(self) -> List[float]:
        """For each clip whose decision changed: the reference path's mean output of its top class minus that of
        TFLM's choice, in output quantisation steps."""
        margins = []
        for s_got, s_ref, n in self.clips.values():
            a, b = int(np.argmax(s_ref)), int(np.argmax(s_got))
            if a != b:
                margins.append(round(float(s_ref[a] - s_ref[b]) / n, 3))
        return margins

    def result(self) -> dict:
        """``inputs``, ``values``, ``equal``, ``equal_fraction``, ``max_step``, ``bit_exact`` (every value equal),
        ``mismatching_inputs``, ``max_abs_diff`` (= ``max_step``), ``differing_outputs`` (output index -> inputs
        where it differed), ``segment_decisions_changed`` / ``segment_flip_margins``, ``clips`` /
        ``clip_decisions_changed`` / ``clip_flip_margins`` (margins on the reference path, output steps)."""
        clip_margins = self.clip_flip_margins()
        return {"inputs": self.inputs, "values": self.values, "equal": self.equal,
                "equal_fraction": self.equal / self.values if self.values else 1.0, "max_step": self.max_step,
                "bit_exact": self.equal == self.values, "mismatching_inputs": self.inputs_differing,
                "max_abs_diff": self.max_step,
                "differing_outputs": {str(k): v for k, v in sorted(self.by_output.items())},
                "segment_decisions_changed": len(self.segment_flips), "segment_flip_margins": self.segment_flips,
                "clips": len(self.clips), "clip_decisions_changed": len(clip_margins),
                "clip_flip_margins": clip_margins, "near_tie_steps": TIE_STEPS}

    def problems(self) -> List[str]:
        """What fails the export: decisions changed beyond a near-tie
        (:data:`~keras_dssdn.deploy.host_check.TIE_STEPS`), or more differing inputs than rounding ties explain
        (:data:`MAX_DIFFERING_FRACTION`, :data:`MIN_DIFFERING_INPUTS`)."""
        out = []
        n = self.inputs_differing
        if n >= MIN_DIFFERING_INPUTS and n > MAX_DIFFERING_FRACTION * self.inputs:
            out.append(f"outputs differ on {n} of {self.inputs} inputs (up to {self.max_step} quantisation steps; "
                       f"rounding ties touch at most {MAX_DIFFERING_FRACTION:.0%})")
        for what, margins, total in (("segment", self.segment_flips, self.inputs),
                                     ("clip", self.clip_flip_margins(), len(self.clips))):
            clear = [m for m in margins if m > TIE_STEPS]
            if clear:
                out.append(f"{len(clear)} of {total} {what} decisions changed although the reference kernels' top "
                           f"two classes were {min(clear):g} or more output steps apart (near-ties within "
                           f"{TIE_STEPS:g} steps may flip)")
        return out


def output_operator(flatbuffer: bytes) -> str:
    """Name of the operator that writes the model's (first) output tensor, e.g. ``"SOFTMAX"``."""
    model = read_model(flatbuffer)
    sub = model.Subgraphs(0)
    out = sub.Outputs(0)
    for i in range(sub.OperatorsLength()):
        op = sub.Operators(i)
        if any(op.Outputs(j) == out for j in range(op.OutputsLength())):
            return opcode_name(model, op.OpcodeIndex())
    return "?"


def _raise_if_failed(tally: ExactnessTally, flatbuffer: bytes, name: str, where: str) -> None:
    problems = tally.problems()
    if not problems:
        return
    ops = micro.model_operators(flatbuffer)
    hints = [f"{op}: {hint}" for op, hint in micro.KNOWN_MISMATCH_HINTS.items() if op in ops]
    raise VerificationError(
        f"{name}: TFLite Micro's int8 output differs from the TFLite reference interpreter's on {where}: "
        + "; ".join(problems) + ". The model would not behave on a device as measured here."
        + (" Known cause: " + "; ".join(hints) + "." if hints else
           f" Operators used: {', '.join(ops)}; simplify the layer that introduces the mismatch."))


def verify_bit_exact(flatbuffer: bytes, inputs: np.ndarray, arena_size: int, name: str = "int8 model",
                     clip_index: Optional[np.ndarray] = None) -> dict:
    """TFLM vs TFLite reference kernels on ``inputs`` (float ``(N, *input_shape)``, quantised here): the
    :class:`ExactnessTally` entry plus ``interpreters`` and ``output_operator``. Raises
    :class:`VerificationError` when the differences go beyond :meth:`ExactnessTally.problems`' limits."""
    ref = TFLiteRunner(flatbuffer, reference=True)
    xq = ref.to_input(inputs)
    tally = ExactnessTally()
    tally.add(micro.micro_invoke(flatbuffer, xq, arena_size), ref.run_raw(xq), clip_index)
    _raise_if_failed(tally, flatbuffer, name, f"{len(xq)} real inputs")
    return {**tally.result(), "interpreters": INTERPRETERS, "output_operator": output_operator(flatbuffer)}


def compare_on_evaluation(flatbuffer: bytes, evaluation, arena_size: int, name: str = "int8 model") -> dict:
    """:func:`verify_bit_exact` on every example of ``evaluation`` (``(x, y[, metadata])`` batches, a dataset
    or a tuple, as the evaluation step reads it; clips from ``metadata["clip_index"]``), streamed batch by
    batch."""
    ref = TFLiteRunner(flatbuffer, reference=True)
    interpreter = micro.micro_interpreter(flatbuffer, arena_size)
    shape = tuple(int(d) for d in ref.input["shape"][1:])
    tally = ExactnessTally()
    for x, _, clip in example_batches(evaluation):
        xq = ref.to_input(check_examples(x, shape, "The evaluation set"))
        tally.add(micro.micro_outputs(interpreter, xq), ref.run_raw(xq), clip)
    _raise_if_failed(tally, flatbuffer, name, f"{tally.inputs} examples of the evaluation set")
    return {**tally.result(), "interpreters": INTERPRETERS, "output_operator": output_operator(flatbuffer)}


def describe_exactness(entry: dict) -> str:
    """One line: ``bit-exact on N inputs`` or the counts and the worst step."""
    if entry["bit_exact"]:
        return f"bit-exact on {entry['inputs']:,} inputs ({entry['values']:,} values)"
    outputs = ", ".join(f"output {k}: {v}" for k, v in entry["differing_outputs"].items())
    return (f"NOT bit-exact: {entry['values'] - entry['equal']:,} of {entry['values']:,} values differ (max "
            f"{entry['max_step']} step{'s' if entry['max_step'] != 1 else ''}; {outputs}; model output written by {entry.get('output_operator', '?')}) "
            f"on {entry['mismatching_inputs']} of {entry['inputs']:,} inputs; decisions changed: "
            f"{entry['segment_decisions_changed']} segments, {entry['clip_decisions_changed']} of {entry['clips']} "
            f"clips")


def check_float_parity(float_model: bytes, core: keras.Model, inputs: np.ndarray) -> float:
    """Max absolute difference between the float TFLite and the Keras outputs on ``inputs``;
    :class:`VerificationError` above :data:`FLOAT_TOLERANCE`."""
    tflite = TFLiteRunner(float_model, reference=False).predict(inputs)
    diff = float(np.max(np.abs(tflite - np.asarray(core(inputs)))))
    if diff > FLOAT_TOLERANCE:
        raise VerificationError(f"The float TFLite model differs from the Keras model by {diff:.2e} "
                                f"(> {FLOAT_TOLERANCE:g}) on the verification inputs; the conversion is wrong.")
    return diff


def _check_int8_io(name: str, flatbuffer: bytes) -> None:
    runner = TFLiteRunner(flatbuffer)
    if runner.input_dtype != np.int8 or runner.output["dtype"] != np.int8:
        raise VerificationError(f"The {name} model has {runner.input_dtype.__name__} input / "
                                f"{runner.output['dtype'].__name__} output; a full-integer int8 model was expected.")


def check_int8(name: str, flatbuffer: bytes, verify_inputs: np.ndarray, log: Callable = print,
               evaluation=None) -> dict:
    """Operators, arena and TFLM-vs-reference comparison of one int8 model: ``{"operators", "arena",
    "bit_exactness", "bytes"}`` (``bytes``: ``file``, ``int8_weights``, ``int32``, ``other_constants``).

    ``bit_exactness`` is :func:`verify_bit_exact` on ``verify_inputs``; with ``evaluation`` (the evaluation set,
    as the evaluation step reads it) it also holds ``"evaluation"`` (:func:`compare_on_evaluation`, every
    example) and its ``bit_exact`` is true only when both matched on every value."""
    from keras_dssdn.analysis.complexity import tflite_constant_bytes

    ops = micro.check_micro_operators(flatbuffer, where=f"The {name} int8 model")
    _check_int8_io(name, flatbuffer)
    t = time.time()
    arena = micro.measure_arena(flatbuffer)
    log(f"  {name}: TFLM arena {arena['min_bytes']:,} B (recommended {arena['recommended_bytes']:,} B) "
        f"in {time.time() - t:.1f} s")
    t = time.time()
    exact = verify_bit_exact(flatbuffer, verify_inputs, arena["recommended_bytes"], name=f"The {name} int8 model")
    log(f"  {name}: TFLM vs TFLite reference kernels on the verification inputs: {describe_exactness(exact)} "
        f"in {time.time() - t:.1f} s")
    if evaluation is not None:
        t = time.time()
        on_eval = compare_on_evaluation(flatbuffer, evaluation, arena["recommended_bytes"],
                                        name=f"The {name} int8 model")
        log(f"  {name}: TFLM vs TFLite reference kernels on the evaluation set: {describe_exactness(on_eval)} "
            f"in {time.time() - t:.1f} s")
        exact = {**exact, "bit_exact": bool(exact["bit_exact"] and on_eval["bit_exact"]), "evaluation": on_eval}
    sizes = tflite_constant_bytes(flatbuffer)
    return {"operators": ops, "arena": arena, "bit_exactness": exact,
            "bytes": {"file": len(flatbuffer), "int8_weights": sizes["int8"], "int32": sizes["int32"],
                      "other_constants": sizes["other"]}}


@dataclasses.dataclass(frozen=True)
class Verification:
    """What the checks measured: the float model's max |diff| vs Keras, and :func:`check_int8` per int8 model."""

    float_max_abs_diff: float
    int8: Dict[str, dict]


def verify(core: keras.Model, conversion: Conversion, inputs: np.ndarray, log: Callable = print,
           evaluation=None) -> Verification:
    """Float parity, then :func:`check_int8` for every int8 model of ``conversion``, on ``inputs`` (and on every
    example of ``evaluation``, when given)."""
    diff = check_float_parity(conversion.float_model, core, inputs)
    return Verification(diff, {name: check_int8(name.upper(), fb, inputs, log, evaluation)
                               for name, fb in conversion.int8.items()})
