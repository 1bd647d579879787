#!/usr/bin/env python
"""Evaluate a .keras or .tflite model on a labelled DCASE split (or path,label CSV).

    python tools/evaluate.py --model runs/small/best.keras --data ../shared/data/tut17-dev
    python tools/evaluate.py --model bundle/model_int8.tflite --labels runs/small/labels.json \\
        --data ../shared/data/tut17-dev --out eval_int8

Prints the Markdown report; --out writes metrics.json, metrics.md and confusion.png.
A model shorter than the clips (1-s segments) is evaluated per clip by averaging
its segment probabilities.
"""

import argparse
import os
import sys
from pathlib import Path

from keras_dssdn.data.datasets import read_csv, read_dcase
from keras_dssdn.inference.evaluate import evaluate_model, load_classifier, write_reports
from keras_dssdn.layers.frontend import NormalizationStats
from keras_dssdn.layers.labels import LabelVocabulary
from keras_dssdn.analysis.metrics import markdown_report
from keras_dssdn.params import FrontEndParams


def _beside(model: Path, name: str):
    for folder in (model.parent, model.parent.parent):
        if (folder / name).is_file():
            return folder / name
    return None


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help=".keras or .tflite file")
    p.add_argument("--data", required=True, help="DCASE dataset folder or path,label CSV")
    p.add_argument("--split", default="evaluate")
    p.add_argument("--fold", type=int, default=1)
    p.add_argument("--labels", help="labels.json (default: in the model, or beside it)")
    p.add_argument("--normalization", help="normalization.json, for a .tflite that expects normalised input")
    p.add_argument("--frontend", help="frontend.json (default: beside the model, else the package default)")
    p.add_argument("--clip-seconds", type=float)
    p.add_argument("--segment-seconds", type=float)
    p.add_argument("--skip-missing", action="store_true")
    p.add_argument("--out", help="folder for metrics.json / metrics.md / confusion.png")
    args = p.parse_args(argv)
    model_path = Path(args.model)
    try:
        stats = NormalizationStats.load(args.normalization) if args.normalization else None
        model = load_classifier(model_path, normalization=stats)
        labels = args.labels or _beside(model_path, "labels.json")
        vocab = LabelVocabulary.load(labels) if labels else None
        fe_path = args.frontend or _beside(model_path, "frontend.json")
        frontend = FrontEndParams.from_dict(__import__("json").loads(Path(fe_path).read_text())) if fe_path else None
        if os.path.isdir(args.data):
            clips = read_dcase(args.data, split=args.split, fold=args.fold, skip_missing=args.skip_missing)
        else:
            clips = read_csv(args.data, skip_missing=args.skip_missing)
        metrics = evaluate_model(model, clips, vocabulary=vocab, frontend=frontend, clip_seconds=args.clip_seconds,
                                 segment_seconds=args.segment_seconds)
    except (ValueError, FileNotFoundError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    title = f"{model_path.name} on {clips.name}"
    print(markdown_report(metrics, title))
    if args.out:
        write_reports(metrics, args.out, title)
        print(f"wrote {args.out}/metrics.json, metrics.md, confusion.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
