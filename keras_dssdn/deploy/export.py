"""Export a trained model to float / int8 TFLite and a verified TensorFlow Lite Micro bundle.

Library::

    from keras_dssdn.deploy import export_bundle
    result = export_bundle("run/best.keras", "bundle/", data="../shared/data/tut17-dev", fold=1)
    print(result.report["deployed"], result.path)

Command line (same options): ``python tools/export.py --model run/best.keras
--data ../shared/data/tut17-dev --fold 1 --out bundle/`` (or ``--run-dir run/``;
:mod:`keras_dssdn.cli.export`).

:func:`export_bundle` runs these steps, each a function of its own module;
any failure raises (an :class:`~keras_dssdn.errors.ExportError` subclass, or
:class:`~keras_dssdn.errors.RunFolderError` / :class:`~keras_dssdn.errors.DataError`
for the inputs) and leaves no bundle behind:

1. **prepare** (:func:`keras_dssdn.deploy.prepare.prepare_model`): load the
   model, split off the front end (LogMel, LogMelNormalization) and ClassNames;
2. **data** (:func:`keras_dssdn.deploy.export_data.resolve_sources`): the splits and
   label vocabulary, from the arguments or the training run's config.json;
3. **calibrate** (:func:`keras_dssdn.deploy.calibrate.calibrate`): at most
   ``num_calibration`` examples spread over the train split;
4. **convert** (:func:`keras_dssdn.deploy.convert.convert`): float TFLite,
   int8 by post-training quantisation, optionally int8 by QAT;
5. **evaluate** (:func:`keras_dssdn.deploy.evaluate.evaluate_models`): float
   and int8 accuracy / log loss on the evaluate split, and the real inputs of
   the bit-exactness check;
6. **verify** (:func:`keras_dssdn.deploy.verify.verify`): float parity, TFLM
   operators, arena, TFLM vs TFLite reference kernels on the verification inputs and on
   every example of the evaluation set (counted; bit-exact claimed only where every value
   matched; more than one step, or a decision changed beyond a near-tie, fails);
6b. **flash cuts** (:func:`keras_dssdn.deploy.flash_cuts.apply_flash_cuts`): the deployed int8
   model without tensor names and repeated zero points, for ``micro/`` (TFLM only:
   ``model_int8.tflite`` stays the converter's, for TFLite); TFLM's outputs and arena
   with it must equal those with the converter's model;
7. **C front end** (:func:`keras_dssdn.deploy.host_check.check_c_frontend`): the
   generated ``micro/dssdn_frontend.c`` compiled with the host's C compiler, its int8
   tensors compared with the Python front end's on test signals and the evaluate
   split, and the class decisions in TFLM on both compared (the front end's
   settings are checked for C first: :func:`keras_dssdn.deploy.cfrontend.check_supported`);
8. **write** (:func:`write_bundle`): the files of :func:`bundle_files`, the
   report and a manifest into a temporary sibling folder renamed into place
   (:func:`keras_dssdn.fileio.atomic_folder`). Contents: docs/deployment.md.

Units: sizes in bytes, accuracies as fractions in JSON (percent in Markdown),
log loss in nats, durations in seconds.
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Callable, List, Optional

import numpy as np

from keras_dssdn.analysis.ram import audio_ring, flatbuffer_macs
from keras_dssdn.deploy import cfrontend
from keras_dssdn.deploy.bundle import PathLike, bundle_files, check_destination, device_constants, write_bundle
from keras_dssdn.deploy.calibrate import calibrate
from keras_dssdn.deploy.convert import Conversion, convert
from keras_dssdn.deploy.evaluate import accuracy_drop, choose_deployed, evaluate_models
from keras_dssdn.deploy.export_data import evaluation_set, resolve_sources
from keras_dssdn.deploy.flash_cuts import FlashCuts, apply_flash_cuts
from keras_dssdn.deploy.prepare import PreparedModel, prepare_model
from keras_dssdn.deploy.report import ExportFacts, build_report
from keras_dssdn.deploy.settings import ExportSettings
from keras_dssdn.deploy.verify import verification_inputs, verify
from keras_dssdn.frontend_constants import FrontEndConstants
from keras_dssdn.inference.tflite import TFLiteRunner
from keras_dssdn.utils.arrays import evenly_spaced

@dataclasses.dataclass
class ExportResult:
    """Where the bundle is and what the export measured (``report`` = report.json)."""

    path: str
    report: dict
    files: List[str]



# ---------------------------------------------------------------------------
# The steps
# ---------------------------------------------------------------------------


def _describe(model) -> str:
    return str(model) if isinstance(model, (str, os.PathLike)) else getattr(model, "name", "model")


def _prepare(model, settings: ExportSettings, log: Callable):
    """Step 1: the prepared model and the settings completed with its run's data folder, fold and clip length."""
    o = settings.model
    prep = prepare_model(model, segment_seconds=o.segment_seconds, frontend=o.frontend,
                         normalization=o.normalization, class_names=o.class_names)
    completed = settings.with_run_defaults(prep.run_config)
    if completed.data.data is not None and settings.data.data is None:
        log(f"  data from the run's config: {completed.data.data} (fold {completed.data.fold})")
    log(f"  model input {prep.input_shape} ({prep.segment_seconds:g} s), {prep.num_classes} classes; split off: "
        f"{prep.split_off or 'nothing'}")
    return prep, completed


