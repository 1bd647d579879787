"""Data-efficient training subsets (DCASE 2024 Task 1): 5, 10, 25, 50 or 100 % of the training split.

:func:`train_subset` returns the clips a run trains on for ``train_subset=<percent>``:

* the dataset's official split file when it has one: DCASE 2024 ships ``split5.csv``,
  ``split10.csv``, ``split25.csv``, ``split50.csv`` and ``split100.csv`` (tab-separated,
  ``filename  scene_label``) in ``split_setup/``; the dataset root and ``evaluation_setup/`` are
  searched too (:data:`SPLIT_FOLDERS`). The training split is restricted to the files it lists;
* otherwise a subset drawn with a seed, stratified by class and device: in every (class, device)
  group of the training split, a seeded shuffle keeps its first ``max(1, round(n * percent / 100))``
  clips. Subsets of one seed are nested (5 % within 10 % within 25 % ...), as DCASE's are.

The trainer writes the chosen clips into the run folder (``subset.csv``, through
:mod:`keras_dssdn.runs`), so a resumed run, fine-tuning and a reader of the run see the same list.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Optional

import numpy as np

from keras_dssdn.errors import ConfigError, MetadataError

#: The subset sizes offered, in percent of the training split.
SUBSET_PERCENTS = (5, 10, 25, 50, 100)
#: Where official split files are looked for, relative to the dataset root.
SPLIT_FOLDERS = ("split_setup", ".", "evaluation_setup")


def check_train_subset(percent) -> None:
    """Refuse a subset size that is not offered (a :class:`~keras_dssdn.errors.ConfigError` naming it)."""
    if isinstance(percent, bool) or percent not in SUBSET_PERCENTS:
        raise ConfigError(f"train_subset={percent!r} is not offered; choose one of "
                          f"{', '.join(str(p) for p in SUBSET_PERCENTS)} (percent of the training split, DCASE 2024).")


def official_split_file(root, percent: int) -> Optional[Path]:
    """The dataset's ``split<percent>.csv`` (or ``.txt``), or None."""
    if not root:
        return None
    for folder in SPLIT_FOLDERS:
        for ext in (".csv", ".txt"):
            path = Path(root) / folder / f"split{percent}{ext}"
            if path.is_file():
                return path
    return None


def _official_subset(clips, path: Path):
    from keras_dssdn.data.datasets import read_csv

    listed = read_csv(path, root=clips.root, check_files=False, labelled=False)
    names = {c.filename for c in listed}
    chosen = [i for i, c in enumerate(clips) if c.filename in names]
    if not chosen:
        raise MetadataError(f"{path}: none of its {len(names)} files is in {clips.name} ({len(clips)} clips); is it "
                            "the split file of this dataset?")
    return chosen


def stratified_indices(clips, percent: int, seed: int) -> list:
    """Indices (sorted) of a seeded subset of ``clips`` with about ``percent`` % of every (class, device) group."""
    groups = defaultdict(list)
    for i, c in enumerate(clips):
        groups[(c.label or "", c.device or "")].append(i)
    rng = np.random.default_rng(seed)
    chosen = []
    for key in sorted(groups):
        members = groups[key]
        order = rng.permutation(len(members))
        keep = max(1, int(np.floor(len(members) * percent / 100.0 + 0.5)))
        chosen += [members[j] for j in order[:keep]]
    return sorted(chosen)


def train_subset(clips, percent: int, seed: int = 0):
    """``(subset ClipList, description)`` of the training ``clips`` for ``train_subset=percent`` (see the module
    doc); ``percent=100`` without an official ``split100`` file returns ``clips`` itself."""
    check_train_subset(percent)
    official = official_split_file(clips.root, percent)
    if official is not None:
        indices, how = _official_subset(clips, official), f"official split file {official}"
    elif percent == 100:
        return clips, "the whole training split"
    else:
        indices, how = stratified_indices(clips, percent, seed), f"drawn with seed {seed}, stratified by class and device"
    subset = clips.subset(indices, name=f"{clips.name} ({percent} % subset)")
    return subset, f"{len(subset)} of {len(clips)} clips, {how}"


def run_subset(cfg, clips, resumed_run=None, verbose: int = 0):
    """The training clips of a run with ``cfg.train_subset``: :func:`train_subset`, or for a resumed run the clips
    its ``subset.csv`` lists (so that a changed split file cannot change a run half-way)."""
    if cfg.train_subset == 100 and official_split_file(clips.root, 100) is None:
        return clips
    saved = resumed_run.subset_filenames() if resumed_run is not None else None
    if saved is not None:
        names = set(saved)
        subset = clips.subset([i for i, c in enumerate(clips) if c.filename in names],
                              name=f"{clips.name} ({cfg.train_subset} % subset)")
        if len(subset) != len(names):
            raise MetadataError(f"{resumed_run.path}/subset.csv lists {len(names)} clips, {len(names) - len(subset)} "
                                f"of which are not in {clips.name}; resume with the dataset the run started on.")
        how = f"{len(subset)} clips from the run's subset.csv"
    else:
        subset, how = train_subset(clips, cfg.train_subset, cfg.seed)
    if verbose:
        print(f"train_subset={cfg.train_subset}: {how}")
    return subset
