"""training_dataset / evaluation_dataset with a PipelineSpec (and the deprecated make_dataset): every real file
through the pipeline, shapes, labels, metadata, segments,
seeded training batches, caching, bad input reported before training."""

import os
import warnings

import numpy as np
import pytest
import soundfile as sf
import tensorflow as tf

from keras_dssdn.data import pipeline
from keras_dssdn.data.augment import AugmentConfig
from keras_dssdn.data.datasets import Clip, ClipList, read_clips, read_dcase
from keras_dssdn.data.spec import PipelineSpec, TrainingOptions
from keras_dssdn.errors import AudioFormatError, MetadataError, MissingAudioError, ShortClipError, UnknownLabelError, UnsupportedAudioError
from keras_dssdn.layers.frontend import log_mel_spectrogram
from keras_dssdn.layers.labels import LabelVocabulary
from keras_dssdn.params import DEFAULT_FRONTEND, FrontEndParams

SMALL = FrontEndParams(sample_rate=16000, n_fft=512, win_length=512, hop_length=256, n_mels=32, clip_seconds=1.0)


def _clips(tmp_path, specs, name="synthetic"):
    """ClipList of WAV files: specs = [(label, seconds, rate, channels)]."""
    clips = []
    rng = np.random.default_rng(0)
    for i, (label, seconds, rate, channels) in enumerate(specs):
        path = str(tmp_path / f"clip{i}.wav")
        sf.write(path, rng.uniform(-0.5, 0.5, (int(seconds * rate), channels)), rate, subtype="PCM_16")
        clips.append(Clip(f"clip{i}.wav", path, label, f"loc{i % 2}", "abc"[i % 3], f"list.csv line {i + 1}"))
    return ClipList(clips, name=name, root=str(tmp_path))


# ---------------------------------------------------------------- every real file


def _all_waveforms(clips, params, seconds):
    ds = pipeline.evaluation_dataset(clips, PipelineSpec(output="waveform", clip_seconds=seconds, batch_size=64,
                                                         cache=None, frontend=params))
    return np.concatenate([x.numpy() for x, _ in ds])


@pytest.mark.parametrize(
    "folder,rate,seconds",
    [("tut17-dev", 44100, 10.0), ("tau18-format", 48000, 10.0), ("tau20-layout", 44100, 1.0)],
)
def test_every_real_file_through_pipeline_matches_soundfile(shared_data, folder, rate, seconds):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tau20-layout: 5 missing files skipped
        clips = read_dcase(shared_data / folder, "all", skip_missing=True)
    params = FrontEndParams(sample_rate=rate)  # native rate: compare decoded samples, no resampling
    got = _all_waveforms(clips, params, seconds)
    n = params.num_samples(seconds)
    assert got.shape == (len(clips), n) and got.dtype == np.float32
    for i, clip in enumerate(clips):
        ref = sf.read(clip.path, dtype="float32", always_2d=True)[0]
        ref = ref.mean(axis=1, dtype=np.float32) if ref.shape[1] > 1 else ref[:, 0]
        np.testing.assert_allclose(got[i], ref[:n], rtol=0, atol=1e-7, err_msg=clip.filename)


def test_real_sets_as_logmel_batches(shared_data):
    train = read_dcase(shared_data / "tut17-dev", "train")
    ds = pipeline.evaluation_dataset(train.subset(range(20)), PipelineSpec(batch_size=8, vocabulary=train.vocabulary()))
    x, y = next(iter(ds))
    assert x.shape == (8, 128, 431, 1) and x.dtype == tf.float32 and y.dtype == tf.int32
    assert int(ds.cardinality()) == 3
    # 48 kHz stereo 24-bit: down-mixed and resampled to 44.1 kHz in the pipeline
    tau18 = read_dcase(shared_data / "tau18-format", "all")
    x, y = next(iter(pipeline.evaluation_dataset(tau18, PipelineSpec(batch_size=10))))
    assert x.shape == (10, 128, 431, 1) and np.isfinite(x.numpy()).all()
    assert sorted(y.numpy()) == list(range(10))


def test_tau20_layout_loads_unchanged_with_skip_missing(shared_data):
    with pytest.raises(MissingAudioError, match="skip_missing=True"):
        pipeline.evaluation_dataset(read_clips(str(shared_data / "tau20-layout"), split="all"),
                                    PipelineSpec(clip_seconds=1.0))
    with pytest.warns(UserWarning, match="skipped 5 of 6"):
        ds = pipeline.evaluation_dataset(read_clips(str(shared_data / "tau20-layout"), split="all", skip_missing=True),
                                         PipelineSpec(segment_seconds=1.0, clip_seconds=1.0), with_metadata=True)
    x, y, meta = next(iter(ds))
    assert x.shape == (1, 128, 44, 1)
    assert meta["device"].numpy()[0] == b"a" and meta["identifier"].numpy()[0] == b"barcelona-0"


