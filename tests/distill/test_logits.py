"""The teacher-logits file: npz and CSV round trips, keyed lookup, and every bad input named before training."""

import numpy as np
import pytest

from keras_dssdn.cli.teacher import main as teacher_main
from keras_dssdn.distill.logits import TeacherLogits, import_csv
from keras_dssdn.errors import TeacherLogitsError

from conftest import made_up_logits


def _aligned(tl, clips, segments=2, segment_seconds=1.0, clip_seconds=2.0, vocab=None):
    return tl.aligned(clips, vocab or clips.vocabulary(), segments, segment_seconds, clip_seconds)


def test_npz_round_trip_and_keyed_lookup(train_clips, tmp_path):
    tl = made_up_logits(train_clips)
    tl.members = np.stack([tl.logits, tl.logits + 1.0])
    tl.models = [{"name": "a"}, {"name": "b"}]
    back = TeacherLogits.load(tl.save(tmp_path / "t.npz"))
    assert back.class_names == tl.class_names and back.segment_seconds == 1.0 and back.clip_seconds == 2.0
    np.testing.assert_array_equal(back.logits, tl.logits)
    np.testing.assert_array_equal(back.members, tl.members)
    assert back.fingerprint == tl.fingerprint and back.models == tl.models
    assert not list(tmp_path.glob(".*tmp*"))
    # keyed: any row order of the split gets its own clips' logits
    order = np.random.default_rng(1).permutation(len(train_clips))
    shuffled = train_clips.subset(order)
    got = _aligned(back, shuffled)
    for row, clip in zip(got, shuffled):
        np.testing.assert_array_equal(row, np.stack([back.lookup(clip.filename, s) for s in range(2)]))


def test_csv_export_import_round_trip_with_class_reordering(train_clips, tmp_path):
    tl = made_up_logits(train_clips)
    tl.to_csv(tmp_path / "t.csv")
    head = (tmp_path / "t.csv").read_text().splitlines()[0]
    assert head == "clip,segment," + ",".join(tl.class_names)
    back = import_csv(tmp_path / "t.csv", train_clips, clip_seconds=2.0, segment_seconds=1.0, model_name="passt")
    np.testing.assert_allclose(back.logits, tl.logits, rtol=1e-6)
    assert back.fingerprint == tl.fingerprint and back.models[0]["name"] == "passt"
    # another class order: the columns follow their names
    flipped = list(reversed(tl.class_names))
    again = import_csv(tmp_path / "t.csv", train_clips, clip_seconds=2.0, segment_seconds=1.0, classes=flipped)
    np.testing.assert_allclose(again.logits, tl.logits[..., ::-1], rtol=1e-6)
    # a whole-clip CSV without a segment column
    (tmp_path / "clip.csv").write_text("# made elsewhere\nclip," + ",".join(tl.class_names) + "\n" + "".join(
        f"{k},1,2,3\n" for k in tl.clips))
    whole = import_csv(tmp_path / "clip.csv", train_clips, clip_seconds=2.0, segment_seconds=None)
    assert whole.logits.shape == (len(train_clips), 1, 3)


def test_missing_clips_are_counted_and_named(train_clips):
    tl = made_up_logits(train_clips.subset(range(len(train_clips) - 4)))
    with pytest.raises(TeacherLogitsError, match=r"lack 4 of the 18 clips .*" + train_clips[-4].filename):
        _aligned(tl, train_clips)


def test_other_classes_and_other_class_order(train_clips):
    names = list(train_clips.vocabulary().names)
    other = made_up_logits(train_clips, classes=names[:2] + ["tram"])
    with pytest.raises(TeacherLogitsError, match=r"other classes.*only in the file: \['tram'\]"):
        _aligned(other, train_clips)
    order = made_up_logits(train_clips, classes=names[::-1])
    with pytest.raises(TeacherLogitsError, match="another order"):
        _aligned(order, train_clips)


def test_segments_that_do_not_match_the_clip_length(train_clips):
    whole = made_up_logits(train_clips, segments=1, segment_seconds=None)
    with pytest.raises(TeacherLogitsError, match=r"1 whole-clip row\(s\) per 2-s clip.*2 segments of 1 s"):
        _aligned(whole, train_clips)
    halves = made_up_logits(train_clips, segments=4, segment_seconds=0.5)
    with pytest.raises(TeacherLogitsError, match="4 segment"):
        _aligned(halves, train_clips)


def test_logits_made_for_another_dataset(train_clips, tiny_data):
    from keras_dssdn.data.datasets import read_dcase

    tl = made_up_logits(train_clips)
    tl.labels = np.array(["bus" if l == "airport" else l for l in tl.labels])  # same paths, other labels
    with pytest.raises(TeacherLogitsError, match=r"another dataset .*other labels.*'bus' vs 'airport'"):
        _aligned(tl, train_clips)
    evaluate = read_dcase(tiny_data, "evaluate")  # none of its clips is in a file made on the training split
    with pytest.raises(TeacherLogitsError, match=r"another dataset .*none of the 9 clips"):
        _aligned(made_up_logits(train_clips), evaluate)


