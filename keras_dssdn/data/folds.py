"""Cross-validation folds over every clip of a DCASE-layout set: the one module that builds, writes and reads
the fold file, and the dataset *view* a training run reads a fold through.

**Location rule** (:func:`location_of`). Clips recorded at one place sound alike, so a fold never splits a
recording location. A clip's location is the ``identifier`` column of ``meta.csv`` when the set has one (TUT 2017,
TUT 2018, TAU 2019/2020 all do); otherwise the TUT file-name rule: the file stem is ``<location>_<start>_<end>``
(``audio/a001_160_170.flac`` -> ``a001``, the recording-location id before the segment suffix). A clip with
neither is refused, named. On tut17-dev both agree for all 393 clips (156 locations), and the official
fold1_train / fold1_evaluate share none (tests/data/test_folds.py checks both on the real metadata).

**Folds** (:func:`build_folds`). ``K`` folds, every clip in exactly one, every location in exactly one,
stratified by class: the locations of each class (a location has one class in these sets; otherwise its most
frequent label is used) are shuffled with ``seed``, then sorted by clip count (largest first, stable) and each is
given to the fold holding the fewest clips of that class so far (ties: fewest clips overall, then the lower
fold). Deterministic for a ``(clips, K, seed)``.

**Fold file** (:func:`write_folds`, :func:`read_folds`), tab-separated, UTF-8::

    # keras_dssdn folds: k=4 seed=0 dataset=tut17-dev clips=393
    filename    scene_label    identifier    fold
    audio/a001_160_170.flac    residential_area    a001    3

``fold`` counts from 1. Reading checks the file against the dataset and refuses (a
:class:`~keras_dssdn.errors.MetadataError` naming the clip) a clip of the dataset the file lacks, a clip the
dataset lacks, a clip listed twice, a label that differs from the dataset's, a fold outside ``1..K`` or empty, and
a location in two folds.

**View** (:func:`write_view`): a folder in the DCASE layout whose ``evaluation_setup/fold<k>_train.csv`` is every
fold but ``k`` and ``fold<k>_evaluate.csv`` fold ``k``, so that ``train`` reads fold ``k`` with ``data=<view>
fold=<k>`` unchanged. For a *leak-free teacher* (docs/accuracy.md, "Distillation on the CV instrument") the view
also holds one split per pair of folds, numbered after the K folds (:func:`pair_folds`; K = 4: 5 = {1, 2},
6 = {1, 3}, 7 = {1, 4}, 8 = {2, 3}, 9 = {2, 4}, 10 = {3, 4}): ``fold<n>_train.csv`` is every fold but the pair and
``fold<n>_evaluate.csv`` the pair's two folds. Its ``meta.csv`` repeats the dataset's rows; the audio is reached
through symbolic links to the dataset's top-level audio folders (nothing copied), so clip keys (paths relative to
the root: teacher logits) are the dataset's own.
"""

from __future__ import annotations

import csv
import dataclasses
import os
import re
from collections import Counter, defaultdict
from pathlib import Path
from itertools import combinations
from typing import Dict, List, Optional, Tuple

import numpy as np

from keras_dssdn.errors import ConfigError, MetadataError
from keras_dssdn.fileio import write_text_atomic

HEADER = ("filename", "scene_label", "identifier", "fold")
MAGIC = "# keras_dssdn folds:"
#: TUT file stem: ``<location>_<start>_<end>`` (e.g. ``a001_160_170``).
_TUT_STEM = re.compile(r"^(?P<location>[A-Za-z]+\d+)_\d+_\d+$")
_SHOWN = 5


def location_of(clip) -> str:
    """The recording location of a :class:`~keras_dssdn.data.datasets.Clip` (see the module doc: metadata
    ``identifier``, else the TUT file-name prefix); MetadataError naming the clip when neither exists."""
    if clip.identifier:
        return clip.identifier
    stem = os.path.splitext(os.path.basename(clip.filename))[0]
    m = _TUT_STEM.match(stem)
    if m is None:
        raise MetadataError(f"{clip.filename} ({clip.where or 'metadata'}): no recording location: meta.csv has no "
                            "identifier for it and its name is not <location>_<start>_<end>. Add an identifier "
                            "column to meta.csv (clips of one place must not be split across folds).")
    return m.group("location")


