#!/usr/bin/env python
"""Export several trained models and print one table: float vs int8 (PTQ, QAT) accuracy, sizes, arena, bit-exactness.

    python tools/benchmark_export.py run_small/ run_middle/best.keras ... \\
        --data ../shared/data/tut17-dev --fold 1 --out-root bundles/ --qat-epochs 2

Each model (a .keras file or a run folder) is exported with
:func:`keras_dssdn.deploy.export.export_bundle` into ``OUT_ROOT/<name>``; the table is
printed and written to ``OUT_ROOT/benchmark.md`` and ``benchmark.json``.

Without trained models, ``--quick-train small,middle,large,dcase_small_1s``
first trains each preset with a short plain Keras fit on the ``train`` split
(Adam, no augmentation, ``--epochs`` epochs; global log-mel normalisation
statistics from the training clips; the model saved with its
``LogMelNormalization`` and ``ClassNames`` layers as ``OUT_ROOT/<size>.keras``).
These are smoke-test models, not the training tool's: their accuracy says
nothing about DSSDN, only the float-vs-int8 comparison and the deployment
numbers are meaningful.
"""

import argparse
import os
import sys
import time


def quick_train(size: str, data: str, fold: int, epochs: int, out_root: str, batch_size: int = 16,
                learning_rate: float = 2e-3, seed: int = 0, log=print) -> str:
    """Train preset ``size`` briefly on the train split; returns the saved .keras path."""
    import keras

    import keras_dssdn
    from keras_dssdn.layers.frontend import attach_front_end, compute_normalization_stats
    from keras_dssdn.data.datasets import read_clips
    from keras_dssdn.data.pipeline import evaluation_dataset, training_dataset
    from keras_dssdn.data.spec import PipelineSpec, TrainingOptions
    from keras_dssdn.fileio import save_model_atomic

    keras.utils.set_random_seed(seed)
    train = read_clips(data, split="train", fold=fold)
    vocab = train.vocabulary()
    cfg = keras_dssdn.PRESETS[size].replace(classes=len(vocab))
    frames = cfg.input_shape[1]
    segment = 1.0 if frames == keras_dssdn.DEFAULT_FRONTEND.num_frames(1.0) else None
    spec = PipelineSpec(vocabulary=vocab, segment_seconds=segment, cache=None)
    stats_ds = evaluation_dataset(train, spec)
    stats = compute_normalization_stats(stats_ds, mode="global")
    core = keras_dssdn.build_dssdn(cfg, name=f"dssdn_{size}")
    model = attach_front_end(core, normalization=stats, class_names=vocab.names, waveform_input=False,
                             seconds=segment or keras_dssdn.DEFAULT_FRONTEND.clip_seconds, name=f"dssdn_{size}_tut17")
    ds = training_dataset(train, spec.replace(cache="memory", batch_size=batch_size), TrainingOptions(seed=seed))
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    t = time.time()
    hist = model.fit(ds, epochs=epochs, verbose=2)
    path = os.path.join(out_root, f"{size}.keras")
    save_model_atomic(model, path)
    log(f"quick-trained {size}: {epochs} epochs in {time.time() - t:.0f} s, train accuracy "
        f"{hist.history['accuracy'][-1]:.3f} -> {path}")
    return path


def _pct(v):
    return "-" if v is None else f"{100 * v:.2f}"


