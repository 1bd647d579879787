"""The paired bootstrap (keras_dssdn.analysis.paired) and the CV report built on it (keras_dssdn.analysis.cv), on
made-up per-clip results: no training."""

import json

import numpy as np
import pytest

from keras_dssdn.analysis import cv
from keras_dssdn.analysis.paired import describe, excludes_zero, paired_bootstrap
from keras_dssdn.distill.logits import TeacherLogits

N = 393


def test_known_difference_is_inside_its_interval_and_excludes_zero():
    rng = np.random.default_rng(0)
    b = (rng.random((3, N)) < 0.6).astype(float)
    a = b.copy()
    wrong = np.flatnonzero(b.max(axis=0) == 0)[:20]  # clips B gets wrong on every seed
    a[:, wrong] = 1.0  # A gets them right: +20 clips = +5.1 points
    r = paired_bootstrap(a, b, resamples=4000)
    assert len(wrong) == 20 and r["difference"] == pytest.approx(20 / N)
    assert r["low"] <= r["difference"] <= r["high"]
    assert excludes_zero(r) and r["low"] > 0.02
    assert "+" in describe(r) and "3 seed(s) x 393 clips" in describe(r)


def test_identical_rows_give_an_interval_at_zero():
    rng = np.random.default_rng(1)
    a = (rng.random((3, N)) < 0.7).astype(float)
    r = paired_bootstrap(a, a.copy(), resamples=2000)
    assert r["difference"] == 0.0 and r["low"] == 0.0 and r["high"] == 0.0 and not excludes_zero(r)


def test_interval_covers_the_true_difference_about_95_percent_of_the_time():
    """Two configurations with true accuracies 0.70 and 0.66 on clips of varying difficulty: the clips x seeds
    interval should hold the true difference in roughly 95 % of simulated experiments."""
    rng = np.random.default_rng(2)
    hits = 0
    trials = 150
    for t in range(trials):
        difficulty = rng.normal(0, 1.5, N)  # per-clip logit offset shared by both rows (the pairing)
        pa = 1 / (1 + np.exp(-(difficulty + 1.2)))
        pb = 1 / (1 + np.exp(-(difficulty + 1.0)))
        a = (rng.random((3, N)) < pa).astype(float)
        b = (rng.random((3, N)) < pb).astype(float)
        r = paired_bootstrap(a, b, resamples=800, seed=t)
        hits += r["low"] <= pa.mean() - pb.mean() <= r["high"]
    assert 0.85 <= hits / trials <= 1.0


def test_mismatched_rows_refused():
    with pytest.raises(ValueError, match="same seeds and clips"):
        paired_bootstrap(np.ones((3, 10)), np.ones((2, 10)))
    with pytest.raises(ValueError, match="over must be"):
        paired_bootstrap(np.ones(10), np.ones(10), over="seeds")


