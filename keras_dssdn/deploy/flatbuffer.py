"""Reading TFLite flatbuffers (``.tflite`` bytes): the one module that parses them.

The TFLite schema comes from TensorFlow (``tensorflow.lite.python.schema_py_generated``), which every install
has; TFLM reads the same schema. Everything that looks inside a ``.tflite`` (operators, tensors, buffers) goes
through here:

* :func:`read_model` -- the read-only root ``Model`` table of the bytes (after checking the ``TFL3`` identifier);
* :func:`model_object` -- a mutable copy (``ModelT``, the object API) for rewriting, packed again by the caller;
* :func:`opcode_name` -- an operator's name (``"CONV_2D"``, custom ones as ``"CUSTOM:<name>"``);
* :func:`builtin_operator_names` -- ``{builtin code: name}`` of the schema.
"""

from __future__ import annotations

import functools
from typing import Dict

from keras_dssdn.errors import ExportError

#: The file identifier of a TFLite flatbuffer (bytes 4..8).
IDENTIFIER = b"TFL3"


def schema():
    """The generated TFLite schema module (its ``Model``, ``ModelT``, ``TensorType``, ``BuiltinOperator``...)."""
    from tensorflow.lite.python import schema_py_generated

    return schema_py_generated


def read_model(flatbuffer: bytes):
    """The root ``Model`` table of ``flatbuffer``; :class:`~keras_dssdn.errors.ExportError` when the bytes are not a
    TFLite model."""
    flatbuffer = bytes(flatbuffer)
    if len(flatbuffer) < 8 or flatbuffer[4:8] != IDENTIFIER:
        raise ExportError("Not a TFLite flatbuffer (missing the 'TFL3' identifier); pass the bytes of a .tflite file.")
    return schema().Model.GetRootAsModel(flatbuffer, 0)


def model_object(flatbuffer: bytes):
    """A mutable ``ModelT`` copy of ``flatbuffer`` (the schema's object API)."""
    return schema().ModelT.InitFromObj(read_model(flatbuffer))


@functools.lru_cache(maxsize=1)
def builtin_operator_names() -> Dict[int, str]:
    """``{builtin code: name}`` from the TFLite schema."""
    ops = schema().BuiltinOperator
    return {v: k for k, v in vars(ops).items() if not k.startswith("_") and isinstance(v, int)}


def opcode_name(model, index: int) -> str:
    """Name of operator code ``index`` of a ``Model`` table (``"CUSTOM:<name>"`` for custom operators)."""
    code = model.OperatorCodes(index)
    builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
    name = builtin_operator_names().get(builtin, f"BUILTIN_{builtin}")
    if name == "CUSTOM":
        custom = code.CustomCode()
        return "CUSTOM:" + (custom.decode() if custom else "?")
    return name
