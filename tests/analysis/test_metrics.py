"""DCASE metrics against hand-computed values."""

import math

import numpy as np
import pytest

from keras_dssdn.analysis.metrics import aggregate_clips, classification_metrics, confusion_matrix, log_loss, markdown_report, plot_confusion


def test_metrics_match_hand_computed_example(tmp_path):
    names = ["a", "b", "c"]
    y = np.array([0, 0, 1, 1, 1, 2])
    p = np.array([
        [0.7, 0.2, 0.1],   # a -> a  ok
        [0.2, 0.5, 0.3],   # a -> b
        [0.1, 0.8, 0.1],   # b -> b  ok
        [0.3, 0.6, 0.1],   # b -> b  ok
        [0.5, 0.25, 0.25],  # b -> a
        [0.0, 0.1, 0.9],   # c -> c  ok
    ])
    m = classification_metrics(y, p, names, devices=["d1", "d1", "d1", "d2", "d2", "d2"])
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["class_accuracy"] == {"a": 0.5, "b": pytest.approx(2 / 3), "c": 1.0}
    assert m["macro_class_accuracy"] == pytest.approx((0.5 + 2 / 3 + 1.0) / 3)
    expected_ll = -(math.log(0.7) + math.log(0.2) + math.log(0.8) + math.log(0.6) + math.log(0.25) + math.log(0.9)) / 6
    assert m["log_loss"] == pytest.approx(expected_ll)
    assert m["class_log_loss"]["a"] == pytest.approx(-(math.log(0.7) + math.log(0.2)) / 2)
    assert m["confusion_matrix"] == [[1, 1, 0], [1, 2, 0], [0, 0, 1]]
    assert m["device"]["d1"]["accuracy"] == pytest.approx(2 / 3)
    assert m["device"]["d2"]["accuracy"] == pytest.approx(2 / 3)
    assert m["device"]["d1"]["macro_class_accuracy"] == pytest.approx((0.5 + 1.0) / 2)
    text = markdown_report(m, "t")
    assert "| b | 3 | 66.67 % |" in text and "| d2 | 3 |" in text
    png = tmp_path / "cm.png"
    import matplotlib

    before = matplotlib.get_backend()
    matplotlib.use("svg")  # stands for a notebook's inline backend: plotting must not switch it
    try:
        plot_confusion(m, png)
        assert matplotlib.get_backend() == "svg"
    finally:
        matplotlib.use(before)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_log_loss_clips_zero_probability():
    assert log_loss([0], [[0.0, 1.0]]) == pytest.approx(-math.log(1e-15))


def test_missing_class_is_left_out_of_macro_average():
    m = classification_metrics([0, 0], [[0.9, 0.1], [0.4, 0.6]], ["x", "y"])
    assert m["class_accuracy"]["y"] is None and m["classes_missing"] == ["y"]
    assert m["macro_class_accuracy"] == 0.5


def test_bad_shapes_and_unknown_ids():
    with pytest.raises(ValueError, match="class ids"):
        classification_metrics([3], [[0.5, 0.5]], ["x", "y"])
    with pytest.raises(ValueError, match="probs must be"):
        classification_metrics([0, 1], [[0.5, 0.5]], ["x", "y"])
    with pytest.raises(ValueError, match="class names"):
        classification_metrics([0], [[0.5, 0.5]], ["x"])


def test_aggregate_clips_averages_segments_in_order():
    probs = np.array([[1.0, 0.0], [0.0, 1.0], [0.2, 0.8], [0.6, 0.4], [0.4, 0.6]])
    clip = np.array([7, 7, 3, 3, 3])
    labels = np.array([0, 0, 1, 1, 1])
    clip_probs, ids, clip_labels = aggregate_clips(probs, clip, labels)
    assert ids.tolist() == [7, 3] and clip_labels.tolist() == [0, 1]
    np.testing.assert_allclose(clip_probs, [[0.5, 0.5], [0.4, 0.6]])
    with pytest.raises(ValueError, match="different labels"):
        aggregate_clips(probs, clip, np.array([0, 1, 1, 1, 1]))


def test_confusion_matrix_counts():
    assert confusion_matrix([0, 1, 1], [1, 1, 0], 2).tolist() == [[0, 1], [1, 1]]
