#!/usr/bin/env python
"""Accuracy benchmark on a DCASE-layout set (default: TUT 2017 fold 1), several seeds per row.

    python tools/benchmark_accuracy.py --data ../shared/data/tut17-dev --out runs/accuracy \\
        --seeds 0 1 2 --rows packaged baselines

A *row* is a training configuration (a packaged config name plus ``key=value``
overrides); each row is trained once per seed with the package's own
``train`` on ``fold<k>_train`` and its best epoch scored on ``fold<k>_evaluate``
(clips the model never trained on). Per row the table gives, as mean +- std
over seeds: per-clip accuracy, macro class-wise accuracy and log loss on the
evaluate split, per-clip accuracy on the training split *without*
augmentation (does the model fit its data?), the best / run epochs,
parameters and MACs per input. Two simple baselines are trained and scored
in the same run on the same clips:

* ``logreg``: a logistic regression on each clip's mean and standard
  deviation of 128 log-mel bands (256 features, standardised);
* ``mlp``: the DCASE 2017 baseline, an MLP (2 x 50 units, dropout 0.2) on
  5-frame windows of 40 log-mel bands; clip = mean of window probabilities.

Rows are named on the command line: ``--rows packaged`` (every packaged
configuration), ``--rows baselines``, a packaged name (``small``), or an
ablation ``NAME=CONFIG:key=value,key=value`` (e.g.
``large_whole=large:segment_seconds=null``; a list value keeps its commas:
``"narrow=dcase_mcu_1s:widths=[20,28,40,56,60]"``, quoted for the shell). Finished runs are reused
(``<out>/<row>/seed<k>/metrics.json``), killed ones resumed, so the command
can be stopped and restarted. Writes ``<out>/results.json``, ``<out>/table.md``
and ``<out>/curves.png`` (evaluate accuracy against epoch, one line per run).

Cross-validation (``--folds K``, docs/accuracy.md): K location-disjoint, class-stratified folds over every
clip of the set (``<out>/folds.csv``, :mod:`keras_dssdn.data.folds`; built once, then reused and checked);
each (row, seed, fold) run trains on the other folds through the view ``<out>/cv_data`` and keeps its
fold's out-of-fold logits (``<out>/<row>/seed<s>_fold<k>/oof.npz``, then ``cv.json``). The report
(:mod:`keras_dssdn.analysis.cv`) pools every clip per (row, seed): accuracy, macro class-wise accuracy, log
loss, mean +- std over seeds; ``--ensemble`` adds each row's ensemble of seeds, ``--compare A B`` the paired
difference with a 95 % bootstrap interval, ``--teacher-out`` writes out-of-fold ensemble teacher logits::

    python tools/benchmark_accuracy.py --data ../shared/data/tut17-dev --out runs/cv --folds 4 \\
        --rows baselines dcase_mcu_1s --seeds 0 1 2 --ensemble --compare dcase_mcu_1s mlp

Distillation on the folds needs a teacher that heard neither the student's test fold nor the clip it scores
(the ``--teacher-out`` file fails the first: docs/accuracy.md measured what that leak does). ``--nested``
trains the teacher rows without each pair of folds; ``--nested-teacher-out DIR`` writes one teacher per
student fold; the student row reads its own (``{fold}`` in a value becomes the run's fold)::

    python tools/benchmark_accuracy.py ... --folds 4 --rows dcase_small_1s --seeds 0 1 --nested \
        --nested-teacher-out runs/cv/teacher --teacher-rows dcase_small_1s
    python tools/benchmark_accuracy.py ... --folds 4 --seeds 0 1 2 \
        --rows mcu_kd=dcase_mcu_1s:teacher=runs/cv/teacher/fold{fold}.npz --compare mcu_kd dcase_mcu_1s
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

PACKAGED = ("small", "middle", "large", "dcase_small_1s")
BASELINES = ("logreg", "mlp")


def _split_overrides(text: str) -> list:
    """``key=value,key=[a,b]`` -> ``["key=value", "key=[a,b]"]``: commas inside brackets or quotes stay."""
    parts, depth, quote, start = [], 0, "", 0
    for i, ch in enumerate(text):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    return [o for o in parts + [text[start:]] if o]


def _parse_row(text: str):
    """``name`` or ``name=config:key=value,key=value`` -> (name, config, overrides); a value may be a list
    (``widths=[20,28,40,56,60]``) or a quoted string holding commas."""
    if "=" not in text.split(":", 1)[0]:
        return text, text, []
    name, spec = text.split("=", 1)
    config, _, rest = spec.partition(":")
    return name, config, _split_overrides(rest)


def _expand(rows):
    out = []
    for r in rows:
        if r == "packaged":
            out += [(n, n, []) for n in PACKAGED]
        elif r == "baselines":
            out += [(n, n, []) for n in BASELINES]
        else:
            out.append(_parse_row(r))
    return out


def _train_row(name, config, overrides, seed, args):
    """Metrics of one (row, seed) run: evaluate split, training split without augmentation, complexity."""
    import keras

    from keras_dssdn.analysis.complexity import profile
    from keras_dssdn.inference.evaluate import evaluate_model
    from keras_dssdn.train import load_train_config, train, training_data

    out = Path(args.out) / name
    run = out / f"seed{seed}"
    summary = run / "benchmark.json"
    if summary.is_file():
        return json.loads(summary.read_text())
    base = [f"data={args.data}", f"fold={args.fold}", f"seed={seed}", f"out_dir={out}", f"name=seed{seed}",
            "verbose=2"] + ([f"epochs={args.epochs}"] if args.epochs else [])
    cfg = load_train_config(config, base + list(overrides) + list(args.overrides))
    start = time.time()
    result = train(cfg, resume=(run / "checkpoint" / "state.json").is_file())
    best = keras.models.load_model(run / "best.keras", compile=False)
    train_clips, _, _ = training_data(cfg)
    fit = evaluate_model(best, train_clips, frontend=cfg.frontend_params(), clip_seconds=cfg.clip_seconds,
                         segment_seconds=cfg.segment_seconds, batch_size=cfg.batch_size)
    # the best epoch is chosen on the evaluate split (TUT 2017 has no validation split): also score the last
    # epoch, which no selection on the evaluate split touched
    last = keras.models.load_model(run / "checkpoint" / "last.keras", compile=False)
    _, eval_clips, _ = training_data(cfg)
    final = evaluate_model(last, eval_clips, frontend=cfg.frontend_params(), clip_seconds=cfg.clip_seconds,
                           segment_seconds=cfg.segment_seconds, batch_size=cfg.batch_size)
    net = next((layer for layer in best.layers if isinstance(layer, keras.Model)), best)
    cx = profile(net)
    m = result.metrics
    row = {"row": name, "config": config, "overrides": list(overrides) + list(args.overrides), "seed": seed,
           "accuracy": m["accuracy"], "macro_class_accuracy": m["macro_class_accuracy"], "log_loss": m["log_loss"],
           "train_accuracy": fit["accuracy"],
           "last_epoch_accuracy": final["accuracy"], "last_epoch_log_loss": final["log_loss"], "best_epoch": m["training"]["best_epoch"],
           "epochs_run": m["training"]["epochs_run"], "params": int(cx.params), "macs": int(cx.macs),
           "input_shape": [d for d in net.input_shape[1:]], "clips": int(m["examples"]),
           "seconds": time.time() - start,
           "curve": [h.get("val_accuracy") for h in json.loads((run / "checkpoint" / "state.json").read_text())["history"]]}
    summary.write_text(json.dumps(row, indent=2) + "\n")
    return row


# ----------------------------------------------------------------------------- simple baselines


def _logmel_clips(args, n_mels: int, split: str):
    """``(features (clips, n_mels, frames), labels (clips,), names)`` of one split, unaugmented."""
    from keras_dssdn.params import FrontEndParams
    from keras_dssdn.data.datasets import read_clips
    from keras_dssdn.data.pipeline import evaluation_dataset
    from keras_dssdn.data.spec import PipelineSpec

    fe = FrontEndParams(n_mels=n_mels)
    ds = evaluation_dataset(read_clips(args.data, split=split, fold=args.fold),
                            PipelineSpec(frontend=fe, batch_size=32, cache=None, vocabulary=_vocabulary(args)))
    xs, ys = zip(*[(np.asarray(x)[..., 0], np.asarray(y)) for x, y in ds])
    return np.concatenate(xs), np.concatenate(ys)


def _vocabulary(args):
    from keras_dssdn.data.datasets import read_dcase

    return read_dcase(args.data, split="train", fold=args.fold).vocabulary()


def _scores(probs, labels, names):
    from keras_dssdn.analysis.metrics import classification_metrics

    m = classification_metrics(labels, probs, names)
    return {k: m[k] for k in ("accuracy", "macro_class_accuracy", "log_loss")}


def _baseline(name, seed, args, cache, write=True):
    """One baseline run on ``args.data`` fold ``args.fold``; with ``write=False`` nothing is written and the
    evaluate split's clip probabilities are returned under ``"probs"`` ``(clips, classes)``."""
    import keras

    out = Path(args.out) / name / f"seed{seed}" / "benchmark.json"
    if write and out.is_file():
        return json.loads(out.read_text())
    start = time.time()
    names = _vocabulary(args).names
    classes = len(names)
    keras.utils.set_random_seed(seed)
    if name == "logreg":
        key = 128
        if key not in cache:
            cache[key] = (_logmel_clips(args, 128, "train"), _logmel_clips(args, 128, "evaluate"))
        (xt, yt), (xe, ye) = cache[key]
        feats = lambda x: np.concatenate([x.mean(axis=2), x.std(axis=2)], axis=1)  # noqa: E731
        ft, fe = feats(xt), feats(xe)
        mu, sd = ft.mean(0), ft.std(0) + 1e-6
        ft, fe = (ft - mu) / sd, (fe - mu) / sd
        model = keras.Sequential([keras.Input((ft.shape[1],)),
                                  keras.layers.Dense(classes, activation="softmax",
                                                     kernel_regularizer=keras.regularizers.L2(1e-3))])
        model.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy")
        model.fit(ft, yt, epochs=300, batch_size=len(ft), verbose=0)
        pe, pt = model.predict(fe, verbose=0), model.predict(ft, verbose=0)
        params = model.count_params()
    else:  # DCASE 2017 MLP on 5-frame windows of 40 bands
        key = 40
        if key not in cache:
            cache[key] = (_logmel_clips(args, 40, "train"), _logmel_clips(args, 40, "evaluate"))
        (xt, yt), (xe, ye) = cache[key]
        mu, sd = xt.mean(axis=(0, 2))[:, None], xt.std(axis=(0, 2))[:, None] + 1e-6

        def windows(x):  # (clips, 40, T) -> (clips, T-4, 200)
            x = (x - mu) / sd
            w = np.stack([x[:, :, i:x.shape[2] - 4 + i] for i in range(5)], axis=-1)  # (clips, 40, T-4, 5)
            return w.transpose(0, 2, 1, 3).reshape(x.shape[0], x.shape[2] - 4, -1)

        wt, we = windows(xt), windows(xe)
        model = keras.Sequential([keras.Input((wt.shape[2],)), keras.layers.Dense(50, activation="relu"),
                                  keras.layers.Dropout(0.2), keras.layers.Dense(50, activation="relu"),
                                  keras.layers.Dropout(0.2), keras.layers.Dense(classes, activation="softmax")])
        model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy")
        flat = wt.reshape(-1, wt.shape[2])
        model.fit(flat, np.repeat(yt, wt.shape[1]), epochs=args.mlp_epochs, batch_size=256, verbose=0)
        clip_probs = lambda w: model.predict(w.reshape(-1, w.shape[2]), verbose=0, batch_size=4096).reshape(  # noqa: E731
            w.shape[0], w.shape[1], -1).mean(axis=1)
        pe, pt = clip_probs(we), clip_probs(wt)
        params = model.count_params()
    row = {"row": name, "config": name, "overrides": [], "seed": seed, **_scores(pe, ye, names),
           "train_accuracy": _scores(pt, yt, names)["accuracy"], "last_epoch_accuracy": None, "best_epoch": None, "epochs_run": None,
           "params": int(params), "macs": None, "clips": int(len(ye)), "seconds": time.time() - start, "curve": []}
    if not write:
        return {**row, "probs": pe}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(row, indent=2) + "\n")
    return row


