"""Host verification of the C front end: compiled here, run on audio, compared with the training front end.

Every export runs :func:`check_c_frontend` on the bundle's ``micro/dssdn_frontend.c``
(:mod:`keras_dssdn.deploy.cfrontend`):

1. compile it with the system C compiler (``$CC``, else ``cc``, ``gcc`` or ``clang``; C99, warnings as
   errors) together with ``templates/frontend_host.c``, which streams clips through it in uneven
   chunks, as audio arrives on a device;
2. run it on int16 PCM and compare its int8 tensors with the Python front end's
   (:func:`python_int8_tensors`: :func:`keras_dssdn.layers.frontend.log_mel_spectrogram`, the model's
   normalisation, :func:`keras_dssdn.inference.tflite.quantize_input`, on the same PCM as float
   ``pcm / 32768``): the fraction of equal values and the largest difference in quantisation steps;
3. feed both tensors to the TFLM interpreter and compare the class decisions: per segment, and per clip
   (dequantised outputs averaged over the clip's segments, as ``dssdn_stream_example.cc`` does).

The audio: generated edge cases (:func:`edge_case_signals`: silence, full-scale square wave, clipped
sine, full-scale and 1-LSB noise, impulses, a sweep) and, when the export has an evaluate split, every
clip of it through the training pipeline's loader (decode, mono, resample, crop / pad), rounded to int16.
The check fails (:class:`~keras_dssdn.errors.VerificationError`, so no bundle is written) when fewer than
:data:`MIN_EQUAL_FRACTION` of the values are equal, any differs by more than :data:`MAX_STEP`, or a clip's
decision differs where it was not a near-tie (:data:`TIE_STEPS`; near-tie flips are counted in the report).
Without a C compiler it is skipped, and the report says so.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from typing import Callable, Dict, Iterable, Iterator, Optional, Tuple

import numpy as np

from keras_dssdn.frontend_constants import FrontEndConstants
from keras_dssdn.deploy.resources import template_text
from keras_dssdn.errors import VerificationError

#: At least this fraction of the int8 values must equal the Python front end's ...
MIN_EQUAL_FRACTION = 0.999
#: ... and none may differ by more than this many quantisation steps.
MAX_STEP = 1
#: A clip whose class differs between the two front ends fails the check unless it is a near-tie: on the Python
#: front end's path its top two classes' mean outputs were within this many output quantisation steps (one-step
#: input differences move a clip's mean output by about that much, so such a clip can flip either way).
TIE_STEPS = 2.0
#: Clips per batch streamed through the compiled front end.
CLIP_BATCH = 16
CFLAGS = ("-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-pedantic")


def find_c_compiler() -> Optional[str]:
    """Path of the C compiler: ``$CC`` when set, else the first of ``cc``, ``gcc``, ``clang`` on PATH."""
    names = [os.environ["CC"]] if os.environ.get("CC") else ["cc", "gcc", "clang"]
    for name in names:
        path = shutil.which(name)
        if path:
            return path
    return None


def build_frontend(sources: Dict[str, str], folder: str, compiler: Optional[str] = None) -> str:
    """Write ``sources`` (``{file name: text}``, with ``dssdn_frontend.h/.c``) and the host driver into
    ``folder``, compile them; returns the executable's path. :class:`VerificationError` with the compiler's
    message when it does not compile."""
    compiler = compiler or find_c_compiler()
    if compiler is None:
        raise VerificationError("No C compiler found (cc, gcc or clang on PATH, or $CC).")
    for name, text in {**sources, "frontend_host.c": template_text("frontend_host.c")}.items():
        with open(os.path.join(folder, name), "w", encoding="utf-8") as f:
            f.write(text)
    exe = os.path.join(folder, "frontend_host")
    cmd = [compiler, *CFLAGS, "-I", folder, os.path.join(folder, "dssdn_frontend.c"),
           os.path.join(folder, "frontend_host.c"), "-o", exe, "-lm"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise VerificationError(f"The generated C front end does not compile with {compiler} "
                                f"({' '.join(CFLAGS)}): {' '.join(proc.stderr.split())[:2000]}")
    return exe


def run_c_frontend(exe: str, pcm: np.ndarray, input_shape: Tuple[int, int], pad: bool = False) -> np.ndarray:
    """The compiled front end on clips ``pcm`` (int16 ``(clips, samples)``): int8 ``(segments, n_mels,
    frames, 1)``, segments in clip order. ``pad``: a partial last segment is completed with zeros
    (``dssdn_fe_flush``) instead of dropped."""
    pcm = np.ascontiguousarray(pcm, dtype=np.int16)
    if pcm.ndim != 2:
        raise ValueError(f"pcm must be (clips, samples), got shape {pcm.shape}")
    with tempfile.TemporaryDirectory(prefix="dssdn_fe_") as tmp:
        src, dst = os.path.join(tmp, "pcm.raw"), os.path.join(tmp, "out.raw")
        pcm.tofile(src)
        proc = subprocess.run([exe, src, str(pcm.shape[1]), dst] + (["pad"] if pad else []),
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise VerificationError(f"The compiled C front end failed (exit {proc.returncode}): "
                                    f"{proc.stderr.strip()[:500]}")
        out = np.fromfile(dst, dtype=np.int8)
    n_mels, frames = input_shape
    return out.reshape(-1, n_mels, frames, 1)


def python_int8_tensors(pcm: np.ndarray, consts: FrontEndConstants, pad: bool = False) -> np.ndarray:
    """The training front end on the same clips: int8 ``(segments, n_mels, frames, 1)``.

    Each clip (int16 ``(clips, samples)``, as float ``pcm / 32768``) is cut into segments of
    ``consts.num_samples`` (a shorter remainder dropped, or zero-padded with ``pad``), then
    :func:`~keras_dssdn.layers.frontend.log_mel_spectrogram` with ``consts.params``,
    ``consts.normalization.apply`` (float32 TF, as the pipeline) and
    :func:`~keras_dssdn.inference.tflite.quantize_input` with ``consts.input_quantization``.
    """
    from keras_dssdn.inference.tflite import quantize_input
    from keras_dssdn.layers.frontend import log_mel_spectrogram

    segment_samples, normalization, q = consts.num_samples, consts.normalization, consts.input_quantization
    x = np.asarray(pcm, np.float32) / np.float32(32768.0)
    n = x.shape[1] // segment_samples
    if pad and x.shape[1] % segment_samples:
        n += 1
        x = np.pad(x, [(0, 0), (0, n * segment_samples - x.shape[1])])
    segments = x[:, :n * segment_samples].reshape(-1, segment_samples)
    logmel = log_mel_spectrogram(segments, consts.params)
    if normalization is not None:
        logmel = normalization.apply(logmel)
    return quantize_input(np.asarray(logmel), q.scale, q.zero_point)


def edge_case_signals(sample_rate: int, samples: int, seed: int = 0) -> Dict[str, np.ndarray]:
    """Generated int16 test signals of ``samples`` each: ``silence``, ``square_full_scale`` (1 kHz,
    +-32767), ``clipped_sine`` (440 Hz at 4x full scale, clipped), ``noise_full_scale``, ``noise_1lsb``,
    ``impulses`` (full scale every 1000 samples), ``sweep`` (50 Hz to Nyquist, half scale)."""
    rng = np.random.default_rng(seed)
    t = np.arange(samples) / sample_rate
    clip = lambda v: np.clip(np.round(v), -32768, 32767).astype(np.int16)  # noqa: E731
    impulses = np.zeros(samples)
    impulses[::1000] = 32767
    f0, f1 = 50.0, sample_rate / 2.0
    phase = 2 * np.pi * (f0 * t + (f1 - f0) * t ** 2 / (2 * max(t[-1], 1e-9)))
    return {
        "silence": np.zeros(samples, np.int16),
        "square_full_scale": clip(np.where(np.sin(2 * np.pi * 1000.0 * t) >= 0, 32767, -32767)),
        "clipped_sine": clip(4 * 32767 * np.sin(2 * np.pi * 440.0 * t)),
        "noise_full_scale": rng.integers(-32768, 32768, samples).astype(np.int16),
        "noise_1lsb": rng.integers(-1, 2, samples).astype(np.int16),
        "impulses": clip(impulses),
        "sweep": clip(16384 * np.sin(phase)),
    }


def tensor_parity(c: np.ndarray, py: np.ndarray) -> dict:
    """``values``, ``equal`` and ``equal_fraction`` of int8 tensors, ``max_step`` (largest difference in
    quantisation steps) and ``segments_differing``."""
    if c.shape != py.shape:
        raise VerificationError(f"The C front end made tensors {c.shape}, the Python front end {py.shape}.")
    diff = np.abs(c.astype(np.int16) - py.astype(np.int16))
    return {"values": int(diff.size), "equal": int(np.sum(diff == 0)),
            "equal_fraction": float(np.mean(diff == 0)) if diff.size else 1.0,
            "max_step": int(diff.max()) if diff.size else 0,
            "segments_differing": int(np.sum(diff.reshape(len(diff), -1).max(axis=1) > 0)) if diff.size else 0}


def merge_parity(parts: Iterable[dict]) -> dict:
    """One :func:`tensor_parity` entry for several."""
    parts = list(parts)
    values = sum(p["values"] for p in parts)
    equal = sum(p["equal"] for p in parts)
    return {"values": values, "equal": equal, "equal_fraction": equal / values if values else 1.0,
            "max_step": max((p["max_step"] for p in parts), default=0),
            "segments_differing": sum(p["segments_differing"] for p in parts)}


class MicroDecisions:
    """Class decisions of the TFLM interpreter on int8 tensors: per segment (argmax of the int8 output) and
    per clip (argmax of the dequantised outputs averaged over the clip's segments)."""

    def __init__(self, flatbuffer: bytes, arena_bytes: int):
        from keras_dssdn.deploy.micro import micro_interpreter

        self.interpreter = micro_interpreter(flatbuffer, arena_bytes)
        # from TFLM itself: the deployed flatbuffer may be TFLM-only (keras_dssdn.deploy.flash_cuts)
        q = self.interpreter.get_output_details(0)["quantization_parameters"]
        self.scale, self.zero_point = float(q["scales"][0]), int(q["zero_points"][0])

    def outputs(self, tensors: np.ndarray) -> np.ndarray:
        """Dequantised outputs ``(segments, classes)`` float32."""
        rows = []
        for x in tensors:
            self.interpreter.set_input(np.ascontiguousarray(x[None]), 0)
            self.interpreter.invoke()
            rows.append(np.array(self.interpreter.get_output(0)).reshape(-1))
        raw = np.stack(rows).astype(np.float32)
        return (raw - self.zero_point) * self.scale

    def compare(self, c: np.ndarray, py: np.ndarray, segments_per_clip: int) -> dict:
        """``segments``, ``segment_agreement``, ``clips``, ``clip_agreement``, ``clips_differing``: decisions
        on the C tensors vs the Python ones (TFLM runs only the C tensors that differ: equal inputs give
        equal outputs)."""
        out_py = self.outputs(py)
        out_c = out_py.copy()
        differs = np.any((c != py).reshape(len(c), -1), axis=1)
        if differs.any():
            out_c[differs] = self.outputs(c[differs])
        clip_py, clip_c = (o.reshape(-1, segments_per_clip, o.shape[-1]).mean(axis=1) for o in (out_py, out_c))
        seg_equal = out_c.argmax(axis=1) == out_py.argmax(axis=1)
        top_py, top_c = clip_py.argmax(axis=1), clip_c.argmax(axis=1)
        rows = np.flatnonzero(top_py != top_c)
        # how close the Python path itself was between the two classes, in output quantisation steps
        margins = (clip_py[rows, top_py[rows]] - clip_py[rows, top_c[rows]]) / self.scale
        return {"segments": int(len(c)), "segments_agreeing": int(seg_equal.sum()),
                "clips": int(len(top_py)), "clips_agreeing": int(len(top_py) - len(rows)),
                "flip_margins": [round(float(m), 3) for m in margins]}


def merge_decisions(parts: Iterable[dict]) -> dict:
    parts = list(parts)
    out = {k: sum(p[k] for p in parts) for k in ("segments", "segments_agreeing", "clips", "clips_agreeing")}
    out["flip_margins"] = [m for p in parts for m in p.get("flip_margins", [])]
    out["near_tie_flips"] = sum(m <= TIE_STEPS for m in out["flip_margins"])
    out["segment_agreement"] = out["segments_agreeing"] / out["segments"] if out["segments"] else 1.0
    out["clip_agreement"] = out["clips_agreeing"] / out["clips"] if out["clips"] else 1.0
    return out


def to_int16(waveforms: np.ndarray) -> np.ndarray:
    """Float waveforms in [-1, 1] -> int16 PCM (``round(x * 32768)``, clipped): exact for 16-bit sources."""
    return np.clip(np.round(np.asarray(waveforms, np.float64) * 32768.0), -32768, 32767).astype(np.int16)


def clip_batches(clips, frontend, clip_seconds: float, vocabulary=None, batch: int = CLIP_BATCH) -> Iterator:
    """int16 ``(clips, samples)`` batches of ``clips`` through the training pipeline's loader (decode, mono,
    resample to the front end's rate, crop / zero-pad to ``clip_seconds``), in ClipList order."""
    from keras_dssdn.data.pipeline import evaluation_dataset
    from keras_dssdn.data.spec import PipelineSpec

    ds = evaluation_dataset(clips, PipelineSpec(frontend=frontend, clip_seconds=clip_seconds, batch_size=batch,
                                                vocabulary=vocabulary, label_mode="int", output="waveform", cache=None))
    for x, _ in ds:
        yield to_int16(x.numpy())


@contextlib.contextmanager
def compiled_frontend(sources: Dict[str, str]):
    """The host executable of ``sources`` in a temporary folder (removed afterwards); None without a C
    compiler."""
    if find_c_compiler() is None:
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="dssdn_cfe_") as tmp:
        yield build_frontend(sources, tmp)


