"""Running a ``.tflite`` model in Python: the ai-edge-litert interpreter, float or int8.

:class:`TFLiteRunner` wraps one flatbuffer: float examples in, float outputs
out, with the int8 input quantised and the int8 output dequantised as TFLite
does. ``reference=True`` selects TFLite's reference kernels
(``OpResolverType.BUILTIN_REF``), the yardstick TensorFlow Lite Micro is
checked against (:mod:`keras_dssdn.deploy.verify`).

Shapes: examples ``(N, *input_shape)`` (for the package's models
``(N, n_mels, frames, 1)`` log-mel), outputs ``(N, classes)``; each example
is one ``invoke()`` at batch 1.
"""

from __future__ import annotations

import numpy as np


def quantize_input(x: np.ndarray, scale: float, zero_point: int, dtype=np.int8) -> np.ndarray:
    """``clamp(round(x / scale) + zero_point)`` with rounding half away from zero (C ``roundf``), as TFLite does.

    ``x`` any shape, float; returns the same shape in ``dtype`` (clamped to its range).
    """
    v = np.asarray(x, np.float64) / scale
    q = np.sign(v) * np.floor(np.abs(v) + 0.5) + zero_point
    info = np.iinfo(dtype)
    return np.clip(q, info.min, info.max).astype(dtype)


class TFLiteRunner:
    """The ai-edge-litert interpreter on one model; ``reference=True`` uses TFLite's reference kernels.

    ``source``: the file the bytes came from; when given, bytes the interpreter refuses (truncated, bit-flipped,
    not a flatbuffer) raise :class:`~keras_dssdn.errors.ModelFileError` naming it (:func:`keras_dssdn.fileio.reading`).
    """

    def __init__(self, flatbuffer: bytes, reference: bool = True, source=None):
        if source is None:
            self._load(flatbuffer, reference)
            return
        from keras_dssdn.errors import ModelFileError
        from keras_dssdn.fileio import reading

        with reading(source, "TFLite model", "re-export it (dssdn-export) or re-download it", ModelFileError):
            if bytes(flatbuffer[4:8]) != b"TFL3":
                raise ValueError("no 'TFL3' identifier at bytes 4-8: not a TFLite flatbuffer")
            self._load(flatbuffer, reference)

    def _load(self, flatbuffer: bytes, reference: bool) -> None:
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        from keras_dssdn._tf_startup import native_output_captured

        kind = OpResolverType.BUILTIN_REF if reference else OpResolverType.AUTO
        # LiteRT's "Created TensorFlow Lite XNNPACK delegate" line; a refused model raises, named by the caller
        with native_output_captured(replay_on_error=False):
            self.interpreter = Interpreter(model_content=bytes(flatbuffer), experimental_op_resolver_type=kind)
            self.interpreter.allocate_tensors()
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]
        self.input_dtype = self.input["dtype"]
        self.input_scale, self.input_zero_point = self.input["quantization"]
        self.output_scale, self.output_zero_point = self.output["quantization"]

    @property
    def quantized(self) -> bool:
        """True when the input tensor is integer (an int8 model)."""
        return self.input_dtype != np.float32

    def to_input(self, x: np.ndarray) -> np.ndarray:
        """Float examples -> what the input tensor takes (quantised for an int8 model)."""
        if not self.quantized:
            return np.asarray(x, np.float32)
        return quantize_input(x, self.input_scale, self.input_zero_point, self.input_dtype)

    def run_raw(self, xq: np.ndarray) -> np.ndarray:
        """Raw outputs ``(N, outputs)`` (int8 for an int8 model) for input-typed examples, one invoke each."""
        outs = []
        for x in xq:
            self.interpreter.set_tensor(self.input["index"], np.ascontiguousarray(x[None]))
            self.interpreter.invoke()
            outs.append(np.array(self.interpreter.get_tensor(self.output["index"])).reshape(-1))
        return np.stack(outs)

    def dequantize(self, raw: np.ndarray) -> np.ndarray:
        """Raw outputs -> float32 (``(q - zero_point) * scale`` for an int8 output)."""
        if self.output["dtype"] == np.float32:
            return raw.astype(np.float32)
        return ((raw.astype(np.float32) - self.output_zero_point) * self.output_scale).astype(np.float32)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Float outputs ``(N, outputs)`` for float examples ``(N, *input_shape)``."""
        return self.dequantize(self.run_raw(self.to_input(x)))