def test_pipeline_logmel_equals_logmel_layer_on_pipeline_waveforms(shared_data):
    clips = read_dcase(shared_data / "tut17-dev", "evaluate").subset(range(3))
    (wav, _), = pipeline.evaluation_dataset(clips, PipelineSpec(output="waveform", batch_size=3)).take(1)
    (mel, _), = pipeline.evaluation_dataset(clips, PipelineSpec(batch_size=3)).take(1)
    np.testing.assert_allclose(mel.numpy(), log_mel_spectrogram(wav).numpy(), atol=1e-5)


# ---------------------------------------------------------------- synthetic sets


def test_labels_metadata_and_order(tmp_path):
    clips = _clips(tmp_path, [("park", 1.0, 16000, 1), ("bus", 1.0, 16000, 2), ("park", 1.0, 16000, 1)])
    ds = pipeline.evaluation_dataset(clips, PipelineSpec(batch_size=2, label_mode="one_hot", frontend=SMALL),
                                     with_metadata=True)
    batches = list(ds)
    assert [b[0].shape[0] for b in batches] == [2, 1]
    y = np.concatenate([b[1].numpy() for b in batches])
    np.testing.assert_array_equal(y, [[0, 1], [1, 0], [0, 1]])  # vocabulary ["bus", "park"]
    files = np.concatenate([b[2]["file"].numpy() for b in batches])
    assert [f.decode() for f in files] == ["clip0.wav", "clip1.wav", "clip2.wav"]
    assert list(np.concatenate([b[2]["device"].numpy() for b in batches])) == [b"a", b"b", b"c"]
    meta = pipeline.example_metadata(clips, SMALL)
    assert [m["file"] for m in meta] == ["clip0.wav", "clip1.wav", "clip2.wav"]


def test_segments_keep_clip_labels(tmp_path):
    clips = _clips(tmp_path, [("park", 3.0, 16000, 1), ("bus", 3.0, 8000, 1)])
    ds = pipeline.evaluation_dataset(clips, PipelineSpec(clip_seconds=3.0, segment_seconds=1.0, batch_size=4,
                                                         frontend=SMALL), with_metadata=True)
    assert int(ds.cardinality()) == 2  # 6 segments of 1 s
    xs, ys, clip_ids, seg_ids = [], [], [], []
    for x, y, m in ds:
        xs.append(x.numpy()), ys.append(y.numpy())
        clip_ids.append(m["clip_index"].numpy()), seg_ids.append(m["segment_index"].numpy())
    x, y = np.concatenate(xs), np.concatenate(ys)
    assert x.shape == (6,) + SMALL.input_shape(1.0)
    np.testing.assert_array_equal(np.concatenate(clip_ids), [0, 0, 0, 1, 1, 1])
    np.testing.assert_array_equal(np.concatenate(seg_ids), [0, 1, 2, 0, 1, 2])
    np.testing.assert_array_equal(y, [1, 1, 1, 0, 0, 0])
    meta = pipeline.example_metadata(clips, SMALL, clip_seconds=3.0, segment_seconds=1.0)
    assert [(m["clip_index"], m["segment_index"]) for m in meta] == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]
    ids, scores = pipeline.clip_level_scores(np.eye(2)[[0, 0, 1, 1, 1, 1]], np.concatenate(clip_ids))
    np.testing.assert_array_equal(ids, [0, 1])
    np.testing.assert_allclose(scores, [[2 / 3, 1 / 3], [0, 1]])


def test_training_is_seeded_and_augmentation_off_at_evaluation(tmp_path):
    clips = _clips(tmp_path, [(lab, 1.0, 16000, 1) for lab in ["a", "b", "c", "d"] * 2])
    cfg = AugmentConfig(mixup_alpha=0.4, mixstyle_prob=1.0, gain_db=3.0, time_shift_frames=2)

    def first_epochs(seed):
        ds = pipeline.training_dataset(clips, PipelineSpec(batch_size=4, frontend=SMALL),
                                       TrainingOptions(augment=cfg, seed=seed))
        return [[(x.numpy(), y.numpy()) for x, y in ds] for _ in range(2)]

    a, b, c = first_epochs(1), first_epochs(1), first_epochs(2)
    for (xa, ya), (xb, yb) in zip(a[0] + a[1], b[0] + b[1]):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    assert not np.array_equal(a[0][0][0], a[1][0][0])  # new shuffle / augmentation each epoch
    assert not np.array_equal(a[0][0][0], c[0][0][0])
    y = np.concatenate([y for _, y in a[0]])
    assert y.shape == (8, 4) and np.allclose(y.sum(axis=1), 1.0) and ((y > 0) & (y < 1)).any()  # soft labels
    # an evaluation set: nothing augmented, fixed order (the deprecated make_dataset ignores augment= there)
    with pytest.warns(DeprecationWarning, match="evaluation_dataset"):
        off = pipeline.make_dataset(clips, SMALL, batch_size=4, training=False, augment=cfg, label_mode="one_hot")
    plain = pipeline.evaluation_dataset(clips, PipelineSpec(batch_size=4, label_mode="one_hot", frontend=SMALL))
    for (x1, y1), (x2, y2) in zip(off, plain):
        np.testing.assert_array_equal(x1.numpy(), x2.numpy())
        np.testing.assert_array_equal(y1.numpy(), np.eye(4)[[0, 1, 2, 3]])