@dataclasses.dataclass
class Folds:
    """A fold assignment: ``fold[filename] -> 1..k`` over every clip of a dataset (in the dataset's order)."""

    fold: Dict[str, int]
    k: int
    seed: Optional[int] = None
    dataset: str = ""

    def members(self, k: int) -> List[str]:
        """Filenames in fold ``k`` (dataset order)."""
        return [f for f, v in self.fold.items() if v == k]

    def sizes(self) -> List[int]:
        counts = Counter(self.fold.values())
        return [counts.get(i, 0) for i in range(1, self.k + 1)]


def _location_groups(clips):
    """``{location: [clip, ...]}`` in dataset order; checks every clip has a label and a location."""
    groups = defaultdict(list)
    for c in clips:
        if c.label is None:
            raise MetadataError(f"{c.filename} ({c.where}): no scene label; folds are built over labelled clips.")
        groups[location_of(c)].append(c)
    return groups


def build_folds(clips, k: int = 4, seed: int = 0) -> Folds:
    """K location-disjoint, class-stratified folds over ``clips`` (a ClipList, e.g. ``read_dcase(root, "all")``)."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 2:
        raise ConfigError(f"folds={k!r}: need an integer of at least 2.")
    groups = _location_groups(clips)
    if len(groups) < k:
        raise ConfigError(f"folds={k}: {clips.name or 'the dataset'} has only {len(groups)} recording locations; "
                          "choose fewer folds.")
    by_class = defaultdict(list)
    for loc, members in groups.items():
        label = Counter(c.label for c in members).most_common(1)[0][0]
        by_class[label].append(loc)
    rng = np.random.default_rng(seed)
    per_class = defaultdict(lambda: [0] * k)
    total = [0] * k
    of_location = {}
    for label in sorted(by_class):
        locs = sorted(by_class[label])
        locs = [locs[i] for i in rng.permutation(len(locs))]
        locs.sort(key=lambda loc: -len(groups[loc]))  # stable: equal sizes keep the shuffled order
        counts = per_class[label]
        for loc in locs:
            j = min(range(k), key=lambda i: (counts[i], total[i], i))
            of_location[loc] = j + 1
            counts[j] += len(groups[loc])
            total[j] += len(groups[loc])
    fold = {c.filename: of_location[location_of(c)] for c in clips}
    return Folds(fold, int(k), int(seed), os.path.basename(str(clips.root).rstrip("/")))


def write_folds(path, clips, folds: Folds) -> Path:
    """Write ``folds`` over ``clips`` as the fold file (module doc), atomically; returns the path."""
    lines = [f"{MAGIC} k={folds.k} seed={folds.seed} dataset={folds.dataset} clips={len(clips)}",
             "\t".join(HEADER)]
    for c in clips:
        lines.append("\t".join([c.filename, c.label or "", location_of(c), str(folds.fold[c.filename])]))
    return write_text_atomic(path, "\n".join(lines) + "\n")


def _parse(path: Path):
    """``[(line_no, {column: value})]`` of a fold file and its ``k=``/``seed=`` comment values."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise MetadataError(f"{path}: no such fold file.") from None
    except UnicodeDecodeError as e:
        raise MetadataError(f"{path}: not a UTF-8 text file ({e}); is it a fold file?") from None
    info, rows, header = {}, [], None
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        if line.startswith("#"):
            info.update(dict(kv.split("=", 1) for kv in line[len(MAGIC):].split() if "=" in kv)
                        if line.startswith(MAGIC) else {})
            continue
        fields = next(csv.reader([line], delimiter="\t"))
        if header is None:
            header = fields
            if tuple(header) != HEADER:
                raise MetadataError(f"{path} line {n}: header {header} is not {list(HEADER)}; is it a fold file "
                                    "written by keras_dssdn.data.folds?")
            continue
        if len(fields) != len(HEADER):
            raise MetadataError(f"{path} line {n}: {len(fields)} tab-separated fields, expected {len(HEADER)} "
                                f"({', '.join(HEADER)}): {fields!r}.")
        rows.append((n, dict(zip(HEADER, fields))))
    if header is None or not rows:
        raise MetadataError(f"{path}: no rows; a fold file lists every clip of the dataset.")
    return rows, info


