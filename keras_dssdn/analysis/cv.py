"""The cross-validation benchmark's results: pooled out-of-fold scores per row, ensembles of seeds, paired
comparisons, and the ensemble teachers built from the runs (out-of-fold, and nested: leak-free).

Layout written by ``tools/benchmark_accuracy.py --folds K --out OUT``::

    OUT/folds.csv                          the fold file (keras_dssdn.data.folds)
    OUT/<row>/seed<s>_fold<k>/oof.npz      fold k's clips scored by the run trained on the other folds
                                           (teacher-logits format, keras_dssdn.distill.logits)
    OUT/<row>/seed<s>_fold<k>/cv.json      the run's record, written last (the run is done when it exists)
    OUT/<row>/seed<s>_pair<a>-<b>/...      (``--nested``) the run trained without folds a and b, scored on both:
                                           the members of a leak-free teacher (:func:`nested_teacher`)

A (row, seed) is *complete* when all K of its runs are done; its K ``oof.npz`` join into one prediction per clip
over the whole dataset (a clip's probabilities: the mean of its segments' ``exp(logits)``, as evaluation
averages a clip's 1-s segments). Only complete (row, seed)s enter the tables.

:func:`save_record` copies what the tables read (:data:`RECORD_FILES` of every finished run, and ``folds.csv``)
out of a benchmark folder, e.g. into the repository, where ``--report-only`` tabulates it again.
"""

from __future__ import annotations

import itertools
import json
import shutil
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from keras_dssdn.analysis.metrics import classification_metrics
from keras_dssdn.analysis.paired import describe, excludes_zero, paired_bootstrap
from keras_dssdn.errors import DataError

ENSEMBLE = "+ens"


def _fold_rows(out: Path):
    return [line.split("\t") for line in (Path(out) / "folds.csv").read_text().splitlines()
            if line and not line.startswith("#")][1:]


def _fold_file(out: Path):
    """``(filenames, labels, k)`` of ``OUT/folds.csv`` in file order."""
    rows = _fold_rows(out)
    return [r[0] for r in rows], [r[1] for r in rows], max(int(r[3]) for r in rows)


def locations(out) -> np.ndarray:
    """``(clips,)`` recording location of every clip of ``OUT/folds.csv`` (file order): the bootstrap's clusters."""
    return np.array([r[2] for r in _fold_rows(out)])


def clip_probabilities(logits) -> np.ndarray:
    """``(clips, classes)`` mean over segments of ``softmax(logits)`` of a TeacherLogits (``(N, S, K)``)."""
    z = logits.logits.astype(np.float64)
    p = np.exp(z - z.max(axis=-1, keepdims=True))
    p /= p.sum(axis=-1, keepdims=True)
    return p.mean(axis=1)


def load_row(out, row: str) -> Dict[int, dict]:
    """``{seed: {"probs": (N, K), "labels": (N,) ids, "class_names", "records": [cv.json, ...]}}`` of the complete
    seeds of ``row`` (clips in folds.csv order)."""
    from keras_dssdn.distill.logits import TeacherLogits

    out = Path(out)
    names, labels, k = _fold_file(out)
    seeds = sorted({int(p.name.split("_")[0][4:]) for p in (out / row).glob("seed*_fold*")})
    result = {}
    for seed in seeds:
        runs = [out / row / f"seed{seed}_fold{f}" for f in range(1, k + 1)]
        if not all((r / "cv.json").is_file() for r in runs):
            continue
        parts = [TeacherLogits.load(r / "oof.npz") for r in runs]
        joined = parts[0].joined(*parts[1:])
        order = {c: i for i, c in enumerate(joined.clips)}
        missing = [n for n in names if n not in order]
        if missing:
            raise DataError(f"{out / row}: seed {seed}'s out-of-fold files lack {len(missing)} clips of folds.csv "
                            f"(first {missing[0]}); were the runs made with another fold file?")
        idx = np.array([order[n] for n in names])
        classes = list(joined.class_names)
        result[seed] = {"probs": clip_probabilities(joined)[idx],
                        "labels": np.array([classes.index(x) for x in labels]),
                        "class_names": classes, "records": [json.loads((r / "cv.json").read_text()) for r in runs]}
    return result