def test_file_cache_and_normalization(tmp_path):
    from keras_dssdn.layers.frontend import NormalizationStats, compute_normalization_stats

    clips = _clips(tmp_path, [("a", 1.0, 16000, 1), ("b", 1.0, 16000, 1)])
    prefix = str(tmp_path / "cache" / "train")
    ds = pipeline.evaluation_dataset(clips, PipelineSpec(batch_size=2, cache=prefix, frontend=SMALL))
    first = [x.numpy() for x, _ in ds]
    assert any(name.startswith("train") for name in os.listdir(tmp_path / "cache"))
    second = [x.numpy() for x, _ in ds]
    np.testing.assert_array_equal(first[0], second[0])
    stats = compute_normalization_stats(ds, mode="per_band")
    assert isinstance(stats, NormalizationStats) and len(stats.mean) == SMALL.n_mels
    (xn, _), = pipeline.evaluation_dataset(clips, PipelineSpec(batch_size=2, normalization=stats,
                                                               frontend=SMALL)).take(1)
    np.testing.assert_allclose(xn.numpy().mean(axis=(0, 2, 3)), 0.0, atol=1e-4)


def test_split_frequency(tmp_path):
    clips = _clips(tmp_path, [("a", 1.0, 16000, 1)])
    ds = pipeline.split_frequency(pipeline.evaluation_dataset(clips, PipelineSpec(batch_size=1, frontend=SMALL)),
                                  low_ratio=0.5)
    (low, high), y = next(iter(ds))
    assert low.shape == (1, 16, SMALL.num_frames(1.0), 1) and high.shape == (1, 16, SMALL.num_frames(1.0), 1)


# ---------------------------------------------------------------- bad input


def test_short_clip_error_and_pad_option(tmp_path):
    clips = _clips(tmp_path, [("a", 1.0, 16000, 1), ("b", 0.5, 16000, 1)])
    with pytest.raises(ShortClipError,
                       match=r"1 of 2 clips are shorter than the 1 s.*clip1\.wav \(list\.csv line 2\) is 0\.500 s.*pad_short=True"):
        pipeline.evaluation_dataset(clips, PipelineSpec(frontend=SMALL))
    ds = pipeline.evaluation_dataset(clips, PipelineSpec(pad_short=True, output="waveform", batch_size=2,
                                                         frontend=SMALL))
    (x, _), = ds.take(1)
    assert x.shape == (2, 16000) and np.all(x.numpy()[1, 8000:] == 0)


def test_corrupt_empty_and_unsupported_files_named_before_training(tmp_path):
    clips = _clips(tmp_path, [("a", 1.0, 16000, 1), ("b", 1.0, 16000, 1), ("c", 1.0, 16000, 1)])
    open(clips[1].path, "wb").close()  # empty
    with open(clips[2].path, "wb") as f:
        f.write(os.urandom(3000))  # garbage
    with pytest.raises(AudioFormatError) as info:
        pipeline.evaluation_dataset(clips, PipelineSpec(frontend=SMALL))
    msg = str(info.value)
    assert "2 of 3 audio files" in msg and "list.csv line 2" in msg and "clip1.wav: the file is empty" in msg
    assert "clip2.wav: not a WAV or FLAC file" in msg and "Re-download" in msg
    one = ClipList([clips[0]], name="x")
    sf.write(clips[0].path, np.zeros(16000), 16000, subtype="ULAW")
    with pytest.raises(UnsupportedAudioError, match=r"clip0\.wav: 8-bit mu-law WAV is not supported.*Convert"):
        pipeline.evaluation_dataset(one, PipelineSpec(frontend=SMALL))


def test_corrupt_flac_body_named_when_decoding(tmp_path):
    path = str(tmp_path / "bad.flac")
    sf.write(path, np.random.default_rng(0).uniform(-0.5, 0.5, 32000), 16000, subtype="PCM_16")
    data = bytearray(open(path, "rb").read())
    data[len(data) // 2] ^= 0xFF
    open(path, "wb").write(bytes(data))
    clips = ClipList([Clip("bad.flac", path, "a", where="l.csv line 1")])
    ds = pipeline.evaluation_dataset(clips, PipelineSpec(clip_seconds=2.0,
                                                         frontend=SMALL))  # header fine: passes the probe
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"bad\.flac: corrupt FLAC file"):
        list(ds)


