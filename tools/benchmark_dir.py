#!/usr/bin/env python
"""Cost of device impulse-response (DIR) augmentation in the training pipeline, against the log-mel cache.

Without DIR the pipeline caches log-mel maps: after the first epoch an epoch only shuffles and batches.
With DIR it caches the decoded, resampled waveforms and every epoch convolves each clip with a response
(FFT), cuts segments and computes log-mel again (keras_dssdn/data/device_augment.py). This script times
one pass over the same training set both ways, in the same process (cache filled first; the median of
--repeats passes), and reports seconds per epoch, clips per second and the cache size:

    python tools/benchmark_dir.py --data ../shared/data/tut17-dev --clips 48 --repeats 5
    python tools/benchmark_dir.py --clips 24        # a synthetic 10-s dataset when --data is not given

Responses: --responses DIR, else 12 synthetic ones (20 ms). --prob is the DIR probability per clip.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _pass_seconds(ds) -> float:
    start = time.perf_counter()
    for _ in ds:
        pass
    return time.perf_counter() - start


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", help="DCASE folder (fold1_train is read); default: a synthetic dataset")
    p.add_argument("--clips", type=int, default=24, help="training clips used (default 24)")
    p.add_argument("--repeats", type=int, default=5, help="timed epochs per variant (default 5)")
    p.add_argument("--responses", help="impulse-response folder (default: 12 synthetic responses)")
    p.add_argument("--prob", type=float, default=0.6)
    p.add_argument("--segment-seconds", type=float, default=1.0)
    p.add_argument("--batch-size", type=int, default=64)
    args = p.parse_args(argv)

    import numpy as np
    import tensorflow as tf

    from keras_dssdn.data.datasets import read_clips
    from keras_dssdn.data.device_augment import DeviceAugment
    from keras_dssdn.data.impulse import load_impulse_responses, synthetic_impulse_responses
    from keras_dssdn.data.pipeline import training_dataset
    from keras_dssdn.data.spec import PipelineSpec, TrainingOptions
    from keras_dssdn.data.synthetic import make_synthetic_dataset
    from keras_dssdn.params import DEFAULT_FRONTEND

    tmp = tempfile.mkdtemp(prefix="benchmark_dir-")
    data = args.data or make_synthetic_dataset(os.path.join(tmp, "data"), num_classes=4, train_locations=3,
                                               eval_locations=1, clips_per_location=max(1, args.clips // 12), seed=0)
    clips = read_clips(data, split="train")
    clips = clips.subset(np.linspace(0, len(clips) - 1, min(args.clips, len(clips))).astype(int).tolist())
    rate = DEFAULT_FRONTEND.sample_rate
    responses = (load_impulse_responses(args.responses, rate, DEFAULT_FRONTEND.num_samples())
                 if args.responses else synthetic_impulse_responses(12, rate, seed=0))
    spec = PipelineSpec(batch_size=args.batch_size, segment_seconds=args.segment_seconds, label_mode="one_hot")
    variants = {"log-mel cache (no DIR)": training_dataset(clips, spec, TrainingOptions(seed=0)),
                f"waveform cache + DIR p={args.prob:g}": training_dataset(
                    clips, spec, TrainingOptions(seed=0, devices=DeviceAugment(responses, args.prob)))}
    for ds in variants.values():
        _pass_seconds(ds)  # fills the cache
    times = {name: [] for name in variants}
    for _ in range(args.repeats):  # interleaved, so that load from other processes hits both alike
        for name, ds in variants.items():
            times[name].append(_pass_seconds(ds))
    clip_samples = DEFAULT_FRONTEND.num_samples()
    frames = DEFAULT_FRONTEND.num_frames(args.segment_seconds)
    n_seg = int(round(DEFAULT_FRONTEND.clip_seconds / args.segment_seconds))
    cache_mb = {list(variants)[0]: len(clips) * n_seg * DEFAULT_FRONTEND.n_mels * frames * 4 / 1e6,
                list(variants)[1]: len(clips) * clip_samples * 4 / 1e6}
    print(f"{len(clips)} clips of {clips.name}, {len(responses)} responses (longest {responses.max_length} samples), "
          f"{args.segment_seconds:g}-s segments, batch {args.batch_size}, {args.repeats} timed epochs each, "
          f"TensorFlow {tf.__version__}, {len(tf.config.list_physical_devices('GPU'))} GPU(s), "
          f"{os.cpu_count()} CPU(s)")
    print(f"| pipeline | median s / epoch | min | max | clips / s | cache MB |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, t in times.items():
        med = statistics.median(t)
        print(f"| {name} | {med:.3f} | {min(t):.3f} | {max(t):.3f} | {len(clips) / med:.1f} | {cache_mb[name]:.1f} |")
    base, dir_ = (statistics.median(t) for t in times.values())
    print(f"DIR costs {dir_ - base:.3f} s per epoch more ({(dir_ - base) / len(clips) * 1000:.1f} ms per clip), "
          f"x{dir_ / base:.1f} the cached pipeline")
    return 0


if __name__ == "__main__":
    sys.exit(main())
