#!/usr/bin/env python
"""Real-data benchmark: each DSSDN size and the DCASE 2020 baseline CNN on TUT 2017 fold 1.

    python tools/benchmark_tut17.py --data ../shared/data/tut17-dev --out runs/bench --epochs 40

Trains every model with tools/train.py's library function on fold1_train
(252 clips, 15 classes) and evaluates the best epoch on fold1_evaluate (141
clips; recording locations disjoint from training), then prints a Markdown
table: accuracy, macro class-wise accuracy, log loss, parameters, MACs per
10-s clip, median seconds per training epoch (incl. evaluation) on this
machine. Re-running skips finished runs and resumes killed ones.
"""

import argparse
import json
import sys
from pathlib import Path

import keras

from keras_dssdn.analysis.complexity import profile
from keras_dssdn.train import load_train_config, train

MODELS = ("small", "middle", "large", "baseline")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="../shared/data/tut17-dev")
    p.add_argument("--out", default="runs/bench_tut17")
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    p.add_argument("overrides", nargs="*", metavar="key=value", help="applied to every model's config")
    args = p.parse_args(argv)
    rows = []
    for name in args.models:
        run = Path(args.out) / name
        if not (run / "metrics.json").is_file():
            cfg = load_train_config(name, [f"data={args.data}", f"epochs={args.epochs}", f"out_dir={args.out}",
                                           f"name={name}", "verbose=2", *args.overrides])
            train(cfg, resume=(run / "checkpoint" / "state.json").is_file())
        metrics = json.loads((run / "metrics.json").read_text())
        best = keras.models.load_model(run / "best.keras", compile=False)
        net = next(layer for layer in best.layers if isinstance(layer, keras.Model))
        cx = profile(net)
        t = metrics["training"]
        rows.append(f"| {net.name} | {100 * metrics['accuracy']:.1f} | {100 * metrics['macro_class_accuracy']:.1f} | "
                    f"{metrics['log_loss']:.3f} | {cx.params:,} | {cx.macs / 1e6:.1f} M | "
                    f"{t['median_seconds_per_epoch']:.1f} | {t['best_epoch']}/{t['epochs_run']} |")
        print(rows[-1], flush=True)
    print("\n| model | accuracy % | macro class-wise accuracy % | log loss | params | MACs / 10 s | s / epoch | best / run epochs |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
