"""dssdn-evaluate: evaluate a .keras or .tflite model (or a run folder) on a labelled DCASE split or CSV.

    dssdn-evaluate --model runs/small --data ../shared/data/tut17-dev
    dssdn-evaluate --model runs/small/best.keras --data ../shared/data/tut17-dev --out eval/
    dssdn-evaluate --model bundle/ --data ../shared/data/tut17-dev --out eval_int8   # the bundle's int8 model

A bundle (the folder or its model_int8.tflite) is checked against its manifest.json first and evaluated with its
own frontend.json (front end, normalisation, class names).

A model inside a run folder (the folder, its best.keras or checkpoint/last.keras) is evaluated with the run's
own front end, clip length, segment length and class names (keras_dssdn.runs); options given here win.
Prints the Markdown report; --out writes metrics.json, metrics.md and confusion.png. A model shorter than
the clips (1-s segments) is evaluated per clip by averaging its segment probabilities.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from keras_dssdn.cli.common import run_command


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dssdn-evaluate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help=".keras or .tflite file, a run folder or an export bundle")
    p.add_argument("--data", required=True, help="DCASE dataset folder or path,label CSV")
    p.add_argument("--split", default="evaluate")
    p.add_argument("--fold", type=int, default=1)
    p.add_argument("--labels", help="labels.json (default: in the model, or the run's)")
    p.add_argument("--normalization", help="normalization.json, for a .tflite that expects normalised input")
    p.add_argument("--frontend", help="frontend.json (default: the run's, else the package default)")
    p.add_argument("--clip-seconds", type=float, help="default: the run's clip_seconds")
    p.add_argument("--segment-seconds", type=float, help="default: the run's segment_seconds, or the model's input")
    p.add_argument("--skip-missing", action="store_true")
    p.add_argument("--out", help="folder for metrics.json / metrics.md / confusion.png")
    p.add_argument("--device", help="the recording device of every clip (default: the metadata's source_label); "
                                    "chooses the run's fine-tuned model for it (dssdn-finetune)")
    p.add_argument("--general-only", action="store_true", help="ignore the run's fine-tuned device models")
    return p


def _settings(args):
    """``(model path, vocabulary, frontend, normalization, clip_seconds, segment_seconds)`` from the options and,
    where they are silent, from the run folder the model belongs to."""
    from keras_dssdn.fileio import read_json
    from keras_dssdn.layers.frontend import NormalizationStats
    from keras_dssdn.layers.labels import LabelVocabulary
    from keras_dssdn.params import FrontEndParams
    from keras_dssdn.runs import find_run

    path = Path(args.model)
    if not path.exists():
        raise FileNotFoundError(f"Model not found: {path}")
    bundle = _bundle_of(path)
    if bundle is not None:  # an export bundle (or its .tflite): its frontend.json, once its manifest checks out
        from keras_dssdn.inference.predict import read_bundle_settings

        b = read_bundle_settings(bundle)
        path = path / "model_int8.tflite" if path.is_dir() else path
        return _bundle_settings(args, path, b)
    run = find_run(path)
    model_path = run.model_path() if path.is_dir() and run else path
    vocab = LabelVocabulary.load(args.labels) if args.labels else (run.vocabulary() if run else None)
    frontend = (FrontEndParams.from_dict(read_json(args.frontend, "front-end file", "give the frontend.json of a "
                                                   "run or bundle")) if args.frontend
                else run.frontend() if run else None)
    stats = NormalizationStats.load(args.normalization) if args.normalization else None
    clip = args.clip_seconds or (run.clip_seconds() if run else None)
    segment = args.segment_seconds or (run.segment_seconds() if run else None)
    return model_path, vocab, frontend, stats, clip, segment


def _bundle_of(path: Path):
    """The export bundle folder ``path`` is, or whose ``.tflite`` it is, else None
    (:func:`keras_dssdn.manifest.bundle_folder`)."""
    from keras_dssdn.manifest import bundle_folder

    return bundle_folder(path) if path.is_dir() or path.suffix == ".tflite" else None


def _bundle_settings(args, model_path: Path, b):
    """:func:`_settings` for a bundle's model: front end, normalisation and class names from its frontend.json;
    options given here win."""
    from keras_dssdn.fileio import read_json
    from keras_dssdn.layers.frontend import NormalizationStats
    from keras_dssdn.layers.labels import LabelVocabulary
    from keras_dssdn.params import FrontEndParams

    vocab = LabelVocabulary.load(args.labels) if args.labels else LabelVocabulary(list(b.class_names))
    stats = NormalizationStats.load(args.normalization) if args.normalization else b.normalization
    frontend = (FrontEndParams.from_dict(read_json(args.frontend, "front-end file", "give the frontend.json of a "
                                                   "run or bundle")) if args.frontend else b.params)
    return model_path, vocab, frontend, stats, args.clip_seconds, args.segment_seconds


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)

    def body() -> int:
        from keras_dssdn.analysis.metrics import markdown_report
        from keras_dssdn.data.datasets import read_clips
        from keras_dssdn.inference.evaluate import evaluate_model, load_classifier, write_reports

        model_path, vocab, frontend, stats, clip, segment = _settings(args)
        if args.out:
            from keras_dssdn.manifest import bundle_folder
            from keras_dssdn.fileio import check_output
            from keras_dssdn.runs import find_run

            run = find_run(model_path)
            home = run.path if run else bundle_folder(model_path)  # metrics.json there would replace the run's
            check_output(args.out, [("--model", args.model), ("--model's run or bundle folder", home),
                                    ("--data", args.data)], folder=True, replaces=False)
        from keras_dssdn.inference.device_models import load_device_models
        from keras_dssdn.runs import find_run

        run = find_run(model_path) if model_path.name == "best.keras" else None
        routed = load_device_models(run) if run is not None and not args.general_only else None
        if routed is not None:
            print(f"device models of {run.path}: {sorted(routed.by_device)} (general model for other devices)")
        model = routed or load_classifier(model_path, normalization=stats)
        clips = read_clips(args.data, split=args.split, fold=args.fold, skip_missing=args.skip_missing)
        metrics = evaluate_model(model, clips, vocabulary=vocab, frontend=frontend, clip_seconds=clip,
                                 segment_seconds=segment, device=args.device)
        title = f"{model_path.name} on {clips.name}"
        print(markdown_report(metrics, title))
        if args.out:
            write_reports(metrics, args.out, title)
            print(f"wrote {args.out}/metrics.json, metrics.md, confusion.png")
        return 0

    return run_command(body)


if __name__ == "__main__":
    sys.exit(main())