def _scores(probs, labels, names) -> dict:
    m = classification_metrics(labels, probs, names)
    return {k: m[k] for k in ("accuracy", "macro_class_accuracy", "log_loss")}


def row_summary(seeds: Dict[int, dict]) -> dict:
    """Pooled scores of each complete seed, their mean and std (ddof 1), and the row's size figures."""
    per_seed = {s: _scores(v["probs"], v["labels"], v["class_names"]) for s, v in seeds.items()}
    rec = next(iter(seeds.values()))["records"][0]
    out = {"seeds": sorted(per_seed), "per_seed": per_seed, "params": rec.get("params"), "macs": rec.get("macs"),
           "config": rec.get("config"), "overrides": rec.get("overrides"),
           "minutes": sum(r["seconds"] for v in seeds.values() for r in v["records"]) / 60}
    for key in ("accuracy", "macro_class_accuracy", "log_loss"):
        v = np.array([p[key] for p in per_seed.values()])
        out[key] = (float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0)
    return out


def ensemble_of(seeds: Dict[int, dict]) -> Dict[int, dict]:
    """The ensemble of a row's complete seeds (mean of their clip probabilities), as a one-"seed" row (key -1)."""
    first = next(iter(seeds.values()))
    probs = np.mean([v["probs"] for v in seeds.values()], axis=0)
    records = [r for v in seeds.values() for r in v["records"]]
    return {-1: {**first, "probs": probs, "records": records, "members": sorted(seeds)}}


def ensemble_sizes(seeds: Dict[int, dict]) -> List[dict]:
    """What an ensemble of ``n`` seeds buys, for ``n`` = 1 .. the row's complete seeds: the pooled accuracy of
    every ``n``-seed subset (the ensemble averages their clip probabilities), their mean, and the parameters and
    MACs per input of the ``n`` members together. ``[{"members": n, "subsets": [[seed, ...], ...],
    "accuracy": [fraction per subset], "mean": fraction, "params": int or None, "macs": int or None}, ...]``."""
    rec = next(iter(seeds.values()))["records"][0]
    curve = []
    for n in range(1, len(seeds) + 1):
        subsets = [list(c) for c in itertools.combinations(sorted(seeds), n)]
        acc = [float(per_clip(ensemble_of({s: seeds[s] for s in c})).mean()) for c in subsets]
        curve.append({"members": n, "subsets": subsets, "accuracy": acc, "mean": float(np.mean(acc)),
                      **{k: None if rec.get(k) is None else n * rec[k] for k in ("params", "macs")}})
    return curve


def _ensemble_size_lines(curves: Dict[str, List[dict]]) -> List[str]:
    text = ["", "Ensemble size (what N seeds buy; pooled accuracy of every N-seed subset, their mean; params and "
            "MACs per input of the N members together):"]
    for row, curve in curves.items():
        parts = []
        for c in curve:
            each = " / ".join(f"{100 * a:.1f}" for a in c["accuracy"])
            cost = "" if c["params"] is None else f", {c['params']:,} params"
            cost += "" if c["macs"] is None else f", {c['macs'] / 1e6:.2f} M MACs"
            parts.append(f"N={c['members']}: {100 * c['mean']:.1f} ({each}{cost})")
        text.append(f"- {row}: " + "; ".join(parts))
    return text


def per_clip(seeds: Dict[int, dict], metric: str = "accuracy") -> np.ndarray:
    """``(seeds, clips)`` per-clip scores in seed order: 1/0 correct (``accuracy``) or ``-log p(true)``."""
    rows = []
    for s in sorted(seeds):
        p, y = seeds[s]["probs"], seeds[s]["labels"]
        rows.append((p.argmax(1) == y).astype(float) if metric == "accuracy"
                    else -np.log(np.clip(p[np.arange(len(y)), y], 1e-7, 1.0)))
    return np.array(rows)


