"""Training subsets (train_subset=5|10|25|50|100): official split files, seeded stratified draws, the run folder's
subset.csv, and refused sizes."""

import numpy as np
import pytest

from keras_dssdn.data.datasets import read_dcase
from keras_dssdn.data.subsets import SUBSET_PERCENTS, stratified_indices, train_subset
from keras_dssdn.data.synthetic import make_synthetic_dataset
from keras_dssdn.errors import ConfigError, MetadataError
from keras_dssdn.runs import RunFolder
from keras_dssdn.train import load_train_config, train


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_synthetic_dataset(tmp_path_factory.mktemp("d") / "sub", num_classes=3, seconds=1.0,
                                  train_locations=4, eval_locations=1, clips_per_location=5, devices=("a", "b"),
                                  seed=2)


def _groups(clips):
    keys = [(c.label, c.device) for c in clips]
    return {k: keys.count(k) for k in set(keys)}


def test_stratified_draw_is_seeded_nested_and_keeps_every_group(data):
    clips = read_dcase(data, split="train")  # 3 classes x 2 devices x 10 clips
    full = _groups(clips)
    sizes = {}
    for p in (10, 25, 50):
        idx = stratified_indices(clips, p, seed=4)
        assert idx == stratified_indices(clips, p, seed=4)
        sub = _groups(clips.subset(idx))
        assert sub.keys() == full.keys()
        assert all(sub[k] == max(1, int(np.floor(full[k] * p / 100 + 0.5))) for k in full)
        sizes[p] = set(idx)
    assert sizes[10] <= sizes[25] <= sizes[50]
    assert stratified_indices(clips, 50, seed=4) != stratified_indices(clips, 50, seed=5)
    whole, how = train_subset(clips, 100)
    assert whole is clips and "whole" in how


def test_official_split_file_wins(data, tmp_path):
    clips = read_dcase(data, split="train")
    (tmp_path / "split_setup").mkdir()
    chosen = [clips[i].filename for i in (0, 3, 7)]
    (tmp_path / "split_setup" / "split5.csv").write_text(
        "filename\tscene_label\n" + "".join(f"{f}\tx\n" for f in chosen))
    moved = clips.subset(range(len(clips)))
    moved.root = str(tmp_path)
    sub, how = train_subset(moved, 5)
    assert [c.filename for c in sub] == chosen and "official split file" in how
    (tmp_path / "split_setup" / "split5.csv").write_text("filename\tscene_label\naudio/other.wav\tx\n")
    with pytest.raises(MetadataError, match="split5.csv"):
        train_subset(moved, 5)


@pytest.mark.parametrize("value", [7, 0, 101, "half", True])
def test_sizes_not_offered_are_refused_naming_value_and_choices(data, value):
    with pytest.raises(ConfigError, match="train_subset") as e:
        load_train_config("small", [f"data={data}", f"train_subset={value}"])
    assert str(value) in str(e.value)
    if type(value) is int:  # a value of another type is refused for its type, naming it
        assert all(str(p) in str(e.value) for p in SUBSET_PERCENTS)


@pytest.mark.slow
def test_run_writes_its_subset_and_resume_reads_it(data, tmp_path):
    cfg = load_train_config("small", [f"data={data}", f"out_dir={tmp_path}", "name=r", "train_subset=25",
                                      "widths=[4,4,8,8,8]", "epochs=1", "warmup_epochs=0", "batch_size=8",
                                      "verbose=0", "clip_seconds=1.0", "segment_seconds=null"])
    train(cfg)
    saved = RunFolder(tmp_path / "r").subset_filenames()
    clips = read_dcase(data, split="train")
    expected = [clips[i].filename for i in stratified_indices(clips, 25, seed=0)]
    assert saved == expected
