"""Teachers: run trained models over a dataset split and keep their logits keyed by clip; the targets a student
trains on.

* :func:`load_teacher` opens one teacher: a run folder (its ``best.keras``, front end, labels and input length),
  a ``.keras`` file (inside a run folder: that run's settings) or a ``.tflite`` file (fed raw log-mel, as
  ``dssdn-evaluate`` does).
* :func:`write_logits` runs teachers over a ClipList through the one evaluation loop
  (:func:`keras_dssdn.inference.evaluate.predict_probabilities`; teachers sharing a front end and input length
  share one decoding pass) and returns a :class:`~keras_dssdn.distill.logits.TeacherLogits`: per clip and
  segment, each member's ``log p`` (``p`` its probabilities; a teacher whose input is shorter than the segment
  is run on each of its sub-segments and ``p`` is their mean, as evaluation averages a clip's segments), and the
  ensemble's logits, the mean of the members' (:data:`~keras_dssdn.distill.logits.COMBINE`).
* :class:`TeacherTargets` is what the training pipeline takes: a teacher source (logits file, or models run
  on the student's own training clips) and a temperature; it checks and aligns the logits with the student's
  clips and returns ``softmax(logits / T)`` per clip and segment.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os
from pathlib import Path
from typing import List, Optional, Sequence, Union

import numpy as np

from keras_dssdn.distill.logits import TeacherLogits, clip_records, softened
from keras_dssdn.errors import TeacherLogitsError

#: Suffixes a teacher source may have (besides a run folder).
MODEL_SUFFIXES = (".keras", ".tflite")
#: Probabilities are clipped to [EPSILON, 1] before the log.
EPSILON = 1e-7


@dataclasses.dataclass
class TeacherModel:
    """One loaded teacher: ``model.predict(log-mel (B, n_mels, frames, 1)) -> probabilities (B, K)``."""

    name: str
    source: str
    kind: str  # "run", "keras", "tflite"
    model: object
    frontend: object  # FrontEndParams
    vocabulary: object  # LabelVocabulary
    input_seconds: float

    def record(self) -> dict:
        return {"name": self.name, "source": self.source, "kind": self.kind, "input_seconds": self.input_seconds}


def expand_sources(spec: Union[str, Sequence[str]]) -> List[str]:
    """Teacher sources from a config value: a path, a glob pattern (``runs/teacher/seed*``) or a list of them."""
    items = [spec] if isinstance(spec, (str, os.PathLike)) else list(spec)
    out: List[str] = []
    for item in items:
        item = os.fspath(item)
        matches = sorted(glob.glob(item)) if glob.has_magic(item) else [item]
        if not matches:
            raise TeacherLogitsError(f"teacher={item!r} matches no file or folder.")
        out += matches
    return out


def is_logits_file(source) -> bool:
    return str(source).endswith(".npz")


def check_sources(spec) -> None:
    """Cheap check of a config's ``teacher`` value (paths exist and are of a known kind); ConfigError naming it."""
    from keras_dssdn.errors import ConfigError

    try:
        sources = expand_sources(spec)
    except TeacherLogitsError as e:
        raise ConfigError(str(e)) from None
    if not sources:
        raise ConfigError("teacher= is empty: give a logits .npz file or teacher run folders / model files.")
    for s in sources:
        p = Path(s)
        if is_logits_file(s):
            if len(sources) > 1:
                raise ConfigError(f"teacher={spec!r}: one logits file, or model sources, not both / several files.")
            if not p.is_file():
                raise ConfigError(f"teacher={s}: no such logits file (write one with dssdn-teacher run).")
        elif not (p.is_dir() or (p.is_file() and p.suffix in MODEL_SUFFIXES)):
            raise ConfigError(f"teacher={s}: expected a logits .npz file, a run folder, or a .keras / .tflite model "
                              "(and it must exist).")


def load_teacher(source) -> TeacherModel:
    """Open one teacher (run folder, ``.keras`` or ``.tflite``); errors name the source."""
    from keras_dssdn.inference.evaluate import _input_frames, load_classifier
    from keras_dssdn.layers.labels import vocabulary_from_model
    from keras_dssdn.params import DEFAULT_FRONTEND
    from keras_dssdn.runs import find_run

    path = Path(source)
    run = find_run(path) if path.exists() else None
    if path.is_dir() and run is None:
        raise TeacherLogitsError(f"teacher {path}: not a run folder (no config.json) and not a model file.")
    model_path = run.model_path() if path.is_dir() else path
    model = load_classifier(model_path)
    vocabulary = run.vocabulary() if run else vocabulary_from_model(model)
    if vocabulary is None:
        raise TeacherLogitsError(f"teacher {path}: the model carries no class names and is not in a run folder.")
    frontend = run.frontend() if run else DEFAULT_FRONTEND
    seconds = frontend.seconds_for_frames(_input_frames(model))
    if run is not None:
        seconds = run.segment_seconds() or run.clip_seconds() or frontend.clip_seconds
    kind = "run" if path.is_dir() else path.suffix.lstrip(".")
    name = f"{path.parent.name}/{path.name}" if path.is_dir() else (run.path.name if run else path.stem)
    return TeacherModel(name, str(path), kind, model, frontend, vocabulary, float(seconds))


