#!/usr/bin/env python
"""Clips per second of the tf.data pipeline against a soundfile + librosa loader.

Measures, in one run and over several repetitions (medians reported):

(a) first pass -- ``evaluation_dataset(clips, PipelineSpec(cache="memory"))`` built and iterated once:
    header probing, TF-op decoding, down-mix, resampling, crop/pad, log-mel,
    batching (graph tracing included);
(b) cached pass -- the same dataset iterated again (log-mel maps from the
    memory cache);
(c) reference -- what a user would otherwise write: a Python loop doing
    ``soundfile.read``, ``librosa.to_mono``, ``librosa.resample`` (when the
    rate differs), ``librosa.util.fix_length``, ``librosa.feature.melspectrogram``
    and ``np.log``, stacked into batches of the same size.

Both produce the same ``(B, n_mels, frames, 1)`` float32 log-mel batches for
the same clips. The three are interleaved in every repetition so that load
from other processes on the machine hits them alike. Files are read once
beforehand so that all loaders find them in the OS page cache.

Usage::

    python tools/benchmark_pipeline.py --data ../shared/data/tut17-dev --repeats 5
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def reference_pass(clips, params, clip_seconds, batch_size):
    """soundfile + librosa, one clip after the other, as a user would write it."""
    import librosa
    import soundfile as sf

    n = params.num_samples(clip_seconds)
    batch, count = [], 0
    for clip in clips:
        y, sr = sf.read(clip.path, dtype="float32", always_2d=True)
        y = librosa.to_mono(y.T)
        if sr != params.sample_rate:
            y = librosa.resample(y, orig_sr=sr, target_sr=params.sample_rate)
        y = librosa.util.fix_length(y, size=n)
        mel = librosa.feature.melspectrogram(
            y=y, sr=params.sample_rate, n_fft=params.n_fft, hop_length=params.hop_length,
            win_length=params.win_length, center=params.center, pad_mode="reflect", power=2.0,
            n_mels=params.n_mels, fmin=params.fmin, fmax=params.effective_fmax,
        )
        batch.append(np.log(mel + params.log_offset)[..., None].astype(np.float32))
        if len(batch) == batch_size:
            count += len(np.stack(batch))
            batch = []
    if batch:
        count += len(np.stack(batch))
    return count


def main(argv=None):
    default_data = os.path.join(os.path.dirname(ROOT), "shared", "data", "tut17-dev")
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=default_data, help="DCASE development-set folder (default: %(default)s)")
    ap.add_argument("--split", default="all", help="split to read: all, train, evaluate (default: all)")
    ap.add_argument("--repeats", type=int, default=5, help="repetitions (default: 5)")
    ap.add_argument("--cached-passes", type=int, default=2, help="cached passes per repetition (default: 2)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--clip-seconds", type=float, default=None, help="crop / pad length (default: front end's)")
    ap.add_argument("--limit", type=int, default=None, help="use only the first N clips")
    ap.add_argument("--parallel", type=int, default=None,
                    help="clips the pipeline decodes at once (default: one per CPU core)")
    ap.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = ap.parse_args(argv)

    import tensorflow as tf

    from keras_dssdn.data.datasets import read_dcase
    from keras_dssdn.params import DEFAULT_FRONTEND
    from keras_dssdn.data.pipeline import cpu_count, evaluation_dataset
    from keras_dssdn.data.spec import PipelineSpec

    params = DEFAULT_FRONTEND
    clips = read_dcase(args.data, split=args.split)
    if args.limit:
        clips = clips.subset(range(min(args.limit, len(clips))))
    clip_seconds = args.clip_seconds or params.clip_seconds
    n = len(clips)
    for c in clips:  # warm the OS page cache for every loader alike
        with open(c.path, "rb") as f:
            f.read()
    # warm-up: imports, librosa's first-call costs, TF kernels
    reference_pass(clips.subset(range(2)), params, clip_seconds, args.batch_size)
    spec = PipelineSpec(frontend=params, clip_seconds=clip_seconds, batch_size=args.batch_size)
    for _ in evaluation_dataset(clips.subset(range(2)), spec):
        pass

    times = {"reference": [], "first": [], "cached": []}
    for rep in range(args.repeats):
        t = time.perf_counter()
        got = reference_pass(clips, params, clip_seconds, args.batch_size)
        times["reference"].append(time.perf_counter() - t)
        assert got == n

        t = time.perf_counter()
        ds = evaluation_dataset(clips, spec.replace(cache="memory", num_parallel_calls=args.parallel))
        got = sum(int(x.shape[0]) for x, _ in ds)
        times["first"].append(time.perf_counter() - t)
        assert got == n
        for _ in range(args.cached_passes):
            t = time.perf_counter()
            got = sum(int(x.shape[0]) for x, _ in ds)
            times["cached"].append(time.perf_counter() - t)
            assert got == n
        del ds
        print(
            f"repetition {rep + 1}/{args.repeats}: reference {times['reference'][-1]:.2f} s, "
            f"first pass {times['first'][-1]:.2f} s, cached {times['cached'][-1]:.3f} s",
            flush=True,
        )

    med = {k: statistics.median(v) for k, v in times.items()}
    rate = {k: n / v for k, v in med.items()}
    print()
    print(f"data: {args.data} ({args.split}, {n} clips of {clip_seconds:g} s), batch {args.batch_size}, "
          f"{args.repeats} repetitions, medians")
    from keras_dssdn.audio.native_flac import flac_decoder_name

    print(f"machine: {platform.machine()}, {cpu_count()} CPU cores, TensorFlow {tf.__version__}, "
          f"pipeline parallelism {args.parallel or cpu_count()}, FLAC decoder {flac_decoder_name()}")
    print()
    print("| loader | median time (s) | clips/s | vs reference |")
    print("|---|---:|---:|---:|")
    names = {"reference": "(c) reference: soundfile + librosa", "first": "(a) pipeline, first pass",
             "cached": "(b) pipeline, cached pass"}
    for k in ("reference", "first", "cached"):
        print(f"| {names[k]} | {med[k]:.3f} | {rate[k]:.1f} | {rate[k] / rate['reference']:.2f}x |")
    print()
    print(f"first pass / reference speed: {rate['first'] / rate['reference']:.2f}x (target >= 1)")
    print(f"cached pass / first pass speed: {rate['cached'] / rate['first']:.1f}x (target >= 10)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"clips": n, "times": times, "median_s": med, "clips_per_s": rate}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
