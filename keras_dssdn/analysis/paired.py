"""Paired comparison of two rows scored on the same clips (and the same seeds): the difference of their pooled
scores with a bootstrap interval.

Two rows of the cross-validation benchmark (``tools/benchmark_accuracy.py --folds K``) are *paired*: both score
every clip of the dataset once per seed, on the same folds, each run of row A having a twin of row B with the same
seed. Per-clip scores ``a[s, n]`` and ``b[s, n]`` (seed ``s``, clip ``n``; for accuracy 1 when the clip is
right, else 0) give the pooled difference ``mean(a) - mean(b)``. Its uncertainty comes from which clips the
dataset happens to hold and which seeds were drawn: :func:`paired_bootstrap` resamples clips (with replacement,
the same clips for both rows, so what the rows share cancels; with ``groups``, whole recording locations, since
clips of one place succeed or fail together) and, with ``over="clips_seeds"``, the seed pairs as
well, and reports the percentile interval of the resampled differences.

With 3 seeds the seed resampling is coarse (a resample holds 1 to 3 distinct seeds); it still widens the interval
by the seed-to-seed spread, which is the point.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

OVER = ("clips", "clips_seeds")


def _as_matrix(x, name: str) -> np.ndarray:
    x = np.asarray(x, np.float64)
    if x.ndim == 1:
        x = x[None]
    if x.ndim != 2 or x.size == 0:
        raise ValueError(f"{name}: expected per-clip scores of shape (clips,) or (seeds, clips), got {x.shape}.")
    return x


def paired_bootstrap(a, b, *, resamples: int = 10000, level: float = 0.95, over: str = "clips_seeds",
                     seed: Optional[int] = 0, chunk: int = 2000, groups=None) -> dict:
    """Difference ``mean(a) - mean(b)`` of paired per-clip scores and its bootstrap interval.

    ``a``, ``b``: ``(clips,)`` or ``(seeds, clips)`` arrays, row ``s`` of ``a`` paired with row ``s`` of ``b``
    (same seed) and column ``n`` with column ``n`` (same clip). ``over``: ``"clips"`` resamples clips only,
    ``"clips_seeds"`` clips and seed pairs independently. ``groups``: ``(clips,)`` cluster ids (e.g. recording
    locations): whole clusters are resampled instead of single clips (clips of one place are not independent),
    and a resample's difference is its clips' mean (ratio estimator, clusters differ in size). Returns
    ``{"difference", "low", "high", "level", "over", "seeds", "clips", "clusters", "resamples"}`` in the
    scores' units (fractions for accuracy).
    """
    a, b = _as_matrix(a, "a"), _as_matrix(b, "b")
    if a.shape != b.shape:
        raise ValueError(f"paired rows need the same seeds and clips: {a.shape} vs {b.shape}.")
    if over not in OVER:
        raise ValueError(f"over must be one of {OVER}, got {over!r}.")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level!r}.")
    d = a - b  # (S, N)
    s, n = d.shape
    if groups is not None:
        groups = np.asarray(groups)
        if groups.shape != (n,):
            raise ValueError(f"groups: one id per clip expected ({n}), got shape {groups.shape}.")
        _, gid = np.unique(groups, return_inverse=True)
    else:
        gid = np.arange(n)
    g = int(gid.max()) + 1
    rng = np.random.default_rng(seed)
    stats = []
    for start in range(0, resamples, chunk):
        m = min(chunk, resamples - start)
        clip_counts = _counts(rng.integers(0, g, (m, g)), g)[:, gid]  # (m, N): each clip counts as its cluster
        seed_counts = (_counts(rng.integers(0, s, (m, s)), s) if over == "clips_seeds" and s > 1
                       else np.ones((m, s)))
        stats.append(np.sum((seed_counts @ d) * clip_counts, axis=1) / (s * clip_counts.sum(axis=1)))
    stats = np.concatenate(stats)
    tail = (1 - level) / 2
    low, high = np.quantile(stats, [tail, 1 - tail])
    return {"difference": float(d.mean()), "low": float(low), "high": float(high), "level": level, "over": over,
            "seeds": int(s), "clips": int(n), "clusters": g, "resamples": int(resamples)}


def _counts(indices: np.ndarray, size: int) -> np.ndarray:
    """``(m, size)`` how often each index occurs in each row of ``indices`` ``(m, k)``."""
    m = indices.shape[0]
    flat = indices + size * np.arange(m)[:, None]
    return np.bincount(flat.ravel(), minlength=m * size).reshape(m, size).astype(np.float64)


def excludes_zero(result: dict) -> bool:
    """Whether the interval of :func:`paired_bootstrap` lies wholly on one side of zero."""
    return result["low"] > 0 or result["high"] < 0


def describe(result: dict, scale: float = 100.0, unit: str = "points") -> str:
    """``"+2.3 points (95 % interval +0.5 to +4.1; clips x seeds bootstrap, 3 seeds x 393 clips)"``."""
    what = "clips" if result.get("clusters", result["clips"]) == result["clips"] else "locations"
    over = f"{what} x seeds" if result["over"] == "clips_seeds" else what
    return (f"{scale * result['difference']:+.1f} {unit} ({100 * result['level']:.0f} % interval "
            f"{scale * result['low']:+.1f} to {scale * result['high']:+.1f}; {over} bootstrap, "
            f"{result['seeds']} seed(s) x {result['clips']} clips" + (f" in {result['clusters']} locations"
                                                           if what == "locations" else "") + ")")