def table(rows) -> str:
    head = ("| model | float acc % / log loss | PTQ int8 acc % / log loss | QAT int8 acc % / log loss | deployed | "
            "int8 file bytes | int8 weight bytes | arena bytes (min / recommended) | TFLM bit-exact | DCASE 128 KB |\n"
            "|---|---|---|---|---|---:|---:|---:|---|---|")
    lines = [head]
    for r in rows:
        rep = r.get("report")
        if rep is None:
            lines.append(f"| {r['name']} | export failed: {r['error']} | | | | | | | | |")
            continue

        def m(v):
            mm = v.get("metrics") if v else None
            return f"{_pct(mm['accuracy'])} / {mm['log_loss']:.3f}" if mm else "-"

        fm = rep["float"].get("metrics")
        dep = rep["int8"][rep["deployed"]]
        exact = ", ".join(f"{k.upper()} {'yes' if v['bit_exactness']['bit_exact'] else 'NO'} "
                          f"({v['bit_exactness']['inputs']})" for k, v in rep["int8"].items())
        lines.append(
            f"| {r['name']} | {m(rep['float'])} | {m(rep['int8']['ptq'])} | {m(rep['int8'].get('qat'))} | "
            f"{rep['deployed'].upper()} | {dep['bytes']['file']:,} | {dep['bytes']['int8_weights']:,} | "
            f"{dep['arena']['min_bytes']:,} / {dep['arena']['recommended_bytes']:,} | {exact} | "
            f"{'fits' if rep['dcase_budget']['fits'] else 'no'} |")
        if fm is None:
            lines[-1] = lines[-1].replace("| - |", "| (no evaluation set) |", 1)
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="tools/benchmark_export.py", description=__doc__.split("\n\n")[0])
    p.add_argument("models", nargs="*", help=".keras files or run folders")
    p.add_argument("--quick-train", default=None,
                   help="comma-separated presets to train briefly first (small,middle,large,dcase_small_1s)")
    p.add_argument("--epochs", type=int, default=5, help="epochs of --quick-train (default 5)")
    p.add_argument("--data", required=True, help="DCASE dataset folder, e.g. ../shared/data/tut17-dev")
    p.add_argument("--fold", type=int, default=1)
    p.add_argument("--out-root", required=True, help="folder for the bundles and the table")
    p.add_argument("--qat-epochs", type=int, default=0, help="QAT epochs per model (0: PTQ only)")
    p.add_argument("--qat-lr", type=float, default=None)
    p.add_argument("--num-verify", type=int, default=16)
    p.add_argument("--eval-limit", type=int, default=None)
    p.add_argument("--force", action="store_true", help="replace existing bundles")
    args = p.parse_args(argv)

    os.makedirs(args.out_root, exist_ok=True)
    models = list(args.models)
    trained = []
    if args.quick_train:
        for size in [s.strip() for s in args.quick_train.split(",") if s.strip()]:
            path = os.path.join(args.out_root, f"{size}.keras")
            if os.path.isfile(path) and not args.force:
                print(f"using existing {path} (pass --force to retrain)", flush=True)
            else:
                path = quick_train(size, args.data, args.fold, args.epochs, args.out_root,
                                   log=lambda *a: print(*a, flush=True))
            models.append(path)
            trained.append(path)
    if not models:
        p.error("give .keras files / run folders, or --quick-train")

    from keras_dssdn.deploy.export import export_bundle
    from keras_dssdn.errors import DSSDNError
    from keras_dssdn.fileio import write_json_atomic, write_text_atomic

    rows = []
    for src in models:
        name = os.path.basename(os.path.normpath(src)).replace(".keras", "")
        out = os.path.join(args.out_root, name)
        cmd = (f"python tools/export.py {'--run-dir' if os.path.isdir(src) else '--model'} {src} --data {args.data} "
               f"--fold {args.fold} --out {out}" + (f" --qat-epochs {args.qat_epochs}" if args.qat_epochs else "")
               + (f" --eval-limit {args.eval_limit}" if args.eval_limit else "") + " --force")
        print(f"\n== {name}: {cmd}", flush=True)
        try:
            qat_options = {"learning_rate": args.qat_lr} if args.qat_lr else None
            result = export_bundle(src, out, data=args.data, fold=args.fold, qat_epochs=args.qat_epochs,
                                   qat_options=qat_options, num_verify=args.num_verify, eval_limit=args.eval_limit,
                                   force=args.force, command=cmd, log=lambda *a: print(*a, flush=True))
            rows.append({"name": name, "source": src, "command": cmd, "report": result.report,
                         "quick_trained": src in trained})
        except (DSSDNError, ValueError, FileNotFoundError) as e:
            print(f"   FAILED: {type(e).__name__}: {e}", flush=True)
            rows.append({"name": name, "source": src, "command": cmd, "error": f"{type(e).__name__}: {e}"})
    text = table(rows)
    notes = []
    if trained:
        notes.append(f"Models {', '.join(os.path.basename(t) for t in trained)} were quick-trained by this tool "
                     f"({args.epochs} epochs, plain Keras fit, no augmentation) as smoke-test models.")
    notes.append(f"Accuracy on {args.data} fold{args.fold}_evaluate, per example (segment for 1-s models); int8 "
                 "numbers from TFLite's reference kernels, which TFLM matched bit for bit on the verification inputs.")
    md = text + "\n\n" + "\n".join(f"- {n}" for n in notes) + "\n\nCommands:\n\n" + "\n".join(
        f"- `{r['command']}`" for r in rows) + "\n"
    write_text_atomic(os.path.join(args.out_root, "benchmark.md"), md)
    write_json_atomic(os.path.join(args.out_root, "benchmark.json"), rows)
    print("\n" + md)
    return 0 if all("report" in r for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
