"""The committed CV record (results/cv_tut17_k4): the figures docs/accuracy.md quotes come out of it, and the
leak-free teacher made from its pair runs never contains a clip of the student's test fold. Reads only the record
(cv.json + oof.npz per run, folds.csv): no audio, no training."""

from pathlib import Path

import pytest

from keras_dssdn.analysis import cv
from keras_dssdn.distill.logits import TeacherLogits

RECORD = Path(__file__).resolve().parents[2] / "results" / "cv_tut17_k4"

#: Correct clips of 393 per seed (seeds 0, 1, ... in order), as docs/accuracy.md states them (pooled %: 100 * count
#: / 393).
QUOTED = {"dcase_mcu_1s": (268, 254, 264), "dcase_small_1s": (284, 267, 269), "mlp": (246, 255, 245),
          "mcu_kdn": (253, 251, 267), "mcu_kdn_w02": (258, 256, 269), "mcu_kdn_w09": (224, 219, 236),
          "mcu_kdi": (259, 257, 258), "mcu_kdi_t4": (267, 254, 262),
          "mcu_perband": (260, 259, 257), "mcu_fmask": (259, 250, 269), "mcu_seg05": (272, 243, 268),
          "mcu_e30_mix": (268, 249, 262), "mcu_swa": (259, 236, 265),
          "mcu_mixstyle": (273, 256, 258), "mcu_mixup": (274, 245, 275), "mcu_perinput": (236, 247, 253),
          "middle": (274, 283, 266), "large": (281, 272, 273),
          "mcu_w60": (254, 247, 257), "small_mixup": (278, 276, 259)}


@pytest.mark.parametrize("row", sorted(QUOTED))
def test_quoted_pooled_accuracies_come_from_the_record(row):
    seeds = cv.load_row(RECORD, row)
    assert sorted(seeds) == list(range(len(QUOTED[row])))
    assert tuple(int(n) for n in cv.per_clip(seeds).sum(axis=1)) == QUOTED[row]


@pytest.mark.parametrize("fold", [1, 2, 3, 4])
def test_nested_teacher_of_the_record_holds_no_clip_of_the_students_test_fold(fold):
    fold_of = {name: int(k) for name, _, _, k in cv._fold_rows(RECORD)}
    teacher = cv.nested_teacher(RECORD, ["dcase_small_1s"], fold)
    assert sorted(teacher.clips) == sorted(n for n, k in fold_of.items() if k != fold)
    # each part comes from the pair runs without folds {j, fold}: what those runs scored (their held-out clips)
    # is exactly folds j and fold, so what they trained on holds neither the scored clip nor the student's test fold
    for j in (f for f in (1, 2, 3, 4) if f != fold):
        for seed in (0, 1):
            scored = TeacherLogits.load(cv.pair_run(RECORD, "dcase_small_1s", seed, j, fold) / "oof.npz").clips
            assert sorted(scored) == sorted(n for n, k in fold_of.items() if k in (j, fold))
    acc = teacher.accuracies()["ensemble"]["clip"]
    assert acc == pytest.approx({1: 0.6271, 2: 0.6701, 3: 0.6780, 4: 0.6102}[fold], abs=5e-5)


#: Correct clips of 393 for each 2-seed ensemble {0, 1}, {0, 2}, {1, 2} and the 3-seed one, as docs/accuracy.md
#: states them in "Ensemble size".
QUOTED_ENSEMBLES = {"dcase_mcu_1s": ((265, 275, 270), 269), "dcase_small_1s": ((295, 289, 276), 294)}


@pytest.mark.parametrize("row", sorted(QUOTED_ENSEMBLES))
def test_quoted_ensemble_sizes_come_from_the_record(row):
    curve = cv.ensemble_sizes(cv.load_row(RECORD, row))
    assert [c["members"] for c in curve] == [1, 2, 3]
    assert tuple(round(393 * a) for a in curve[1]["accuracy"]) == QUOTED_ENSEMBLES[row][0]
    assert round(393 * curve[2]["accuracy"][0]) == QUOTED_ENSEMBLES[row][1]
    assert curve[0]["accuracy"] == pytest.approx([n / 393 for n in QUOTED[row]])
    assert curve[2]["params"] == 3 * curve[0]["params"] and curve[2]["macs"] == 3 * curve[0]["macs"]
