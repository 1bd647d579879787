"""Cross-validation folds (keras_dssdn.data.folds) on the real tut17-dev metadata: the location rule, the fold
builder, the fold file round trip, bad fold files refused naming the clip, and the DCASE view."""

import dataclasses
import os
from collections import Counter, defaultdict

import pytest

from keras_dssdn.data.datasets import read_dcase
from keras_dssdn.data.folds import (Folds, build_folds, ensure_folds, location_of, pair_fold, pair_folds,
                                    read_folds, write_folds, write_view)
from keras_dssdn.distill.logits import clip_key
from keras_dssdn.errors import ConfigError, MetadataError


@pytest.fixture
def tut17(shared_data):
    return read_dcase(shared_data / "tut17-dev", split="all")


def test_location_rule_agrees_with_the_metadata_and_the_official_split(tut17, shared_data):
    stems = [location_of(dataclasses.replace(c, identifier=None)) for c in tut17]  # the file-name rule alone
    assert stems == [c.identifier for c in tut17]
    assert len(set(stems)) == 156
    root = shared_data / "tut17-dev"
    train = {location_of(c) for c in read_dcase(root, "train")}
    evaluate = {location_of(c) for c in read_dcase(root, "evaluate")}
    assert train and evaluate and not train & evaluate


def test_a_clip_without_location_is_refused_by_name(tut17):
    clip = dataclasses.replace(tut17[0], identifier=None, filename="audio/recording.flac")
    with pytest.raises(MetadataError, match="audio/recording.flac"):
        location_of(clip)


def test_folds_are_location_disjoint_stratified_and_cover_every_clip_once(tut17):
    folds = build_folds(tut17, k=4, seed=0)
    assert set(folds.fold) == {c.filename for c in tut17} and len(folds.fold) == len(tut17)
    assert sorted(folds.sizes()) and max(folds.sizes()) - min(folds.sizes()) <= 2
    of_location = defaultdict(set)
    for c in tut17:
        of_location[location_of(c)].add(folds.fold[c.filename])
    assert all(len(v) == 1 for v in of_location.values())
    # per class: fold counts differ by at most the largest location of that class (greedy balance bound)
    for label in set(tut17.labels):
        members = [c for c in tut17 if c.label == label]
        counts = Counter(folds.fold[c.filename] for c in members)
        biggest = max(Counter(location_of(c) for c in members).values())
        per_fold = [counts.get(k, 0) for k in range(1, 5)]
        assert max(per_fold) - min(per_fold) <= biggest, (label, per_fold)
        assert min(per_fold) > 0, (label, per_fold)


def test_folds_are_deterministic_for_a_seed(tut17):
    assert build_folds(tut17, 4, seed=3) == build_folds(tut17, 4, seed=3)
    assert build_folds(tut17, 4, seed=3).fold != build_folds(tut17, 4, seed=4).fold


def test_too_many_folds_or_bad_k_refused(tut17):
    with pytest.raises(ConfigError, match="156 recording locations"):
        build_folds(tut17, 200)
    with pytest.raises(ConfigError, match="folds=1"):
        build_folds(tut17, 1)


def test_fold_file_round_trip_and_reuse(tut17, tmp_path):
    folds = build_folds(tut17, 4, seed=0)
    path = write_folds(tmp_path / "folds.csv", tut17, folds)
    back = read_folds(path, tut17)
    assert back.fold == folds.fold and back.k == 4 and back.seed == 0 and back.dataset == "tut17-dev"
    assert ensure_folds(path, tut17, 4, seed=99).fold == folds.fold  # reused, not rebuilt with the new seed
    with pytest.raises(ConfigError, match="holds 4 folds, not 5"):
        ensure_folds(path, tut17, 5)


def _edited(tmp_path, tut17, edit):
    folds = build_folds(tut17, 4, seed=0)
    path = write_folds(tmp_path / "folds.csv", tut17, folds)
    lines = path.read_text().splitlines()
    path.write_text("\n".join(edit(lines)) + "\n")
    return path


def _set_fold(line, fold):
    fields = line.split("\t")
    return "\t".join(fields[:3] + [str(fold)])


