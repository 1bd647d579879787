"""DCASE Task 1 metrics from class probabilities.

All functions take ``y_true`` int class ids ``(N,)`` and ``probs`` float
``(N, K)`` (rows need not be normalised exactly; they are renormalised).

* accuracy: fraction of argmax predictions that are right;
* class-wise accuracy (recall per class) and its macro average, the DCASE
  ranking metric (insensitive to class imbalance);
* multi-class log loss: ``-mean(log p[y])`` with ``p`` clipped to
  ``[1e-15, 1]`` as scikit-learn does;
* the same per device, and the confusion matrix (rows: true, cols: predicted).
"""

from __future__ import annotations

from typing import Dict, Optional, Sequence

import numpy as np

EPS = 1e-15


def _check(y_true, probs):
    y_true = np.asarray(y_true).astype(np.int64).reshape(-1)
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[0] != y_true.shape[0]:
        raise ValueError(f"probs must be (N, K) with N = len(y_true) = {y_true.shape[0]}; got {probs.shape}.")
    if y_true.size and (y_true.min() < 0 or y_true.max() >= probs.shape[1]):
        raise ValueError(f"labels must be class ids in [0, {probs.shape[1]}); got range "
                         f"[{y_true.min()}, {y_true.max()}]. Is the model trained on these classes?")
    return y_true, probs


def confusion_matrix(y_true, y_pred, num_classes: int) -> np.ndarray:
    """``(K, K)`` int counts, rows true class, columns predicted class."""
    cm = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(cm, (np.asarray(y_true, np.int64), np.asarray(y_pred, np.int64)), 1)
    return cm


def log_loss(y_true, probs) -> float:
    """Mean multi-class cross-entropy in nats (probabilities clipped to [1e-15, 1])."""
    y_true, probs = _check(y_true, probs)
    probs = probs / np.clip(probs.sum(axis=1, keepdims=True), EPS, None)
    p = np.clip(probs[np.arange(len(y_true)), y_true], EPS, 1.0)
    return float(-np.mean(np.log(p)))


def classification_metrics(y_true, probs, class_names: Sequence[str],
                           devices: Optional[Sequence[str]] = None) -> Dict:
    """Accuracy, class-wise and macro accuracy, log loss, per-class log loss, per-device results, confusion.

    Returns a JSON-ready dict. Classes absent from ``y_true`` get accuracy None
    and are left out of the macro average (reported as ``classes_missing``).
    """
    y_true, probs = _check(y_true, probs)
    k = probs.shape[1]
    if len(class_names) != k:
        raise ValueError(f"{len(class_names)} class names for {k} model outputs.")
    y_pred = probs.argmax(axis=1)
    cm = confusion_matrix(y_true, y_pred, k)
    support = cm.sum(axis=1)
    classwise = {}
    class_loss = {}
    for i, name in enumerate(class_names):
        mask = y_true == i
        classwise[name] = float(cm[i, i] / support[i]) if support[i] else None
        class_loss[name] = log_loss(y_true[mask], probs[mask]) if support[i] else None
    present = [v for v in classwise.values() if v is not None]
    out = {
        "examples": int(len(y_true)),
        "accuracy": float(np.mean(y_pred == y_true)) if len(y_true) else None,
        "macro_class_accuracy": float(np.mean(present)) if present else None,
        "log_loss": log_loss(y_true, probs) if len(y_true) else None,
        "macro_class_log_loss": float(np.mean([v for v in class_loss.values() if v is not None])) if present else None,
        "class_accuracy": classwise,
        "class_log_loss": class_loss,
        "class_support": {n: int(s) for n, s in zip(class_names, support)},
        "classes_missing": [n for n, v in classwise.items() if v is None],
        "confusion_matrix": cm.tolist(),
        "class_names": list(class_names),
    }
    if devices is not None and any(devices):
        devices = np.asarray(devices)
        table = {}
        for d in sorted(set(devices.tolist())):
            mask = devices == d
            pred = y_pred[mask]
            truth = y_true[mask]
            per_class = [float(np.mean(pred[truth == i] == i)) for i in range(k) if np.any(truth == i)]
            table[d or "(unknown)"] = {
                "examples": int(mask.sum()),
                "accuracy": float(np.mean(pred == truth)),
                "macro_class_accuracy": float(np.mean(per_class)),
                "log_loss": log_loss(truth, probs[mask]),
            }
        out["device"] = table
    return out