# ----------------------------------------------------------------------------- cross-validation runs


def _cv_prepare(args):
    """``(view folder, Folds)`` of ``--folds K``: the fold file ``<out>/folds.csv`` (built once, then reused and
    checked against the dataset) and the DCASE-layout view ``<out>/cv_data`` that ``train`` reads a fold through."""
    from keras_dssdn.data.datasets import read_dcase
    from keras_dssdn.data.folds import ensure_folds, write_view

    clips = read_dcase(args.data, split="all")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    folds = ensure_folds(out / "folds.csv", clips, args.folds, args.fold_seed, verbose=True)
    return write_view(out / "cv_data", clips, folds), folds


#: ``{n_mels: (log-mel (clips, n_mels, frames), labels (clips,))}`` of every clip of the view, in meta.csv order
_ALL_CLIPS: dict = {}


def _cv_run_dir(args, name, seed, k) -> Path:
    return Path(args.out) / name / f"seed{seed}_fold{k}"


def _write_oof(logits, run: Path, record: dict) -> dict:
    """Save one run's out-of-fold logits (``oof.npz``, the teacher-logits format) and then ``cv.json`` (the run's
    done-marker)."""
    logits.save(run / "oof.npz")
    (run / "cv.json").write_text(json.dumps(record, indent=2) + "\n")
    return record