def _check_thresholds(where: str, parity: dict, decisions: Optional[dict]) -> None:
    problems = []
    if parity["equal_fraction"] < MIN_EQUAL_FRACTION:
        problems.append(f"{100 * parity['equal_fraction']:.3f} % of the int8 values equal (need "
                        f">= {100 * MIN_EQUAL_FRACTION:g} %)")
    if parity["max_step"] > MAX_STEP:
        problems.append(f"values up to {parity['max_step']} quantisation steps apart (at most {MAX_STEP} allowed)")
    clear_flips = [m for m in (decisions or {}).get("flip_margins", []) if m > TIE_STEPS]
    if clear_flips:
        problems.append(f"{len(clear_flips)} of {decisions['clips']} clips get another class although the training "
                        f"front end's top two classes were {min(clear_flips):.1f} or more output quantisation steps "
                        f"apart (near-ties within {TIE_STEPS:g} steps may flip)")
    if problems:
        raise VerificationError(f"The generated C front end does not reproduce the training front end on {where}: "
                                + "; ".join(problems) + ". The bundle is not written; report this with the model.")


def check_c_frontend(sources: Dict[str, str], consts: FrontEndConstants, flatbuffer: bytes, arena_bytes: int,
                     waveforms: Optional[np.ndarray] = None, source: str = "evaluate split",
                     log: Callable = print) -> dict:
    """The host check of the module doc; returns the report entry (``skipped`` without a C compiler).

    ``sources``: the C files (``dssdn_frontend.h/.c``); ``consts``: the bundle's front-end constants, whose
    ``params`` / ``normalization`` are the training front end; ``flatbuffer`` / ``arena_bytes``: the deployed
    int8 model; ``waveforms``: float32 ``(clips, samples)`` of the evaluate split as the pipeline's loader decoded
    them (:func:`keras_dssdn.deploy.export_data.decode_once`), rounded to int16 PCM (:func:`to_int16`) a batch at
    a time, or None; ``source`` names them in the report.
    """
    import time

    compiler = find_c_compiler()
    if compiler is None:
        log("  C front end: NOT checked (no C compiler: cc, gcc or clang on PATH, or $CC)")
        return {"skipped": "no C compiler (cc, gcc or clang on PATH, or $CC)"}
    t0 = time.time()
    seg, shape, frontend = consts.num_samples, consts.input_shape, consts.params
    python = lambda pcm: python_int8_tensors(pcm, consts)  # noqa: E731
    decisions = MicroDecisions(flatbuffer, arena_bytes)
    report = {"compiler": compiler, "cflags": " ".join(CFLAGS)}
    with compiled_frontend(sources) as exe:
        signals = edge_case_signals(frontend.sample_rate, 2 * seg)
        pcm_signals = np.stack(list(signals.values()))
        c, py = run_c_frontend(exe, pcm_signals, shape), python(pcm_signals)
        report["signals"] = {"names": list(signals), "parity": tensor_parity(c, py),
                             "decisions": merge_decisions([decisions.compare(c, py, 2)])}
        _check_thresholds("the generated test signals", report["signals"]["parity"], None)
        if waveforms is not None and len(waveforms):
            parity, agree = [], []
            for start in range(0, len(waveforms), CLIP_BATCH):
                pcm = to_int16(waveforms[start:start + CLIP_BATCH])
                c, py = run_c_frontend(exe, pcm, shape), python(pcm)
                parity.append(tensor_parity(c, py))
                agree.append(decisions.compare(c, py, waveforms.shape[1] // seg))
            report["clips"] = {"source": source, "count": len(waveforms),
                               "parity": merge_parity(parity), "decisions": merge_decisions(agree)}
            _check_thresholds(f"{len(waveforms)} clips of the evaluate split", report["clips"]["parity"],
                              report["clips"]["decisions"])
    report["seconds"] = round(time.time() - t0, 1)
    summary = report.get("clips") or report["signals"]
    log(f"  C front end == Python front end: {100 * summary['parity']['equal_fraction']:.3f} % of int8 values "
        f"equal, max {summary['parity']['max_step']} step; class agreement "
        f"{100 * summary['decisions']['clip_agreement']:.1f} % of clips"
        + (f" (near-tie flips: {summary['decisions']['near_tie_flips']}; Python-path margins "
           f"{', '.join(f'{m:g}' for m in summary['decisions']['flip_margins'])} output steps)"
           if summary['decisions']['flip_margins'] else "") + f" in {report['seconds']:.1f} s")
    return report
