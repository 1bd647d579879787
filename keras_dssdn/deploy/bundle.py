"""Export a trained model to float / int8 TFLite and a verified TensorFlow Lite Micro bundle.

Library::

    from keras_dssdn.deploy.bundle import export_bundle
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
2. **data** (:func:`keras_dssdn.deploy.data.resolve_sources`): the splits and
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
6b. **flash cuts** (:func:`keras_dssdn.deploy.slim.slim_model`): the deployed int8
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
import hashlib
import io
import os
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Union

import numpy as np

from keras_dssdn.analysis.ram import audio_ring, flatbuffer_macs
from keras_dssdn.deploy import cfrontend, csources
from keras_dssdn.deploy.calibrate import calibrate
from keras_dssdn.deploy.convert import Conversion, convert
from keras_dssdn.deploy.data import evaluation_set, resolve_sources
from keras_dssdn.deploy.evaluate import accuracy_drop, choose_deployed, evaluate_models
from keras_dssdn.frontend_constants import FrontEndConstants, Quantization
from keras_dssdn.manifest import MANIFEST, build_manifest
from keras_dssdn.deploy.prepare import PreparedModel, prepare_model
from keras_dssdn.deploy.report import ExportFacts, build_report, report_markdown
from keras_dssdn.deploy.settings import ExportSettings
from keras_dssdn.deploy.slim import Slimming, slim_model
from keras_dssdn.deploy.verify import verification_inputs, verify
from keras_dssdn.errors import BundleExistsError, VerificationError
from keras_dssdn.fileio import atomic_folder, write_bytes_atomic, write_json_atomic, write_text_atomic
from keras_dssdn.inference.tflite import TFLiteRunner

PathLike = Union[str, os.PathLike]


@dataclasses.dataclass
class ExportResult:
    """Where the bundle is and what the export measured (``report`` = report.json)."""

    path: str
    report: dict
    files: List[str]


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def check_destination(out_dir: PathLike, force: bool, inputs=()) -> Path:
    """The bundle folder as an absolute path; raises when it exists (without ``force``), is a file, lies under a
    file, is or holds one of ``inputs`` (``(option, path)`` pairs, :func:`keras_dssdn.fileio.check_output`), is
    not a bundle the package wrote (with ``force``: :func:`keras_dssdn.manifest.check_replaceable`), or its
    parent folder is missing."""
    from keras_dssdn.manifest import check_replaceable
    from keras_dssdn.fileio import check_output

    check_output(out_dir, inputs, folder=True)
    out = Path(out_dir).resolve()
    if out.exists() and not force:
        raise BundleExistsError(f"Bundle folder {out} exists; pass force=True (--force) to replace it, or choose "
                                "another --out.")
    if not out.parent.is_dir():
        raise FileNotFoundError(f"The parent folder of the bundle, {out.parent}, does not exist; create it first.")
    if out.exists():
        check_replaceable(out)
    return out


def device_constants(prep: PreparedModel, deployed: bytes) -> FrontEndConstants:
    """The :class:`~keras_dssdn.frontend_constants.FrontEndConstants` of the deployed int8 model: the
    model's front end, normalisation and class names with the input and output quantisation of ``deployed``."""
    r = TFLiteRunner(deployed, reference=True)
    return FrontEndConstants.build(prep.frontend, [int(d) for d in r.input["shape"]],
                                   Quantization(float(r.input_scale), int(r.input_zero_point)), prep.normalization,
                                   prep.class_names, Quantization(float(r.output_scale), int(r.output_zero_point)),
                                   seconds=prep.segment_seconds)


# ---------------------------------------------------------------------------
# The write step
# ---------------------------------------------------------------------------