def _cv_train(name, config, overrides, seed, k, view, args, run=None):
    """One (row, seed, fold) run of a training configuration: trained on the view's ``fold<k>_train`` (the other
    folds; with ``k`` a pair split of ``--nested``, the folds outside the pair), ``fold<k>_evaluate`` scored, in
    ``run`` (default ``<out>/<row>/seed<s>_fold<k>``). ``{fold}`` in an override's value becomes ``k``."""
    import keras

    from keras_dssdn.analysis.complexity import profile
    from keras_dssdn.distill.teacher import write_logits
    from keras_dssdn.train import load_train_config, train, training_data

    run = run or _cv_run_dir(args, name, seed, k)
    if (run / "cv.json").is_file():
        return json.loads((run / "cv.json").read_text())
    overrides = [o.replace("{fold}", str(k)) for o in overrides]
    base = [f"data={view}", f"fold={k}", f"seed={seed}", f"out_dir={run.parent}", f"name={run.name}",
            "verbose=2"] + ([f"epochs={args.epochs}"] if args.epochs else [])
    cfg = load_train_config(config, base + list(overrides) + list(args.overrides))
    start = time.time()
    resume = (run / "checkpoint" / "state.json").is_file()
    if not resume and run.is_dir() and any(run.iterdir()):  # killed before its first epoch ended: set aside
        aside = run.with_name(f"{run.name}.died-{time.strftime('%Y%m%d-%H%M%S')}")
        run.rename(aside)
        print(f"{run}: died before its first checkpoint; moved to {aside.name} and started again", flush=True)
    result = train(cfg, resume=resume)
    _, eval_clips, _ = training_data(cfg)
    logits = write_logits([str(run)], eval_clips, clip_seconds=cfg.clip_seconds,
                          segment_seconds=cfg.segment_seconds, batch_size=cfg.batch_size)
    best = keras.models.load_model(run / "best.keras", compile=False)
    net = next((layer for layer in best.layers if isinstance(layer, keras.Model)), best)
    cx = profile(net)
    m = result.metrics
    history = json.loads((run / "checkpoint" / "state.json").read_text())["history"]
    record = {"row": name, "config": config, "overrides": list(overrides) + list(args.overrides), "seed": seed,
              "fold": k, "folds": args.folds, "accuracy": m["accuracy"],
              "macro_class_accuracy": m["macro_class_accuracy"], "log_loss": m["log_loss"],
              "epochs_run": m["training"]["epochs_run"], "params": int(cx.params), "macs": int(cx.macs),
              "input_shape": list(net.input_shape[1:]), "clips": int(m["examples"]), "seconds": time.time() - start,
              "curve": [h.get("val_accuracy") for h in history]}
    return _write_oof(logits, run, record)


