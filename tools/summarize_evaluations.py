#!/usr/bin/env python
"""Mean and spread over seeds of dssdn-evaluate results (metrics.json), per group of runs and per device.

    python tools/summarize_evaluations.py nodir=/work/devices/eval/nodir-seed* dir=/work/devices/eval/dir-seed*

Each argument is ``name=folder`` (a glob pattern, quoted or not, names several folders, each holding a metrics.json
written by ``dssdn-evaluate --out`` or by training). Prints a Markdown table of accuracy, macro class-wise
accuracy and log loss (mean +- standard deviation over the folders, per clip) and the device-wise accuracy
(mean +- std over the folders, with the clips per device).
"""

from __future__ import annotations

import glob
import json
import sys
from pathlib import Path

import numpy as np


def _groups(argv):
    groups, name = {}, None
    for arg in argv:
        if "=" in arg:
            name, arg = arg.split("=", 1)
        if name is None:
            raise SystemExit(f"error: {arg!r} comes before any name=; write name=folder ...")
        groups.setdefault(name, []).extend(Path(p) for p in (sorted(glob.glob(arg)) or [arg]))
    return groups


def _mean_std(values, digits: int = 1) -> str:
    """``mean ± sample std`` (``-`` for no values)."""
    v = np.asarray(values, float)
    if not len(v):
        return "-"
    return f"{v.mean():.{digits}f} ± {v.std(ddof=1) if len(v) > 1 else 0.0:.{digits}f}"


def main(argv=None) -> int:
    groups = _groups(sys.argv[1:] if argv is None else argv)
    if not groups:
        print(__doc__)
        return 2
    metrics = {}
    for name, folders in groups.items():
        missing = [str(f) for f in folders if not (f / "metrics.json").is_file()]
        if missing:
            raise SystemExit(f"error: no metrics.json in {missing}")
        metrics[name] = [json.loads((f / "metrics.json").read_text()) for f in folders]
    print("| runs | seeds | accuracy % | macro class-wise % | log loss |")
    print("|---|---:|---:|---:|---:|")
    for name, ms in metrics.items():
        mac = _mean_std([100 * m["macro_class_accuracy"] for m in ms])
        print(f"| {name} | {len(ms)} | {_mean_std([100 * m['accuracy'] for m in ms])} | {mac} | "
              f"{_mean_std([m['log_loss'] for m in ms], 3)} |")
    devices = sorted({d for ms in metrics.values() for m in ms for d in m.get("device", {})})
    if devices:
        print()
        print("| device | clips | " + " | ".join(f"{n} accuracy %" for n in metrics) + " |")
        print("|---|---:|" + "---:|" * len(metrics))
        for d in devices:
            clips = next(m["device"][d]["examples"] for ms in metrics.values() for m in ms if d in m.get("device", {}))
            cells = [_mean_std([100 * m["device"][d]["accuracy"] for m in ms if d in m.get("device", {})])
                     for ms in metrics.values()]
            print(f"| {d} | {clips} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