def _micro_sources(prep: PreparedModel, deployed: bytes, chosen: str, checks: dict, consts: FrontEndConstants,
                   ring: dict) -> Dict[str, str]:
    """``micro/``: model array (``deployed``: the slimmed flatbuffer), op resolver, model settings (with the audio
    ring: :func:`keras_dssdn.analysis.ram.audio_ring`), the C front end, the streaming example."""
    q_in, q_out = consts.input_quantization, consts.output_quantization
    settings = {"sample_rate": consts.params.sample_rate, "macs": ring["macs"],
                "cycles_per_mac": ring["cycles_per_mac"], "clock_hz": ring["clock_hz"],
                "invoke_cycles": ring["invoke_cycles"], "invoke_seconds": ring["invoke_seconds"],
                "ring_samples": ring["samples"], "arena_bytes": checks["arena"]["recommended_bytes"],
                "arena_min_bytes": checks["arena"]["min_bytes"], "model_bytes": len(deployed),
                "input_shape": [1, *prep.input_shape], "input_scale": q_in.scale, "input_zero_point": q_in.zero_point,
                "output_scale": q_out.scale, "output_zero_point": q_out.zero_point,
                "class_names": prep.class_names or [f"class_{i}" for i in range(prep.num_classes)]}
    comment = f"{MICRO_MODEL} ({chosen.upper()}, flash cuts applied), sha256 {_sha256(deployed)}"
    sources = csources.c_array_source(deployed, "g_dssdn_model_data", "dssdn_model_data.h", comment=comment)
    sources["dssdn_op_resolver.h"] = csources.op_resolver_header(checks["operators"])
    sources.update(csources.model_settings_sources(settings))
    sources.update(cfrontend.frontend_c_sources(consts))
    sources["dssdn_example.cc"] = csources.example_source()
    return sources


def _frontend_npz(prep: PreparedModel, consts: FrontEndConstants) -> bytes:
    """``frontend.npz``: dense window, mel filterbank ``(n_fft/2+1, n_mels)``, fused int8 map, normalisation."""
    from keras_dssdn.layers.frontend import mel_filterbank, stft_window

    extra = {}
    if prep.normalization is not None:
        extra = {"norm_mean": np.asarray(prep.normalization.mean, np.float32),
                 "norm_std": np.asarray(prep.normalization.std, np.float32)}
    buf, (scale, offset) = io.BytesIO(), consts.logmel_to_int8
    np.savez(buf, window=stft_window(prep.frontend), mel_filterbank=mel_filterbank(prep.frontend),
             logmel_to_int8_scale=np.asarray(scale, np.float32), logmel_to_int8_offset=np.asarray(offset, np.float32),
             **extra)
    return buf.getvalue()


#: The deployed model as the device gets it (the bytes of ``micro/dssdn_model_data.cc``; TFLM only).
MICRO_MODEL = "model_int8_micro.tflite"


def bundle_files(prep: PreparedModel, conversion: Conversion, chosen: str, checks: dict,
                 consts: FrontEndConstants, device_model: bytes, ring: dict) -> Dict[str, Union[bytes, str]]:
    """Every file of the bundle but the report and the manifest: ``{relative path: bytes or text}``.
    ``checks``: :func:`keras_dssdn.deploy.verify.check_int8` of the deployed model; ``device_model``: its
    slimmed flatbuffer (:mod:`keras_dssdn.deploy.slim`), written as :data:`MICRO_MODEL` and ``micro/``'s array;
    ``ring``: the audio ring (:func:`keras_dssdn.analysis.ram.audio_ring`)."""
    files: Dict[str, Union[bytes, str]] = {"model_float.tflite": conversion.float_model,
                                           "model_int8.tflite": conversion.int8[chosen], MICRO_MODEL: device_model}
    files.update({f"model_int8_{name}.tflite": fb for name, fb in conversion.int8.items()})
    micro_files = _micro_sources(prep, device_model, chosen, checks, consts, ring)
    files.update({f"micro/{name}": text for name, text in micro_files.items()})
    files["frontend.json"] = consts.to_json()
    files["frontend.npz"] = _frontend_npz(prep, consts)
    return files


def _write(folder: Path, name: str, content) -> None:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        write_bytes_atomic(path, content)
    elif isinstance(content, str):
        write_text_atomic(path, content)
    else:
        write_json_atomic(path, content)


