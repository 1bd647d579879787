"""Dataset readers: DCASE development-set layouts and plain ``path,label`` CSVs.

A reader returns a :class:`ClipList`: the clips of one split, each with its
absolute file path, scene label, recording-location identifier and device
(DCASE's ``source_label``) when the metadata has them. Nothing is decoded
here; :func:`keras_dssdn.data.pipeline.training_dataset` / ``evaluation_dataset`` turn a ClipList into a
``tf.data.Dataset``.

DCASE layout (TUT Acoustic Scenes 2017, TUT Urban Acoustic Scenes 2018, TAU
Urban Acoustic Scenes 2019 / 2020 Mobile)::

    ROOT/meta.csv                         filename  scene_label  identifier  source_label
    ROOT/evaluation_setup/fold1_train.csv filename  scene_label
    ROOT/evaluation_setup/fold1_evaluate.csv
    ROOT/evaluation_setup/fold1_test.csv  filename
    ROOT/audio/...

Files are tab-separated, with or without a header row (positional columns are
then filename, label, identifier, device), ``.csv`` or ``.txt``. Paths are
relative to ROOT. Split rows are joined with ``meta.csv`` on the filename to
get the identifier and device.

A file listed but absent raises :class:`~keras_dssdn.errors.MissingAudioError`
(all missing files counted, the first ones named) unless ``skip_missing=True``,
which leaves them out, warns with the count and keeps them in
``ClipList.skipped``.
"""

from __future__ import annotations

import csv
import dataclasses
import glob
import io
import os
import warnings
from typing import List, Optional, Sequence

from keras_dssdn.errors import MetadataError, MissingAudioError
from keras_dssdn.layers.labels import LabelVocabulary  # noqa: F401  (re-exported)

#: Accepted header names (lower case) for each field.
COLUMN_ALIASES = {
    "filename": ("filename", "file", "path", "filepath", "file_name", "audio", "audio_filename"),
    "label": ("scene_label", "label", "class", "class_label", "scene"),
    "identifier": ("identifier", "location", "location_id", "recording_id"),
    "device": ("source_label", "device", "device_id", "source"),
}
_POSITIONAL = ("filename", "label", "identifier", "device")
SPLITS = ("train", "evaluate", "test", "all")


@dataclasses.dataclass(frozen=True)
class Clip:
    """One audio file of a dataset.

    ``filename`` is the path as written in the metadata, ``path`` the absolute
    path; ``label`` is None for unlabelled (test) clips; ``where`` names the
    metadata row (``"meta.csv line 7"``) for error messages.
    """

    filename: str
    path: str
    label: Optional[str] = None
    identifier: Optional[str] = None
    device: Optional[str] = None
    where: str = ""


@dataclasses.dataclass
class ClipList:
    """The clips of one split, in metadata order, plus the ones skipped as missing."""

    clips: List[Clip]
    name: str = ""
    root: str = ""
    skipped: List[Clip] = dataclasses.field(default_factory=list)

    def __len__(self) -> int:
        return len(self.clips)

    def __iter__(self):
        return iter(self.clips)

    def __getitem__(self, i):
        return self.clips[i]

    @property
    def paths(self) -> List[str]:
        return [c.path for c in self.clips]

    @property
    def labels(self) -> List[Optional[str]]:
        return [c.label for c in self.clips]

    @property
    def devices(self) -> List[Optional[str]]:
        return [c.device for c in self.clips]

    @property
    def identifiers(self) -> List[Optional[str]]:
        return [c.identifier for c in self.clips]

    @property
    def has_labels(self) -> bool:
        return bool(self.clips) and all(c.label is not None for c in self.clips)

    def vocabulary(self) -> LabelVocabulary:
        """Sorted label vocabulary of this split (build it from the *training* split)."""
        return LabelVocabulary.from_labels(self.labels)

    def subset(self, indices: Sequence[int], name: Optional[str] = None) -> "ClipList":
        """A ClipList with the clips at ``indices`` (e.g. a small debug subset)."""
        return ClipList([self.clips[i] for i in indices], name or self.name, self.root, list(self.skipped))

    def summary(self) -> str:
        devices = sorted({d for d in self.devices if d is not None})
        text = f"{self.name or 'clips'}: {len(self)} clips"
        if self.has_labels:
            text += f", {len(self.vocabulary())} classes"
        if devices:
            text += f", devices {devices}"
        if self.skipped:
            text += f", {len(self.skipped)} missing files skipped"
        return text


# --------------------------------------------------------------------------
# Table parsing
# --------------------------------------------------------------------------