def _fold_number(path, n, row, k) -> int:
    try:
        v = int(row["fold"])
    except ValueError:
        v = 0
    if not 1 <= v <= k:
        raise MetadataError(f"{path} line {n}: {row['filename']}: fold {row['fold']!r} is not one of 1..{k}.")
    return v


def read_folds(path, clips) -> Folds:
    """The fold file at ``path``, checked against ``clips`` (every clip of the dataset, ``read_dcase(root, "all")``).

    Refuses (MetadataError naming the clip and the line) a file that does not match the dataset; see the module doc.
    """
    path = Path(path)
    rows, info = _parse(path)
    try:
        k = int(info.get("k", 0)) or max(int(r["fold"]) for _, r in rows if r["fold"].isdigit())
    except ValueError:
        raise MetadataError(f"{path}: no valid fold numbers; is it a fold file?") from None
    dataset = {c.filename: c for c in clips}
    fold, line_of = {}, {}
    for n, row in rows:
        name = row["filename"]
        c = dataset.get(name)
        if c is None:
            raise MetadataError(f"{path} line {n}: clip {name} is not in {clips.name or 'the dataset'} "
                                f"({len(clips)} clips); the fold file was made for another dataset. Delete it "
                                "to build new folds, or give the dataset it was made for.")
        if name in fold:
            raise MetadataError(f"{path} line {n}: clip {name} is listed twice (first on line {line_of[name]}).")
        if (c.label or "") != row["scene_label"]:
            raise MetadataError(f"{path} line {n}: clip {name} has label {row['scene_label']!r}, the dataset "
                                f"{c.label!r} ({c.where}); the fold file was made for another version of the data.")
        fold[name], line_of[name] = _fold_number(path, n, row, k), n
    missing = [c.filename for c in clips if c.filename not in fold]
    if missing:
        more = f" and {len(missing) - _SHOWN} more" if len(missing) > _SHOWN else ""
        raise MetadataError(f"{path}: {len(missing)} clips of {clips.name or 'the dataset'} are in no fold: "
                            f"{', '.join(missing[:_SHOWN])}{more}. Every clip must be scored once; delete the file "
                            "to build new folds.")
    _check_locations(path, clips, fold, line_of)
    empty = [i for i in range(1, k + 1) if i not in set(fold.values())]
    if empty:
        raise MetadataError(f"{path}: fold(s) {empty} hold no clip (k={k}).")
    seed = info.get("seed")
    return Folds({c.filename: fold[c.filename] for c in clips}, k,
                 int(seed) if seed not in (None, "None") else None, info.get("dataset", ""))


def _check_locations(path, clips, fold, line_of) -> None:
    first = {}
    for c in clips:
        loc = location_of(c)
        if loc in first and fold[first[loc].filename] != fold[c.filename]:
            other = first[loc]
            raise MetadataError(
                f"{path} line {line_of[c.filename]}: clip {c.filename} (location {loc}) is in fold "
                f"{fold[c.filename]}, but {other.filename} of the same location is in fold {fold[other.filename]} "
                f"(line {line_of[other.filename]}); a location must stay in one fold.")
        first.setdefault(loc, c)


