"""Out-of-fold teacher logits over the real tut17-dev clips (made-up values, no model): the joined file covers
every clip and each cross-validation fold's training split; a file with clips missing for a student's training
split is refused naming how many and which split, by the pipeline's check and by ``dssdn-teacher join --data``."""

import pytest

from keras_dssdn.cli import teacher as teacher_cli
from keras_dssdn.data.datasets import read_dcase
from keras_dssdn.data.folds import build_folds, write_view
from keras_dssdn.errors import TeacherLogitsError

from conftest import made_up_logits


@pytest.fixture
def cv_view(shared_data, tmp_path):
    clips = read_dcase(shared_data / "tut17-dev", split="all")
    return clips, write_view(tmp_path / "view", clips, build_folds(clips, 4, seed=0))


def _parts(view, tmp_path, skip_fold=None):
    """One logits file per fold's evaluate clips (1-s segments of 10-s clips, as the 1-s students use)."""
    paths = []
    for k in range(1, 5):
        if k == skip_fold:
            continue
        part = made_up_logits(read_dcase(view, "evaluate", k), segments=10, clip_seconds=10.0, seed=k)
        paths.append(str(part.save(tmp_path / f"fold{k}.npz")))
    return paths


def test_joined_out_of_fold_parts_cover_every_clip_and_every_training_split(cv_view, tmp_path, shared_data):
    clips, view = cv_view
    out = tmp_path / "oof.npz"
    assert teacher_cli.main(["join", *_parts(view, tmp_path), "--data", str(shared_data / "tut17-dev"),
                             "--split", "all", "--out", str(out)]) == 0
    from keras_dssdn.distill.logits import TeacherLogits

    joined = TeacherLogits.load(out)
    joined.check_covers(clips)  # the dataset itself: keys are the dataset's own paths
    for k in range(1, 5):
        train = read_dcase(view, "train", k)
        assert joined.aligned(train, train.vocabulary(), 10, 1.0, 10.0).shape == (len(train), 10, 15)


def test_clips_missing_for_a_training_split_are_refused_naming_how_many_and_which(cv_view, tmp_path):
    _, view = cv_view
    from keras_dssdn.distill.logits import TeacherLogits

    parts = [TeacherLogits.load(p) for p in _parts(view, tmp_path, skip_fold=2)]
    joined = parts[0].joined(*parts[1:])
    missing = len(read_dcase(view, "evaluate", 2))
    train3 = read_dcase(view, "train", 3)  # holds fold 2's clips
    with pytest.raises(TeacherLogitsError, match=f"lack {missing} of the {len(train3)} clips of view fold3 train"):
        joined.check_covers(train3)
    with pytest.raises(TeacherLogitsError, match=f"lack {missing} of the {len(train3)} clips of view fold3 train"):
        joined.aligned(train3, train3.vocabulary(), 10, 1.0, 10.0)
    joined.check_covers(read_dcase(view, "train", 2))  # fold 2's training split does not need fold 2's clips


def test_join_with_data_refuses_an_incomplete_file_and_writes_nothing(cv_view, tmp_path, shared_data, capsys):
    _, view = cv_view
    out = tmp_path / "oof.npz"
    status = teacher_cli.main(["join", *_parts(view, tmp_path, skip_fold=4), "--data",
                               str(shared_data / "tut17-dev"), "--split", "all", "--out", str(out)])
    missing = len(read_dcase(view, "evaluate", 4))
    err = capsys.readouterr().err
    assert status == 3 and f"lack {missing} of the 393 clips of tut17-dev all" in err
    assert not out.exists()