def _fake_cv(out, rows, seeds, k=4, classes=("a", "b", "c"), seed=0):
    """A CV output folder with made-up out-of-fold logits: ``{row: {seed: probs (N, K)}}`` in folds.csv order."""
    rng = np.random.default_rng(seed)
    n = 40
    names = [f"audio/x{i:03d}_0_10.wav" for i in range(n)]
    labels = [classes[i % len(classes)] for i in range(n)]
    fold = [1 + (i // 2) % k for i in range(n)]
    lines = [f"# keras_dssdn folds: k={k} seed=0 dataset=fake clips={n}", "filename\tscene_label\tidentifier\tfold"]
    lines += [f"{f}\t{lab}\tx{i:03d}\t{fo}" for i, (f, lab, fo) in enumerate(zip(names, labels, fold))]
    (out / "folds.csv").write_text("\n".join(lines) + "\n")
    truth = {}
    for row in rows:
        for s in seeds:
            logits = rng.normal(0, 2, (n, 2, len(classes)))
            probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
            truth.setdefault(row, {})[s] = probs.mean(axis=1)
            for f in range(1, k + 1):
                idx = [i for i in range(n) if fold[i] == f][::-1]  # another order than folds.csv
                run = out / row / f"seed{s}_fold{f}"
                run.mkdir(parents=True)
                TeacherLogits(np.array(names)[idx], np.log(probs[idx]), list(classes), 2.0, 1.0,
                              np.array(labels)[idx], None, {"name": "fake", "split": f"fold{f} evaluate"},
                              [{"name": f"{row}/{s}/{f}", "source": str(run), "kind": "run"}],
                              np.log(probs[idx])[None]).save(run / "oof.npz")
                (run / "cv.json").write_text(json.dumps({"seconds": 60.0, "params": 100, "macs": 1000,
                                                         "config": row, "overrides": []}))
    return names, labels, truth


def test_cv_report_pools_every_clip_ensembles_and_compares(tmp_path):
    names, labels, truth = _fake_cv(tmp_path, ["r1", "r2"], [0, 1, 2])
    y = np.array(["abc".index(x) for x in labels])
    rows = cv.load_row(tmp_path, "r1")
    assert sorted(rows) == [0, 1, 2]
    np.testing.assert_allclose(rows[1]["probs"], truth["r1"][1], rtol=1e-5)
    text = cv.cv_report(tmp_path, compare_pairs=[("r1", "r2"), ("r1+ens", "r1"), ("r1", "r3")], ensembles=[],
                        resamples=500)
    result = json.loads((tmp_path / "cv_results.json").read_text())
    acc = [np.mean(truth["r1"][s].argmax(1) == y) for s in (0, 1, 2)]
    assert result["rows"]["r1"]["accuracy"][0] == pytest.approx(np.mean(acc))
    assert result["rows"]["r1"]["accuracy"][1] == pytest.approx(np.std(acc, ddof=1))
    ens = np.mean([truth["r1"][s] for s in (0, 1, 2)], axis=0)
    assert result["rows"]["r1+ens"]["accuracy"][0] == pytest.approx(np.mean(ens.argmax(1) == y))
    pair = result["comparisons"][0]
    acc2 = [np.mean(truth["r2"][s].argmax(1) == y) for s in (0, 1, 2)]
    assert pair["difference"] == pytest.approx(np.mean(acc) - np.mean(acc2))
    assert "r1 vs r3: not complete yet (r3)" in text and "| r1+ens | ensemble of 0, 1, 2 |" in text


def test_incomplete_seeds_are_left_out_and_the_teacher_joins_every_clip(tmp_path):
    names, labels, truth = _fake_cv(tmp_path, ["r1", "r2"], [0, 1])
    (tmp_path / "r2" / "seed1_fold3" / "cv.json").unlink()  # seed 1 of r2 still running
    assert sorted(cv.load_row(tmp_path, "r2")) == [0]
    teacher = cv.oof_teacher(tmp_path, ["r1", "r2"], tmp_path / "teacher.npz")
    assert sorted(teacher.clips) == sorted(names) and len(teacher.models) == 3 * 4
    back = TeacherLogits.load(tmp_path / "teacher.npz")
    i = list(back.clips).index(names[5])
    # the ensemble is the mean of the three members' logits (r1 seeds 0 and 1, r2 seed 0) on that clip
    run_logits = [TeacherLogits.load(tmp_path / r / f"seed{s}_fold{1 + (5 // 2) % 4}" / "oof.npz")
                  for r, s in (("r1", 0), ("r1", 1), ("r2", 0))]
    expected = np.mean([t.lookup(names[5], 0) for t in run_logits], axis=0)
    np.testing.assert_allclose(back.logits[i, 0], expected, rtol=1e-5)


def test_seed_noise_pairs_every_two_seeds(tmp_path):
    _fake_cv(tmp_path, ["r1"], [0, 1, 2])
    rows = cv.load_row(tmp_path, "r1")
    noise = cv.seed_noise(rows, resamples=300)
    acc = cv.per_clip(rows).mean(axis=1)
    assert noise["std"] == pytest.approx(np.std(acc, ddof=1))
    assert [p["seeds_ab"] for p in noise["pairs"]] == [[0, 1], [0, 2], [1, 2]]
    assert noise["pairs"][0]["difference"] == pytest.approx(acc[0] - acc[1])
    assert "Seed noise" in cv.cv_report(tmp_path, resamples=300)


def test_location_clusters_widen_the_interval_when_clips_of_a_place_move_together():
    """40 places of 10 clips each; row A beats row B on whole places (all 10 clips right or wrong together):
    resampling places gives a wider interval than pretending the 400 clips were independent."""
    rng = np.random.default_rng(4)
    places = np.repeat(np.arange(40), 10)
    b = np.repeat(rng.random(40) < 0.6, 10).astype(float)
    a = b.copy()
    a[places < 4] = 1.0  # places 0-3 fixed (those B had wrong)
    clips = paired_bootstrap(a, b, over="clips", resamples=3000)
    located = paired_bootstrap(a, b, over="clips", resamples=3000, groups=places)
    assert located["difference"] == clips["difference"]
    assert located["clusters"] == 40 and clips["clusters"] == 400
    assert (located["high"] - located["low"]) > 2 * (clips["high"] - clips["low"])
    assert describe(located).startswith("+") and " points (" in describe(located)
    assert "locations bootstrap" in describe(located) and "in 40 locations" in describe(located)
    with pytest.raises(ValueError, match="one id per clip"):
        paired_bootstrap(a, b, groups=places[:-1])


def _fake_pair_runs(out, row, seed, names, fold, k=4, classes=("a", "b", "c")):
    """Made-up pair runs of ``row`` x ``seed`` (``--nested``): run {a, b} scores the clips of folds a and b with
    logits that encode the pair (a * 10 + b) and the clip, so a test can tell which run scored a clip."""
    for a in range(1, k + 1):
        for b in range(a + 1, k + 1):
            idx = [i for i in range(len(names)) if fold[i] in (a, b)]
            logits = np.zeros((len(idx), 2, len(classes)), np.float32)
            logits[:, :, 0] = a * 10 + b
            logits[:, :, 1] = np.array(idx)[:, None] + seed / 10
            run = cv.pair_run(out, row, seed, b, a)  # either order names the same run
            run.mkdir(parents=True)
            TeacherLogits(np.array(names)[idx], logits, list(classes), 2.0, 1.0, None, None,
                          {"name": "fake", "split": f"pair {a} {b}"}, [{"name": f"{row}/{seed}/{a}{b}"}],
                          logits[None]).save(run / "oof.npz")
            (run / "cv.json").write_text("{}")


def test_nested_teacher_scores_each_clip_by_runs_that_heard_neither_it_nor_the_test_fold(tmp_path):
    names, _, _ = _fake_cv(tmp_path, ["r1"], [0])
    fold = [1 + (i // 2) % 4 for i in range(len(names))]  # _fake_cv's assignment
    for s in (0, 1):
        _fake_pair_runs(tmp_path, "r1", s, names, fold)
    for k in range(1, 5):
        teacher = cv.nested_teacher(tmp_path, ["r1"], k, tmp_path / f"fold{k}.npz")
        assert sorted(teacher.clips) == sorted(n for n, f in zip(names, fold) if f != k)  # the student's train clips
        back = TeacherLogits.load(tmp_path / f"fold{k}.npz")
        for clip in back.clips:
            i = names.index(clip)
            j = fold[i]
            a, b = sorted((j, k))
            assert back.lookup(clip, 0)[0] == pytest.approx(a * 10 + b)  # the run without folds j and k
            assert back.lookup(clip, 0)[1] == pytest.approx(i + 0.05)  # mean of seeds 0 and 1
        assert len(back.models) == 3 * 2  # (K - 1) parts x 2 seeds


def test_nested_teacher_refuses_missing_runs_and_folds(tmp_path):
    from keras_dssdn.errors import DataError

    names, _, _ = _fake_cv(tmp_path, ["r1"], [0])
    fold = [1 + (i // 2) % 4 for i in range(len(names))]
    with pytest.raises(DataError, match="no seed of this row has all its pair runs"):
        cv.nested_teacher(tmp_path, ["r1"], 1)
    _fake_pair_runs(tmp_path, "r1", 0, names, fold)
    with pytest.raises(DataError, match="folds 1..4"):
        cv.nested_teacher(tmp_path, ["r1"], 5)
    with pytest.raises(DataError, match="seed1_pair1-2/oof.npz"):
        cv.nested_teacher(tmp_path, ["r1"], 1, seeds=[0, 1])
    (cv.pair_run(tmp_path, "r1", 0, 2, 3) / "cv.json").unlink()  # one pair run unfinished: seed 0 not complete
    with pytest.raises(DataError, match="no seed of this row"):
        cv.nested_teacher(tmp_path, ["r1"], 1)


def test_save_record_keeps_the_pair_runs(tmp_path):
    (tmp_path / "out").mkdir()
    names, _, _ = _fake_cv(tmp_path / "out", ["r1"], [0])
    fold = [1 + (i // 2) % 4 for i in range(len(names))]
    _fake_pair_runs(tmp_path / "out", "r1", 0, names, fold)
    assert cv.save_record(tmp_path / "out", tmp_path / "record") == 4 + 6
    assert (cv.pair_run(tmp_path / "record", "r1", 0, 3, 4) / "oof.npz").is_file()


def test_subset_keeps_the_order_asked_and_refuses_unknown_clips(tmp_path):
    names, _, _ = _fake_cv(tmp_path, ["r1"], [0])
    t = TeacherLogits.load(tmp_path / "r1" / "seed0_fold1" / "oof.npz")
    keys = list(t.clips)[::-1][:3]
    part = t.subset(keys)
    assert list(part.clips) == keys and part.members.shape[1] == 3
    np.testing.assert_array_equal(part.logits[0], t.logits[list(t.clips).index(keys[0])])
    with pytest.raises(Exception, match="1 of the 2 clips asked for are not in it: audio/none.wav"):
        t.subset([keys[0], "audio/none.wav"])
