"""dssdn-train: train a DSSDN size (or the DCASE baseline) into a run folder.

    dssdn-train --config small data=../shared/data/tut17-dev
    dssdn-train --config configs/my.yaml epochs=30 augment.mixup_alpha=0.2 name=my-run
    dssdn-train name=my-run --resume                         # continue a killed run, as it was configured
    dssdn-train --config small model=best_config.json data=...    # a tuned architecture
    dssdn-train --config small data=... --strategy mirrored       # all local GPUs (docs/scaling.md)
    dssdn-train --config small data=... --strategy mirrored --cpu-devices 2   # 2 CPU replicas
    # several machines (docs/scaling.md): on each one, with its own task index
    TF_CONFIG='{"cluster": {"worker": ["host1:2222", "host2:2222"]}, "task": {"type": "worker", "index": 0}}' \\
        dssdn-train --config small data=... name=run --strategy multiworker

--config is a YAML/JSON file or one of the packaged configs (small, middle,
large, dcase_small_1s, dcase_mcu_1s, baseline). Any config key can be overridden as
key=value (dotted keys reach into augment.* and frontend.*); --list-keys
prints them. --resume reads the run's own config.json (out_dir/name): only
verbose, strategy, cache, data and eval_data may be given again; an override
that would change the experiment is refused. With --strategy, batch_size is
per replica and the learning rate is scaled by lr_scaling (linear by
default): docs/scaling.md. Exit status: see keras_dssdn.cli.common.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from keras_dssdn.cli.common import run_command


def build_parser() -> argparse.ArgumentParser:
    from keras_dssdn.train.config import CONFIG_DIR
    from keras_dssdn.train.distribute import CPU_DEVICES_ENV, STRATEGIES

    p = argparse.ArgumentParser(prog="dssdn-train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="small", help="config file or packaged name "
                   f"({', '.join(sorted(c.stem for c in CONFIG_DIR.glob('*.yaml')))}); ignored with --resume")
    p.add_argument("--resume", action="store_true", help="continue the run folder out_dir/name from its last checkpoint")
    p.add_argument("--list-keys", action="store_true", help="print the config keys and defaults, then exit")
    p.add_argument("--strategy", choices=STRATEGIES, default=None,
                   help="tf.distribute strategy (same as strategy=...): default (one device), mirrored (all local "
                        "GPUs, or --cpu-devices CPU replicas), multiworker (the cluster in TF_CONFIG)")
    p.add_argument("--cpu-devices", type=int, default=None, metavar="N",
                   help=f"split the CPU into N logical devices at start (mirrored without GPU; env {CPU_DEVICES_ENV})")
    p.add_argument("overrides", nargs="*", metavar="key=value")
    return p


def list_keys() -> int:
    from keras_dssdn.train.config import TrainConfig

    for f in dataclasses.fields(TrainConfig):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        print(f"{f.name} = {default!r}")
    return 0


def resolve_config(args):
    """The TrainConfig to run: the packaged/ file config plus overrides, or (``--resume``) the run's own."""
    from keras_dssdn.errors import ConfigError
    from keras_dssdn.runs import RunFolder
    from keras_dssdn.train.config import apply_overrides, load_train_config, resume_train_config

    overrides = list(args.overrides) + ([f"strategy={args.strategy}"] if args.strategy else [])
    if not args.resume:
        return load_train_config(args.config, overrides)
    given = apply_overrides({}, overrides)
    if not given.get("name"):
        raise ConfigError("--resume needs name=<run name> (the run folder is out_dir/name).")
    run = RunFolder(Path(given.get("out_dir") or "runs") / str(given["name"]))
    if not run.exists:
        from keras_dssdn.errors import ResumeError

        raise ResumeError(f"{run.path}: not a run folder (no config.json); check out_dir= and name=.")
    return resume_train_config(run.config(), overrides)


def report(result) -> None:
    m = result.metrics
    if not result.chief:
        print(f"worker done: {result.epochs_run} epochs, {result.seconds_per_epoch:.1f} s per epoch (median); "
              f"the chief writes {result.run_dir}")
    if m:
        print(f"\n{result.run_dir}: best epoch {result.best_epoch}/{result.epochs_run}, accuracy "
              f"{100 * m['accuracy']:.2f} %, macro class-wise accuracy {100 * m['macro_class_accuracy']:.2f} %, "
              f"log loss {m['log_loss']:.4f}")


def _check_out_dir(cfg) -> None:
    """out_dir= must not lie under a regular file, be a file, or be / hold the data it trains on
    (:func:`keras_dssdn.fileio.check_output`), named as the user gave it."""
    from keras_dssdn.fileio import check_output

    inputs = [("data=", cfg.data), ("eval_data=", getattr(cfg, "eval_data", None))]
    check_output(cfg.out_dir, what="out_dir=", folder=True)
    if cfg.name:
        check_output(Path(cfg.out_dir) / cfg.name, inputs, what="out_dir=/name=", folder=True)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.list_keys:
        return list_keys()

    def body() -> int:
        from keras_dssdn.train import train
        from keras_dssdn.train.distribute import configure_cpu_devices

        if args.cpu_devices:  # before TensorFlow initialises its devices
            configure_cpu_devices(args.cpu_devices)
        cfg = resolve_config(args)
        _check_out_dir(cfg)
        report(train(cfg, resume=args.resume))
        return 0

    return run_command(body)


if __name__ == "__main__":
    sys.exit(main())
