"""The teacher-logits file: the one module that writes and reads it (``.npz``), and its CSV interchange form.

A teacher's outputs are stored once and looked up by *clip*, never by row order, so that they stay with their
clip whatever the pipeline does (shuffling, segmenting, subsets). One file holds::

    clips     (N,) str      clip path relative to the dataset root, '/'-separated (the DCASE ``filename``)
    logits    (N, S, K)     float32, the teacher (ensemble) logits of segment s of clip n; S = 1 for whole clips
    labels    (N,) str      the clip's label in the dataset the logits were made on ('' when unknown)
    sizes     (N,) int64    the clip's audio file size in bytes (-1 when unknown)
    members   (M, N, S, K)  float32, each teacher's own logits (absent for imported files)
    header    str           JSON: format, version, class_names (K, in class-id order), segment_seconds (null =
                            whole clips), clip_seconds, n_segments (S), dataset {name, split, fold, fingerprint,
                            clips}, models [{name, source, kind}], combine (how members became ``logits``)

Keys are ``(clip, segment index)``: segment ``s`` covers ``[s * segment_seconds, (s + 1) * segment_seconds)`` of
the clip cropped / padded to ``clip_seconds`` (the pipeline's ``segment_index``).

*Logits* are log-probabilities here: the package's models end in a softmax, so a member's logits are
``log p`` (equal to its pre-softmax logits up to a per-example constant, which no softmax sees). An ensemble's
logits are the **mean of its members' logits** (= log of the normalised geometric mean of their probabilities).
Logits made elsewhere (e.g. a PyTorch PaSST) enter through the CSV form (:func:`import_csv`): any real-valued
logits, since only ``softmax(logits / T)`` is ever used.

The *dataset fingerprint* is the SHA-256 of the sorted ``path<TAB>label<TAB>size`` rows of the file's clips;
the per-clip labels and sizes let :meth:`TeacherLogits.aligned` tell "made for another dataset" (same paths,
other labels or audio) from "clips missing".

CSV form (:meth:`TeacherLogits.to_csv`, :func:`import_csv`): a header ``clip,segment,<class 1>,...,<class K>``
(class columns in class-id order), then one row per clip and segment; ``segment`` may be left out for whole-clip
logits. Comma-separated, UTF-8; lines starting with ``#`` are comments.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import os
from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np

from keras_dssdn.errors import TeacherLogitsError
from keras_dssdn.fileio import write_bytes_atomic, write_text_atomic

FORMAT = "keras_dssdn.teacher_logits"
VERSION = 1
#: How an ensemble's members are combined (written into every file made by :mod:`keras_dssdn.distill.teacher`).
COMBINE = "mean of the members' logits (log-probabilities)"
_ARRAYS = ("clips", "logits", "labels", "sizes")
_SHOWN = 5


def _shown(items: Sequence[str]) -> str:
    more = f" and {len(items) - _SHOWN} more" if len(items) > _SHOWN else ""
    return ", ".join(str(i) for i in items[:_SHOWN]) + more


def clip_key(path: str, root: str) -> str:
    """The key of a clip: its path relative to the dataset ``root``, '/'-separated."""
    rel = os.path.relpath(os.path.abspath(path), os.path.abspath(root)) if root else path
    return rel.replace(os.sep, "/")


def clip_records(clips) -> tuple:
    """``(keys (N,) str, labels (N,) str, sizes (N,) int64)`` of a :class:`~keras_dssdn.data.datasets.ClipList`."""
    keys = np.array([clip_key(c.path, clips.root) for c in clips], dtype=str)
    labels = np.array([c.label or "" for c in clips], dtype=str)
    sizes = np.array([os.path.getsize(c.path) if os.path.isfile(c.path) else -1 for c in clips], np.int64)
    return keys, labels, sizes


def _mismatch(key, file_label, data_label, file_size, data_size, other_label) -> str:
    """One clip's difference between the logits file and the data, as plain text (numpy scalars made Python)."""
    if other_label:
        return f"{key} (label {str(file_label)!r} vs {str(data_label)!r})"
    return f"{key} (audio {int(file_size)} vs {int(data_size)} bytes)"


