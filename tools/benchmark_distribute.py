#!/usr/bin/env python
"""Time per epoch: one device vs MirroredStrategy vs MultiWorkerMirroredStrategy; and a width search with one
process vs a KerasTuner chief and two workers. Every run is a fresh process (or two), as a user would start it.

    python tools/benchmark_distribute.py --out runs/bench_distribute                 # synthetic 10-s clips
    python tools/benchmark_distribute.py --data ../shared/data/tut17-dev --epochs 3 --no-tune
    python tools/benchmark_distribute.py --only mirrored multiworker --cpu-devices 2

Training (``tools/train.py``, the ``small`` recipe, ``--epochs`` epochs, the same global batch everywhere):

* ``default``: one device, ``batch_size=G``;
* ``mirrored``: ``MirroredStrategy`` over the local GPUs, or over ``--cpu-devices`` logical CPU devices
  without a GPU, ``batch_size=G/replicas``, ``lr_scaling=none``;
* ``multiworker``: two processes on loopback ports (``TF_CONFIG``), one CPU (or the local GPUs) each,
  ``batch_size=G/2``, ``lr_scaling=none``.

Reported: the first epoch (tracing, caching the decoded data), the median of the later epochs (the
steady state), the whole command's wall time, and the final evaluate accuracy / log loss. The search part
runs ``tools/tune.py`` once as one process and once through ``tools/launch_tune.sh 2``, same settings.
Writes OUT/results.json and OUT/results.md. On a machine with fewer cores than replicas the replicas share
them: the distributed runs are then slower, not faster; the point there is that they run and agree.
"""

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _env(**extra):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    for key in ("TF_CONFIG", "KERASTUNER_TUNER_ID", "KERASTUNER_ORACLE_IP", "KERASTUNER_ORACLE_PORT",
                "KERAS_DSSDN_CPU_DEVICES"):
        env.pop(key, None)
    env.update(extra)
    return env


def _run(commands, timeout):
    """Run ``(argv, env, log)`` commands at once; wall seconds and exit codes; all killed at the end."""
    procs, start = [], time.perf_counter()
    try:
        for argv, env, log in commands:
            procs.append(subprocess.Popen(argv, cwd=REPO, env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT,
                                          start_new_session=True))
        codes = []
        for p in procs:
            try:
                codes.append(p.wait(timeout=max(1.0, timeout - (time.perf_counter() - start))))
            except subprocess.TimeoutExpired:
                codes.append(None)
        return time.perf_counter() - start, codes
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()


def train_modes(args, data, out):
    from keras_dssdn.train.distribute import local_cluster

    gpus = _gpu_count()
    replicas = {"default": 1, "mirrored": gpus if gpus > 1 else args.cpu_devices, "multiworker": 2 * max(gpus, 1)}
    results = []
    for mode in args.only:
        n = replicas[mode]
        if args.global_batch % n:
            raise SystemExit(f"--global-batch {args.global_batch} is not divisible by {n} replicas ({mode})")
        base = [sys.executable, str(REPO / "tools" / "train.py"), "--config", args.config, "--strategy", mode,
                f"data={data}", f"out_dir={out}", f"name={mode}", f"epochs={args.epochs}", "verbose=2",
                f"batch_size={args.global_batch // n}", "early_stopping_patience=0", *args.overrides]
        if mode != "default":
            base.append("lr_scaling=none")
        if mode == "multiworker":
            commands = [(base, _env(TF_CONFIG=c), out / f"{mode}.{i}.log") for i, c in enumerate(local_cluster(2))]
        elif mode == "mirrored" and gpus <= 1:
            commands = [(base, _env(KERAS_DSSDN_CPU_DEVICES=str(args.cpu_devices)), out / f"{mode}.log")]
        else:
            commands = [(base, _env(), out / f"{mode}.log")]
        print(f"[{mode}] {' '.join(base[1:])}", flush=True)
        wall, codes = _run(commands, args.timeout)
        row = {"mode": mode, "replicas": n, "processes": len(commands), "wall_s": wall, "exit": codes,
               "per_replica_batch": args.global_batch // n, "global_batch": args.global_batch}
        state_path = out / mode / "checkpoint" / "state.json"
        if codes == [0] * len(codes) and state_path.is_file():
            state = json.loads(state_path.read_text())
            history = state["history"]
            seconds = [h["seconds"] for h in history]
            row.update(first_epoch_s=seconds[0],
                       later_epochs_median_s=statistics.median(seconds[1:]) if len(seconds) > 1 else None,
                       epoch_s=seconds, steps_per_epoch=state["optimizer_iterations"] // len(seconds),
                       losses=[h["loss"] for h in history], val_loss=history[-1].get("val_loss"),
                       val_accuracy=history[-1].get("val_accuracy"))
            metrics = out / mode / "metrics.json"
            if metrics.is_file():
                m = json.loads(metrics.read_text())
                row.update(accuracy=m["accuracy"], log_loss=m["log_loss"])
        results.append(row)
        print(f"[{mode}] " + json.dumps({k: v for k, v in row.items() if k != "epoch_s"}), flush=True)
    return results


def tune_modes(args, data, out):
    common = ["--size", "small", "--data", str(data), "--algorithm", "random", "--max-trials", str(args.tune_trials),
              "--epochs", "1", "--width-scale", "0.5:1", "--quiet", *args.overrides]
    results = []
    for mode, argv in (("one process", [sys.executable, str(REPO / "tools" / "tune.py"), "--out",
                                        str(out / "tune_single"), *common]),
                       ("chief + 2 workers", ["bash", str(REPO / "tools" / "launch_tune.sh"), "2", "--out",
                                              str(out / "tune_distributed"), *common])):
        log = out / f"tune_{'single' if mode == 'one process' else 'distributed'}.log"
        print(f"[tune: {mode}] {' '.join(argv[1:])}", flush=True)
        wall, codes = _run([(argv, _env(PYTHON=sys.executable), log)], args.timeout)
        folder = out / ("tune_single" if mode == "one process" else "tune_distributed")
        row = {"mode": mode, "wall_s": wall, "exit": codes}
        csv_path = folder / "trials.csv"
        if csv_path.is_file():
            import csv

            with open(csv_path) as f:
                rows = list(csv.DictReader(f))
            row.update(trials=len(rows), trained=sum(r["status"] == "feasible" for r in rows),
                       trial_seconds=[float(r["seconds"]) for r in rows if r["seconds"]])
        results.append(row)
        print(f"[tune: {mode}] " + json.dumps(row), flush=True)
    return results


def _gpu_count() -> int:
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20)
        return len([line for line in out.stdout.splitlines() if line.startswith("GPU")]) if out.returncode == 0 else 0
    except (OSError, subprocess.TimeoutExpired):
        return 0