def _group_key(t: TeacherModel) -> str:
    return json.dumps([t.frontend.to_dict(), t.input_seconds], sort_keys=True)


def _member_logits(probs: np.ndarray, clip_index: np.ndarray, segment_index: np.ndarray, n_clips: int,
                   n_segments: int, per_key: int) -> np.ndarray:
    """``log`` of the mean probability over each key segment's ``per_key`` sub-segments: ``(n_clips, S, K)``."""
    key_seg = segment_index // per_key
    keep = key_seg < n_segments
    sums = np.zeros((n_clips, n_segments, probs.shape[1]))
    counts = np.zeros((n_clips, n_segments, 1))
    np.add.at(sums, (clip_index[keep], key_seg[keep]), probs[keep])
    np.add.at(counts, (clip_index[keep], key_seg[keep]), 1.0)
    return np.log(np.clip(sums / np.maximum(counts, 1.0), EPSILON, 1.0)).astype(np.float32)


def write_logits(sources: Sequence, clips, *, clip_seconds: Optional[float] = None,
                 segment_seconds: Optional[float] = None, batch_size: int = 64, vocabulary=None,
                 verbose: bool = False) -> TeacherLogits:
    """Run teachers over ``clips`` (a ClipList) and return their logits keyed by clip (see the module docstring).

    ``sources``: run folders / ``.keras`` / ``.tflite`` paths, or loaded :class:`TeacherModel`.
    ``clip_seconds``: crop / pad length (default: the first teacher's front end's). ``segment_seconds``: the
    length of the keyed segments (None: whole clips); each teacher's input must fit a whole number of times in
    it. ``vocabulary``: the student's; a teacher with other labels (or teachers that disagree) raises
    :class:`TeacherLogitsError` before any audio is decoded.
    """
    from keras_dssdn.data.pipeline import decoding_errors, evaluation_dataset
    from keras_dssdn.data.spec import PipelineSpec
    from keras_dssdn.inference.evaluate import predict_probabilities

    teachers = [s if isinstance(s, TeacherModel) else load_teacher(s) for s in sources]
    if not teachers:
        raise TeacherLogitsError("No teacher given.")
    vocab = vocabulary or teachers[0].vocabulary
    for t in teachers:
        if t.vocabulary != vocab:
            raise TeacherLogitsError(f"teacher {t.source} has labels {list(t.vocabulary)}; the "
                                     f"{'student' if vocabulary is not None else 'first teacher'} has {list(vocab)}. "
                                     "Teachers must be trained on the student's classes, in the same order.")
    p0 = teachers[0].frontend
    clip_s = float(clip_seconds or p0.clip_seconds)
    key_samples = p0.num_samples(segment_seconds or clip_s)
    n_segments = p0.num_samples(clip_s) // key_samples
    members = {}
    groups = {}
    for t in teachers:
        groups.setdefault(_group_key(t), []).append(t)
    for group in groups.values():
        g = group[0]
        sub = g.frontend.num_samples(g.input_seconds)
        per_key = key_samples // sub
        if per_key < 1 or g.frontend.num_samples(clip_s) < sub:
            raise TeacherLogitsError(f"teacher {g.source} takes {g.input_seconds:g} s of audio, longer than the "
                                     f"{segment_seconds or clip_s:g}-s segments asked for; write longer segments "
                                     "(--segment-seconds) or use a teacher with a shorter input.")
        seg_arg = g.input_seconds if sub < g.frontend.num_samples(clip_s) else None
        spec = PipelineSpec(frontend=g.frontend, clip_seconds=clip_s, segment_seconds=seg_arg, batch_size=batch_size,
                            vocabulary=vocab if clips.has_labels else None, cache=None)
        ds = evaluation_dataset(clips, spec, with_metadata=True)
        if verbose:
            print(f"running {', '.join(t.name for t in group)} over {clips.name} ({len(clips)} clips)", flush=True)
        with decoding_errors():
            probs, _, meta = predict_probabilities({t.name + f"#{i}": t.model for i, t in enumerate(group)}, ds)
        for i, t in enumerate(group):
            members[id(t)] = _member_logits(np.asarray(probs[t.name + f"#{i}"], np.float64), meta["clip_index"],
                                            meta["segment_index"], len(clips), n_segments, per_key)
    stack = np.stack([members[id(t)] for t in teachers])  # (M, N, S, K)
    keys, labels, sizes = clip_records(clips)
    return TeacherLogits(keys, stack.mean(axis=0), list(vocab.names), clip_s, segment_seconds, labels, sizes,
                         {"name": os.path.basename(clips.root.rstrip("/")), "split": clips.name},
                         [t.record() for t in teachers], stack)


