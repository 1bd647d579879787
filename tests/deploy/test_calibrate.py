"""The calibrate step: reading examples from arrays / datasets, checking their shape, the representative set."""

import numpy as np
import pytest

from keras_dssdn.deploy.export import export_bundle
from keras_dssdn.deploy.calibrate import calibrate, representative_array
from keras_dssdn.deploy.export_data import DataSources
from keras_dssdn.utils.arrays import check_examples, evenly_spaced, example_batches
from keras_dssdn.deploy.prepare import prepare_model
from keras_dssdn.deploy.settings import DataSettings
from keras_dssdn.errors import RepresentativeDataError

from _export_helpers import FE16, QUIET, leftovers, plain_model


def test_representative_empty_or_wrong_shape(tmp_path):
    out = tmp_path / "bundle"
    with pytest.raises(RepresentativeDataError, match="empty"):
        export_bundle(plain_model(), out, representative=np.zeros((0, 16, 8, 1), np.float32), frontend=FE16, **QUIET)
    with pytest.raises(RepresentativeDataError, match=r"\(16, 9, 1\).*\(16, 8, 1\)"):
        export_bundle(plain_model(), out, representative=np.zeros((4, 16, 9, 1), np.float32), frontend=FE16, **QUIET)
    with pytest.raises(RepresentativeDataError, match="No representative data"):
        export_bundle(plain_model(), out, frontend=FE16, **QUIET)
    import tensorflow as tf

    empty = tf.data.Dataset.from_tensor_slices(np.zeros((0, 16, 8, 1), np.float32)).batch(4)
    with pytest.raises(RepresentativeDataError, match="empty"):
        representative_array(empty, (16, 8, 1))
    assert not out.exists() and not leftovers(out)


def test_batches_of_arrays_tuples_and_datasets():
    import tensorflow as tf

    x = np.zeros((130, 4, 2, 1), np.float32)
    y = np.arange(130)
    got = list(example_batches((x, y, y % 7)))
    assert [len(b[0]) for b in got] == [64, 64, 2] and got[2][2].tolist() == [128 % 7, 129 % 7]
    ds = tf.data.Dataset.from_tensor_slices((x, y, {"clip_index": y // 2})).batch(50)
    got = list(example_batches(ds))
    assert [len(b[0]) for b in got] == [50, 50, 30] and got[1][2][:2].tolist() == [25, 25]
    assert [b[1] for b in example_batches(x)] == [None]


def test_check_examples_and_spread():
    assert check_examples(np.ones((4, 2, 1)), (4, 2, 1), "x").shape == (1, 4, 2, 1)  # one example
    with pytest.raises(RepresentativeDataError, match="NaN"):
        check_examples(np.full((2, 4, 2, 1), np.nan), (4, 2, 1), "The data")
    assert evenly_spaced(10, 3).tolist() == [0, 4, 9] and evenly_spaced(3, 10).tolist() == [0, 1, 2] and len(evenly_spaced(0, 5)) == 0


def test_calibrate_step_alone():
    prep = prepare_model(plain_model(), frontend=FE16)
    x = np.random.default_rng(0).standard_normal((30, 16, 8, 1)).astype(np.float32)
    cal = calibrate(prep, DataSettings(representative=x, num_calibration=10), DataSources(), log=lambda *a: None)
    assert cal.examples.shape == (10, 16, 8, 1) and cal.report == {"examples": 10, "source": "given"}
    np.testing.assert_array_equal(cal.examples[0], x[0])