def compare(a: Dict[int, dict], b: Dict[int, dict], resamples: int = 10000, metric: str = "accuracy",
            groups=None) -> dict:
    """Paired bootstrap of ``a - b`` over the seeds both rows completed (an ensemble pairs with an ensemble or
    with every seed of a plain row: its one prediction is repeated); ``groups``: clip clusters (locations)."""
    common = sorted(set(a) & set(b))
    if not common:
        if -1 in a or -1 in b:  # ensemble vs seeds: pair the ensemble with each seed
            ens, other, sign = (a, b, 1) if -1 in a else (b, a, -1)
            pa, pb = np.repeat(per_clip(ens, metric), len(other), axis=0), per_clip(other, metric)
            r = paired_bootstrap(*((pa, pb) if sign == 1 else (pb, pa)), resamples=resamples, groups=groups)
            return {**r, "seed_list": sorted(other)}
        raise DataError(f"the two rows share no complete seed ({sorted(a)} vs {sorted(b)}); pair rows run with the "
                        "same seeds.")
    return {**paired_bootstrap(per_clip({s: a[s] for s in common}, metric),
                               per_clip({s: b[s] for s in common}, metric), resamples=resamples, groups=groups),
            "seed_list": common}


def seed_noise(seeds: Dict[int, dict], resamples: int = 10000, groups=None) -> dict:
    """Seed-to-seed noise of one row: ``{"std": std of pooled accuracy over seeds (ddof 1), "pairs": [paired
    bootstrap (clips) of seed i - seed j, ...]}``; two seeds of one configuration differ by noise only."""
    order = sorted(seeds)
    scores = per_clip(seeds)
    pairs = [{**paired_bootstrap(scores[i], scores[j], resamples=resamples, over="clips", groups=groups),
              "seeds_ab": [order[i], order[j]]}
             for i in range(len(order)) for j in range(i + 1, len(order))]
    return {"std": float(scores.mean(axis=1).std(ddof=1)), "pairs": pairs}


def _ms(pair, scale=100.0, digits=1) -> str:
    return f"{scale * pair[0]:.{digits}f} ± {scale * pair[1]:.{digits}f}"