def _evaluate(prep: PreparedModel, conversion: Conversion, evaluation, num_verify: int, log: Callable):
    """Step 5: ``(metrics per model, examples spread over the evaluation set)``; ``(None, None)`` without one."""
    if evaluation is None:
        return None, None
    result = evaluate_models(prep.core, conversion.int8, evaluation, class_names=prep.class_names,
                             verify_count=num_verify, log=log)
    return result.metrics, result.verify_inputs


def _check_c_frontend(files: dict, consts: FrontEndConstants, deployed: bytes, checks: dict, waveforms,
                      eval_report, log: Callable) -> dict:
    """Step 7: the generated C front end compiled and run on the host against the Python front end
    (:func:`keras_dssdn.deploy.host_check.check_c_frontend`) on test signals and ``waveforms``, the evaluate
    split's clips as they were decoded for step 5 (None: test signals only)."""
    from keras_dssdn.deploy.host_check import check_c_frontend

    sources = {n: files[f"micro/{n}"] for n in (cfrontend.HEADER, cfrontend.SOURCE)}
    return check_c_frontend(sources, consts, deployed, checks["arena"]["recommended_bytes"],
                            waveforms=waveforms, source=(eval_report or {}).get("source", "evaluate split"), log=log)


def _flash_cuts(conversion: Conversion, chosen: str, inputs: np.ndarray, calibration: np.ndarray, arena: dict,
                log: Callable) -> FlashCuts:
    """Step 6b: the deployed model's flash cuts, checked in TFLM on the verification inputs and
    :data:`FLASH_CUTS_CHECK_CALIBRATION` calibration examples (quantised with the converter model's input scale)."""
    extra = calibration[evenly_spaced(len(calibration), FLASH_CUTS_CHECK_CALIBRATION)]
    xq = TFLiteRunner(conversion.int8[chosen], reference=True).to_input(np.concatenate([inputs, extra]))
    return apply_flash_cuts(conversion.int8[chosen], xq, arena, log)


#: Calibration examples on which TFLM must give the same outputs with the cut model (besides the verification
#: inputs).
FLASH_CUTS_CHECK_CALIBRATION = 32


def export_bundle(model, out_dir: PathLike, settings: Optional[ExportSettings] = None, *, log: Callable = print,
                  **options) -> ExportResult:
    """Export ``model`` (a ``keras.Model``, a ``.keras`` file or a run folder) to a verified TFLite Micro bundle
    in ``out_dir`` (see the module doc).

    Options: an :class:`~keras_dssdn.deploy.settings.ExportSettings`, or its flat keywords
    (:meth:`~keras_dssdn.deploy.settings.ExportSettings.from_options`): ``data``, ``fold``, ``train_data``,
    ``eval_data``, ``representative``, ``evaluation``, ``verify_inputs``, ``clip_seconds``,
    ``num_calibration`` (200), ``num_verify`` (16), ``eval_limit``; ``segment_seconds``, ``frontend``,
    ``normalization``, ``class_names``; ``qat_epochs`` (0), ``qat_train``, ``qat_options``; ``deploy``
    (``"best"``, ``"ptq"``, ``"qat"``), ``max_accuracy_drop`` (points), ``force``, ``command``.
    """
    if settings is not None and options:
        raise TypeError("Pass either settings= or keyword options, not both.")
    settings = settings or ExportSettings.from_options(**options)
    started = time.time()
    model_path = model if isinstance(model, (str, os.PathLike)) else None
    out = check_destination(out_dir, settings.force, [("--model", model_path), ("--data", settings.data.data)])
    log(f"Exporting {_describe(model)} -> {out}")
    prep, settings = _prepare(model, settings, log)
    cfrontend.check_supported(prep.frontend, prep.frontend.num_samples(prep.segment_seconds))
    prep, sources = resolve_sources(prep, settings.data)
    calibration = calibrate(prep, settings.data, sources, log)
    evaluation, waveforms, eval_report = evaluation_set(prep, settings.data, sources)
    conversion = convert(prep, calibration, settings.qat, sources, log)
    metrics, pool = _evaluate(prep, conversion, evaluation, settings.data.num_verify, log)
    inputs, verify_report = verification_inputs(settings.data.verify_inputs, pool, calibration.examples,
                                                settings.data.num_verify, prep.input_shape)
    verification = verify(prep.core, conversion, inputs, log, evaluation=evaluation)
    chosen = choose_deployed(settings.deploy, conversion.int8, metrics)
    drop = accuracy_drop(metrics, chosen, settings.max_accuracy_drop)
    consts = device_constants(prep, conversion.int8[chosen])
    slimmed = _flash_cuts(conversion, chosen, inputs, calibration.examples, verification.int8[chosen]["arena"], log)
    ring = audio_ring(consts.params.sample_rate, consts.params.hop_length, flatbuffer_macs(conversion.int8[chosen]),
                      settings.mcu_clock_hz, settings.mcu_cycles_per_mac)
    files = bundle_files(prep, conversion, chosen, verification.int8[chosen], consts, slimmed.model, ring)
    c_frontend = _check_c_frontend(files, consts, slimmed.model, verification.int8[chosen], waveforms,
                                   eval_report, log)
    data_report = {"calibration": calibration.report, "evaluation": eval_report, "verification": verify_report}
    facts = ExportFacts(prep, data_report, conversion, verification, metrics, chosen, drop, consts, c_frontend,
                        slimmed.report, ring)
    report = build_report(facts, settings.command, str(out))
    written = write_bundle(out, files, report, slimmed.model, force=settings.force, started=started)
    log(f"  bundle written: {out} ({chosen.upper()} deployed, {report['flash_bytes']:,} B flash, "
        f"{report['arena_bytes']:,} B arena) in {report['seconds']:.0f} s")
    return ExportResult(str(out), report, written)