def _read_rows(path: str):
    """(columns, [(line_no, fields)]) of a tab- or comma-separated file."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise MetadataError(f"{path}: not a UTF-8 text file ({e}). Give a tab- or comma-separated metadata file.") from None
    lines = [(i + 1, line) for i, line in enumerate(text.splitlines()) if line.strip()]
    if not lines:
        raise MetadataError(f"{path}: the metadata file is empty. Expected one row per audio file.")
    first = lines[0][1]
    delimiter = "\t" if "\t" in first else ("," if "," in first else "\t")
    rows = []
    for line_no, line in lines:
        fields = next(csv.reader(io.StringIO(line), delimiter=delimiter))
        while fields and not fields[-1].strip():  # trailing delimiters
            fields.pop()
        rows.append((line_no, [x.strip() for x in fields]))
    head = [h.lower() for h in rows[0][1]]
    known = {alias for aliases in COLUMN_ALIASES.values() for alias in aliases}
    if any(h in known for h in head):
        columns = {}
        for key, aliases in COLUMN_ALIASES.items():
            for j, h in enumerate(head):
                if h in aliases and key not in columns:
                    columns[key] = j
        if "filename" not in columns:
            raise MetadataError(
                f"{path} line {rows[0][0]}: header {rows[0][1]} has no filename column; name it one of "
                f"{list(COLUMN_ALIASES['filename'])}."
            )
        return columns, len(head), rows[1:], delimiter
    columns = {key: j for j, key in enumerate(_POSITIONAL)}
    return columns, None, rows, delimiter


def _parse_table(path: str, need_label: bool, root: str) -> List[Clip]:
    columns, width, rows, delimiter = _read_rows(path)
    sep = "tab" if delimiter == "\t" else "comma"
    base = os.path.relpath(path, root) if root and os.path.abspath(path).startswith(os.path.abspath(root)) else path
    if need_label and "label" not in columns:
        raise MetadataError(
            f"{path}: no label column (header names one of {list(COLUMN_ALIASES['label'])}). "
            f"Add the labels, or read it as an unlabelled split."
        )
    need = columns["label"] + 1 if need_label else columns["filename"] + 1
    if not rows:
        raise MetadataError(f"{path}: the metadata file has a header but no rows.")
    clips, seen = [], {}
    for line_no, fields in rows:
        where = f"{base} line {line_no}"
        if width is not None and len(fields) > width:
            raise MetadataError(
                f"{where}: {len(fields)} {sep}-separated fields but the header has {width}: {fields!r}. "
                f"Fix the row (is a field containing the separator unquoted?)."
            )
        if len(fields) < need:
            expected = [k for k, _ in sorted(columns.items(), key=lambda kv: kv[1]) if columns[k] < need]
            raise MetadataError(
                f"{where}: expected at least {need} {sep}-separated fields ({', '.join(expected)}), "
                f"found {len(fields)}: {fields!r}. Fix or remove the row."
            )

        def get(key):
            j = columns.get(key)
            return fields[j] if j is not None and j < len(fields) and fields[j] != "" else None

        filename = get("filename")
        if filename is None:
            raise MetadataError(f"{where}: empty filename. Fix or remove the row.")
        label = get("label") if "label" in columns else None
        if need_label and label is None:
            raise MetadataError(f"{where}: empty label for {filename!r}. Fix or remove the row.")
        if filename in seen:
            raise MetadataError(f"{where}: {filename!r} is listed twice (first on line {seen[filename]}). Remove the duplicate row.")
        seen[filename] = line_no
        clips.append(
            Clip(
                filename=filename,
                path=filename if os.path.isabs(filename) else os.path.normpath(os.path.join(root, filename)),
                label=label,
                identifier=get("identifier"),
                device=get("device"),
                where=where,
            )
        )
    _check_label_spelling(clips)
    return clips


def _check_label_spelling(clips: List[Clip]) -> None:
    """:class:`MetadataError` when two labels differ only in case or surrounding whitespace (``bus`` / ``Bus ``):
    a user means one class there, and training on both would silently add a class. Names both and their rows."""
    first = {}
    for c in clips:
        if c.label is None:
            continue
        key = c.label.strip().casefold()
        seen = first.setdefault(key, c)
        if seen.label != c.label:
            raise MetadataError(f"{c.where}: label {c.label!r} differs from {seen.label!r} ({seen.where}) only in "
                                "case or spaces; labels are compared exactly, so this would train two classes: "
                                "spell them the same.")


def _check_files(clips: List[Clip], source: str, root: str, skip_missing: bool):
    folders = [c for c in clips if os.path.isdir(c.path)]
    if folders:
        shown = "; ".join(f"{c.filename} ({c.where})" for c in folders[:5])
        raise MetadataError(f"{source}: {len(folders)} listed paths are folders, not audio files: {shown}. List the "
                            "audio files themselves.")
    missing = [c for c in clips if not os.path.isfile(c.path)]
    if not missing:
        return clips, []
    if not skip_missing:
        shown = "; ".join(f"{c.filename} ({c.where})" for c in missing[:5])
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise MissingAudioError(
            f"{source}: {len(missing)} of {len(clips)} listed audio files are missing under {root}: "
            f"{shown}{more}. Download / extract the missing audio or fix the paths, or pass "
            f"skip_missing=True to leave them out (the number skipped is reported)."
        )
    message = f"{source}: skipped {len(missing)} of {len(clips)} listed audio files that do not exist under {root}."
    warnings.warn(message, stacklevel=3)
    gone = {id(c) for c in missing}
    return [c for c in clips if id(c) not in gone], missing


# --------------------------------------------------------------------------
# Readers
# --------------------------------------------------------------------------


def _find(root: str, stems: Sequence[str]) -> Optional[str]:
    for stem in stems:
        for ext in (".csv", ".txt", ".tsv"):
            p = os.path.join(root, stem + ext)
            if os.path.isfile(p):
                return p
    return None


def read_dcase(
    root: str,
    split: str = "train",
    fold: int = 1,
    skip_missing: bool = False,
    check_files: bool = True,
) -> ClipList:
    """Read one split of a DCASE development set.

    ``split``: ``"train"``, ``"evaluate"``, ``"test"`` (unlabelled) from
    ``evaluation_setup/fold{fold}_{split}.csv``, or ``"all"`` for every row of
    ``meta.csv``. Returns a :class:`ClipList` in file order. Raises
    :class:`~keras_dssdn.errors.MetadataError` for a malformed file and
    :class:`~keras_dssdn.errors.MissingAudioError` for absent audio (see
    ``skip_missing``).
    """
    root = os.path.abspath(os.fspath(root))
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}.")
    if not os.path.isdir(root):
        raise FileNotFoundError(f"{root}: no such dataset folder.")
    meta_path = _find(root, ["meta"])
    meta = _parse_table(meta_path, need_label=True, root=root) if meta_path else None
    name = f"{os.path.basename(root)} {split}" if split == "all" else f"{os.path.basename(root)} fold{fold} {split}"
    if split == "all":
        if meta is None:
            raise MetadataError(f"{root}: no meta.csv (or meta.txt); is this a DCASE development set folder?")
        clips, source = meta, meta_path
    else:
        setup = os.path.join(root, "evaluation_setup")
        source = _find(setup, [f"fold{fold}_{split}"])
        if source is None:
            found = sorted(os.path.basename(p) for p in glob.glob(os.path.join(setup, "*")))
            raise MetadataError(
                f"{root}: no evaluation_setup/fold{fold}_{split}.csv (found {found or 'nothing'}). "
                f"Pick an existing fold / split, or use split='all' to read meta.csv."
            )
        clips = _parse_table(source, need_label=(split != "test"), root=root)
        if meta is not None:
            by_name = {c.filename: c for c in meta}
            joined = []
            for c in clips:
                m = by_name.get(c.filename)
                if m is not None:
                    if c.label is not None and m.label is not None and c.label != m.label:
                        raise MetadataError(
                            f"{c.where}: label {c.label!r} for {c.filename!r} disagrees with "
                            f"{m.where} ({m.label!r}). Fix one of the two rows."
                        )
                    c = dataclasses.replace(
                        c,
                        label=c.label if split != "test" else None,
                        identifier=c.identifier or m.identifier,
                        device=c.device or m.device,
                    )
                joined.append(c)
            clips = joined
    skipped = []
    if check_files:
        clips, skipped = _check_files(clips, os.path.relpath(source, os.path.dirname(root)), root, skip_missing)
    return ClipList(clips, name=name, root=root, skipped=skipped)


def read_csv(
    path: str,
    root: Optional[str] = None,
    skip_missing: bool = False,
    check_files: bool = True,
    labelled: bool = True,
) -> ClipList:
    """Read a plain CSV of ``path,label`` rows (comma- or tab-separated).

    A header row is optional; with one, the columns may be named (see
    :data:`COLUMN_ALIASES`) and may include ``identifier`` and ``device``.
    Relative paths are resolved against ``root`` (default: the CSV's folder).
    ``labelled=False`` accepts a single path column.
    """
    path = os.path.abspath(os.fspath(path))
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such CSV file.")
    root = os.path.abspath(root) if root is not None else os.path.dirname(path)
    clips = _parse_table(path, need_label=labelled, root=root)
    skipped = []
    if check_files:
        clips, skipped = _check_files(clips, path, root, skip_missing)
    return ClipList(clips, name=os.path.basename(path), root=root, skipped=skipped)


def read_clips(data, split: str = "train", fold: int = 1, skip_missing: bool = False) -> ClipList:
    """A ClipList from what a user names as data: a ClipList (returned as is), a DCASE root folder
    (:func:`read_dcase` with ``split`` and ``fold``) or a ``path,label`` CSV file (:func:`read_csv`; unlabelled
    for ``split="test"``)."""
    if isinstance(data, ClipList):
        return data
    path = os.fspath(data)
    if os.path.isdir(path):
        return read_dcase(path, split=split, fold=fold, skip_missing=skip_missing)
    return read_csv(path, skip_missing=skip_missing, labelled=split != "test")
