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
``large_whole=large:segment_seconds=null``). Finished runs are reused
(``<out>/<row>/seed<k>/metrics.json``), killed ones resumed, so the command
can be stopped and restarted. Writes ``<out>/results.json``, ``<out>/table.md``
and ``<out>/curves.png`` (evaluate accuracy against epoch, one line per run).
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


def _parse_row(text: str):
    """``name`` or ``name=config:key=value,key=value`` -> (name, config, overrides)."""
    if "=" not in text.split(":", 1)[0]:
        return text, text, []
    name, spec = text.split("=", 1)
    config, _, rest = spec.partition(":")
    return name, config, [o for o in rest.split(",") if o]


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
    from keras_dssdn.data.pipeline import make_dataset

    fe = FrontEndParams(n_mels=n_mels)
    ds = make_dataset(args.data, fe, split=split, fold=args.fold, training=False, batch_size=32, cache=None,
                      vocabulary=_vocabulary(args))
    xs, ys = zip(*[(np.asarray(x)[..., 0], np.asarray(y)) for x, y in ds])
    return np.concatenate(xs), np.concatenate(ys)


def _vocabulary(args):
    from keras_dssdn.data.datasets import read_dcase

    return read_dcase(args.data, split="train", fold=args.fold).vocabulary()


def _scores(probs, labels, names):
    from keras_dssdn.analysis.metrics import classification_metrics

    m = classification_metrics(labels, probs, names)
    return {k: m[k] for k in ("accuracy", "macro_class_accuracy", "log_loss")}


def _baseline(name, seed, args, cache):
    import keras

    out = Path(args.out) / name / f"seed{seed}" / "benchmark.json"
    if out.is_file():
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
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(row, indent=2) + "\n")
    return row


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
                   help="train nothing: tabulate the (row, seed) runs already finished under --out")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="applied to every trained row")
    args = p.parse_args(argv)
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