def aggregate_clips(probs, clip_index, y_true=None):
    """Average segment probabilities per clip: ``(N, K)`` -> ``(C, K)`` in order of first appearance.

    Returns ``(clip_probs, clip_ids, clip_labels)``; labels are checked to be
    constant within a clip.
    """
    probs = np.asarray(probs, np.float64)
    clip_index = np.asarray(clip_index).reshape(-1)
    ids, first, inverse = np.unique(clip_index, return_index=True, return_inverse=True)
    order = np.argsort(first)
    sums = np.zeros((len(ids), probs.shape[1]))
    np.add.at(sums, inverse, probs)
    counts = np.bincount(inverse, minlength=len(ids))[:, None]
    clip_probs = (sums / counts)[order]
    labels = None
    if y_true is not None:
        y_true = np.asarray(y_true).reshape(-1)
        labels = np.empty(len(ids), dtype=y_true.dtype)
        labels[inverse] = y_true
        if np.any(labels[inverse] != y_true):
            raise ValueError("Segments of one clip carry different labels.")
        labels = labels[order]
    return clip_probs, ids[order], labels


def markdown_report(metrics: Dict, title: str = "Evaluation") -> str:
    """Human-readable Markdown: overall figures, class-wise table, device table."""
    def pct(v):
        return "-" if v is None else f"{100 * v:.2f} %"

    def num(v):
        return "-" if v is None else f"{v:.4f}"

    lines = [f"# {title}", "",
             f"- examples: {metrics['examples']}",
             f"- accuracy: {pct(metrics['accuracy'])}",
             f"- macro class-wise accuracy (DCASE ranking metric): {pct(metrics['macro_class_accuracy'])}",
             f"- log loss: {num(metrics['log_loss'])}", "",
             "| class | examples | accuracy | log loss |", "|---|---:|---:|---:|"]
    for name in metrics["class_names"]:
        lines.append(f"| {name} | {metrics['class_support'][name]} | {pct(metrics['class_accuracy'][name])} | "
                     f"{num(metrics['class_log_loss'][name])} |")
    if metrics.get("device"):
        lines += ["", "| device | examples | accuracy | macro class-wise accuracy | log loss |", "|---|---:|---:|---:|---:|"]
        for d, r in metrics["device"].items():
            lines.append(f"| {d} | {r['examples']} | {pct(r['accuracy'])} | {pct(r['macro_class_accuracy'])} | {num(r['log_loss'])} |")
    return "\n".join(lines) + "\n"


def plot_confusion(metrics: Dict, path, title: str = "Confusion matrix") -> None:
    """Write the confusion matrix (row-normalised colours, counts written in) as a PNG, atomically."""
    import os

    # a Figure of its own (Agg canvas), not pyplot: the caller's backend (a notebook's inline plots) is left alone
    from matplotlib.figure import Figure

    cm = np.asarray(metrics["confusion_matrix"], float)
    names = metrics["class_names"]
    norm = cm / np.clip(cm.sum(axis=1, keepdims=True), 1, None)
    size = max(4.0, 0.55 * len(names) + 2.0)
    fig = Figure(figsize=(size, size))
    ax = fig.subplots()
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(len(names)):
        for j in range(len(names)):
            if cm[i, j]:
                ax.text(j, i, int(cm[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if norm[i, j] > 0.5 else "black")
    acc = metrics.get("macro_class_accuracy")
    ax.set_title(title + (f" (macro acc. {100 * acc:.1f} %)" if acc is not None else ""), fontsize=10)
    fig.tight_layout()
    from keras_dssdn.fileio import save_figure_atomic

    save_figure_atomic(fig, path, dpi=110)
