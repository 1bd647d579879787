"""The bundle: what an export writes and how it is checked on disk (the owner of the bundle folder).

:func:`bundle_files` gives every file of a bundle (the float / int8 models, :data:`MICRO_MODEL`, ``micro/``'s
C and C++ sources, ``frontend.json`` / ``frontend.npz``); :func:`write_bundle` writes them with the report and a
manifest into a temporary sibling folder renamed into place (:func:`keras_dssdn.fileio.atomic_folder`);
:func:`check_destination` refuses a folder it must not replace; :func:`check_bundle_on_disk` re-runs the checks on
a bundle as it is now (``dssdn-export --check``). The export that makes a bundle is
:func:`keras_dssdn.deploy.export.export_bundle`; the files: docs/deployment.md.

Units: sizes in bytes, durations in seconds.
"""

from __future__ import annotations

import hashlib
import io
import os
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Union

import numpy as np

from keras_dssdn.deploy import cfrontend, csources
from keras_dssdn.deploy.convert import Conversion
from keras_dssdn.deploy.prepare import PreparedModel
from keras_dssdn.deploy.report import report_markdown
from keras_dssdn.errors import BundleExistsError, VerificationError
from keras_dssdn.fileio import atomic_folder, write_bytes_atomic, write_json_atomic, write_text_atomic
from keras_dssdn.frontend_constants import FrontEndConstants, Quantization
from keras_dssdn.inference.tflite import TFLiteRunner
from keras_dssdn.manifest import MANIFEST, build_manifest

PathLike = Union[str, os.PathLike]


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
    slimmed flatbuffer (:mod:`keras_dssdn.deploy.flash_cuts`), written as :data:`MICRO_MODEL` and ``micro/``'s array;
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