def dataset_fingerprint(keys, labels, sizes) -> str:
    """SHA-256 (hex) of the sorted ``key<TAB>label<TAB>size`` rows."""
    rows = sorted(f"{k}\t{l}\t{int(s)}" for k, l, s in zip(keys, labels, sizes))
    return hashlib.sha256("\n".join(rows).encode("utf-8")).hexdigest()


def softened(logits, temperature: float) -> np.ndarray:
    """``softmax(logits / temperature)`` over the last axis, float32 (numerically stable)."""
    z = np.asarray(logits, np.float64) / float(temperature)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)


def _same_seconds(a: Optional[float], b: Optional[float]) -> bool:
    return (a is None) == (b is None) and (a is None or abs(float(a) - float(b)) < 1e-6)


@dataclasses.dataclass
class TeacherLogits:
    """Teacher logits keyed by clip (see the module docstring for the file)."""

    clips: np.ndarray  # (N,) str
    logits: np.ndarray  # (N, S, K) float32
    class_names: List[str]
    clip_seconds: float
    segment_seconds: Optional[float] = None
    labels: Optional[np.ndarray] = None  # (N,) str
    sizes: Optional[np.ndarray] = None  # (N,) int64
    dataset: dict = dataclasses.field(default_factory=dict)
    models: List[dict] = dataclasses.field(default_factory=list)
    members: Optional[np.ndarray] = None  # (M, N, S, K)
    combine: str = COMBINE
    source: str = ""  # the file it was read from (for messages)

    def __post_init__(self):
        self.clips = np.asarray(self.clips, dtype=str)
        self.logits = np.asarray(self.logits, np.float32)
        n = len(self.clips)
        self.labels = np.full(n, "", dtype=object).astype(str) if self.labels is None else np.asarray(self.labels, str)
        self.sizes = np.full(n, -1, np.int64) if self.sizes is None else np.asarray(self.sizes, np.int64)
        where = self.source or "teacher logits"
        if self.logits.ndim != 3 or self.logits.shape[0] != n or self.logits.shape[2] != len(self.class_names):
            raise TeacherLogitsError(f"{where}: logits have shape {self.logits.shape}; expected (clips={n}, "
                                     f"segments, classes={len(self.class_names)}).")
        if len(self.labels) != n or len(self.sizes) != n:
            raise TeacherLogitsError(f"{where}: {n} clips but {len(self.labels)} labels and {len(self.sizes)} sizes.")
        if self.members is not None:
            self.members = np.asarray(self.members, np.float32)
            if self.members.shape[1:] != self.logits.shape:
                raise TeacherLogitsError(f"{where}: member logits {self.members.shape} do not match logits "
                                         f"{self.logits.shape}.")
        if not np.all(np.isfinite(self.logits)):
            raise TeacherLogitsError(f"{where}: the logits hold NaN or infinite values; write them again.")
        duplicated = sorted({k for k, c in zip(*np.unique(self.clips, return_counts=True)) if c > 1})
        if duplicated:
            raise TeacherLogitsError(f"{where}: clips listed twice: {_shown(duplicated)}.")
        self._row = {k: i for i, k in enumerate(self.clips)}

    # ---- shape -----------------------------------------------------------------------------------

    @property
    def n_segments(self) -> int:
        return int(self.logits.shape[1])

    @property
    def fingerprint(self) -> str:
        return dataset_fingerprint(self.clips, self.labels, self.sizes)

    def describe(self) -> str:
        seg = f"{self.n_segments} segments of {self.segment_seconds:g} s" if self.segment_seconds else "whole clips"
        name, split = self.dataset.get("name", "?"), self.dataset.get("split", "")
        made = split if split.startswith(name) else f"{name} {split}".strip()
        return (f"{len(self.clips)} clips x {seg} (clip_seconds {self.clip_seconds:g}) x {len(self.class_names)} "
                f"classes, made on {made} by {len(self.models) or 'unknown'} model(s)")

    # ---- lookup ----------------------------------------------------------------------------------

    def lookup(self, clip: str, segment: int = 0) -> np.ndarray:
        """The logits ``(K,)`` of ``clip`` (key, see :func:`clip_key`) and segment index ``segment``."""
        if clip not in self._row:
            raise TeacherLogitsError(f"{self.source or 'teacher logits'}: no logits for clip {clip!r}.")
        return self.logits[self._row[clip], segment]

    def aligned(self, clips, vocabulary, n_segments: int, segment_seconds: Optional[float],
                clip_seconds: float) -> np.ndarray:
        """The logits of every clip of ``clips`` (a ClipList), in its row order: ``(len(clips), S, K)`` float32.

        Checks, each raising :class:`~keras_dssdn.errors.TeacherLogitsError` naming this file: the class names
        and their order equal ``vocabulary``'s; the segment layout equals the student's (``n_segments`` of
        ``segment_seconds`` from clips of ``clip_seconds``; ``segment_seconds`` None for whole clips); the clips
        the file has carry the same labels and audio sizes (else it was made for another dataset); no clip is
        missing.
        """
        self._check_classes(list(vocabulary.names))
        self._check_segments(n_segments, segment_seconds, clip_seconds)
        keys, labels, sizes = clip_records(clips)
        rows = np.array([self._row.get(k, -1) for k in keys], np.int64)
        self._check_dataset(clips, keys, labels, sizes, rows)
        self._check_coverage(clips, keys, rows)
        return self.logits[rows]

    def check_covers(self, clips) -> None:
        """Refuse (:class:`~keras_dssdn.errors.TeacherLogitsError`) logits that lack clips of ``clips`` (a
        ClipList, e.g. a student's training split), naming how many, which split and the first ones; also refuses
        a file made for another dataset (same paths, other labels or audio)."""
        keys, labels, sizes = clip_records(clips)
        rows = np.array([self._row.get(k, -1) for k in keys], np.int64)
        self._check_dataset(clips, keys, labels, sizes, rows)
        self._check_coverage(clips, keys, rows)

    def _check_coverage(self, clips, keys, rows) -> None:
        missing = [k for k, r in zip(keys, rows) if r < 0]
        if missing:
            raise TeacherLogitsError(
                f"{self.source or 'The teacher logits'} lack {len(missing)} of the {len(keys)} clips of "
                f"{clips.name or 'the training split'}: {_shown(missing)}. Write logits for this split "
                f"(dssdn-teacher run ... --split <split>; out-of-fold parts: join every part), or train on the "
                "clips the file has.")

    def _check_classes(self, names: List[str]) -> None:
        mine = list(self.class_names)
        if mine == names:
            return
        where = self.source or "The teacher logits"
        if sorted(mine) == sorted(names):
            raise TeacherLogitsError(f"{where} list the student's classes in another order: {mine} (file) vs "
                                     f"{names} (student's class ids). Write the file in the student's class order "
                                     "(the CSV header names the columns; dssdn-teacher import --classes reorders).")
        raise TeacherLogitsError(f"{where} are for other classes: {mine}; the student has {names} (only in the "
                                 f"file: {sorted(set(mine) - set(names))}, only the student's: "
                                 f"{sorted(set(names) - set(mine))}). Use a teacher trained on these classes.")

    def _check_segments(self, n_segments: int, segment_seconds: Optional[float], clip_seconds: float) -> None:
        if self.n_segments == n_segments and _same_seconds(self.segment_seconds, segment_seconds) \
                and _same_seconds(self.clip_seconds, clip_seconds):
            return
        have = (f"{self.n_segments} segment(s) of {self.segment_seconds:g} s" if self.segment_seconds
                else f"{self.n_segments} whole-clip row(s)") + f" per {self.clip_seconds:g}-s clip"
        want = (f"{n_segments} segments of {segment_seconds:g} s" if segment_seconds
                else "1 whole-clip row") + f" per {clip_seconds:g}-s clip"
        raise TeacherLogitsError(
            f"{self.source or 'The teacher logits'} hold {have}; the student's examples need {want}. Write the "
            f"logits with the student's layout (dssdn-teacher run ... --clip-seconds {clip_seconds:g} "
            f"--segment-seconds {segment_seconds if segment_seconds else 'clip'}), or train the student with "
            f"segment_seconds={self.segment_seconds if self.segment_seconds else 'null'} "
            f"clip_seconds={self.clip_seconds:g}.")

    def _check_dataset(self, clips, keys, labels, sizes, rows) -> None:
        where = self.source or "The teacher logits"
        made = f"{self.dataset.get('name', '?')} {self.dataset.get('split', '')}".strip()
        found = rows >= 0
        if len(keys) and not found.any():
            raise TeacherLogitsError(
                f"{where} were made for another dataset ({made}, fingerprint {self.fingerprint[:12]}): none of the "
                f"{len(keys)} clips of {clips.name or 'the training split'} is in it (e.g. {str(keys[0])!r}; the file "
                f"has e.g. {str(self.clips[0])!r}). Write logits for this dataset with dssdn-teacher run.")
        r = rows[found]
        other_label = (self.labels[r] != "") & (labels[found] != "") & (self.labels[r] != labels[found])
        other_size = (self.sizes[r] >= 0) & (sizes[found] >= 0) & (self.sizes[r] != sizes[found])
        bad = [_mismatch(k, fl, sl, fs, ss, ol)
               for k, fl, sl, fs, ss, ol, os_ in zip(keys[found], self.labels[r], labels[found], self.sizes[r],
                                                     sizes[found], other_label, other_size) if ol or os_]
        if bad:
            raise TeacherLogitsError(
                f"{where} were made for another dataset ({made}): {len(bad)} of its clips have other labels or "
                f"other audio than in {clips.name or 'the training split'} (file vs data): {_shown(bad)}. Write "
                "logits for this dataset with dssdn-teacher run.")

    def ensemble_of(self, indices: Sequence[int]) -> "TeacherLogits":
        """The ensemble of the members at ``indices`` (their mean logits), as a new TeacherLogits."""
        if self.members is None:
            raise TeacherLogitsError(f"{self.source or 'These teacher logits'} keep no member logits.")
        chosen = self.members[list(indices)]
        return dataclasses.replace(self, logits=chosen.mean(axis=0), members=chosen,
                                   models=[self.models[i] for i in indices], source="")

    def subset(self, clips: Sequence[str]) -> "TeacherLogits":
        """The rows of ``clips`` (keys of this file, in that order; member logits kept), as a new TeacherLogits."""
        missing = [str(c) for c in clips if c not in self._row]
        if missing:
            raise TeacherLogitsError(f"{self.source or 'teacher logits'}: {len(missing)} of the {len(clips)} clips "
                                     f"asked for are not in it: {_shown(missing)}.")
        rows = np.array([self._row[c] for c in clips], dtype=np.int64)
        return dataclasses.replace(self, clips=self.clips[rows], logits=self.logits[rows], labels=self.labels[rows],
                                   sizes=self.sizes[rows], source="",
                                   members=None if self.members is None else self.members[:, rows])

    def merged(self, *others: "TeacherLogits") -> "TeacherLogits":
        """One ensemble of the members of this file and ``others`` (same clips, classes and segment layout)."""
        parts = [self, *others]
        for o in others:
            if list(o.clips) != list(self.clips) or o.class_names != self.class_names or o.logits.shape != \
                    self.logits.shape or not _same_seconds(o.segment_seconds, self.segment_seconds):
                raise TeacherLogitsError(f"{o.source or 'teacher logits'} and {self.source or 'teacher logits'} cover "
                                         "other clips, classes or segments: only files of one split and layout merge.")
            if o.members is None:
                raise TeacherLogitsError(f"{o.source or 'These teacher logits'} keep no member logits.")
        if self.members is None:
            raise TeacherLogitsError(f"{self.source or 'These teacher logits'} keep no member logits.")
        members = np.concatenate([p.members for p in parts])
        return dataclasses.replace(self, logits=members.mean(axis=0), members=members,
                                   models=[m for p in parts for m in p.models], source="")

    def joined(self, *others: "TeacherLogits") -> "TeacherLogits":
        """One file for the clips of this file and ``others`` together (disjoint clips; same classes, class order,
        clip length and segment layout), e.g. *out-of-fold* logits: each part of a split scored by teachers that
        did not train on it. Member logits are dropped (the parts' members are different models); ``models``
        lists every part's models with the number of clips it scored."""
        parts = [self, *others]
        names = [p.source or f"part {i + 1}" for i, p in enumerate(parts)]
        for name, o in zip(names[1:], others):
            if o.class_names != self.class_names or o.n_segments != self.n_segments \
                    or not _same_seconds(o.segment_seconds, self.segment_seconds) \
                    or abs(o.clip_seconds - self.clip_seconds) > 1e-6:
                raise TeacherLogitsError(
                    f"{name} and {names[0]} differ in classes or layout ({o.describe()} vs {self.describe()}): only "
                    "files of one class order, clip length and segment length join; write them again alike.")
        owner = {}
        for name, p in zip(names, parts):
            for clip in p.clips:
                if clip in owner:
                    raise TeacherLogitsError(f"{clip!s} is in both {owner[clip]} and {name}: joined files must "
                                             "cover disjoint clips (to combine teachers on the same clips, use "
                                             "dssdn-teacher show with several files).")
                owner[clip] = name
        models = [{**m, "clips": int(len(p.clips)), "part": name} for name, p in zip(names, parts) for m in p.models]
        splits = sorted({str(p.dataset.get("split", "")) for p in parts})
        return dataclasses.replace(
            self, clips=np.concatenate([p.clips for p in parts]), logits=np.concatenate([p.logits for p in parts]),
            labels=np.concatenate([p.labels for p in parts]), sizes=np.concatenate([p.sizes for p in parts]),
            dataset={**self.dataset, "split": " + ".join(splits)}, models=models, members=None,
            combine="joined: each clip from the one part that scored it (" + "; ".join(
                f"{name}: {p.combine}" for name, p in zip(names, parts)) + ")", source="")

    # ---- accuracy --------------------------------------------------------------------------------

    def _label_ids(self) -> Optional[np.ndarray]:
        """The clips' labels as class ids ``(N,)``; None when a clip is unlabelled or its label is not a class."""
        index = {n: i for i, n in enumerate(self.class_names)}
        if not len(self.labels) or any(l not in index for l in self.labels):
            return None
        return np.array([index[l] for l in self.labels])

    def accuracies(self) -> dict:
        """``{name: {"segment": acc, "clip": acc}}`` for each member, ``"ensemble"`` (the file's logits) and, with
        member logits, ``"ensemble (mean of probabilities)"`` against the stored labels.

        A clip's prediction is the mean of its segments' ``softmax(logits)`` (as :mod:`keras_dssdn.inference.evaluate`
        averages segment probabilities). Fractions in [0, 1]; empty when the clips carry no labels.
        """
        y = self._label_ids()
        if y is None:
            return {}
        named = [(m.get("name", f"member{i}"), self.members[i]) for i, m in enumerate(self.models)] \
            if self.members is not None else []
        out = {}
        for name, logits in named + [("ensemble", self.logits)]:
            out[name] = _accuracy(softened(logits, 1.0), y)
        if self.members is not None:  # the other rule, for comparison: mean of the members' probabilities
            out["ensemble (mean of probabilities)"] = _accuracy(softened(self.members, 1.0).mean(axis=0), y)
        return out

    def certainty(self, temperatures: Sequence[float] = (1.0, 2.0, 4.0)) -> dict:
        """``{T: mean probability of the labelled class}`` in the ensemble's targets ``softmax(logits / T)``, over
        every (clip, segment): how sure the teacher is of what a student trains on (1.0 = the labels themselves,
        ``1 / K`` = no information). Empty when the clips carry no labels."""
        y = self._label_ids()
        if y is None:
            return {}
        out = {}
        for t in temperatures:
            probs = softened(self.logits, t)  # (N, S, K)
            out[float(t)] = float(np.take_along_axis(probs, y[:, None, None], axis=-1).mean())
        return out

    # ---- file ------------------------------------------------------------------------------------

    def header(self) -> dict:
        return {"format": FORMAT, "version": VERSION, "class_names": list(self.class_names),
                "segment_seconds": self.segment_seconds, "clip_seconds": float(self.clip_seconds),
                "n_segments": self.n_segments, "dataset": {**self.dataset, "fingerprint": self.fingerprint,
                                                           "clips": int(len(self.clips))},
                "models": list(self.models), "combine": self.combine}

    def save(self, path) -> Path:
        """Write the ``.npz`` atomically; returns the path."""
        arrays = {"clips": self.clips, "logits": self.logits, "labels": self.labels, "sizes": self.sizes,
                  "header": np.array(json.dumps(self.header()))}
        if self.members is not None:
            arrays["members"] = self.members
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **arrays)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        return write_bytes_atomic(path, buffer.getvalue())

    @classmethod
    def load(cls, path) -> "TeacherLogits":
        """Read a file written by :meth:`save`; :class:`TeacherLogitsError` naming it when it is not one."""
        path = Path(path)
        if not path.is_file():
            raise TeacherLogitsError(f"Teacher logits file not found: {path}.")
        try:
            with np.load(path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
            header = json.loads(str(arrays.pop("header")))
        except Exception as e:  # noqa: BLE001 - any failure here means not a logits file
            raise TeacherLogitsError(f"{path} is not a teacher-logits file ({type(e).__name__}: {str(e)[:200]}); "
                                     "write it with dssdn-teacher run or dssdn-teacher import.") from None
        if header.get("format") != FORMAT or header.get("version") != VERSION \
                or any(k not in arrays for k in _ARRAYS):
            raise TeacherLogitsError(f"{path}: not a {FORMAT} file of version {VERSION} (header format "
                                     f"{header.get('format')!r}, version {header.get('version')!r}, arrays "
                                     f"{sorted(arrays)}); write it with dssdn-teacher.")
        tl = cls(arrays["clips"], arrays["logits"], list(header["class_names"]), float(header["clip_seconds"]),
                 header.get("segment_seconds"), arrays["labels"], arrays["sizes"],
                 {k: v for k, v in header.get("dataset", {}).items() if k not in ("fingerprint", "clips")},
                 list(header.get("models", [])), arrays.get("members"), header.get("combine", COMBINE), str(path))
        stored = header.get("dataset", {}).get("fingerprint")
        if stored and stored != tl.fingerprint:
            raise TeacherLogitsError(f"{path}: its clips do not match its recorded dataset fingerprint (the file was "
                                     "altered); write it again.")
        return tl

    def to_csv(self, path) -> Path:
        """The CSV form (see the module docstring), written atomically."""
        out = io.StringIO()
        w = csv.writer(out, lineterminator="\n")
        w.writerow(["clip", "segment", *self.class_names])
        for clip, rows in zip(self.clips, self.logits):
            for s, row in enumerate(rows):
                w.writerow([clip, s, *(repr(float(v)) for v in row)])
        return write_text_atomic(path, out.getvalue())


def _accuracy(probs, y) -> dict:
    """Segment and clip accuracy of probabilities ``(N, S, K)`` against class ids ``(N,)``."""
    return {"segment": float(np.mean(probs.argmax(-1) == y[:, None])),
            "clip": float(np.mean(probs.mean(axis=1).argmax(-1) == y))}


def read_csv_logits(path) -> tuple:
    """``(class_names, {clip: {segment: logits (K,)}})`` from the CSV form; TeacherLogitsError naming the line."""
    path = Path(path)
    if not path.is_file():
        raise TeacherLogitsError(f"Teacher logits CSV not found: {path}.")
    try:
        lines = [(i + 1, l) for i, l in enumerate(path.read_text(encoding="utf-8-sig").splitlines())
                 if l.strip() and not l.lstrip().startswith("#")]
    except UnicodeDecodeError as e:
        raise TeacherLogitsError(f"{path}: not UTF-8 text ({e}).") from None
    if not lines:
        raise TeacherLogitsError(f"{path}: empty; expected a header clip,segment,<class names...> and rows.")
    head = next(csv.reader([lines[0][1]]))
    head = [h.strip() for h in head]
    has_segment = len(head) > 1 and head[1].lower() == "segment"
    if head[0].lower() not in ("clip", "filename", "file", "path"):
        raise TeacherLogitsError(f"{path} line {lines[0][0]}: the header must start with 'clip' (then "
                                 f"optionally 'segment', then one column per class), got {head}.")
    classes = head[2:] if has_segment else head[1:]
    if not classes:
        raise TeacherLogitsError(f"{path} line {lines[0][0]}: no class columns in the header {head}.")
    table: dict = {}
    for line_no, line in lines[1:]:
        fields = [f.strip() for f in next(csv.reader([line]))]
        if len(fields) != len(head):
            raise TeacherLogitsError(f"{path} line {line_no}: {len(fields)} fields, the header has {len(head)}.")
        try:
            seg = int(fields[1]) if has_segment else 0
            values = np.array([float(v) for v in fields[len(head) - len(classes):]], np.float32)
        except ValueError:
            raise TeacherLogitsError(f"{path} line {line_no}: segment must be an integer and logits numbers, "
                                     f"got {fields[1:]}.") from None
        if not np.all(np.isfinite(values)):
            raise TeacherLogitsError(f"{path} line {line_no}: a logit of {fields[0]!r} is NaN or infinite "
                                     f"({fields[len(head) - len(classes):]}); fix the row or write the logits again.")
        if seg < 0 or seg in table.setdefault(fields[0], {}):
            raise TeacherLogitsError(f"{path} line {line_no}: segment {seg} of {fields[0]!r} is negative or "
                                     "listed twice.")
        table[fields[0]][seg] = values
    return classes, table


def import_csv(path, clips, *, clip_seconds: float, segment_seconds: Optional[float], model_name: str = "",
               classes: Optional[Sequence[str]] = None) -> TeacherLogits:
    """A :class:`TeacherLogits` from the CSV form, for the clips of ``clips`` (a ClipList: their labels, sizes and
    the dataset fingerprint come from it; every CSV clip must be one of them, with segments ``0..S-1``).

    ``classes``: the class order to store (a permutation of the CSV's columns); default the CSV's order.
    """
    names, table = read_csv_logits(path)
    order = list(classes) if classes else list(names)
    if sorted(order) != sorted(names):
        raise TeacherLogitsError(f"{path}: its classes {names} are not a reordering of {order}.")
    perm = [names.index(c) for c in order]
    keys, labels, sizes = clip_records(clips)
    row_of = {k: i for i, k in enumerate(keys)}
    unknown = [k for k in table if k not in row_of]
    if unknown:
        raise TeacherLogitsError(f"{path}: {len(unknown)} clips are not in {clips.name or 'the dataset'} "
                                 f"(keys are paths relative to the dataset root {clips.root}): {_shown(unknown)}.")
    counts = {len(s) for s in table.values()}
    if len(counts) > 1 or any(sorted(s) != list(range(len(s))) for s in table.values()):
        raise TeacherLogitsError(f"{path}: every clip needs segments 0..S-1 with the same S; found segment counts "
                                 f"{sorted(counts)}.")
    chosen = [k for k in keys if k in table]
    logits = np.stack([np.stack([table[k][s] for s in range(len(table[k]))]) for k in chosen])[..., perm]
    idx = [row_of[k] for k in chosen]
    return TeacherLogits(np.array(chosen, str), logits, order, float(clip_seconds), segment_seconds,
                         labels[idx], sizes[idx],
                         {"name": os.path.basename(clips.root.rstrip("/")), "split": clips.name},
                         [{"name": model_name or Path(path).stem, "source": str(path), "kind": "csv"}],
                         combine="imported from CSV")