def test_malformed_files_are_named(tmp_path, train_clips):
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(TeacherLogitsError, match="junk.npz is not a teacher-logits file"):
        TeacherLogits.load(tmp_path / "junk.npz")
    np.savez(tmp_path / "other.npz", logits=np.zeros((2, 1, 3)), header=np.array("{}"))
    with pytest.raises(TeacherLogitsError, match="other.npz: not a keras_dssdn.teacher_logits file"):
        TeacherLogits.load(tmp_path / "other.npz")
    with pytest.raises(TeacherLogitsError, match="not found"):
        TeacherLogits.load(tmp_path / "absent.npz")
    (tmp_path / "bad.csv").write_text("clip,segment,airport,bus,metro\naudio/x.wav,0,1,2\n")
    with pytest.raises(TeacherLogitsError, match="bad.csv line 2: 4 fields"):
        import_csv(tmp_path / "bad.csv", train_clips, clip_seconds=2.0, segment_seconds=1.0)


def test_merged_files_make_one_ensemble_and_accuracies_follow_the_labels(train_clips):
    a, b = made_up_logits(train_clips, seed=1), made_up_logits(train_clips, seed=2)
    a.members, b.members = a.logits[None], b.logits[None]
    both = a.merged(b)
    np.testing.assert_allclose(both.logits, (a.logits + b.logits) / 2, rtol=1e-6)
    # a member that predicts every clip's label scores 1, one that predicts another class scores 0
    y = np.array([a.class_names.index(l) for l in a.labels])
    right = np.eye(3)[y][:, None].repeat(2, axis=1) * 10.0
    right_and_wrong = made_up_logits(train_clips)
    right_and_wrong.members = np.stack([right, np.roll(right, 1, axis=-1)]).astype(np.float32)
    right_and_wrong.logits = right_and_wrong.members.mean(axis=0)
    right_and_wrong.models = [{"name": "right"}, {"name": "wrong"}]
    acc = right_and_wrong.accuracies()
    assert acc["right"] == {"segment": 1.0, "clip": 1.0} and acc["wrong"] == {"segment": 0.0, "clip": 0.0}
    assert set(acc) == {"right", "wrong", "ensemble", "ensemble (mean of probabilities)"}
    with pytest.raises(TeacherLogitsError, match="other clips"):
        a.merged(made_up_logits(train_clips.subset(range(3))))


def test_joined_parts_cover_the_split_and_overlaps_or_other_layouts_are_refused(train_clips, tmp_path):
    """Out-of-fold logits: parts over disjoint clips join into one file that serves the whole split, keyed."""
    n = len(train_clips)
    parts = [train_clips.subset(range(0, n // 3)), train_clips.subset(range(n // 3, n))]
    names = list(train_clips.vocabulary().names)
    a, b = made_up_logits(parts[0], seed=1, classes=names), made_up_logits(parts[1], seed=2, classes=names)
    a.source, b.source = "part0.npz", "part1.npz"
    a.save(tmp_path / "part0.npz"), b.save(tmp_path / "part1.npz")
    assert teacher_main(["join", str(tmp_path / "part0.npz"), str(tmp_path / "part1.npz"), "--out",
                         str(tmp_path / "oof.npz")]) == 0
    whole = TeacherLogits.load(tmp_path / "oof.npz")
    assert whole.members is None and [m["clips"] for m in whole.models] == [len(parts[0]), len(parts[1])]
    order = np.random.default_rng(3).permutation(n)
    shuffled = train_clips.subset(order)
    got = _aligned(whole, shuffled)
    for row, clip in zip(got, shuffled):
        owner = a if clip.filename in set(a.clips) else b
        np.testing.assert_array_equal(row, np.stack([owner.lookup(clip.filename, s) for s in range(2)]))
    overlapping = made_up_logits(parts[0], seed=4, classes=names)
    overlapping.source = "part1.npz"
    with pytest.raises(TeacherLogitsError, match=r"in both part0.npz and part1.npz"):
        a.joined(overlapping)
    with pytest.raises(TeacherLogitsError, match="differ in classes or layout"):
        a.joined(made_up_logits(parts[1], segments=3, classes=names))
    with pytest.raises(TeacherLogitsError, match="differ in classes or layout"):
        a.joined(made_up_logits(parts[1], classes=list(reversed(names))))


def test_certainty_is_the_mean_probability_of_the_labelled_class(train_clips, tmp_path, capsys):
    tl = made_up_logits(train_clips)
    y = np.array([tl.class_names.index(l) for l in tl.labels])
    tl.logits = (np.eye(3)[y][:, None].repeat(2, axis=1) * np.log(8.0)).astype(np.float32)
    # labelled class logit ln 8 above two others: p = 8 / 10 at T = 1, sqrt(8) / (sqrt(8) + 2) at T = 2
    sure = tl.certainty((1.0, 2.0))
    assert sure[1.0] == pytest.approx(0.8, rel=1e-5)
    assert sure[2.0] == pytest.approx(8 ** 0.5 / (8 ** 0.5 + 2), rel=1e-5)
    tl.save(tmp_path / "t.npz")
    assert teacher_main(["show", str(tmp_path / "t.npz")]) == 0
    assert "T = 1: 0.800" in capsys.readouterr().out
    tl.labels = np.array([""] * len(tl.labels))
    assert tl.certainty() == {} and tl.accuracies() == {}
