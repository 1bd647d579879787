"""A FLAC file corrupt in its middle passes the header probe; when decoding reaches it, the error names it."""

import shutil

import pytest

from keras_dssdn.data.datasets import read_csv
from keras_dssdn.data.pipeline import decoding_errors, evaluation_dataset
from keras_dssdn.data.spec import PipelineSpec
from keras_dssdn.errors import AudioFormatError


def test_flac_corrupt_in_the_middle_is_named(shared_data, tmp_path):
    source = sorted((shared_data / "tut17-dev" / "audio").glob("*.flac"))[0]
    bad = tmp_path / "corrupt_middle.flac"
    shutil.copy(source, bad)
    data = bytearray(bad.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 64] = bytes(64)  # frame CRCs fail here, header and tail stay intact
    bad.write_bytes(bytes(data))
    (tmp_path / "list.csv").write_text(f"filename,label\n{bad.name},beach\n")
    ds = evaluation_dataset(read_csv(str(tmp_path / "list.csv")), PipelineSpec(batch_size=1,
                                                                               cache=None))  # the probe accepts it
    with pytest.raises(AudioFormatError, match="corrupt_middle.flac"):
        with decoding_errors():
            list(ds)
