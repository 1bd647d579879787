"""dssdn-firmware's bad input: one line naming the file or value, an exit status, nothing written into the bundle."""

import json
import os

import pytest

from keras_dssdn.cli.firmware import main
from keras_dssdn.frontend_constants import FrontEndConstants, Quantization
from keras_dssdn.manifest import MANIFEST, build_manifest
from keras_dssdn.params import FrontEndParams

from _firmware_helpers import needs_arm


def _bundle_like(tmp_path):
    """A folder with everything a bundle's firmware build reads (contents unused before the TFLM tree is checked)."""
    b = tmp_path / "bundle"
    (b / "micro").mkdir(parents=True)
    for name in ("dssdn_frontend.c", "dssdn_frontend.h", "dssdn_model_data.cc", "dssdn_model_data.h",
                 "dssdn_model_settings.cc", "dssdn_model_settings.h", "dssdn_op_resolver.h", "dssdn_example.cc"):
        (b / "micro" / name).write_text("/* */\n")
    constants = FrontEndConstants.build(FrontEndParams(n_mels=16), [1, 16, 44, 1], Quantization(0.05, -3))
    (b / "frontend.json").write_text(json.dumps(constants.to_json()))
    (b / "model_int8_micro.tflite").write_bytes(b"TFL3")
    names = [str(p.relative_to(b).as_posix()) for p in b.rglob("*") if p.is_file()]
    (b / MANIFEST).write_text(json.dumps(build_manifest(b, names)))
    return b


def test_a_bundle_changed_after_export_is_refused_naming_the_file(tmp_path, capsys):
    """The firmware build checks manifest.json first (sizes, SHA-256): an edited frontend.json is named."""
    b = _bundle_like(tmp_path)
    (b / "frontend.json").write_text('{"class_names": ["swapped"]}')
    assert main([str(b), "--tflm", str(tmp_path), "--out", str(tmp_path / "fw")]) == 4
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "frontend.json" in err and "\n" not in err
    assert not (tmp_path / "fw").exists()


@needs_arm
def test_a_folder_that_is_not_a_bundle(tmp_path, capsys):
    (tmp_path / "nothing").mkdir()
    assert main([str(tmp_path / "nothing"), "--tflm", str(tmp_path), "--out", str(tmp_path / "fw")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "not a keras_dssdn bundle" in err and "micro" in err and "\n" not in err
    assert not (tmp_path / "fw").exists()


@needs_arm
def test_a_tflm_folder_that_is_not_a_tflm_tree(tmp_path, capsys):
    b = _bundle_like(tmp_path)
    (tmp_path / "tflm").mkdir()
    assert main([str(b), "--tflm", str(tmp_path / "tflm"), "--out", str(tmp_path / "fw")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "micro_interpreter.cc" in err and "\n" not in err
    assert sorted(os.listdir(b)) == ["frontend.json", "manifest.json", "micro", "model_int8_micro.tflite"]


@needs_arm
def test_out_inside_the_bundle_is_refused(tmp_path, capsys):
    b = _bundle_like(tmp_path)
    assert main([str(b), "--tflm", str(tmp_path), "--out", str(b / "fw")]) == 2
    assert "inside the bundle" in capsys.readouterr().err
    assert not (b / "fw").exists()


def test_unknown_target_is_refused_by_the_parser(capsys):
    with pytest.raises(SystemExit) as e:
        main(["b", "--out", "o", "--target", "cortex-m0"])
    assert e.value.code == 2
