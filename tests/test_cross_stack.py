"""Files made on one stack load and verify on the other (docs/install.md): `.keras` models and a TFLite Micro bundle
saved with TF 2.17.1 / Keras 3.15.1 / numpy 1.26 (tf217) and with TF 2.21 / Keras 3.15.1 / numpy 2 (tf221),
committed under tests/fixtures/cross_stack/<stack>/ by its make.py. Each test runs for both fixture sets on
whichever stack runs the suite, so CI (both stacks) reads the tf217 files with TF 2.21 and the tf221 files with
TF 2.17.1: Keras outputs, the bundle's int8 reference outputs, TFLite Micro bit-exactness and the front-end
constants."""

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

import keras

import keras_dssdn  # noqa: F401 - registers the serialisables
from keras_dssdn.deploy import cfrontend, csources, micro
from keras_dssdn.deploy.bundle import device_constants
from keras_dssdn.frontend_constants import FrontEndConstants
from keras_dssdn.deploy.prepare import prepare_model
from keras_dssdn.deploy.verify import verify_bit_exact
from keras_dssdn.inference.tflite import TFLiteRunner

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "cross_stack"
STACKS = ["tf217", "tf221"]


def _version(text: str) -> tuple:
    return tuple(int(part) for part in text.split(".")[:2])


def _folder(stack: str) -> Path:
    folder = FIXTURES / stack
    if not (folder / "versions.json").is_file():
        pytest.fail(f"{folder} is missing: run tests/fixtures/cross_stack/make.py with the {stack} stack")
    saved_with = json.loads((folder / "versions.json").read_text())["keras"]
    if _version(keras.__version__) < _version(saved_with):
        # Keras reads older files, not newer ones (3.15 writes initializer axes and BatchNormalization renorm keys
        # that 3.12 rejects). Only Python 3.10 is behind: Keras >= 3.13 needs Python >= 3.11 (docs/install.md).
        pytest.skip(f"the {stack} files were saved with Keras {saved_with}; Keras {keras.__version__} cannot read "
                    f"files of a newer Keras (on Python 3.10 Keras stops at 3.12.4)")
    return folder


@pytest.mark.parametrize("name", ["sc", "osc", "spc_frontend"])
@pytest.mark.parametrize("made_on", STACKS)
def test_keras_file_from_each_stack_loads_and_predicts_the_same(made_on, name, tmp_path):
    folder = _folder(made_on)
    io = np.load(folder / "io.npz")
    model = keras.models.load_model(folder / f"{name}.keras", compile=False)
    x, expected = io[f"{name}_x"], io[f"{name}_y"]
    got = model.predict(x, verbose=0)
    # Same weights, same graph; only float summation order may differ between TF builds.
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    assert np.array_equal(got.argmax(-1), expected.argmax(-1))
    if name == "spc_frontend":
        assert model.get_layer("class_names").class_names == ["airport", "bus", "park"]
        assert {"LogMel", "LogMelNormalization", "ClassNames"} <= {type(layer).__name__ for layer in model.layers}
    # Saved again here, it still loads and gives the same outputs.
    model.save(tmp_path / "again.keras")
    again = keras.models.load_model(tmp_path / "again.keras", compile=False)
    np.testing.assert_array_equal(again.predict(x, verbose=0), got)


@pytest.mark.parametrize("made_on", STACKS)
def test_bundle_from_each_stack_verifies_here(made_on):
    folder = _folder(made_on)
    bundle = folder / "bundle"
    manifest = json.loads((bundle / "manifest.json").read_text())
    for name, entry in manifest.items():  # every file as written
        data = (bundle / name).read_bytes()
        assert (len(data), hashlib.sha256(data).hexdigest()) == (entry["bytes"], entry["sha256"]), name
    report = json.loads((bundle / "report.json").read_text())
    deployed = (bundle / "model_int8.tflite").read_bytes()
    assert csources.parse_c_array((bundle / "micro" / "dssdn_model_data.cc").read_text()) == deployed
    assert set(micro.model_operators(deployed)) <= micro.micro_supported_operators()

    # This stack's LiteRT reference kernels give the int8 outputs recorded on the other stack, and TFLite Micro
    # gives the same bit for bit at the bundle's arena size.
    io = np.load(folder / "bundle_io.npz")
    ref = TFLiteRunner(deployed, reference=True)
    np.testing.assert_array_equal(ref.run_raw(io["xq"]), io["yq"])
    floats = (io["xq"].astype(np.float32) - ref.input_zero_point) * ref.input_scale
    result = verify_bit_exact(deployed, floats, report["arena_bytes"], name=f"{made_on} bundle")
    assert result["bit_exact"] and result["inputs"] == len(io["xq"])

    # The device constants (window, mel filterbank, fused int8 map) computed here from the saved model equal the
    # bundle's: the front end is the same on numpy 1.26 and numpy 2.
    prep = prepare_model(str(folder / "spc_frontend.keras"))
    constants = device_constants(prep, deployed)
    written = json.loads((bundle / "frontend.json").read_text())
    assert json.loads(json.dumps(constants.to_json())) == written
    # The bundle's frontend.json (written before the constants became FrontEndConstants) reads back into the same
    # constants: the same file again, and the same C front end as the constants computed here.
    read = FrontEndConstants.from_json(written, str(bundle / "frontend.json"))
    assert json.loads(json.dumps(read.to_json())) == written
    assert cfrontend.frontend_c_sources(read) == cfrontend.frontend_c_sources(constants)
