"""Step 3 of an export: float32 and full-integer int8 TFLite flatbuffers.

* :func:`convert_float` -- float32 TFLite, no optimisation;
* :func:`convert_int8` -- post-training quantisation (PTQ): int8 input and
  output, ``TFLITE_BUILTINS_INT8`` kernels only, calibrated on the
  representative set;
* :func:`convert` -- both, plus a quantisation-aware trained int8 model
  (:mod:`keras_dssdn.deploy.qat`, in a child process) when asked; every int8
  model's operators are checked against TFLite Micro right away.

Inputs are normalised log-mel ``(1, n_mels, frames, 1)``; sizes in bytes.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Callable, Dict, Optional

import keras
import numpy as np

from keras_dssdn.deploy import micro
from keras_dssdn.deploy.calibrate import Calibration
from keras_dssdn.deploy.export_data import DataSources, qat_training_data
from keras_dssdn.deploy.prepare import PreparedModel
from keras_dssdn.deploy.settings import QATSettings
from keras_dssdn.errors import ExportError
from keras_dssdn.utils.arrays import check_examples, evenly_spaced

#: Inputs on which the QAT mirror must reproduce the Keras model.
QAT_CHECK_INPUTS = 8


@dataclasses.dataclass(frozen=True)
class Conversion:
    """The converted models: ``float_model`` and ``int8`` (``{"ptq": bytes[, "qat": bytes]}``) flatbuffers, and
    what QAT reported (None without QAT)."""

    float_model: bytes
    int8: Dict[str, bytes]
    qat_info: Optional[dict] = None


def _quiet_convert(converter) -> bytes:
    """``converter.convert()`` without Keras's "Saved artifact at ..." message on standard output (the
    SavedModel's signature, ~200 ``TensorSpec(...)`` lines for a DSSDN) or the converter's native lines and
    warnings (:func:`keras_dssdn._tf_startup.native_output_captured`; shown if the conversion fails): a
    conversion prints nothing itself, so ``dssdn-export --quiet`` prints only its summary."""
    import contextlib
    import io

    from keras_dssdn._tf_startup import native_output_captured

    with native_output_captured(), contextlib.redirect_stdout(io.StringIO()):
        return converter.convert()


def convert_float(core: keras.Model) -> bytes:
    """Float32 TFLite flatbuffer of a Keras model (no optimisation)."""
    import tensorflow as tf

    return _quiet_convert(tf.lite.TFLiteConverter.from_keras_model(core))


def convert_int8(core: keras.Model, representative: np.ndarray) -> bytes:
    """Full-integer int8 TFLite (int8 input and output, builtin int8 kernels only) by post-training quantisation.

    ``representative``: ``(N, *input_shape)`` float32 calibration inputs
    (see :func:`keras_dssdn.deploy.calibrate.representative_array`).
    """
    import tensorflow as tf

    rep = check_examples(representative, tuple(core.inputs[0].shape[1:]), "The representative dataset")
    converter = tf.lite.TFLiteConverter.from_keras_model(core)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([x[None]] for x in rep)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    try:
        return _quiet_convert(converter)
    except Exception as e:  # noqa: BLE001
        cause = " ".join(str(e)[:2000].split())  # one line: the command line prints one error line
        raise ExportError(f"int8 conversion of {core.name} failed: {type(e).__name__}: {cause}. An operator "
                          "without an int8 builtin kernel is the usual cause; replace that layer.") from e


def _timed(log: Callable, what: str, fn, *args):
    t = time.time()
    result = fn(*args)
    log(f"  {what}: {len(result[0] if isinstance(result, tuple) else result):,} B in {time.time() - t:.1f} s")
    return result


def quantisation_aware(prep: PreparedModel, calibration: Calibration, qat: QATSettings, sources: DataSources,
                       log: Callable = print):
    """``(int8 flatbuffer, QAT report)`` by :func:`keras_dssdn.deploy.qat.run_qat` on the training data of
    :func:`keras_dssdn.deploy.export_data.qat_training_data`."""
    from keras_dssdn.deploy.qat import QATRun, run_qat

    train, options, distilled = qat_training_data(prep, qat, sources)
    settings = QATRun.from_options(qat.epochs, options)
    if distilled:
        log(f"  QAT distils: targets (1 - {distilled['kd_weight']:g}) x labels + {distilled['kd_weight']:g} x teacher "
            f"probabilities (T = 1) from {distilled['teacher']}")
    check_x = calibration.examples[evenly_spaced(len(calibration.examples), QAT_CHECK_INPUTS)]
    flatbuffer, report = run_qat(prep.core, train, calibration.examples, check_x, settings, log)
    return flatbuffer, {**report, "distilled": distilled}


def convert(prep: PreparedModel, calibration: Calibration, qat: QATSettings, sources: DataSources,
            log: Callable = print) -> Conversion:
    """Float, PTQ int8 and (``qat.epochs`` > 0) QAT int8 models; each int8 model's operators checked in TFLM."""
    float_fb = _timed(log, "float TFLite", convert_float, prep.core)
    ptq = _timed(log, "int8 TFLite (PTQ)", convert_int8, prep.core, calibration.examples)
    micro.check_micro_operators(ptq, where="The int8 (post-training quantised) model")
    if qat.epochs <= 0:
        return Conversion(float_fb, {"ptq": ptq})
    qat_fb, info = _timed(log, f"int8 TFLite (QAT, {qat.epochs} epochs)", quantisation_aware, prep, calibration,
                          qat, sources, log)
    micro.check_micro_operators(qat_fb, where="The int8 (quantisation-aware trained) model")
    return Conversion(float_fb, {"ptq": ptq, "qat": qat_fb}, info)
