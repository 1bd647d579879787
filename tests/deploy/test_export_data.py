"""The export's one pass over the evaluate split (keras_dssdn.deploy.export_data.decode_once): every clip decoded
once, its features equal to the evaluation pipeline's bit for bit and its PCM equal to the host check's loader."""

import numpy as np

from keras_dssdn.data.pipeline import evaluation_dataset
from keras_dssdn.data.spec import PipelineSpec
from keras_dssdn.deploy import export_data, host_check
from keras_dssdn.layers.frontend import NormalizationStats
from keras_dssdn.params import FrontEndParams

from tests.deploy._export_helpers import tut17_subsets


def _pipeline_arrays(clips, spec):
    xs, ys, idx = [], [], []
    for x, y, m in evaluation_dataset(clips, spec, with_metadata=True):
        xs.append(x.numpy()), ys.append(y.numpy()), idx.append(m["clip_index"].numpy())
    return np.concatenate(xs), np.concatenate(ys), np.concatenate(idx)


def test_decode_once_equals_the_pipeline_and_the_host_check_loader(shared_data, monkeypatch):
    """6 real TUT 2017 clips in decode batches of 4 (a partial last batch), 1-s segments, 64 mel bands and a
    per-band normalisation: x, labels and clip indices equal evaluation_dataset's bit for bit, the PCM equals
    host_check.clip_batches' (the loader the firmware tools use)."""
    _, train, _, evaluate = tut17_subsets(shared_data, n_eval=6)
    fe = FrontEndParams(n_mels=64, n_fft=2048, win_length=2048, hop_length=1024)
    rng = np.random.default_rng(0)
    norm = NormalizationStats(tuple(rng.normal(-5, 1, 64)), tuple(rng.uniform(1, 3, 64)), mode="per_band")
    spec = PipelineSpec(frontend=fe, clip_seconds=10.0, segment_seconds=1.0, vocabulary=train.vocabulary(),
                        label_mode="int", cache=None, normalization=norm)
    monkeypatch.setattr(export_data, "DECODE_BATCH", 4)
    (x, y, clip_index), waveforms = export_data.decode_once(evaluate, spec)
    want_x, want_y, want_idx = _pipeline_arrays(evaluate, spec)
    assert x.shape == (60, 64, fe.num_frames(1.0), 1) and x.dtype == np.float32
    assert np.array_equal(x, want_x), f"{np.sum(x != want_x)} of {x.size} values differ from the pipeline's"
    assert np.array_equal(y, want_y) and np.array_equal(clip_index, want_idx)
    loader = np.concatenate(list(host_check.clip_batches(evaluate, fe, 10.0, train.vocabulary())))
    assert waveforms.shape == (6, 441000) and waveforms.dtype == np.float32
    pcm = host_check.to_int16(waveforms)
    assert np.array_equal(pcm, loader) and np.any(pcm != 0)


def test_a_full_temporary_folder_is_refused_before_decoding(shared_data, monkeypatch, tmp_path):
    """The waveform file would not fit: one ExportError naming the folder, the sizes and what to do."""
    import shutil

    import pytest

    from keras_dssdn.errors import ExportError

    _, train, _, evaluate = tut17_subsets(shared_data, n_eval=2)
    spec = PipelineSpec(clip_seconds=10.0, vocabulary=train.vocabulary(), label_mode="int", cache=None)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(100 << 20, 99 << 20, 1 << 20))
    with pytest.raises(ExportError, match=r"need 3 MiB in the temporary folder .* 1 MiB free; point TMPDIR"):
        export_data.decode_once(evaluate, spec)