def ensure_folds(path, clips, k: int, seed: int = 0, verbose: bool = False) -> Folds:
    """The folds in ``path`` when it exists (checked; its ``k`` must equal ``k``), else built and written there."""
    path = Path(path)
    if path.is_file():
        folds = read_folds(path, clips)
        if folds.k != k:
            raise ConfigError(f"{path} holds {folds.k} folds, not {k}; use --folds {folds.k}, or another output "
                              "folder for other folds.")
        how = "reused"
    else:
        folds = build_folds(clips, k, seed)
        write_folds(path, clips, folds)
        how = f"built with seed {seed}"
    if verbose:
        print(f"folds: {path} ({how}): {k} folds of {folds.sizes()} clips", flush=True)
    return folds


# ----------------------------------------------------------------------------- view


def pair_folds(k: int) -> Dict[int, Tuple[int, int]]:
    """``{split number: (a, b)}``: the view's split that holds out folds ``a < b`` of ``k``, numbered ``k + 1, ...``
    in the order of :func:`itertools.combinations` (module doc); none for ``k < 3`` (nothing would be left to
    train on)."""
    if k < 3:
        return {}
    return {k + 1 + i: pair for i, pair in enumerate(combinations(range(1, k + 1), 2))}


def pair_fold(k: int, a: int, b: int) -> int:
    """The view's split number that holds out folds ``a`` and ``b`` (either order) of ``k``."""
    pair = (min(a, b), max(a, b))
    found = [n for n, p in pair_folds(k).items() if p == pair]
    if not found:
        raise ConfigError(f"folds {a} and {b} of k={k}: no such pair (two different folds of 1..{k}, k >= 3).")
    return found[0]


def _row(c, *fields) -> str:
    return "\t".join([c.filename, *fields])


def _link(view: Path, root: Path, top: str) -> None:
    link, target = view / top, root / top
    if link.is_symlink() and os.path.realpath(link) == os.path.realpath(target):
        return
    if link.exists() or link.is_symlink():
        raise MetadataError(f"{link} exists and is not a link to {target}; give the view an empty folder.")
    os.symlink(target, link)


def write_view(view, clips, folds: Folds) -> Path:
    """Write the DCASE-layout view of ``folds`` into the folder ``view`` (module doc); returns it.

    ``clips``: every clip of the dataset (``read_dcase(root, "all")``), filenames relative to ``clips.root``.
    """
    view, root = Path(view), Path(clips.root)
    if view.resolve() == root.resolve():
        raise ConfigError(f"{view}: the view must be another folder than the dataset {root}.")
    (view / "evaluation_setup").mkdir(parents=True, exist_ok=True)
    tops = set()
    for c in clips:
        if os.path.isabs(c.filename) or c.filename.startswith(".."):
            raise MetadataError(f"{c.filename} ({c.where}): a view needs paths inside the dataset folder.")
        tops.add(Path(c.filename).parts[0])
    for top in sorted(tops):
        _link(view, root, top)
    meta = ["filename\tscene_label\tidentifier\tsource_label"]
    meta += [_row(c, c.label or "", location_of(c), c.device or "") for c in clips]
    write_text_atomic(view / "meta.csv", "\n".join(meta) + "\n")
    held_out = {k: (k,) for k in range(1, folds.k + 1)}
    held_out.update(pair_folds(folds.k))
    for n, held in held_out.items():
        for split, keep in (("train", lambda f: f not in held), ("evaluate", lambda f: f in held)):
            lines = ["filename\tscene_label"] + [_row(c, c.label or "") for c in clips if keep(folds.fold[c.filename])]
            write_text_atomic(view / "evaluation_setup" / f"fold{n}_{split}.csv", "\n".join(lines) + "\n")
    pairs = ", ".join(f"{n} = folds {a} + {b}" for n, (a, b) in pair_folds(folds.k).items())
    write_text_atomic(view / "README.txt", f"Cross-validation view of {root} ({folds.k} folds), written by "
                      "keras_dssdn.data.folds.write_view: fold<k>_evaluate = fold k, fold<k>_train = the others; "
                      f"held-out pairs (leak-free teachers): {pairs or 'none'}.\n")
    return view