def test_bad_fold_files_are_refused_naming_the_clip(tut17, tmp_path):
    first = tut17[0].filename
    # a clip of the dataset missing from the file
    path = _edited(tmp_path, tut17, lambda lines: [x for x in lines if not x.startswith(first + "\t")])
    with pytest.raises(MetadataError, match=f"1 clips of .* are in no fold: {first}"):
        read_folds(path, tut17)
    # a clip the dataset does not have
    path = _edited(tmp_path, tut17, lambda lines: lines + ["audio/z999_0_10.flac\tbeach\tz999\t1"])
    with pytest.raises(MetadataError, match="clip audio/z999_0_10.flac is not in"):
        read_folds(path, tut17)
    # one clip of a location moved to another fold: the location is in two folds
    a001 = [c.filename for c in tut17 if location_of(c) == "a001"]
    assert len(a001) > 1

    def move(lines):
        out = []
        for x in lines:
            if x.startswith(a001[1] + "\t"):
                x = _set_fold(x, int(x.split("\t")[3]) % 4 + 1)
            out.append(x)
        return out

    path = _edited(tmp_path, tut17, move)
    with pytest.raises(MetadataError, match=f"clip {a001[1]} \\(location a001\\)"):
        read_folds(path, tut17)
    # a label that differs from the dataset's, a duplicate row, a fold outside 1..k
    path = _edited(tmp_path, tut17, lambda lines: [x.replace("\tresidential_area\t", "\tpark\t", 1)
                                                  if x.startswith(first + "\t") else x for x in lines])
    with pytest.raises(MetadataError, match=f"clip {first} has label 'park'"):
        read_folds(path, tut17)
    path = _edited(tmp_path, tut17, lambda lines: lines + [lines[2]])
    with pytest.raises(MetadataError, match=f"clip {first} is listed twice"):
        read_folds(path, tut17)
    path = _edited(tmp_path, tut17, lambda lines: [_set_fold(x, 7) if x.startswith(first + "\t") else x
                                                  for x in lines])
    with pytest.raises(MetadataError, match=f"{first}: fold '7' is not one of 1..4"):
        read_folds(path, tut17)
    (tmp_path / "other.csv").write_text("path\tlabel\n")
    with pytest.raises(MetadataError, match="is not .*filename"):
        read_folds(tmp_path / "other.csv", tut17)


def test_view_reads_each_fold_with_the_dataset_keys(tut17, tmp_path):
    folds = build_folds(tut17, 4, seed=0)
    view = write_view(tmp_path / "view", tut17, folds)
    assert os.path.islink(view / "audio")  # nothing copied
    originals = {c.filename: c for c in tut17}
    seen = Counter()
    for k in range(1, 5):
        train, evaluate = read_dcase(view, "train", k), read_dcase(view, "evaluate", k)
        assert len(train) + len(evaluate) == len(tut17)
        assert {location_of(c) for c in train}.isdisjoint(location_of(c) for c in evaluate)
        for c in evaluate:
            seen[c.filename] += 1
            assert folds.fold[c.filename] == k
            assert clip_key(c.path, evaluate.root) == c.filename
            assert os.path.getsize(c.path) == os.path.getsize(originals[c.filename].path)
    assert set(seen) == set(originals) and set(seen.values()) == {1}
    write_view(view, tut17, folds)  # rewriting its own view is allowed
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "audio").mkdir()
    with pytest.raises(MetadataError, match="is not a link"):
        write_view(tmp_path / "taken", tut17, folds)


def test_view_holds_out_every_pair_of_folds_for_leak_free_teachers(tut17, tmp_path):
    folds = build_folds(tut17, 4, seed=0)
    view = write_view(tmp_path / "view", tut17, folds)
    assert pair_folds(4) == {5: (1, 2), 6: (1, 3), 7: (1, 4), 8: (2, 3), 9: (2, 4), 10: (3, 4)}
    for n, (a, b) in pair_folds(4).items():
        assert pair_fold(4, b, a) == n
        train, evaluate = read_dcase(view, "train", n), read_dcase(view, "evaluate", n)
        assert {folds.fold[c.filename] for c in evaluate} == {a, b}
        assert {folds.fold[c.filename] for c in train} == {1, 2, 3, 4} - {a, b}
        assert len(train) + len(evaluate) == len(tut17)
    assert "10 = folds 3 + 4" in (view / "README.txt").read_text()
    assert pair_folds(2) == {}
    with pytest.raises(ConfigError, match="folds 2 and 2 of k=4: no such pair"):
        pair_fold(4, 2, 2)


def test_folds_of_a_synthetic_layout_without_identifiers(tmp_path):
    root = tmp_path / "set"
    (root / "audio").mkdir(parents=True)
    rows = ["filename\tscene_label"]
    for loc in range(8):
        for seg in range(3):
            name = f"audio/b{loc:03d}_{seg * 10}_{seg * 10 + 10}.wav"
            (root / name).write_bytes(b"x")
            rows.append(f"{name}\t{'park' if loc % 2 else 'bus'}")
    (root / "meta.csv").write_text("\n".join(rows) + "\n")
    clips = read_dcase(root, "all")
    folds = build_folds(clips, 4, seed=1)
    assert isinstance(folds, Folds) and folds.sizes() == [6, 6, 6, 6]
    for k in range(1, 5):
        labels = Counter(c.label for c in clips if folds.fold[c.filename] == k)
        assert labels == {"park": 3, "bus": 3}
