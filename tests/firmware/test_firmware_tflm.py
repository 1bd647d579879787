"""The whole program (C front end + model in real TFLM) built for the emulated Cortex-M4F and run in QEMU.

Needs a TFLM + CMSIS-NN tree (TFLM_ROOT; docs/firmware.md says how to lay one out offline) besides the Arm
toolchain and qemu-system-arm; slow (the TFLM library is compiled unless DSSDN_TFLM_LIBRARY_DIR names a folder
where it was built before). The bundle: a tiny two-block DSSDN exported here on synthetic log-mel.
"""

import json
import os

import pytest

from keras_dssdn.firmware import build, program
from keras_dssdn.firmware.errors import FirmwareFitError

from _firmware_helpers import needs_arm

TFLM_ROOT = os.environ.get("TFLM_ROOT")
needs_tflm = pytest.mark.skipif(not TFLM_ROOT, reason="TFLM_ROOT is not set: no TFLM + CMSIS-NN source tree to build "
                                                      "the firmware with (docs/firmware.md)")
pytestmark = [pytest.mark.slow, needs_arm, needs_tflm]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    import sys

    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "deploy"))
    from _export_helpers import FE16, QUIET, randomise_batch_norms, synthetic, tiny_dssdn

    from keras_dssdn.deploy.export import export_bundle

    shape = FE16.input_shape(1.0)
    model = tiny_dssdn("spc", shape=shape, classes=4)
    randomise_batch_norms(model)
    x, y = synthetic(48, shape, 4)
    out = tmp_path_factory.mktemp("fw") / "bundle"
    export_bundle(model, out, representative=x, evaluation=(x[:16], y[:16]), frontend=FE16, num_verify=8, **QUIET)
    return str(out)


def _library_dir(tmp_path):
    return os.environ.get("DSSDN_TFLM_LIBRARY_DIR") or str(tmp_path / "tflm")


def _files(folder):
    return {os.path.relpath(os.path.join(d, f), folder): os.path.getmtime(os.path.join(d, f))
            for d, _, names in os.walk(folder) for f in names}


@pytest.mark.parametrize("kernels", ["reference", "cmsis-nn"])
def test_the_bundle_runs_on_the_m4f_like_the_host(tmp_path, bundle, kernels):
    """(a) reference kernels bit-exact with the host TFLM (CMSIS-NN: no clear decision flip); (b) PCM through the C
    front end and the model; (c) arena_used_bytes() printed; linker figures by part; nothing written in the bundle."""
    before = _files(bundle)
    fw = build.make_firmware(bundle, TFLM_ROOT, "cortex-m4f", kernels, str(tmp_path / "out"), _library_dir(tmp_path),
                             log=lambda *a: 0)
    checks = build.run_checks(fw, log=lambda *a: 0)
    report = build.write_report(fw, checks, log=lambda *a: 0)
    signals = checks["sets"][0]
    a = signals["tensors"]["parity"]
    if kernels == "reference":
        assert a["equal"] == a["values"] == 14 * 4
    assert signals["pcm"]["decisions"]["clips"] == 7
    assert 0 < checks["arena_used_bytes"] <= checks["arena_size"]
    assert signals["cost"]["model_instructions_per_invoke"] > 1000
    mem = report["memory"]
    assert mem["flash"]["model"] >= len(fw["bundle"].flatbuffer)
    assert mem["ram"]["tensor arena"] == checks["arena_size"]
    assert mem["flash"]["TFLM runtime"] > 0 and (mem["flash"].get("TFLM kernels", 0) + mem["flash"].get("CMSIS-NN", 0))
    assert json.load(open(tmp_path / "out" / build.REPORT_JSON))["kernels"] == kernels
    assert os.path.isfile(tmp_path / "out" / "build" / "0005_dssdn_example.o")  # the bundle's example builds
    assert _files(bundle) == before


def test_a_part_too_small_gives_the_overflow_in_bytes(tmp_path, bundle):
    with pytest.raises(FirmwareFitError, match=r"RAM overflowed by [\d,]+ bytes"):
        build.make_firmware(bundle, TFLM_ROOT, "cortex-m4f", "reference", str(tmp_path / "out"),
                            _library_dir(tmp_path), build.Part(ram_kb=16, flash_kb=512), log=lambda *a: 0)


def test_nothing_is_written_into_the_bundle(bundle):
    with pytest.raises(FileExistsError, match="inside the bundle"):
        build.check_out_folder(os.path.join(bundle, "fw"), bundle)
    assert program.read_bundle(bundle).arena_bytes > 0
