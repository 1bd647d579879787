"""Shared fixtures of the distillation tests: a tiny synthetic DCASE set and made-up teacher logits keyed by clip."""

import numpy as np
import pytest

from keras_dssdn.data.datasets import read_dcase
from keras_dssdn.data.synthetic import make_synthetic_dataset
from keras_dssdn.distill.logits import TeacherLogits, clip_records


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """3 classes, 2-s clips (two 1-s segments), 18 training and 9 evaluate clips."""
    root = tmp_path_factory.mktemp("distill") / "synthetic"
    return make_synthetic_dataset(root, num_classes=3, seconds=2.0, train_locations=2, eval_locations=1,
                                  clips_per_location=3, devices=("a", "b"), seed=1)


@pytest.fixture(scope="session")
def train_clips(tiny_data):
    return read_dcase(tiny_data, "train")


def made_up_logits(clips, segments=2, segment_seconds=1.0, clip_seconds=2.0, seed=0, classes=None) -> TeacherLogits:
    """Random (but distinct per clip and segment) logits for every clip of ``clips``."""
    keys, labels, sizes = clip_records(clips)
    rng = np.random.default_rng(seed)
    names = list(classes or clips.vocabulary().names)
    return TeacherLogits(keys, rng.normal(0.0, 3.0, (len(keys), segments, len(names))), names, clip_seconds,
                         segment_seconds, labels, sizes, {"name": "synthetic", "split": clips.name},
                         [{"name": "made-up", "source": "test", "kind": "test"}])
