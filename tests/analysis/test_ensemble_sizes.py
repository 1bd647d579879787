"""``cv.ensemble_sizes``: every N-seed subset is scored by the mean of its members' clip probabilities."""

import numpy as np
import pytest

from keras_dssdn.analysis import cv


def _seed(probs, macs=1000):
    probs = np.asarray(probs, dtype=float)
    return {"probs": probs, "labels": np.array([0, 1, 0]), "class_names": ["a", "b"],
            "records": [{"params": 10, "macs": macs}]}


def test_every_subset_is_the_mean_of_its_members_probabilities():
    # clip 0 (label a), clip 1 (label b), clip 2 (label a)
    seeds = {0: _seed([[0.9, 0.1], [0.6, 0.4], [0.4, 0.6]]),   # right on clip 0 only
             1: _seed([[0.45, 0.55], [0.2, 0.8], [0.7, 0.3]]),  # right on clips 1, 2
             3: _seed([[0.4, 0.6], [0.3, 0.7], [0.45, 0.55]])}  # right on clip 1 only
    curve = cv.ensemble_sizes(seeds)
    assert [c["members"] for c in curve] == [1, 2, 3]
    assert curve[0]["accuracy"] == pytest.approx([1 / 3, 2 / 3, 1 / 3])
    # {0, 1}: [.675 .325] a ok, [.4 .6] b ok, [.55 .45] a ok; {0, 3}: [.65 .35] ok, [.45 .55] ok, [.425 .575] wrong;
    # {1, 3}: [.425 .575] wrong, ok, [.575 .425] ok
    assert curve[1]["subsets"] == [[0, 1], [0, 3], [1, 3]]
    assert curve[1]["accuracy"] == pytest.approx([1.0, 2 / 3, 2 / 3])
    assert curve[1]["mean"] == pytest.approx(7 / 9)
    # all three: [.583 .417] ok, [.367 .633] ok, [.517 .483] ok
    assert curve[2]["accuracy"] == pytest.approx([1.0])
    assert (curve[1]["params"], curve[1]["macs"]) == (20, 2000)


def test_a_row_without_macs_keeps_none():
    curve = cv.ensemble_sizes({0: _seed([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]], macs=None)})
    assert curve == [{"members": 1, "subsets": [[0]], "accuracy": [1.0], "mean": 1.0, "params": 10, "macs": None}]
