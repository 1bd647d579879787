"""Deployment: a trained model -> float / int8 TFLite and a verified TensorFlow Lite Micro bundle.

::

    from keras_dssdn.deploy import export_bundle
    result = export_bundle("run/", "bundle/", data="../shared/data/tut17-dev", fold=1)
    print(result.report["deployed"], result.path)

:func:`~keras_dssdn.deploy.export.export_bundle` runs one step per module (docs/deployment.md, "Code map"):

==========================  ==================================================================
``export``                  :func:`export_bundle`: the steps in order, each data set read once
``settings``                :class:`ExportSettings`: the options, in four frozen groups
``prepare``                 :func:`prepare_model`: load, split the front end off (run folders via ``keras_dssdn.runs``)
``export_data``             the splits, the label vocabulary; the calibration and evaluation sets, each
                            clip decoded once (was ``data``)
``calibrate``               the representative set
``convert``                 float / int8 TFLite (post-training quantisation, QAT)
``evaluate``                float and int8 accuracy / log loss in one pass
``verify``                  float parity, TFLM operators, arena, TFLM == TFLite reference bit for bit
``flash_cuts``              flash cuts on the device model (tensor names, repeated zero points), checked in
                            TFLM (was ``slim``; ``deploy.slim`` still imports)
``host_check``              the generated C front end compiled and run on the host against the Python one
``report``                  report.json / report.md / the summary line
``bundle``                  the bundle folder: its files, the atomic write, ``--check`` on disk
``micro``                   the TFLM interpreter in Python (operators, invoke, arena)
``csources``, ``cfrontend`` the C / C++ files, from ``templates/`` (package data ``deploy/templates/*``)
``qat``, ``qat_mirror``,    quantisation-aware training in a tf_keras child process
``qat_child``
==========================  ==================================================================

Shared helpers live in :mod:`keras_dssdn.utils` (``arrays``: evenly spaced picks, example batches;
``c_literals``: C literals); the front end as constants (``frontend.json``) in
:mod:`keras_dssdn.frontend_constants`.

The names below load on first use, so ``import keras_dssdn.deploy.settings`` stays light. The command line
is :mod:`keras_dssdn.cli.export`; running ``.tflite`` models is :mod:`keras_dssdn.inference.tflite`.
"""

import importlib as _importlib

#: The public API: name -> the module that defines it.
PUBLIC_API = {
    "export_bundle": "keras_dssdn.deploy.export",
    "ExportResult": "keras_dssdn.deploy.export",
    "ExportSettings": "keras_dssdn.deploy.settings",
    "ModelOverrides": "keras_dssdn.deploy.settings",
    "DataSettings": "keras_dssdn.deploy.settings",
    "QATSettings": "keras_dssdn.deploy.settings",
    "DEFAULT_NUM_CALIBRATION": "keras_dssdn.deploy.settings",
    "DEFAULT_NUM_VERIFY": "keras_dssdn.deploy.settings",
    "prepare_model": "keras_dssdn.deploy.prepare",
    "PreparedModel": "keras_dssdn.deploy.prepare",
    "representative_array": "keras_dssdn.deploy.calibrate",
    "convert_float": "keras_dssdn.deploy.convert",
    "convert_int8": "keras_dssdn.deploy.convert",
    "verify_bit_exact": "keras_dssdn.deploy.verify",
    "FrontEndConstants": "keras_dssdn.frontend_constants",
    "Quantization": "keras_dssdn.frontend_constants",
    "cut_flatbuffer": "keras_dssdn.deploy.flash_cuts",
    "slim_flatbuffer": "keras_dssdn.deploy.flash_cuts",
    "report_markdown": "keras_dssdn.deploy.report",
    "ExportError": "keras_dssdn.errors",
    "BundleExistsError": "keras_dssdn.errors",
    "QATError": "keras_dssdn.errors",
    "RepresentativeDataError": "keras_dssdn.errors",
    "UnsupportedOperatorError": "keras_dssdn.errors",
    "VerificationError": "keras_dssdn.errors",
}

__all__ = sorted(PUBLIC_API)


def __getattr__(name):
    if name in PUBLIC_API:
        return getattr(_importlib.import_module(PUBLIC_API[name]), name)
    raise AttributeError(f"module 'keras_dssdn.deploy' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(PUBLIC_API))
