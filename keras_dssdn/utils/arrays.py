"""Array helpers shared by the export's steps (calibration, evaluation, verification, QAT, flash cuts).

:func:`evenly_spaced` picks ``k`` of ``n`` items spread evenly; :func:`example_batches` turns a ``tf.data`` dataset,
an ``(x, y[, clip_index])`` tuple or an array into numpy batches; :func:`check_examples` checks examples against a
model input shape ``(n_mels, frames, 1)`` and names the data in its message.
"""

from __future__ import annotations

from typing import Iterator, Optional, Tuple

import numpy as np

from keras_dssdn.errors import ExportError, RepresentativeDataError


def evenly_spaced(n: int, k: int) -> np.ndarray:
    """``min(n, k)`` indices spread evenly over ``range(n)`` (int64, sorted)."""
    if n <= 0 or k <= 0:
        return np.zeros(0, np.int64)
    if k >= n:
        return np.arange(n)
    return np.unique(np.round(np.linspace(0, n - 1, k)).astype(np.int64))


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


def example_batches(data) -> Iterator[Tuple[np.ndarray, Optional[np.ndarray], Optional[np.ndarray]]]:
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