def _cv_baseline(name, seed, k, view, args):
    """One (baseline, seed, fold) run: :func:`_baseline` on the view's fold ``k``, its clip probabilities kept."""
    from keras_dssdn.data.datasets import read_dcase
    from keras_dssdn.distill.logits import TeacherLogits, clip_records

    run = _cv_run_dir(args, name, seed, k)
    if (run / "cv.json").is_file():
        return json.loads((run / "cv.json").read_text())
    sub = argparse.Namespace(**{**vars(args), "data": str(view), "fold": k, "out": str(run)})
    clips = read_dcase(view, split="evaluate", fold=k)
    train = {c.filename for c in read_dcase(view, split="train", fold=k)}
    cache = {}
    for n_mels in (128, 40):  # every clip decoded once per process and band count, then split by fold
        if n_mels not in _ALL_CLIPS:
            _ALL_CLIPS[n_mels] = _logmel_clips(argparse.Namespace(**{**vars(sub), "fold": 1}), n_mels, "all")
        (x, y), names = _ALL_CLIPS[n_mels], read_dcase(view, split="all").clips
        pick = lambda keep: np.array([i for i, c in enumerate(names) if keep(c.filename)])  # noqa: E731
        it, ie = pick(lambda f: f in train), pick(lambda f: f in {c.filename for c in clips})
        order = {c.filename: j for j, c in enumerate(names)}
        ie = np.array([order[c.filename] for c in clips])  # the evaluate split's order
        cache[n_mels] = ((x[it], y[it]), (x[ie], y[ie]))
    row = _baseline(name, seed, sub, cache, write=False)
    keys, labels, sizes = clip_records(clips)
    probs = np.clip(np.asarray(row.pop("probs"), np.float64), 1e-7, 1.0)
    logits = TeacherLogits(keys, np.log(probs)[:, None, :].astype(np.float32), list(_vocabulary(sub).names), 10.0,
                           None, labels, sizes, {"name": Path(args.data).name, "split": clips.name},
                           [{"name": f"{name}/seed{seed}_fold{k}", "source": str(run), "kind": "baseline"}],
                           np.log(probs)[None, :, None, :].astype(np.float32))
    run.mkdir(parents=True, exist_ok=True)
    record = {**{key: row[key] for key in ("accuracy", "macro_class_accuracy", "log_loss", "params", "clips",
                                            "seconds")},
              "row": name, "config": name, "overrides": [], "seed": seed, "fold": k, "folds": args.folds,
              "epochs_run": None, "macs": None, "input_shape": [], "curve": []}
    return _write_oof(logits, run, record)


