"""Audio in: header probing (:mod:`.probe`), decoding as TF ops (:mod:`.decode`, with the native FLAC op of
:mod:`.native_flac`) and resampling (:mod:`.resample`)."""

from keras_dssdn.audio.decode import (decode_audio, fix_length, load_waveform, read_audio, split_segments,
                                      to_mono)
from keras_dssdn.audio.probe import ENCODING_CODE, ENCODINGS, AudioInfo, count_non_finite, probe_audio
from keras_dssdn.audio.resample import resample, resample_from, resampled_length, resampling_matrix

__all__ = ["AudioInfo", "ENCODINGS", "ENCODING_CODE", "count_non_finite", "decode_audio", "fix_length", "load_waveform", "probe_audio",
           "read_audio", "resample", "resample_from", "resampled_length", "resampling_matrix", "split_segments",
           "to_mono"]
