"""A bundle proves its integrity: every reader checks manifest.json first (sizes, SHA-256) and refuses a changed
file naming it; ``dssdn-export --check`` re-runs the manifest and TFLM checks on the bundle as it is on disk;
``--force`` replaces only a bundle the package wrote, and an export never writes onto its own input."""

import json
import shutil
import sys
import wave
from pathlib import Path

import numpy as np
import pytest

from keras_dssdn.deploy import micro
from keras_dssdn.deploy.bundle import check_bundle_on_disk, check_destination
from keras_dssdn.deploy.export import export_bundle
from keras_dssdn.manifest import MANIFEST, check_replaceable, verify_bundle
from keras_dssdn.errors import BundleIntegrityError, OutputPathError, VerificationError

sys.path.insert(0, str(Path(__file__).parent))
from _export_helpers import FE16, QUIET, plain_model, synthetic  # noqa: E402

CLASSES = ["bus", "park", "home"]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    """One tiny exported bundle (plain 3-class model, 16-mel front end), shared by the tests of this file."""
    x, y = synthetic(16, (16, 8, 1), 3)
    out = tmp_path_factory.mktemp("integrity") / "bundle"
    export_bundle(plain_model(), out, representative=x, evaluation=(x, y), frontend=FE16, class_names=CLASSES,
                  **QUIET)
    return out


@pytest.fixture
def copy(bundle, tmp_path):
    out = tmp_path / "bundle"
    shutil.copytree(bundle, out)
    return out


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("audio") / "clip.wav"
    x = (np.random.default_rng(0).standard_normal(44100) * 3000).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(44100), w.writeframes(x.tobytes())
    return path


def _reverse_class_names(folder: Path) -> None:
    """The case of issue 24: frontend.json edited with its class names reversed."""
    path = folder / "frontend.json"
    d = json.loads(path.read_text())
    d["class_names"] = d["class_names"][::-1]
    path.write_text(json.dumps(d, indent=2) + "\n")


def test_intact_bundle_verifies(bundle):
    manifest = verify_bundle(bundle)
    assert {"model_int8.tflite", "frontend.json", "micro/dssdn_model_data.cc"} <= set(manifest)


def test_predict_refuses_a_bundle_edited_after_export(copy, clip, capsys):
    from keras_dssdn.cli.predict import main

    assert main(["--model", str(copy), str(clip)]) == 0
    _reverse_class_names(copy)
    for model in (copy, copy / "model_int8.tflite"):
        assert main(["--model", str(model), str(clip)]) == 4
        err = capsys.readouterr().err
        assert err.startswith("error: ") and "frontend.json" in err and "changed after export" in err, err
        assert "bug" not in err


def test_a_flipped_byte_of_the_same_size_is_named(copy):
    path = copy / "model_int8_micro.tflite"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(BundleIntegrityError, match=r"model_int8_micro\.tflite \(SHA-256 differs"):
        verify_bundle(copy)


def test_missing_or_damaged_manifest_is_refused(copy):
    (copy / MANIFEST).write_text('{"model_int8.tflite": {"bytes": 1')
    with pytest.raises(BundleIntegrityError, match="damaged bundle manifest"):
        verify_bundle(copy)
    (copy / MANIFEST).unlink()
    with pytest.raises(BundleIntegrityError, match="no manifest.json"):
        verify_bundle(copy)


def test_evaluate_reads_the_bundle_frontend_json(copy):
    """dssdn-evaluate on a bundle (or its model_int8.tflite) takes the class names, front end and normalisation
    from frontend.json instead of asking for vocabulary= / --labels; an edited bundle is refused."""
    from keras_dssdn.cli.evaluate import _settings, build_parser

    for model in (copy, copy / "model_int8.tflite"):
        args = build_parser().parse_args(["--model", str(model), "--data", "unused.csv"])
        model_path, vocab, frontend, _, _, _ = _settings(args)
        assert model_path == copy / "model_int8.tflite" and list(vocab.names) == CLASSES
        assert frontend.n_mels == 16
    _reverse_class_names(copy)
    with pytest.raises(BundleIntegrityError, match="frontend.json"):
        _settings(build_parser().parse_args(["--model", str(copy), "--data", "unused.csv"]))


def test_export_check(copy, capsys, monkeypatch):
    from keras_dssdn.cli.export import main

    assert main(["--check", str(copy), "--quiet"]) == 0
    assert "intact" in capsys.readouterr().out
    # TFLM that no longer matches the reference kernels (as an interpreter change would) fails the check.
    real = micro.micro_invoke

    def off_by_one(*args, **kwargs):
        y = real(*args, **kwargs)
        y[-1, 0] = y[-1, 0] + 1 if y[-1, 0] < 127 else y[-1, 0] - 1
        return y

    monkeypatch.setattr(micro, "micro_invoke", off_by_one)
    with pytest.raises(VerificationError, match="differs from the TFLite reference"):
        check_bundle_on_disk(copy, log=lambda *a: None)
    monkeypatch.setattr(micro, "micro_invoke", real)
    _reverse_class_names(copy)
    assert main(["--check", str(copy)]) == 4
    assert "frontend.json" in capsys.readouterr().err


def test_force_replaces_only_a_bundle_the_package_wrote(copy, tmp_path):
    """The case of issue 24: --force onto a folder of the user's deleted the user's files."""
    mine = tmp_path / "photos"
    mine.mkdir()
    (mine / "holiday.jpg").write_bytes(b"not ours")
    with pytest.raises(OutputPathError, match="not a bundle"):
        check_destination(mine, force=True)
    x, _ = synthetic(8, (16, 8, 1), 3)
    with pytest.raises(OutputPathError):
        export_bundle(plain_model(), mine, representative=x, frontend=FE16, force=True, **QUIET)
    assert (mine / "holiday.jpg").read_bytes() == b"not ours"
    # a bundle is replaceable; a bundle the user added a file to is not (the file is named)
    assert check_destination(copy, force=True) == copy.resolve()
    (copy / "notes.txt").write_text("mine")
    with pytest.raises(OutputPathError, match="notes.txt"):
        check_replaceable(copy)
    empty = tmp_path / "empty"
    empty.mkdir()
    check_replaceable(empty)


def test_export_never_writes_onto_its_input(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "best.keras").write_bytes(b"model")
    for out in (run, tmp_path):
        with pytest.raises(OutputPathError, match="input --model"):
            check_destination(out, force=True, inputs=[("--model", run / "best.keras")])
    afile = tmp_path / "notes.txt"
    afile.write_text("x")
    with pytest.raises(OutputPathError, match=r"notes\.txt is a file, not a folder"):
        check_destination(afile / "bundle", force=False)
    assert (run / "best.keras").read_bytes() == b"model" and afile.read_text() == "x"
