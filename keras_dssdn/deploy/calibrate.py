"""Step 2 of an export: the representative (calibration) set.

:func:`representative_array` and :func:`calibrate` give the calibration examples ``(N, n_mels, frames, 1)``
float32 (normalised log-mel), read with the array helpers of :mod:`keras_dssdn.utils.arrays`.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

from keras_dssdn.deploy.export_data import DataSources, clip_length, pipeline_dataset
from keras_dssdn.deploy.prepare import PreparedModel
from keras_dssdn.deploy.settings import DEFAULT_NUM_CALIBRATION, DataSettings
from keras_dssdn.errors import RepresentativeDataError
from keras_dssdn.utils.arrays import check_examples, evenly_spaced, example_batches


def representative_array(data, input_shape, max_examples: int = DEFAULT_NUM_CALIBRATION,
                         what: str = "The representative dataset") -> np.ndarray:
    """Calibration examples ``(N, *input_shape)`` float32 from an array, a tf.data dataset or a tuple.

    A dataset may yield batches or single examples, as ``x`` or ``(x, y, ...)``.
    At most ``max_examples`` are kept, spread evenly over what is given.
    Raises :class:`RepresentativeDataError` when it is empty or of the wrong shape.
    """
    if data is None:
        raise RepresentativeDataError(f"{what} is missing: pass data= (a DCASE folder) or representative= (arrays).")
    parts = [x[None] if x.ndim == len(input_shape) else x for x, _, _ in example_batches(data)]
    if not parts:
        raise RepresentativeDataError(f"{what} is empty: the dataset yielded nothing.")
    x = check_examples(np.concatenate(parts) if len(parts) > 1 else parts[0], input_shape, what)
    return x[evenly_spaced(len(x), max_examples)]


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
    take = evenly_spaced(len(clips), max(1, num_calibration // 2) if segmented else num_calibration)
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
