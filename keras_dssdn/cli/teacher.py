"""dssdn-teacher: teacher logits keyed by clip, for knowledge distillation (docs/distillation.md).

    # an ensemble of trained runs over the training split, per 1-s segment (the DCASE student's examples)
    dssdn-teacher run runs/teacher/seed0 runs/teacher/seed1 runs/teacher/seed2 \\
        --data ../shared/data/tut17-dev --split train --segment-seconds 1 --out kd/teachers_train.npz
    # per whole clip (a 10-s student); a 1-s teacher is run on each second and its probabilities averaged
    dssdn-teacher run 'runs/teacher/seed*' --data ... --split train --segment-seconds clip --out kd/clip.npz
    dssdn-teacher run ... --split evaluate --out kd/eval.npz    # prints each teacher's and the ensemble's accuracy
    dssdn-teacher show kd/teachers_train.npz                    # what a file holds; accuracy, certainty if labelled
    dssdn-teacher show kd/large_eval.npz kd/middle_eval.npz     # two files' members as one ensemble
    dssdn-teacher export kd/teachers_train.npz kd/teachers.csv  # CSV: clip,segment,<class names...>
    dssdn-teacher import passt.csv --data ... --split train --segment-seconds 1 --out kd/passt.npz
    # out-of-fold: each part of the training split scored by a teacher trained on the other parts
    dssdn-teacher join kd/part0.npz kd/part1.npz kd/part2.npz --out kd/oof_train.npz
    dssdn-teacher join kd/fold*.npz --data ../shared/data/tut17-dev --split all --out kd/oof_all.npz  # checked

Then: dssdn-train --config small data=... teacher=kd/teachers_train.npz kd_temperature=2 kd_weight=0.5

Teachers are run folders, .keras or .tflite files (glob patterns are expanded); an ensemble's logits are the
mean of its members' logits (log-probabilities). Exit status: see keras_dssdn.cli.common.
"""

from __future__ import annotations

import argparse
import sys

from keras_dssdn.cli.common import run_command


def _seconds(text: str):
    """``clip`` / ``none`` -> None (whole clips), else a positive number of seconds."""
    if text == "auto":
        return text
    if text.lower() in ("clip", "none", "null"):
        return None
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds or 'clip', got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"seconds must be > 0, got {text!r}")
    return value


def _data_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="DCASE dataset folder or path,label CSV")
    p.add_argument("--split", default="train", help="train, evaluate, test or all (default train)")
    p.add_argument("--fold", type=int, default=1)
    p.add_argument("--skip-missing", action="store_true")
    p.add_argument("--clip-seconds", type=float, default=None, help="crop / pad length (default: the teacher's "
                   "front end's, 10 s)")
    p.add_argument("--out", required=True, help="the .npz file to write")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dssdn-teacher", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run teachers over a split and write their logits")
    run.add_argument("teachers", nargs="+", help="run folders, .keras or .tflite files, glob patterns")
    _data_options(run)
    run.add_argument("--segment-seconds", type=_seconds, default="auto",
                     help="length of the keyed segments: seconds, or 'clip' for whole clips (default: the first "
                          "teacher's input length)")
    run.add_argument("--batch-size", type=int, default=64)
    show = sub.add_parser("show", help="describe a logits file (several: their members as one ensemble); "
                                       "accuracies when its clips are labelled")
    show.add_argument("file", nargs="+")
    export = sub.add_parser("export", help="write a logits file as CSV (clip,segment,<classes>)")
    export.add_argument("file")
    export.add_argument("csv")
    join = sub.add_parser("join", help="one file from files over disjoint clips (e.g. out-of-fold parts)")
    join.add_argument("file", nargs="+")
    join.add_argument("--out", required=True, help="the .npz file to write")
    join.add_argument("--data", default=None, help="check that the joined file covers this dataset's --split "
                      "(e.g. --split all for out-of-fold logits over every clip); refused, naming the missing "
                      "clips, when it does not")
    join.add_argument("--split", default="all", help="with --data: train, evaluate or all (default all)")
    join.add_argument("--fold", type=int, default=1)
    imp = sub.add_parser("import", help="a logits file from a CSV made elsewhere (clip,segment,<classes>)")
    imp.add_argument("csv")
    _data_options(imp)
    imp.add_argument("--segment-seconds", type=_seconds, required=True,
                     help="the segment length the CSV's segment index counts in, or 'clip'")
    imp.add_argument("--classes", nargs="+", default=None, help="class order to store (default: the CSV's)")
    imp.add_argument("--model-name", default="", help="name of the model that made the logits")
    return p


