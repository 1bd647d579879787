#!/usr/bin/env python
"""GPU path benchmark: clips per second of the input pipeline and of training with the log-mel in the model.

One short, prepared run (a few minutes on a GPU; docs/install.md) in two parts:

1. **pipeline**: ``tools/benchmark_pipeline.py`` on the first ``--clips`` clips (decoding + log-mel as tf.data
   ops on the CPU, against a soundfile + librosa loop; first pass and cached pass).
2. **training**: DSSDN-Small on the same clips (10-s, 44.1 kHz), ``--epochs`` timed epochs after one warm-up
   epoch (tracing), two ways:

   * ``cpu-tfdata``: the CPU ``tf.data`` path the trainer uses: the pipeline decodes and computes the
     log-mel maps (``PipelineSpec(output="logmel")``) and the model takes maps;
   * ``logmel-in-model``: the pipeline only decodes (``output="waveform"``) and the model starts with the
     :class:`~keras_dssdn.layers.frontend.LogMel` layer (STFT and mel filterbank on the accelerator; kept in
     float32 under mixed precision).

   Both use the same precision policy: ``--precision auto`` is ``mixed_float16`` when TensorFlow sees a GPU and
   ``float32`` otherwise. ``--cache none`` (default) decodes every epoch so the feature path is measured each
   epoch; ``--cache memory`` caches what the pipeline yields (maps or waveforms).

Prints clips per second for each (and writes ``--json``). Without a GPU it runs on the CPU, which only shows
that the script and both paths work: the numbers are CPU numbers.

Usage::

    python tools/benchmark_gpu.py                                  # ../shared/data/tut17-dev, 64 clips
    python tools/benchmark_gpu.py --data DIR --clips 256 --batch-size 32 --epochs 3 --json gpu.json
    python tools/benchmark_gpu.py --synthetic                      # no dataset: synthetic 10-s clips
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def pipeline_benchmark(data: str, clips: int, repeats: int, batch_size: int) -> dict:
    """tools/benchmark_pipeline.py in a child process (its own TensorFlow), its table passed through."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "pipeline.json")
        cmd = [sys.executable, os.path.join(ROOT, "tools", "benchmark_pipeline.py"), "--data", data,
               "--limit", str(clips), "--repeats", str(repeats), "--cached-passes", "1",
               "--batch-size", str(batch_size), "--json", out]
        print("$ " + " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True)
        with open(out) as f:
            return json.load(f)["clips_per_s"]


def training_benchmark(clips, vocab, variant: str, batch_size: int, epochs: int, cache: str, policy: str) -> dict:
    import keras

    import keras_dssdn
    from keras_dssdn.data.pipeline import training_dataset
    from keras_dssdn.data.spec import PipelineSpec, TrainingOptions
    from keras_dssdn.layers.frontend import LogMel

    params = keras_dssdn.DEFAULT_FRONTEND
    keras.backend.clear_session()
    keras.mixed_precision.set_global_policy(policy)
    keras.utils.set_random_seed(0)
    output = "logmel" if variant == "cpu-tfdata" else "waveform"
    spec = PipelineSpec(frontend=params, batch_size=batch_size, vocabulary=vocab, label_mode="one_hot", output=output,
                        cache="memory" if cache == "memory" else None)
    ds = training_dataset(clips, spec, TrainingOptions(seed=0))
    core = keras_dssdn.DSSDNSmall(input_shape=params.input_shape(), classes=len(vocab.names))
    if variant == "cpu-tfdata":
        model = core
    else:
        inputs = keras.Input((params.num_samples(),), name="waveform")
        # float32 whatever the policy: an STFT in float16 loses the quiet bands
        model = keras.Model(inputs, core(LogMel(params, name="log_mel", dtype="float32")(inputs)),
                            name="dssdn_small_with_log_mel")
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=keras.losses.CategoricalCrossentropy(),
                  metrics=["accuracy"])
    n = len(clips)
    t = time.perf_counter()
    model.fit(ds, epochs=1, verbose=0, shuffle=False)  # warm-up: tracing, first decode (and cache fill)
    warmup = time.perf_counter() - t
    t = time.perf_counter()
    history = model.fit(ds, epochs=epochs, verbose=0, shuffle=False)  # the pipeline shuffles
    timed = time.perf_counter() - t
    keras.mixed_precision.set_global_policy("float32")
    loss = history.history["loss"]
    return {"variant": variant, "policy": policy, "clips": n, "epochs": epochs, "warmup_s": round(warmup, 2),
            "timed_s": round(timed, 2), "clips_per_s": round(n * epochs / timed, 2),
            "first_loss": float(loss[0]), "last_loss": float(loss[-1])}