def _check_written(folder: Path, deployed: bytes) -> None:
    """Re-read what a device gets: the written device model and C array must be the verified bytes."""
    written = (folder / MICRO_MODEL).read_bytes()
    c_bytes = csources.parse_c_array((folder / "micro" / "dssdn_model_data.cc").read_text())
    if written != deployed or c_bytes != deployed:
        raise VerificationError("The written model files do not match the verified model bytes.")


def write_bundle(out: PathLike, files: Dict[str, Union[bytes, str, dict]], report: dict, deployed: bytes, *,
                 force: bool = False, started: Optional[float] = None) -> List[str]:
    """Write ``files`` (bytes, text or JSON values), ``report.json``, ``report.md`` and ``manifest.json`` (size and
    SHA-256 of every file) into ``out`` atomically: a temporary sibling folder renamed into place only when all
    is written and the device model files re-read equal ``deployed`` (:data:`MICRO_MODEL` and the C array); ``force`` replaces an existing folder.
    ``report["seconds"]`` is set from ``started`` (a ``time.time()``). Returns the relative paths written."""
    with atomic_folder(out, replace=force) as tmp:
        for name, content in files.items():
            _write(tmp, name, content)
        _check_written(tmp, deployed)
        report["seconds"] = round(time.time() - (started or time.time()), 1)
        _write(tmp, "report.json", report)
        _write(tmp, "report.md", report_markdown(report))
        names = sorted(files) + ["report.json", "report.md"]
        _write(tmp, MANIFEST, build_manifest(tmp, names))
    return names + [MANIFEST]


# ---------------------------------------------------------------------------
# The export
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


def _check_c_frontend(prep: PreparedModel, files: dict, consts: FrontEndConstants, deployed: bytes, checks: dict,
                      settings: ExportSettings, sources, log: Callable) -> dict:
    """Step 7: the generated C front end compiled and run on the host against the Python front end
    (:func:`keras_dssdn.deploy.host_check.check_c_frontend`) on test signals and the evaluate split's clips."""
    from keras_dssdn.deploy.data import clip_length, evaluation_clips
    from keras_dssdn.deploy.host_check import check_c_frontend

    names = (cfrontend.HEADER, cfrontend.SOURCE)
    clips, _ = evaluation_clips(settings.data, sources)
    return check_c_frontend({n: files[f"micro/{n}"] for n in names}, consts, deployed,
                            checks["arena"]["recommended_bytes"], clips=clips,
                            clip_seconds=clip_length(prep, sources), vocabulary=sources.vocabulary, log=log)


def _slim(conversion: Conversion, chosen: str, inputs: np.ndarray, calibration: np.ndarray, arena: dict,
          log: Callable) -> Slimming:
    """Step 6b: the deployed model's flash cuts, checked in TFLM on the verification inputs and
    :data:`SLIM_CHECK_CALIBRATION` calibration examples (quantised with the converter model's input scale)."""
    from keras_dssdn.deploy.data import spread

    extra = calibration[spread(len(calibration), SLIM_CHECK_CALIBRATION)]
    xq = TFLiteRunner(conversion.int8[chosen], reference=True).to_input(np.concatenate([inputs, extra]))
    return slim_model(conversion.int8[chosen], xq, arena, log)


