"""Label vocabulary: the fixed mapping class name <-> integer class id.

The vocabulary is sorted alphabetically by default, so the same set of labels
always gives the same ids (``airport`` = 0 ... for TAU 2020 Mobile). It travels
with a model in two ways:

* as JSON beside it (:meth:`LabelVocabulary.save` / :meth:`LabelVocabulary.load`);
* inside the ``.keras`` file, as a :class:`ClassNames` layer: an identity layer
  on the model output whose config holds the class names
  (:func:`vocabulary_from_model` reads it back). It adds no op to an exported
  graph.

Label names are free text (``cafe/restaurant`` contains a slash): nothing here
turns a label into a file name.
"""

from __future__ import annotations

import os
from typing import Iterable, Optional, Sequence

import keras
import numpy as np

from keras_dssdn.errors import UnknownLabelError


class LabelVocabulary:
    """Ordered, unique class names; class id ``i`` is ``names[i]``."""

    def __init__(self, names: Sequence[str]):
        names = tuple(str(n) for n in names)
        if not names:
            raise ValueError("A label vocabulary needs at least one class name.")
        seen = set()
        for n in names:
            if not n.strip():
                raise ValueError(f"Empty class name in label vocabulary {list(names)!r}.")
            if n in seen:
                raise ValueError(f"Duplicate class name {n!r} in label vocabulary {list(names)!r}.")
            seen.add(n)
        self.names = names
        self._index = {n: i for i, n in enumerate(names)}

    @classmethod
    def from_labels(cls, labels: Iterable[Optional[str]]) -> "LabelVocabulary":
        """Sorted unique labels (``None`` entries, i.e. unlabelled clips, ignored)."""
        return cls(sorted({str(label) for label in labels if label is not None}))

    def __len__(self) -> int:
        return len(self.names)

    def __iter__(self):
        return iter(self.names)

    def __contains__(self, label) -> bool:
        return label in self._index

    def __eq__(self, other) -> bool:
        return isinstance(other, LabelVocabulary) and self.names == other.names

    def __repr__(self) -> str:
        return f"LabelVocabulary({list(self.names)!r})"

    def index(self, label: str, where: str = "") -> int:
        """Class id of ``label``; :class:`UnknownLabelError` naming ``where`` if absent."""
        try:
            return self._index[label]
        except KeyError:
            at = f"{where}: " if where else ""
            raise UnknownLabelError(
                f"{at}unknown label {label!r}; the label vocabulary has {len(self)} classes "
                f"{list(self.names)}. Fix the label, remove the row, or build the vocabulary from "
                f"data that contains it (LabelVocabulary.from_labels) before training."
            ) from None

    def encode(self, labels: Sequence[str], where: Optional[Sequence[str]] = None) -> np.ndarray:
        """int32 class ids of ``labels``; ``where[i]`` names row ``i`` in errors."""
        return np.array(
            [self.index(lab, where[i] if where is not None else "") for i, lab in enumerate(labels)],
            dtype=np.int32,
        )

    def decode(self, ids: Iterable[int]) -> list:
        """Class names of integer ids."""
        return [self.names[int(i)] for i in ids]

    def to_dict(self) -> dict:
        return {"class_names": list(self.names)}

    @classmethod
    def from_dict(cls, d: dict) -> "LabelVocabulary":
        if "class_names" not in d:
            raise ValueError("A label vocabulary JSON needs a 'class_names' list.")
        return cls(d["class_names"])

    def save(self, path: str) -> None:
        """Write ``{"class_names": [...]}`` as UTF-8 JSON (atomically)."""
        from keras_dssdn.fileio import write_json_atomic

        write_json_atomic(path, self.to_dict())

    @classmethod
    def load(cls, path: str) -> "LabelVocabulary":
        from keras_dssdn.fileio import read_json, reading

        advice = "restore it from the run folder or bundle it came from"
        d = read_json(os.fspath(path), "labels file", advice)
        with reading(os.fspath(path), "labels file", advice):
            return cls.from_dict(d)


@keras.saving.register_keras_serializable(package="keras_dssdn")
class ClassNames(keras.layers.Layer):
    """Identity layer that stores the class names in the saved model.

    Put it on the classifier output: ``outputs = ClassNames(vocab.names)(logits)``.
    """

    def __init__(self, class_names: Sequence[str], **kwargs):
        kwargs.setdefault("trainable", False)
        super().__init__(**kwargs)
        self.class_names = list(LabelVocabulary(class_names).names)

    def call(self, x):
        return x

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "class_names": list(self.class_names)}

    @property
    def vocabulary(self) -> LabelVocabulary:
        return LabelVocabulary(self.class_names)


def vocabulary_from_model(model) -> Optional[LabelVocabulary]:
    """The vocabulary of the first :class:`ClassNames` layer in ``model`` (recursive), or None."""
    for layer in getattr(model, "layers", []):
        if isinstance(layer, ClassNames):
            return layer.vocabulary
        found = vocabulary_from_model(layer)
        if found is not None:
            return found
    return None