def print_summary(logits) -> None:
    print(logits.describe())
    for m in logits.models:
        print(f"  member {m.get('name')}: {m.get('source')} ({m.get('kind')})")
    acc = logits.accuracies()
    if acc:
        print("accuracy against the clips' labels (clip = mean of segment probabilities):")
        for name, a in acc.items():
            print(f"  {name:>34s}: clip {100 * a['clip']:.2f} %, segment {100 * a['segment']:.2f} %")
        sure = logits.certainty()
        print("ensemble's mean probability of the labelled class (per segment), the student's targets at T: "
              + ", ".join(f"T = {t:g}: {p:.3f}" for t, p in sure.items()))


def _run(args) -> int:
    from keras_dssdn.data.datasets import read_clips
    from keras_dssdn.distill.teacher import expand_sources, load_teacher, write_logits

    teachers = [load_teacher(s) for s in expand_sources(args.teachers)]
    segment = args.segment_seconds
    if segment == "auto":
        clip = args.clip_seconds or teachers[0].frontend.clip_seconds
        segment = teachers[0].input_seconds if teachers[0].input_seconds < clip else None
    clips = read_clips(args.data, split=args.split, fold=args.fold, skip_missing=args.skip_missing)
    logits = write_logits(teachers, clips, clip_seconds=args.clip_seconds, segment_seconds=segment,
                          batch_size=args.batch_size, verbose=True)
    logits.save(args.out)
    print(f"wrote {args.out}")
    print_summary(logits)
    return 0


def _import(args) -> int:
    from keras_dssdn.data.datasets import read_clips
    from keras_dssdn.distill.logits import import_csv
    from keras_dssdn.params import DEFAULT_FRONTEND

    clips = read_clips(args.data, split=args.split, fold=args.fold, skip_missing=args.skip_missing)
    logits = import_csv(args.csv, clips, clip_seconds=args.clip_seconds or DEFAULT_FRONTEND.clip_seconds,
                        segment_seconds=args.segment_seconds, model_name=args.model_name, classes=args.classes)
    logits.save(args.out)
    print(f"wrote {args.out}")
    print_summary(logits)
    return 0


def _check_outputs(args) -> None:
    """The file a subcommand writes is none of its inputs, and replaces only a file of its own kind."""
    from keras_dssdn.fileio import check_output

    inputs = [("teacher", t) for t in getattr(args, "teachers", [])] + [("file", f) for f in
                                                                        _as_list(getattr(args, "file", None))]
    inputs += [("--data", getattr(args, "data", None)), ("csv", getattr(args, "csv", None) if args.command == "import"
                                                         else None)]
    if getattr(args, "out", None):
        check_output(args.out, inputs, suffixes=(".npz",))
    if args.command == "export":
        check_output(args.csv, inputs, what="csv", suffixes=(".csv", ".txt", ""))


def _as_list(value):
    return [] if value is None else list(value) if isinstance(value, (list, tuple)) else [value]


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)

    def body() -> int:
        from keras_dssdn.distill.logits import TeacherLogits

        _check_outputs(args)
        if args.command == "run":
            return _run(args)
        if args.command == "import":
            return _import(args)
        if args.command == "join":
            first, *others = [TeacherLogits.load(f) for f in args.file]
            joined = first.joined(*others)
            if args.data:
                from keras_dssdn.data.datasets import read_clips

                joined.check_covers(read_clips(args.data, split=args.split, fold=args.fold))
            joined.save(args.out)
            print(f"wrote {args.out}")
            print_summary(joined)
            return 0
        if args.command == "show":
            first, *others = [TeacherLogits.load(f) for f in args.file]
            print_summary(first.merged(*others) if others else first)
        else:
            logits = TeacherLogits.load(args.file)
            logits.to_csv(args.csv)
            print(f"wrote {args.csv}")
        return 0

    return run_command(body)


if __name__ == "__main__":
    sys.exit(main())