def _cv_pairs(name, config, overrides, seed, view, args):
    """``--nested``: the row's runs without each pair of folds (the view's pair splits), each scored on its pair:
    the members of a leak-free teacher (:func:`keras_dssdn.analysis.cv.nested_teacher`)."""
    from keras_dssdn.analysis.cv import pair_run
    from keras_dssdn.data.folds import pair_folds

    for n, (a, b) in pair_folds(args.folds).items():
        r = _cv_train(name, config, overrides, seed, n, view, args, run=pair_run(args.out, name, seed, a, b))
        print(f"[{name} seed {seed} without folds {a} + {b}] accuracy {100 * r['accuracy']:.1f} %  log loss "
              f"{r['log_loss']:.3f}  ({r['seconds']:.0f} s)", flush=True)


def run_cv(args) -> int:
    """Train every (row, seed, fold) of ``--folds K`` not yet done, in order (``--nested``: every (row, seed, pair
    of folds)); then :func:`report_cv`."""
    from keras_dssdn.errors import ConfigError

    view, folds = _cv_prepare(args)
    for name, config, overrides in _expand(args.rows):
        if args.nested and config in BASELINES:
            raise ConfigError(f"--nested trains the rows as teachers; the baseline {name} is not one. Leave it out.")
        for seed in args.seeds:
            if args.report_only:
                continue
            if args.nested:
                _cv_pairs(name, config, overrides, seed, view, args)
                continue
            for k in range(1, folds.k + 1):
                r = (_cv_baseline(name, seed, k, view, args) if config in BASELINES
                     else _cv_train(name, config, overrides, seed, k, view, args))
                print(f"[{name} seed {seed} fold {k}/{folds.k}] accuracy {100 * r['accuracy']:.1f} %  log loss "
                      f"{r['log_loss']:.3f}  ({r['seconds']:.0f} s)", flush=True)
    return report_cv(args)