def table(summaries: Dict[str, dict]) -> str:
    lines = ["| row | seeds | pooled accuracy % | macro class-wise % | log loss | params | MACs / input | run time |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for name, s in summaries.items():
        seeds = ", ".join(map(str, s.get("members") or s["seeds"]))
        seeds = "ensemble of " + seeds if s.get("members") else seeds
        times = f" x {len(s['members'])}" if s.get("members") else ""  # an ensemble runs every member
        macs = "-" if s["macs"] is None else f"{s['macs'] / 1e6:.2f} M" + times
        params = "-" if s["params"] is None else f"{s['params']:,}" + times
        lines.append(f"| {name} | {seeds} | {_ms(s['accuracy'])} | {_ms(s['macro_class_accuracy'])} | "
                     f"{_ms(s['log_loss'], 1, 3)} | {params} | {macs} | {s['minutes']:.0f} min |")
    return "\n".join(lines)


def cv_report(out, rows: Optional[Sequence[str]] = None, compare_pairs: Sequence[Sequence[str]] = (),
              ensembles: Optional[Sequence[str]] = None, resamples: int = 10000) -> str:
    """Markdown report of the complete rows under ``out`` (every row folder unless ``rows``); also writes
    ``OUT/cv_table.md`` and ``OUT/cv_results.json``. ``ensembles``: rows to add as ``<row>+ens`` (``[]``: all,
    None: none). ``compare_pairs``: ``[(row_a, row_b), ...]`` (``<row>+ens`` allowed)."""
    out = Path(out)
    names, _, k = _fold_file(out)
    candidates = rows or sorted(p.name for p in out.iterdir() if p.is_dir() and any(p.glob("seed*_fold*")))
    loaded = {r: load_row(out, r) for r in candidates}
    loaded = {r: v for r, v in loaded.items() if v}
    if ensembles is not None:
        for r in list(loaded):
            if (not ensembles or r in ensembles) and len(loaded[r]) > 1:
                loaded[r + ENSEMBLE] = ensemble_of(loaded[r])
    summaries = {}
    for r, v in loaded.items():
        summaries[r] = row_summary(v)
        if -1 in v:
            summaries[r]["members"] = v[-1]["members"]
    text = [f"Cross-validation: {k} folds over {len(names)} clips (one clip = {100 / len(names):.2f} points); "
            "pooled over every clip, mean ± std over seeds.", "", table(summaries), ""]
    comparisons = []
    places = locations(out)
    for a, b in compare_pairs:
        missing = [x for x in (a, b) if x not in loaded]
        if missing:
            text.append(f"- {a} vs {b}: not complete yet ({', '.join(missing)})")
            continue
        c = compare(loaded[a], loaded[b], resamples, groups=places)
        c["log_loss"] = compare(loaded[a], loaded[b], resamples, metric="log_loss", groups=places)
        c["clips_only"] = compare(loaded[a], loaded[b], resamples)  # clips as if independent, for reference
        comparisons.append({"a": a, "b": b, **c})
        verdict = "interval excludes zero" if excludes_zero(c) else "interval includes zero: no measured difference"
        text.append(f"- {a} - {b}: pooled accuracy {describe(c)}, seeds {c['seed_list']}; {verdict}")
    curves = {r: ensemble_sizes(v) for r, v in loaded.items()
              if ensembles is not None and r + ENSEMBLE in loaded}
    if curves:
        text += _ensemble_size_lines(curves)
    noise = {r: seed_noise(v, resamples, places) for r, v in loaded.items() if len(v) > 1}
    if noise:
        text += ["", "Seed noise (what the instrument resolves): per row, the std of pooled accuracy over seeds, and "
                 "the paired difference between two seeds of the same configuration (locations bootstrap, 95 %):"]
        for r, n in noise.items():
            pairs = "; ".join(f"seed {p['seeds_ab'][0]} - {p['seeds_ab'][1]}: {100 * p['difference']:+.1f} "
                              f"[{100 * p['low']:+.1f}, {100 * p['high']:+.1f}]" for p in n["pairs"])
            text.append(f"- {r}: std {100 * n['std']:.1f} points; {pairs}")
    (out / "cv_table.md").write_text("\n".join(text) + "\n")
    record = {"folds": k, "clips": len(names), "rows": summaries, "comparisons": comparisons, "seed_noise": noise,
              "ensemble_sizes": curves}
    (out / "cv_results.json").write_text(json.dumps(record, indent=2, default=str) + "\n")
    return "\n".join(text)


def pair_run(out, row: str, seed: int, a: int, b: int) -> Path:
    """The run folder of ``row`` x ``seed`` trained without folds ``a`` and ``b`` (either order), scored on both."""
    a, b = sorted((a, b))
    return Path(out) / row / f"seed{seed}_pair{a}-{b}"


def _pair_seeds(out: Path, row: str, k: int) -> list:
    """Seeds of ``row`` whose every pair run (all ``k (k - 1) / 2``) is done."""
    seeds = sorted({int(p.name.split("_")[0][4:]) for p in (out / row).glob("seed*_pair*")})
    pairs = [(a, b) for a in range(1, k + 1) for b in range(a + 1, k + 1)]
    return [s for s in seeds if all((pair_run(out, row, s, a, b) / "cv.json").is_file() for a, b in pairs)]


def _teacher_members(out: Path, rows: Sequence[str], seeds, complete, what: str) -> list:
    """``[(row, seed), ...]``: ``seeds`` of every row, or (None) the seeds ``complete(row)`` finds done."""
    members = []
    for row in rows:
        done = complete(row) if seeds is None else list(seeds)
        if not done:
            raise DataError(f"{out / row}: no seed of this row has all its {what} done; nothing to build a teacher "
                            "from.")
        members += [(row, s) for s in done]
    return members


def _ensemble_of_files(files, clips=None):
    """The ensemble (mean logits) of the teacher-logits ``files``, each first cut to ``clips`` when given."""
    from keras_dssdn.distill.logits import TeacherLogits

    absent = [str(f) for f in files if not f.is_file()]
    if absent:
        raise DataError(f"out-of-fold logits missing: {', '.join(absent)}; finish those runs first.")
    logits = [TeacherLogits.load(f) for f in files]
    logits = logits if clips is None else [t.subset(clips) for t in logits]
    return logits[0].merged(*logits[1:]) if len(logits) > 1 else logits[0]


def oof_teacher(out, rows: Sequence[str], path=None, seeds: Optional[Sequence[int]] = None):
    """Out-of-fold ensemble teacher logits over every clip: for each fold ``k``, the ensemble (mean logits,
    :meth:`~keras_dssdn.distill.logits.TeacherLogits.merged`) of the runs of ``rows`` x complete seeds that trained
    on the other folds, scored on fold ``k``; the K parts joined (:meth:`TeacherLogits.joined`, what
    ``dssdn-teacher join`` does) into one file keyed by the dataset's own clip paths. The rows must share one
    segment layout (e.g. all 1-s models). Saved to ``path`` when given; returns the TeacherLogits.

    Not for students scored on these same folds: a clip of fold j is scored by models that trained on every other
    fold, so a student tested on fold k learns from models that heard fold k (docs/accuracy.md measures how much
    that flatters it). Use :func:`nested_teacher` there.
    """
    out = Path(out)
    _, _, k = _fold_file(out)
    members = _teacher_members(out, rows, seeds, lambda row: sorted(load_row(out, row)), f"{k} folds")
    parts = [_ensemble_of_files([out / row / f"seed{s}_fold{fold}" / "oof.npz" for row, s in members])
             for fold in range(1, k + 1)]
    joined = parts[0].joined(*parts[1:])
    if path is not None:
        joined.save(path)
    return joined


def nested_teacher(out, rows: Sequence[str], fold: int, path=None, seeds: Optional[Sequence[int]] = None):
    """Leak-free teacher logits for a student scored on ``fold`` (and trained on the other folds): every clip of
    each other fold j is scored by the ensemble of ``rows`` x seeds trained without folds j and ``fold``
    (:func:`pair_run`, ``tools/benchmark_accuracy.py --nested``), so no teacher heard the student's test fold or
    the clip it scores; the K - 1 parts joined into one file over the student's training clips. ``seeds``: default
    every seed with all its pair runs done. Saved to ``path`` when given; returns the TeacherLogits."""
    out = Path(out)
    _, _, k = _fold_file(out)
    if not 1 <= fold <= k:
        raise DataError(f"fold {fold}: {out / 'folds.csv'} has folds 1..{k}.")
    fold_of = {r[0]: int(r[3]) for r in _fold_rows(out)}
    members = _teacher_members(out, rows, seeds, lambda row: _pair_seeds(out, row, k), "pair runs (--nested)")
    parts = []
    for j in (f for f in range(1, k + 1) if f != fold):
        clips = [name for name, f in fold_of.items() if f == j]
        parts.append(_ensemble_of_files([pair_run(out, row, s, j, fold) / "oof.npz" for row, s in members], clips))
    joined = parts[0].joined(*parts[1:])
    if path is not None:
        joined.save(path)
    return joined


#: The files of a finished run that the report and the teacher read (the rest of the run folder is not needed).
RECORD_FILES = ("cv.json", "oof.npz")


def save_record(out, dest) -> int:
    """Copy ``OUT/folds.csv`` and :data:`RECORD_FILES` of every finished run (one with ``cv.json``) to the same
    places under ``dest`` (created; files of the same name there are replaced, nothing else is touched).
    Returns the number of runs copied."""
    out, dest = Path(out), Path(dest)
    if not (out / "folds.csv").is_file():
        raise DataError(f"{out} has no folds.csv: it is not a cross-validation benchmark folder (--folds K --out).")
    if dest.resolve() == out.resolve():
        raise DataError(f"--save-record {dest} is the benchmark folder itself; name another folder.")
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(out / "folds.csv", dest / "folds.csv")
    runs = sorted(p.parent for pattern in ("*/seed*_fold*/cv.json", "*/seed*_pair*/cv.json") for p in out.glob(pattern))
    for run in runs:
        target = dest / run.parent.name / run.name
        target.mkdir(parents=True, exist_ok=True)
        for name in RECORD_FILES:
            shutil.copyfile(run / name, target / name)
    return len(runs)