class TeacherTargets:
    """What :class:`~keras_dssdn.data.spec.TrainingOptions` takes as ``teacher``: soft targets per clip and segment.

    ``source``: a logits ``.npz`` path, a :class:`TeacherLogits`, or teacher model sources (run folders, model
    files, glob patterns), run over the clips a pipeline asks for (once per set of clips and segment layout).
    ``temperature``: ``T`` of ``softmax(logits / T)``. :attr:`logits` holds the logits last used (what a run
    folder keeps a copy of).
    """

    _shared: dict = {}

    def __init__(self, source, temperature: float = 2.0, batch_size: int = 64, verbose: bool = False):
        self.source = source
        self.temperature = float(temperature)
        self.batch_size = batch_size
        self.verbose = verbose
        self.logits: Optional[TeacherLogits] = source if isinstance(source, TeacherLogits) else None
        self._made: dict = {}  # (what was read or run) -> TeacherLogits

    @classmethod
    def shared(cls, source, temperature: float = 2.0, **kwargs) -> "TeacherTargets":
        """One object per ``(source, temperature)`` in this process: teachers are run (or a file read) once even
        when several pipelines of a run, or the trials of a search, ask for the same targets."""
        key = (json.dumps(source, sort_keys=True), float(temperature))
        if key not in cls._shared:
            cls._shared[key] = cls(source, temperature, **kwargs)
        return cls._shared[key]

    @classmethod
    def of_run(cls, run, teacher, temperature: float, **kwargs) -> "TeacherTargets":
        """The targets a trained run distils from: its own copy of its teacher logits (``teacher_logits.npz``,
        :class:`~keras_dssdn.runs.RunFolder`) when it has one, else ``teacher`` (what its config names). Used
        when a run is resumed and when its model is fine-tuned by QAT (:meth:`shared` for ``teacher``)."""
        saved = run.teacher_logits() if run is not None else None
        return cls(saved, temperature, **kwargs) if saved is not None else cls.shared(teacher, temperature, **kwargs)

    def describe_source(self) -> str:
        """Where the targets come from: a file path, or the teacher sources as given."""
        if isinstance(self.source, TeacherLogits):
            return self.source.source or "teacher logits in memory"
        return str(self.source)

    def _resolve(self, clips, vocabulary, clip_seconds: float, segment_seconds: Optional[float]) -> TeacherLogits:
        if isinstance(self.source, TeacherLogits):
            return self.source
        sources = expand_sources(self.source)
        stamp = tuple((s, os.path.getmtime(s)) for s in sources if os.path.exists(s))
        if len(sources) == 1 and is_logits_file(sources[0]):
            key = ("file", stamp)
            if key not in self._made:
                self._made[key] = TeacherLogits.load(sources[0])
        else:
            key = ("run", stamp, tuple(clips.paths), clip_seconds, segment_seconds)
            if key not in self._made:
                self._made[key] = write_logits(sources, clips, clip_seconds=clip_seconds,
                                               segment_seconds=segment_seconds, batch_size=self.batch_size,
                                               vocabulary=vocabulary, verbose=self.verbose)
        self.logits = self._made[key]
        return self.logits

    def targets(self, clips, vocabulary, *, n_segments: int, segment_seconds: Optional[float],
                clip_seconds: float) -> np.ndarray:
        """``softmax(logits / T)`` of every clip of ``clips`` in row order: ``(len(clips), n_segments, K)`` float32;
        :class:`TeacherLogitsError` when the logits do not fit (see :meth:`TeacherLogits.aligned`)."""
        logits = self._resolve(clips, vocabulary, clip_seconds, segment_seconds)
        if self.verbose:
            print(f"teacher: {logits.source or 'logits of ' + str(self.source)}: {logits.describe()}; targets "
                  f"softmax(logits / {self.temperature:g})", flush=True)
        return softened(logits.aligned(clips, vocabulary, n_segments, segment_seconds, clip_seconds), self.temperature)