def report_cv(args) -> int:
    """Pooled CV table (and paired comparisons) of the runs finished under ``--out``."""
    from keras_dssdn.analysis.cv import cv_report

    text = cv_report(args.out, compare_pairs=args.compare, ensembles=args.ensemble, resamples=args.bootstrap)
    print(text)
    if args.teacher_out:
        from keras_dssdn.analysis.cv import oof_teacher
        from keras_dssdn.cli.teacher import print_summary

        logits = oof_teacher(args.out, args.teacher_rows, args.teacher_out)
        print(f"wrote {args.teacher_out}: out-of-fold ensemble of {', '.join(args.teacher_rows)}")
        print_summary(logits)
    if args.nested_teacher_out:
        from keras_dssdn.analysis.cv import nested_teacher

        dest = Path(args.nested_teacher_out)
        dest.mkdir(parents=True, exist_ok=True)
        for k in range(1, args.folds + 1):
            logits = nested_teacher(args.out, args.teacher_rows, k, dest / f"fold{k}.npz")
            print(f"wrote {dest / f'fold{k}.npz'}: leak-free teacher for students scored on fold {k} "
                  f"({len(logits.clips)} clips, {len(logits.models)} member runs)")
    if args.save_record:
        from keras_dssdn.analysis.cv import save_record

        print(f"saved the record of {save_record(args.out, args.save_record)} runs and folds.csv to {args.save_record}")
    return 0


# ----------------------------------------------------------------------------- report


def _ms(values, scale=100.0, digits=1):
    v = np.asarray([x for x in values if x is not None], float) * scale
    if not len(v):
        return "-"
    return f"{v.mean():.{digits}f} ± {v.std(ddof=1) if len(v) > 1 else 0.0:.{digits}f}"


