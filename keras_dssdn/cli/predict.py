"""dssdn-predict: classify audio files or folders with a .keras / .tflite model, a run folder or an export bundle.

    dssdn-predict --model runs/small/best.keras ../shared/data/tau18-format/audio/
    dssdn-predict --model bundle/ recording.flac --hop 5 --top-k 3 --windows
    dssdn-predict --model runs/small clips/ --format json --out predictions.json

WAV (16/24-bit PCM, 32-bit float) and FLAC, any sample rate (resampled), mono
or stereo (down-mixed). Recordings longer than the model's input are cut into
windows (hop = window unless --hop) whose probabilities are averaged; --windows
also prints every window. An unreadable file is reported on its own row and
does not stop the others; the exit status is 1 if any file failed.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import sys

from keras_dssdn.cli.common import run_command


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


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dssdn-predict", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help=".keras, .tflite, run folder or bundle folder")
    p.add_argument("inputs", nargs="+", help="audio files and/or folders (searched recursively)")
    p.add_argument("--top-k", type=int, default=3)
    p.add_argument("--hop", type=float, help="seconds between window starts (default: the window length)")
    p.add_argument("--windows", action="store_true", help="table: also print every window")
    p.add_argument("--format", choices=("table", "csv", "json"), default="table")
    p.add_argument("--out", help="write to this file instead of standard output")
    p.add_argument("--device", help="recording device of the files ('auto': the last '-' field of each file name, "
                                    "TAU 2020's naming); chooses the run's fine-tuned model for it (dssdn-finetune)")
    return p


def _render(args, predictor, results) -> str:
    if args.format == "json":
        return json.dumps({"model": predictor.source, "window_seconds": predictor.window_seconds,
                           "class_names": predictor.class_names, "results": results}, indent=2) + "\n"
    if args.format == "csv":
        return _csv(results, args.top_k)
    return (f"model {predictor.source}: {len(predictor.class_names)} classes, "
            f"{predictor.window_seconds:.2f}-s windows\n" + _table(results, args.top_k, args.windows))


def main(argv=None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    if args.top_k < 1 or (args.hop is not None and not args.hop > 0):
        p.error(f"--top-k must be >= 1 and --hop > 0 (got {args.top_k}, {args.hop}).")

    def body() -> int:
        from keras_dssdn.errors import ConfigError
        from keras_dssdn.fileio import write_text_atomic
        from keras_dssdn.inference.predict import load_predictor, predict_files

        if args.out:
            from keras_dssdn.fileio import check_output

            check_output(args.out, [("--model", args.model)] + [("file", i) for i in args.inputs])
        predictor = load_predictor(args.model)
        results = predict_files(predictor, args.inputs, hop_seconds=args.hop, k=args.top_k, device=args.device)
        if not results:
            raise ConfigError("no audio files (.wav, .flac) found in " + ", ".join(args.inputs))
        text = _render(args, predictor, results)
        if args.out:
            write_text_atomic(args.out, text)
        else:
            sys.stdout.write(text)
        failed = [r for r in results if "error" in r]
        if failed:
            print(f"{len(failed)} of {len(results)} files could not be classified.", file=sys.stderr)
        return 1 if failed else 0

    return run_command(body)

if __name__ == "__main__":
    sys.exit(main())
