#!/usr/bin/env python
"""Classify audio files or folders with a .keras / .tflite model, a run folder or an export bundle.

    python tools/predict.py --model runs/small/best.keras ../shared/data/tau18-format/audio/
    python tools/predict.py --model bundle/ recording.flac --hop 5 --top-k 3 --windows
    python tools/predict.py --model runs/small clips/ --format json --out predictions.json

WAV (16/24-bit PCM, 32-bit float) and FLAC, any sample rate (resampled), mono
or stereo (down-mixed). Recordings longer than the model's input are cut into
windows (hop = window unless --hop) whose probabilities are averaged; --windows
also prints every window. An unreadable file is reported on its own row and
does not stop the others; the exit status is 1 if any file failed.
"""

import argparse
import csv
import io
import json
import os
import sys

from keras_dssdn.inference.predict import load_predictor, predict_files


def _table(results, k, windows):
    lines = []
    width = max([len(os.path.basename(r["file"])) for r in results] + [4])
    head = f"{'file':<{width}}  {'seconds':>7}  " + "  ".join(f"top-{i + 1:<27}" for i in range(k))
    lines += [head, "-" * len(head)]
    for r in results:
        name = os.path.basename(r["file"])
        if "error" in r:
            lines.append(f"{name:<{width}}  ERROR {r['error']}")
            continue
        tops = "  ".join(f"{t['label'][:20]:<20} {t['probability']:6.3f}" for t in r["top"])
        lines.append(f"{name:<{width}}  {r['seconds']:7.2f}  {tops}" + ("  (zero-padded)" if r["padded"] else ""))
        if windows:
            for w in r["windows"]:
                tops = "  ".join(f"{t['label'][:20]:<20} {t['probability']:6.3f}" for t in w["top"])
                lines.append(f"{'':<{width}}  {w['start']:6.2f}-{w['end']:.2f}s  {tops}")
    return "\n".join(lines) + "\n"


def _csv(results, k):
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["file", "window", "start_s", "end_s"] + [f"{x}{i + 1}" for i in range(k) for x in ("label", "prob")] + ["error"])
    for r in results:
        if "error" in r:
            w.writerow([r["file"], "", "", ""] + [""] * (2 * k) + [r["error"]])
            continue
        rows = [("all", 0.0, r["seconds"], r["top"])] + [(x["index"], x["start"], x["end"], x["top"]) for x in r["windows"]]
        for idx, s, e, top in rows:
            w.writerow([r["file"], idx, f"{s:.3f}", f"{e:.3f}"]
                       + [v for t in top for v in (t["label"], f"{t['probability']:.6f}")] + [""])
    return buf.getvalue()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help=".keras, .tflite, run folder or bundle folder")
    p.add_argument("inputs", nargs="+", help="audio files and/or folders (searched recursively)")
    p.add_argument("--top-k", type=int, default=3)
    p.add_argument("--hop", type=float, help="seconds between window starts (default: the window length)")
    p.add_argument("--windows", action="store_true", help="table: also print every window")
    p.add_argument("--format", choices=("table", "csv", "json"), default="table")
    p.add_argument("--out", help="write to this file instead of standard output")
    args = p.parse_args(argv)
    try:
        predictor = load_predictor(args.model)
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    results = predict_files(predictor, args.inputs, hop_seconds=args.hop, k=args.top_k)
    if not results:
        print("error: no audio files (.wav, .flac) found in " + ", ".join(args.inputs), file=sys.stderr)
        return 2
    if args.format == "json":
        text = json.dumps({"model": predictor.source, "window_seconds": predictor.window_seconds,
                           "class_names": predictor.class_names, "results": results}, indent=2) + "\n"
    elif args.format == "csv":
        text = _csv(results, args.top_k)
    else:
        text = (f"model {predictor.source}: {len(predictor.class_names)} classes, "
                f"{predictor.window_seconds:.2f}-s windows\n" + _table(results, args.top_k, args.windows))
    if args.out:
        tmp = args.out + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, args.out)
    else:
        sys.stdout.write(text)
    failed = [r for r in results if "error" in r]
    if failed:
        print(f"{len(failed)} of {len(results)} files could not be classified.", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
