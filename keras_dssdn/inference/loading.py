"""Load a classifier from a model file: ``.keras`` (Keras) or ``.tflite`` (:class:`TFLiteClassifier`).

:func:`load_classifier` is the one place that opens a model file for inference (evaluate, predict, the
device models, dssdn-complexity, the distillation teachers); it turns any failure into a
:class:`~keras_dssdn.errors.ModelFileError` naming the file.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from keras_dssdn.errors import ModelFileError


class TFLiteClassifier:
    """A ``.tflite`` classifier with a Keras-like ``predict(x) -> probabilities``.

    Wraps :class:`keras_dssdn.inference.tflite.TFLiteRunner` (ai-edge-litert; input
    quantised with the model's scale / zero point, rounding half away from
    zero as TFLite does; output dequantised). ``reference=True`` uses TFLite's
    reference kernels (the yardstick for TFLite Micro). ``normalization`` is
    applied first when the exported model expects normalised input.
    """

    def __init__(self, path_or_bytes, reference: bool = False, normalization=None):
        from keras_dssdn.inference.tflite import TFLiteRunner

        is_path = isinstance(path_or_bytes, (str, os.PathLike))
        content = Path(path_or_bytes).read_bytes() if is_path else path_or_bytes
        self.runner = TFLiteRunner(content, reference=reference, source=path_or_bytes if is_path else None)
        self.input_shape = tuple(int(d) for d in self.runner.input["shape"][1:])
        self.normalization = normalization

    def predict(self, x, verbose=0, batch_size=None) -> np.ndarray:
        x = np.asarray(x, np.float32)
        if self.normalization is not None:
            x = np.asarray(self.normalization.apply(x))
        return self.runner.predict(x)


def load_classifier(path, normalization=None):
    """A ``.keras`` model (Keras) or a ``.tflite`` model (:class:`TFLiteClassifier`) from a file.

    Raises :class:`~keras_dssdn.errors.ModelFileError` naming the file when it is missing, has another suffix,
    or is not a model the package can load (a truncated download, another file renamed).
    """
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"Model file not found: {path}")
    if path.suffix not in (".tflite", ".keras"):
        raise ModelFileError(f"{path}: expected a .keras or .tflite model file.")
    import zipfile

    if path.suffix == ".keras" and not zipfile.is_zipfile(path):
        raise ModelFileError(f"{path} is not a Keras archive (a .keras file is a zip archive written by model.save); "
                             "it may be truncated or another file renamed: re-export or re-download it.")
    if path.suffix == ".tflite":
        return TFLiteClassifier(path, normalization=normalization)  # a damaged file: ModelFileError naming it
    import keras

    import keras_dssdn  # noqa: F401 - registers the custom layers
    from keras_dssdn.fileio import reading

    with reading(path, "Keras model (it cannot be loaded)", "re-export or re-download it", ModelFileError):
        return keras.models.load_model(path, compile=False)