def write_markdown(path, train_rows, tune_rows, args):
    lines = [f"# Distributed training benchmark ({os.cpu_count()} CPU cores, {_gpu_count()} GPUs)", "",
             f"`{args.config}` recipe, {args.epochs} epochs, global batch {args.global_batch}; times from "
             "`checkpoint/state.json` (an epoch includes its validation).", "",
             "| strategy | replicas | processes | batch per replica | first epoch (s) | later epochs, median (s) "
             "| wall (s) | accuracy | log loss |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in train_rows:
        fmt = lambda v, f="{:.1f}": "" if v is None else f.format(v)  # noqa: E731
        lines.append(f"| {r['mode']} | {r['replicas']} | {r['processes']} | {r['per_replica_batch']} | "
                     f"{fmt(r.get('first_epoch_s'))} | {fmt(r.get('later_epochs_median_s'))} | {r['wall_s']:.0f} | "
                     f"{fmt(r.get('accuracy'), '{:.3f}')} | {fmt(r.get('log_loss'), '{:.4f}')} |")
    if tune_rows:
        lines += ["", f"Width search: {args.tune_trials} trials of 1 epoch (random search).", "",
                  "| search | trials | trained | wall (s) | seconds per trial (median) |", "|---|---:|---:|---:|---:|"]
        for r in tune_rows:
            med = statistics.median(r["trial_seconds"]) if r.get("trial_seconds") else None
            lines.append(f"| {r['mode']} | {r.get('trials', '')} | {r.get('trained', '')} | {r['wall_s']:.0f} | "
                         f"{'' if med is None else f'{med:.1f}'} |")
    Path(path).write_text("\n".join(lines) + "\n")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/bench_distribute")
    p.add_argument("--data", default=None, help="DCASE-layout dataset (default: a synthetic one in OUT/data)")
    p.add_argument("--config", default="small")
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--global-batch", type=int, default=16)
    p.add_argument("--cpu-devices", type=int, default=2, help="mirrored without GPU: logical CPU devices")
    p.add_argument("--only", nargs="+", default=["default", "mirrored", "multiworker"],
                   choices=["default", "mirrored", "multiworker"])
    p.add_argument("--no-tune", action="store_true", help="skip the width-search part")
    p.add_argument("--tune-trials", type=int, default=4)
    p.add_argument("--timeout", type=float, default=1800, help="seconds per run; processes are killed after it")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="training-recipe overrides for every run")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = args.data
    if data is None:
        from keras_dssdn.data.synthetic import make_synthetic_dataset

        data = out / "data"
        if not (data / "meta.csv").is_file():
            make_synthetic_dataset(data, num_classes=4, seconds=10.0, train_locations=3, eval_locations=1,
                                   clips_per_location=4, devices=("a", "b", "c"), seed=3)
    for mode in args.only:
        if (out / mode).exists():
            raise SystemExit(f"{out / mode} exists: choose another --out or delete it")
    train_rows = train_modes(args, data, out)
    tune_rows = [] if args.no_tune else tune_modes(args, data, out)
    (out / "results.json").write_text(json.dumps({"train": train_rows, "tune": tune_rows, "args": vars(args)},
                                                 indent=1, default=str))
    write_markdown(out / "results.md", train_rows, tune_rows, args)
    print((out / "results.md").read_text())
    return 0 if all(r["exit"] == [0] * r["processes"] for r in train_rows) else 1


if __name__ == "__main__":
    sys.exit(main())