def table(results) -> str:
    lines = ["| row | seeds | accuracy % | macro class-wise % | log loss | last-epoch accuracy % "
             "| train-split accuracy % | best / run epochs | params | MACs / input | input |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for name, rows in results.items():
        r0 = rows[0]
        epochs = "-" if r0["best_epoch"] is None else ", ".join(f"{r['best_epoch']}/{r['epochs_run']}" for r in rows)
        macs = "-" if r0["macs"] is None else f"{r0['macs'] / 1e6:.1f} M"
        shape = "x".join(str(d) for d in r0.get("input_shape", [])) or "-"
        lines.append(f"| {name} | {len(rows)} | {_ms([r['accuracy'] for r in rows])} | "
                     f"{_ms([r['macro_class_accuracy'] for r in rows])} | {_ms([r['log_loss'] for r in rows], 1, 3)} | "
                     f"{_ms([r.get('last_epoch_accuracy') for r in rows])} | {_ms([r['train_accuracy'] for r in rows])} | {epochs} | {r0['params']:,} | {macs} | {shape} |")
    return "\n".join(lines)


def plot_curves(results, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for i, (name, rows) in enumerate(results.items()):
        for j, r in enumerate(rows):
            if r["curve"]:
                ax.plot(range(1, len(r["curve"]) + 1), np.asarray(r["curve"], float) * 100, color=f"C{i % 10}",
                        alpha=0.7, label=name if j == 0 else None)
    ax.set_xlabel("epoch")
    ax.set_ylabel("evaluate-split accuracy % (per example)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="../shared/data/tut17-dev")
    p.add_argument("--fold", type=int, default=1)
    p.add_argument("--out", default="runs/accuracy")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--rows", nargs="+", default=["packaged", "baselines"])
    p.add_argument("--epochs", type=int, default=None, help="override every row's epochs")
    p.add_argument("--mlp-epochs", type=int, default=30)
    p.add_argument("--report-only", action="store_true",
                   help="train nothing: tabulate the (row, seed) runs already finished under --out (with --folds: "
                        "every row there)")
    p.add_argument("--folds", type=int, default=None, metavar="K",
                   help="cross-validation over every clip: K location-disjoint, class-stratified folds "
                        "(<out>/folds.csv, built once and reused); each run trains on K-1 folds and scores the other")
    p.add_argument("--fold-seed", type=int, default=0, help="seed of the fold assignment (--folds)")
    p.add_argument("--compare", nargs=2, action="append", default=[], metavar=("ROW_A", "ROW_B"),
                   help="(--folds) paired difference of pooled accuracy A - B with a 95 %% bootstrap interval "
                        "(recording locations x seed pairs resampled); "
                        "repeatable; a row NAME+ens is the ensemble of its seeds")
    p.add_argument("--ensemble", nargs="*", default=None, metavar="ROW",
                   help="(--folds) also tabulate the ensemble of each row's seeds (mean of probabilities) and "
                        "the accuracy of every N-seed subset (what N members buy); no names: every row")
    p.add_argument("--teacher-out", default=None, metavar="NPZ",
                   help="(--folds) write out-of-fold ensemble teacher logits over every clip: fold k's clips scored "
                        "by the ensemble of --teacher-rows x seeds trained on the other folds")
    p.add_argument("--teacher-rows", nargs="+", default=[], metavar="ROW",
                   help="rows of the --teacher-out / --nested-teacher-out ensemble")
    p.add_argument("--nested", action="store_true",
                   help="(--folds) train the rows without each pair of folds instead (K (K-1) / 2 runs per seed, "
                        "<row>/seed<s>_pair<a>-<b>): the members of --nested-teacher-out")
    p.add_argument("--nested-teacher-out", default=None, metavar="DIR",
                   help="(--folds) write DIR/fold<k>.npz, k = 1..K: leak-free teachers for students scored on fold "
                        "k (each clip of fold j scored by --teacher-rows x seeds trained without folds j and k); a "
                        "student row reads its fold's file with teacher=DIR/fold{fold}.npz")
    p.add_argument("--bootstrap", type=int, default=10000, help="bootstrap resamples of --compare")
    p.add_argument("--save-record", default=None, metavar="DIR",
                   help="(--folds) afterwards, copy folds.csv and each finished run's cv.json and oof.npz (what the "
                        "report reads) into DIR, e.g. results/cv_tut17_k4 of the repository")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="applied to every trained row")
    args = p.parse_args(argv)
    if args.save_record and args.folds is None:
        p.error("--save-record copies a cross-validation record: give --folds K as well")
    if args.folds is not None:
        from keras_dssdn.cli.common import run_command

        if (args.teacher_out or args.nested_teacher_out) and not args.teacher_rows:
            p.error("--teacher-out / --nested-teacher-out need --teacher-rows (the rows whose runs make the ensemble)")
        if (args.nested or args.nested_teacher_out) and args.folds < 3:
            p.error(f"--nested holds out pairs of folds: it needs --folds 3 or more (got {args.folds})")
        return run_command(lambda: run_cv(args))
    if args.nested or args.nested_teacher_out:
        p.error("--nested / --nested-teacher-out work on cross-validation folds: give --folds K as well")
    start = time.time()
    results, cache = {}, {}
    for name, config, overrides in _expand(args.rows):
        for seed in args.seeds:
            done = Path(args.out) / name / f"seed{seed}" / "benchmark.json"
            if args.report_only:
                if done.is_file():
                    results.setdefault(name, []).append(json.loads(done.read_text()))
                continue
            r = (_baseline(name, seed, args, cache) if config in BASELINES
                 else _train_row(name, config, overrides, seed, args))
            results.setdefault(name, []).append(r)
            print(f"[{name} seed {seed}] accuracy {100 * r['accuracy']:.1f} %  log loss {r['log_loss']:.3f}  "
                  f"train {100 * r['train_accuracy']:.1f} %  ({r['seconds']:.0f} s)", flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    text = table(results)
    if not results:
        print(f"no finished runs under {args.out}", file=sys.stderr)
        return 1
    clips = {r["clips"] for rows in results.values() for r in rows}
    text += (f"\n\nEvaluate split: {', '.join(map(str, sorted(clips)))} clips (one clip = "
             f"{100 / max(clips):.2f} points). Mean ± std over the seeds of each row (column 2). "
             f"Time of the runs (each measured as it ran): {sum(r['seconds'] for rows in results.values() for r in rows) / 60:.0f} min; "
             f"this command: {time.time() - start:.0f} s.\n")
    (out / "table.md").write_text(text)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    plot_curves(results, out / "curves.png")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
