"""Step 2 of an export: the representative (calibration) set, and reading examples from what a user passes.

:func:`batches` turns a ``tf.data`` dataset, an ``(x, y[, clip_index])``
tuple or an array into numpy batches; :func:`check_examples` checks them
against the model input; :func:`representative_array` and :func:`calibrate`
give the calibration examples ``(N, n_mels, frames, 1)`` float32 (normalised
log-mel). Used by conversion, evaluation and QAT alike.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Iterator, Optional, Tuple

import numpy as np

from keras_dssdn.deploy.data import DataSources, clip_length, pipeline_dataset, spread
from keras_dssdn.deploy.prepare import PreparedModel
from keras_dssdn.deploy.settings import DEFAULT_NUM_CALIBRATION, DataSettings
from keras_dssdn.errors import ExportError, RepresentativeDataError

#: Examples per batch when arrays are given.
ARRAY_BATCH = 64


def _dataset_item(item) -> Tuple[np.ndarray, Optional[np.ndarray], Optional[np.ndarray]]:
    if isinstance(item, dict):
        raise ExportError("Dataset elements are dicts; pass (x, y) or (x, y, metadata) tuples.")
    if not isinstance(item, (tuple, list)):
        return np.asarray(item), None, None
    y = np.asarray(item[1]) if len(item) > 1 else None
    meta = item[2] if len(item) > 2 else None
    clip = np.asarray(meta["clip_index"]) if isinstance(meta, dict) and "clip_index" in meta else None
    return np.asarray(item[0]), y, clip


def batches(data) -> Iterator[Tuple[np.ndarray, Optional[np.ndarray], Optional[np.ndarray]]]:
    """Yield ``(x, y or None, clip_index or None)`` numpy batches from a dataset, array or tuple.

    A ``tf.data`` dataset yields ``x``, ``(x, y)`` or ``(x, y, metadata)``
    (``metadata["clip_index"]`` kept); a tuple ``(x, y[, clip_index])`` of
    arrays is cut into batches of :data:`ARRAY_BATCH`; anything else is one
    array ``x``.
    """
    import tensorflow as tf

    if isinstance(data, tf.data.Dataset):
        for item in data:
            yield _dataset_item(item)
        return
    if isinstance(data, (tuple, list)) and len(data) in (2, 3) and not np.isscalar(data[0]):
        x, y = np.asarray(data[0]), np.asarray(data[1])
        clip = np.asarray(data[2]) if len(data) == 3 else None
        for i in range(0, len(x), ARRAY_BATCH):
            yield x[i:i + ARRAY_BATCH], y[i:i + ARRAY_BATCH], None if clip is None else clip[i:i + ARRAY_BATCH]
        return
    yield np.asarray(data), None, None


def check_examples(x: np.ndarray, input_shape, what: str) -> np.ndarray:
    """``x`` as float32 ``(N, *input_shape)`` (one example gets a batch axis); :class:`RepresentativeDataError`
    when it is empty, of another shape, or not finite. ``what`` names the data in the message."""
    x = np.asarray(x)
    if x.dtype == object:
        raise RepresentativeDataError(f"{what}: could not read the data as an array.")
    if x.ndim == len(input_shape):  # a single example
        x = x[None]
    if x.ndim == len(input_shape) + 1 and x.shape[0] == 0:
        raise RepresentativeDataError(f"{what} is empty: it needs at least one example of shape {tuple(input_shape)}.")
    if tuple(x.shape[1:]) != tuple(input_shape):
        raise RepresentativeDataError(
            f"{what} has examples of shape {tuple(x.shape[1:])} (array {tuple(x.shape)}), but the model takes "
            f"{tuple(input_shape)} (n_mels, frames, 1). Build it with keras_dssdn.data.pipeline.evaluation_dataset "
            f"and a PipelineSpec of the model's front end and segment length.")
    if not np.all(np.isfinite(x)):
        raise RepresentativeDataError(f"{what} contains NaN or infinite values.")
    return x.astype(np.float32)


def representative_array(data, input_shape, max_examples: int = DEFAULT_NUM_CALIBRATION,
                         what: str = "The representative dataset") -> np.ndarray:
    """Calibration examples ``(N, *input_shape)`` float32 from an array, a tf.data dataset or a tuple.

    A dataset may yield batches or single examples, as ``x`` or ``(x, y, ...)``.
    At most ``max_examples`` are kept, spread evenly over what is given.
    Raises :class:`RepresentativeDataError` when it is empty or of the wrong shape.
    """
    if data is None:
        raise RepresentativeDataError(f"{what} is missing: pass data= (a DCASE folder) or representative= (arrays).")
    parts = [x[None] if x.ndim == len(input_shape) else x for x, _, _ in batches(data)]
    if not parts:
        raise RepresentativeDataError(f"{what} is empty: the dataset yielded nothing.")
    x = check_examples(np.concatenate(parts) if len(parts) > 1 else parts[0], input_shape, what)
    return x[spread(len(x), max_examples)]


@dataclasses.dataclass(frozen=True)
class Calibration:
    """The representative set: ``examples`` ``(N, n_mels, frames, 1)`` float32 and where they came from."""

    examples: np.ndarray
    source: str

    @property
    def report(self) -> dict:
        return {"examples": int(len(self.examples)), "source": self.source}


def _calibration_dataset(prep: PreparedModel, sources: DataSources, num_calibration: int):
    """``(dataset, description)``: clips spread evenly over the train split (half as many for a segment model,
    whose clips give several examples each)."""
    if sources.train is None:
        raise RepresentativeDataError("No representative data: pass data= (a DCASE folder, e.g. "
                                      "../shared/data/tut17-dev) or representative= (an array or tf.data dataset).")
    clips = sources.clips("train")
    segmented = abs(prep.segment_seconds - clip_length(prep, sources)) > 1e-9
    take = spread(len(clips), max(1, num_calibration // 2) if segmented else num_calibration)
    ds, _ = pipeline_dataset(prep, clips.subset(list(take)), sources)
    return ds, (f"{len(take)} of {len(clips)} clips of {clips.name or 'the train split'} spread evenly, "
                "keras_dssdn.data.pipeline.evaluation_dataset")


def calibrate(prep: PreparedModel, settings: DataSettings, sources: DataSources,
              log: Callable = print) -> Calibration:
    """At most ``settings.num_calibration`` calibration examples: ``settings.representative`` when given,
    else from the train split through the pipeline."""
    data, source = settings.representative, "given"
    if data is None:
        data, source = _calibration_dataset(prep, sources, settings.num_calibration)
    result = Calibration(representative_array(data, prep.input_shape, settings.num_calibration), source)
    log(f"  calibration: {len(result.examples)} examples ({source})")
    return result
