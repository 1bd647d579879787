#!/usr/bin/env python
"""Train a DSSDN size (or the DCASE baseline) into a run folder.

    python tools/train.py --config small data=../shared/data/tut17-dev
    python tools/train.py --config configs/my.yaml epochs=30 augment.mixup_alpha=0.2 name=my-run
    python tools/train.py --config small data=... name=my-run --resume      # continue a killed run
    python tools/train.py --config small model=best_config.json data=...    # a tuned architecture
    python tools/train.py --config small data=... --strategy mirrored       # all local GPUs (docs/scaling.md)
    python tools/train.py --config small data=... --strategy mirrored --cpu-devices 2   # 2 CPU replicas
    # several machines (docs/scaling.md): on each one, with its own task index
    TF_CONFIG='{"cluster": {"worker": ["host1:2222", "host2:2222"]}, "task": {"type": "worker", "index": 0}}' python tools/train.py --config small data=... name=run --strategy multiworker

--config is a YAML/JSON file or one of the packaged configs (small, middle,
large, dcase_small_1s, baseline). Any config key can be overridden as
key=value (dotted keys reach into augment.* and frontend.*); --list-keys
prints them. With --strategy, batch_size is per replica and the learning rate
is scaled by lr_scaling (linear by default): docs/scaling.md.
"""

import argparse
import dataclasses
import sys

from keras_dssdn.train.distribute import CPU_DEVICES_ENV, STRATEGIES, DistributeError, configure_cpu_devices
from keras_dssdn.errors import ConfigError, ResumeError
from keras_dssdn.train import CONFIG_DIR, TrainConfig, load_train_config, train


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="small", help=f"config file or packaged name ({', '.join(sorted(c.stem for c in CONFIG_DIR.glob('*.yaml')))})")
    p.add_argument("--resume", action="store_true", help="continue the run folder out_dir/name from its last checkpoint")
    p.add_argument("--list-keys", action="store_true", help="print the config keys and defaults, then exit")
    p.add_argument("--strategy", choices=STRATEGIES, default=None,
                   help="tf.distribute strategy (same as strategy=...): default (one device), mirrored (all local "
                        "GPUs, or --cpu-devices CPU replicas), multiworker (the cluster in TF_CONFIG)")
    p.add_argument("--cpu-devices", type=int, default=None, metavar="N",
                   help=f"split the CPU into N logical devices at start (mirrored without GPU; env {CPU_DEVICES_ENV})")
    p.add_argument("overrides", nargs="*", metavar="key=value")
    args = p.parse_args(argv)
    if args.list_keys:
        for f in dataclasses.fields(TrainConfig):
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            print(f"{f.name} = {default!r}")
        return 0
    try:
        if args.cpu_devices:  # before TensorFlow initialises its devices
            configure_cpu_devices(args.cpu_devices)
        overrides = list(args.overrides) + ([f"strategy={args.strategy}"] if args.strategy else [])
        cfg = load_train_config(args.config, overrides)
        if args.resume and not cfg.name:
            raise ConfigError("--resume needs name=<run name> (the run folder is out_dir/name).")
        result = train(cfg, resume=args.resume)
    except (ConfigError, ResumeError, FileExistsError, FileNotFoundError, DistributeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    m = result.metrics
    if not result.chief:
        print(f"worker done: {result.epochs_run} epochs, {result.seconds_per_epoch:.1f} s per epoch (median); "
              f"the chief writes {result.run_dir}")
    if m:
        print(f"\n{result.run_dir}: best epoch {result.best_epoch}/{result.epochs_run}, accuracy {100 * m['accuracy']:.2f} %, "
              f"macro class-wise accuracy {100 * m['macro_class_accuracy']:.2f} %, log loss {m['log_loss']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
