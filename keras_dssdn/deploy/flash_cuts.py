"""Step 6b of an export: flash cuts on the deployed int8 flatbuffer that change nothing TFLM computes.

:func:`cut_flatbuffer` rewrites a converter-made ``.tflite`` without

* **strings TFLM never reads**: tensor names, the subgraph name, the model description and the signature
  definitions (TFLM addresses tensors by index; operator custom codes and metadata names are kept);
* **repeated zero points**: per-channel int8 weights and int32 biases carry one 64-bit zero point per output
  channel, all equal (0: symmetric). A vector of equal values becomes one value. TFLM's allocator
  (``micro_allocator.cc``, ``InitializeTfLiteTensorFromFlatbuffer``) fills every channel's zero point from
  entry 0 when the zero-point vector is shorter than the scale vector, so the kernels see the same numbers.
  The TFLite interpreter (ai-edge-litert) refuses such a file ("must have same number"), which is why the
  slimmed bytes go only into ``micro/dssdn_model_data.cc`` and ``model_int8.tflite`` stays the converter's.

Every buffer's data starts on a 16-byte boundary (the schema's ``force_align: 16``; the Python converter writes
them 4-byte aligned, the int32 biases' need, so this is stricter; it costs about 600 B on DSSDN-Small). :func:`apply_flash_cuts` then runs TFLM on the original and the slimmed model: the int8 outputs must be
identical on the given inputs and the smallest working arena the same, else
:class:`~keras_dssdn.errors.VerificationError` and no bundle. Sizes in bytes.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Callable, Tuple

import numpy as np

from keras_dssdn.errors import VerificationError

#: Alignment of every buffer's data (the TFLite schema's ``force_align: 16``; int32 biases are read in place).
BUFFER_ALIGNMENT = 16


def _pack_aligned(buffer, builder) -> int:
    """``BufferT.Pack`` with the data vector aligned to :data:`BUFFER_ALIGNMENT` (the Python object API aligns
    a uint8 vector to 1 byte only)."""
    from keras_dssdn.deploy.flatbuffer import schema as tflite_schema

    schema = tflite_schema()
    data = None
    if buffer.data is not None:
        payload = np.asarray(buffer.data, np.uint8).tobytes()
        builder.StartVector(1, len(payload), BUFFER_ALIGNMENT)
        builder.head -= len(payload)
        builder.Bytes[builder.head:builder.head + len(payload)] = payload
        builder.vectorNumElems = len(payload)
        data = builder.EndVector()
    schema.BufferStart(builder)
    if data is not None:
        schema.BufferAddData(builder, data)
    schema.BufferAddOffset(builder, buffer.offset)
    schema.BufferAddSize(builder, buffer.size)
    return schema.BufferEnd(builder)


def _pack(model) -> bytes:
    import flatbuffers

    for buffer in model.buffers:
        buffer.Pack = _pack_aligned.__get__(buffer)
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def misaligned_buffers(flatbuffer: bytes) -> int:
    """Buffers of ``flatbuffer`` whose data does not start on a :data:`BUFFER_ALIGNMENT`-byte boundary."""
    from keras_dssdn.deploy.flatbuffer import read_model

    model = read_model(flatbuffer)
    bad = 0
    for i in range(model.BuffersLength()):
        buffer = model.Buffers(i)
        if buffer.DataLength():
            bad += buffer._tab.Vector(buffer._tab.Offset(4)) % BUFFER_ALIGNMENT != 0
    return bad


def cut_flatbuffer(flatbuffer: bytes) -> Tuple[bytes, dict]:
    """``(slimmed flatbuffer, what was cut)``: see the module doc. The entry counts ``name_bytes`` (characters
    of the names removed), ``zero_points_removed`` (64-bit values) over ``zero_point_tensors`` tensors."""
    from keras_dssdn.deploy.flatbuffer import model_object

    model = model_object(flatbuffer)
    names = removed = tensors = 0
    model.description, model.signatureDefs = None, None
    for subgraph in model.subgraphs:
        names += len(subgraph.name or b"")
        subgraph.name = None
        for tensor in subgraph.tensors:
            names += len(tensor.name or b"")
            tensor.name = None
            q = tensor.quantization
            if q is not None and q.zeroPoint is not None and len(q.zeroPoint) > 1 and len(set(q.zeroPoint)) == 1:
                removed += len(q.zeroPoint) - 1
                tensors += 1
                q.zeroPoint = np.asarray(q.zeroPoint[:1], np.int64)
    slim = _pack(model)
    if misaligned_buffers(slim):
        raise VerificationError(f"Cutting the int8 model left {misaligned_buffers(slim)} buffers off a "
                                f"{BUFFER_ALIGNMENT}-byte boundary; the flatbuffer writer changed. Report this.")
    return slim, {"name_bytes": names, "zero_points_removed": removed, "zero_point_tensors": tensors}


@dataclasses.dataclass(frozen=True)
class FlashCuts:
    """The slimmed model (``model``) and ``report``: ``bytes_before``, ``bytes_after``, ``saved``, what was cut
    (:func:`cut_flatbuffer`), ``tflm_identical_inputs`` and ``arena_min_bytes``."""

    model: bytes
    report: dict


def apply_flash_cuts(flatbuffer: bytes, inputs: np.ndarray, arena: dict, log: Callable = print) -> FlashCuts:
    """Slim the deployed int8 ``flatbuffer`` and check that TFLM computes the same with it.

    ``inputs``: int8 model inputs ``(N, *input_shape)`` (already quantised); ``arena``: the original's
    :func:`keras_dssdn.deploy.micro.measure_arena` entry. TFLM runs both models on every input (outputs must
    be equal to the bit) and the slimmed model's smallest arena is measured (must equal ``arena["min_bytes"]``).
    """
    from keras_dssdn.deploy import micro

    t = time.time()
    slim, cut = cut_flatbuffer(flatbuffer)
    size = int(arena["recommended_bytes"])
    same = micro.micro_invoke(slim, inputs, size)
    expected = micro.micro_invoke(flatbuffer, inputs, size)
    if not np.array_equal(same, expected):
        raise VerificationError(f"The slimmed int8 model gives other TFLM outputs than the converter's on "
                                f"{int(np.sum(np.any(same != expected, axis=1)))} of {len(inputs)} inputs; the "
                                "flash cuts (names, zero points) are unsafe for this model. Report this.")
    arena_min = int(micro.measure_arena(slim)["min_bytes"])
    if arena_min != int(arena["min_bytes"]):
        raise VerificationError(f"The slimmed int8 model needs a {arena_min:,}-B TFLM arena, the converter's "
                                f"{int(arena['min_bytes']):,} B; the flash cuts change what TFLM allocates.")
    report = {"bytes_before": len(flatbuffer), "bytes_after": len(slim), "saved": len(flatbuffer) - len(slim),
              **cut, "tflm_identical_inputs": int(len(inputs)), "arena_min_bytes": arena_min}
    log(f"  flash cuts: {len(flatbuffer):,} -> {len(slim):,} B (names {cut['name_bytes']:,} chars, "
        f"{cut['zero_points_removed']:,} zero points); TFLM outputs identical on {len(inputs)} inputs, same arena, "
        f"in {time.time() - t:.1f} s")
    return FlashCuts(slim, report)


# The names of the round-2 module ``keras_dssdn.deploy.slim`` (still importable from there).
slim_flatbuffer = cut_flatbuffer
slim_model = apply_flash_cuts
Slimming = FlashCuts