def main(argv=None) -> int:
    default_data = os.path.join(os.path.dirname(ROOT), "shared", "data", "tut17-dev")
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=default_data, help="DCASE development-set folder (default: %(default)s)")
    ap.add_argument("--synthetic", action="store_true", help="use synthetic 10-s clips instead of --data")
    ap.add_argument("--clips", type=int, default=64, help="clips used (first N of the training split; default 64)")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--epochs", type=int, default=2, help="timed training epochs after one warm-up (default 2)")
    ap.add_argument("--repeats", type=int, default=2, help="repetitions of the pipeline benchmark (default 2)")
    ap.add_argument("--precision", choices=["auto", "mixed_float16", "float32"], default="auto",
                    help="Keras dtype policy of the training runs (auto: mixed_float16 on a GPU, else float32)")
    ap.add_argument("--cache", choices=["none", "memory"], default="none",
                    help="cache of the training pipelines (default none: features every epoch)")
    ap.add_argument("--skip-pipeline", action="store_true", help="only the training benchmark")
    ap.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = ap.parse_args(argv)

    import tensorflow as tf
    import keras

    from keras_dssdn.data.datasets import read_dcase

    gpus = tf.config.list_physical_devices("GPU")
    device = ", ".join(d.name for d in gpus) if gpus else "no GPU: CPU only (the numbers show the script works, " \
                                                             "not GPU speed)"
    policy = args.precision if args.precision != "auto" else ("mixed_float16" if gpus else "float32")
    print(f"TensorFlow {tf.__version__}, Keras {keras.__version__}, Python {platform.python_version()}, "
          f"{os.cpu_count()} CPU cores; device: {device}; training precision {policy}", flush=True)

    tmp = None
    data = args.data
    if args.synthetic or not os.path.isdir(data):
        if not args.synthetic:
            print(f"{data} not found: using synthetic clips (--synthetic)")
        from keras_dssdn.data.synthetic import make_synthetic_dataset

        tmp = tempfile.TemporaryDirectory()
        data = os.path.join(tmp.name, "synthetic")
        make_synthetic_dataset(data, num_classes=4, train_locations=2, eval_locations=1,
                               clips_per_location=max(2, -(-args.clips // 8)))
    clips = read_dcase(data, split="train")
    clips = clips.subset(range(min(args.clips, len(clips))))
    vocab = read_dcase(data, split="train").vocabulary()
    results = {"tensorflow": tf.__version__, "keras": keras.__version__, "device": device, "policy": policy,
               "data": data, "clips": len(clips), "batch_size": args.batch_size, "cache": args.cache}

    if not args.skip_pipeline:
        print("\n== 1. input pipeline (CPU tf.data) ==", flush=True)
        results["pipeline_clips_per_s"] = pipeline_benchmark(data, len(clips), args.repeats, args.batch_size)

    print(f"\n== 2. training DSSDN-Small, {len(clips)} clips x {args.epochs} epochs, batch {args.batch_size}, "
          f"{policy}, cache {args.cache} ==", flush=True)
    runs = []
    for variant in ("cpu-tfdata", "logmel-in-model"):
        r = training_benchmark(clips, vocab, variant, args.batch_size, args.epochs, args.cache, policy)
        runs.append(r)
        print(f"  {variant:16s} {r['clips_per_s']:8.2f} clips/s  (warm-up epoch {r['warmup_s']:.1f} s, "
              f"{r['epochs']} epochs {r['timed_s']:.1f} s, loss {r['first_loss']:.3f} -> {r['last_loss']:.3f})",
              flush=True)
    results["training"] = runs

    print("\n| part | path | clips/s |")
    print("|---|---|---:|")
    for k, v in results.get("pipeline_clips_per_s", {}).items():
        name = {"reference": "soundfile + librosa loop", "first": "tf.data, first pass",
                "cached": "tf.data, cached pass"}[k]
        print(f"| pipeline | {name} | {v:.1f} |")
    for r in runs:
        name = {"cpu-tfdata": "log-mel in tf.data (CPU), model on maps",
                "logmel-in-model": "log-mel layer in the model"}[r["variant"]]
        print(f"| training ({r['policy']}) | {name} | {r['clips_per_s']:.2f} |")
    ratio = runs[1]["clips_per_s"] / runs[0]["clips_per_s"]
    print(f"\nlog-mel in the model / CPU tf.data path: {ratio:.2f}x ({device})")
    results["ratio_logmel_in_model"] = round(ratio, 3)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