#: Calibration examples on which TFLM must give the same outputs with the slimmed model (besides the verification
#: inputs).
SLIM_CHECK_CALIBRATION = 32


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
    evaluation, eval_report = evaluation_set(prep, settings.data, sources)
    conversion = convert(prep, calibration, settings.qat, sources, log)
    metrics, pool = _evaluate(prep, conversion, evaluation, settings.data.num_verify, log)
    inputs, verify_report = verification_inputs(settings.data.verify_inputs, pool, calibration.examples,
                                                settings.data.num_verify, prep.input_shape)
    verification = verify(prep.core, conversion, inputs, log, evaluation=evaluation)
    chosen = choose_deployed(settings.deploy, conversion.int8, metrics)
    drop = accuracy_drop(metrics, chosen, settings.max_accuracy_drop)
    consts = device_constants(prep, conversion.int8[chosen])
    slimmed = _slim(conversion, chosen, inputs, calibration.examples, verification.int8[chosen]["arena"], log)
    ring = audio_ring(consts.params.sample_rate, consts.params.hop_length, flatbuffer_macs(conversion.int8[chosen]),
                      settings.mcu_clock_hz, settings.mcu_cycles_per_mac)
    files = bundle_files(prep, conversion, chosen, verification.int8[chosen], consts, slimmed.model, ring)
    c_frontend = _check_c_frontend(prep, files, consts, slimmed.model, verification.int8[chosen],
                                   settings, sources, log)
    data_report = {"calibration": calibration.report, "evaluation": eval_report, "verification": verify_report}
    facts = ExportFacts(prep, data_report, conversion, verification, metrics, chosen, drop, consts, c_frontend,
                        slimmed.report, ring)
    report = build_report(facts, settings.command, str(out))
    written = write_bundle(out, files, report, slimmed.model, force=settings.force, started=started)
    log(f"  bundle written: {out} ({chosen.upper()} deployed, {report['flash_bytes']:,} B flash, "
        f"{report['arena_bytes']:,} B arena) in {report['seconds']:.0f} s")
    return ExportResult(str(out), report, written)


# ---------------------------------------------------------------------------
# Checking a bundle as it is on disk (dssdn-export --check)
# ---------------------------------------------------------------------------

#: Seeded int8 inputs on which ``--check`` compares TFLM with the TFLite reference kernels.
CHECK_INPUTS = 16


def check_bundle_on_disk(path: PathLike, num_inputs: int = CHECK_INPUTS, seed: int = 0,
                         log: Callable = print) -> dict:
    """Re-run a bundle's checks on its files as they are now: the manifest (sizes, SHA-256:
    :func:`keras_dssdn.manifest.verify_bundle`), the C array == :data:`MICRO_MODEL`, and TFLM running
    :data:`MICRO_MODEL` at the report's arena == the TFLite reference kernels running ``model_int8.tflite``,
    bit for bit, on ``num_inputs`` seeded int8 inputs (uniform over -128..127, plus all zeros).

    Returns ``{"files", "inputs", "bit_exact", "arena_bytes"}``; raises
    :class:`~keras_dssdn.errors.BundleIntegrityError` or :class:`~keras_dssdn.errors.VerificationError`.
    """
    from keras_dssdn.deploy import micro
    from keras_dssdn.manifest import verify_bundle
    from keras_dssdn.errors import ModelFileError
    from keras_dssdn.fileio import read_json

    folder = Path(path)
    manifest = verify_bundle(folder)
    log(f"{folder}: {len(manifest)} files match manifest.json (sizes and SHA-256)")
    report = read_json(folder / "report.json", "bundle report", "re-export the bundle", ModelFileError)
    device = (folder / MICRO_MODEL).read_bytes()
    _check_written(folder, device)
    ref = TFLiteRunner((folder / "model_int8.tflite").read_bytes(), reference=True,
                       source=folder / "model_int8.tflite")
    shape = [int(d) for d in ref.input["shape"][1:]]
    rng = np.random.default_rng(seed)
    xq = np.concatenate([np.zeros((1, *shape), np.int8),
                         rng.integers(-128, 128, (num_inputs - 1, *shape)).astype(np.int8)])
    expected = ref.run_raw(xq)
    got = micro.micro_invoke(device, xq, int(report["arena_bytes"]))
    if not np.array_equal(got, expected):
        mismatching = int(np.sum(np.any(got != expected, axis=1)))
        raise VerificationError(f"{folder}: TFLM running {MICRO_MODEL} differs from the TFLite reference running "
                                f"model_int8.tflite on {mismatching} of {len(xq)} inputs; do not flash this bundle: "
                                "re-export it.")
    log(f"{folder}: TFLM ({MICRO_MODEL}, arena {report['arena_bytes']:,} B) == TFLite reference kernels "
        f"(model_int8.tflite) on {len(xq)} seeded int8 inputs, bit for bit")
    return {"files": len(manifest), "inputs": int(len(xq)), "bit_exact": True,
            "arena_bytes": int(report["arena_bytes"])}
