"""One dataset may mix encodings, sample rates and channel counts: each file decodes as it would alone."""

import numpy as np
import pytest

soundfile = pytest.importorskip("soundfile")

from keras_dssdn.data.datasets import read_csv  # noqa: E402
from keras_dssdn.data.pipeline import evaluation_dataset  # noqa: E402
from keras_dssdn.data.spec import PipelineSpec  # noqa: E402
from keras_dssdn.params import FrontEndParams  # noqa: E402


def test_mixed_wav_flac_16_24_float_rates_and_channels(tmp_path):
    rng = np.random.default_rng(0)
    files = [("a16.wav", "PCM_16", 16000, 1), ("b24.wav", "PCM_24", 16000, 2), ("c.flac", "PCM_16", 16000, 1),
             ("d24.flac", "PCM_24", 22050, 1), ("e.wav", "FLOAT", 16000, 1), ("f16.wav", "PCM_16", 8000, 2)]
    rows = ["filename,label"]
    for name, subtype, rate, channels in files:
        x = 0.3 * rng.standard_normal((rate, channels)).clip(-3, 3) / 3
        soundfile.write(tmp_path / name, x if channels > 1 else x[:, 0], rate, subtype=subtype)
        rows.append(f"{name},{'x' if name < 'd' else 'y'}")
    (tmp_path / "list.csv").write_text("\n".join(rows) + "\n")
    clips = read_csv(str(tmp_path / "list.csv"))
    fe = FrontEndParams(sample_rate=16000, n_fft=512, win_length=512, hop_length=256, n_mels=32)
    ds = evaluation_dataset(clips, PipelineSpec(clip_seconds=1.0, output="waveform", batch_size=8, cache=None,
                                                frontend=fe))
    (waves, labels), = list(ds)
    assert waves.shape == (6, 16000) and list(np.asarray(labels)) == [0, 0, 0, 1, 1, 1]
    for i, (name, _, rate, _) in enumerate(files):
        if rate != 16000:
            continue  # resampled: checked by the resampler's own tests
        ref, _ = soundfile.read(tmp_path / name, dtype="float32", always_2d=True)
        np.testing.assert_array_equal(np.asarray(waves[i]), ref.mean(axis=1).astype(np.float32))