def test_unknown_label_and_unlabelled_sets(tmp_path):
    clips = _clips(tmp_path, [("park", 1.0, 16000, 1), ("tram", 1.0, 16000, 1)])
    with pytest.raises(UnknownLabelError, match=r"list\.csv line 2 \(clip1\.wav\): unknown label 'tram'"):
        pipeline.evaluation_dataset(clips, PipelineSpec(vocabulary=LabelVocabulary(["bus", "park"]), frontend=SMALL))
    test = ClipList([Clip(c.filename, c.path, None) for c in clips], name="test")
    (x, y), = pipeline.evaluation_dataset(test, PipelineSpec(batch_size=2, frontend=SMALL)).take(1)
    np.testing.assert_array_equal(y.numpy(), [-1, -1])
    with pytest.raises(Exception, match="no labels"):
        pipeline.training_dataset(test, PipelineSpec(frontend=SMALL), TrainingOptions())


def test_malformed_csv_and_missing_files_through_make_dataset(tmp_path):
    (tmp_path / "a.wav").write_bytes(b"")
    (tmp_path / "l.csv").write_text("a.wav,park\nb.wav\n")
    with pytest.raises(MetadataError, match=r"l\.csv line 2"):
        pipeline.evaluation_dataset(str(tmp_path / "l.csv"), PipelineSpec(frontend=SMALL))
    (tmp_path / "l.csv").write_text("a.wav,park\ngone.wav,bus\n")
    with pytest.raises(MissingAudioError, match=r"gone\.wav"):
        pipeline.evaluation_dataset(str(tmp_path / "l.csv"), PipelineSpec(frontend=SMALL))
    empty = ClipList([], name="nothing", skipped=[Clip("x", "x")])
    with pytest.raises(Exception, match=r"no clips \(1 missing files were skipped\)"):
        pipeline.evaluation_dataset(empty, PipelineSpec(frontend=SMALL))


def test_default_frontend_shape():
    assert DEFAULT_FRONTEND.input_shape() == (128, 431, 1)


# ---------------------------------------------------------------- the spec and the deprecated entry


def test_spec_refuses_bad_values_naming_them():
    for bad, match in [(dict(output="mel"), "output must be one of"), (dict(label_mode="onehot"), "label_mode"),
                       (dict(batch_size=0), "batch_size"), (dict(clip_seconds=-1.0), "clip_seconds"),
                       (dict(clip_seconds=1.0, segment_seconds=2.0), r"segment_seconds=2.0 must be in \(0, "
                                                                     r"clip_seconds=1.0\]")]:
        with pytest.raises(ValueError, match=match):
            PipelineSpec(**bad)
    spec = PipelineSpec(frontend=SMALL, clip_seconds=3.0, segment_seconds=1.0)
    assert (spec.clip_samples, spec.segment_samples, spec.segments_per_clip) == (48000, 16000, 3)
    assert spec.replace(segment_seconds=None).segments_per_clip == 1 and spec.segment_seconds == 1.0  # frozen
    with pytest.raises(ValueError, match="segment_seconds"):
        spec.replace(clip_seconds=0.5)  # a variant is checked again
    with pytest.raises(Exception):
        spec.batch_size = 4


def test_make_dataset_warns_and_gives_the_batches_of_the_entry_points(tmp_path):
    """The deprecated make_dataset is the two entry points with the same keywords: same batches, same seed."""
    clips = _clips(tmp_path, [(lab, 1.0, 16000, 1) for lab in ["a", "b", "c"] * 2])
    aug = AugmentConfig(mixup_alpha=0.4, gain_db=3.0)
    with pytest.warns(DeprecationWarning, match="training_dataset"):
        old_train = pipeline.make_dataset(clips, SMALL, training=True, augment=aug, seed=4, batch_size=4)
    new_train = pipeline.training_dataset(clips, PipelineSpec(frontend=SMALL, batch_size=4),
                                          TrainingOptions(seed=4, augment=aug))
    with pytest.warns(DeprecationWarning):
        old_eval = pipeline.make_dataset(clips, SMALL, batch_size=4, with_metadata=True)
    new_eval = pipeline.evaluation_dataset(clips, PipelineSpec(frontend=SMALL, batch_size=4), with_metadata=True)
    for old, new in ((old_train, new_train), (old_eval, new_eval)):
        for a, b in zip(old, new):
            np.testing.assert_array_equal(a[0].numpy(), b[0].numpy())
            np.testing.assert_array_equal(a[1].numpy(), b[1].numpy())
    with pytest.warns(DeprecationWarning), pytest.raises(TypeError, match="clip_second"):
        pipeline.make_dataset(clips, SMALL, clip_second=1.0)
