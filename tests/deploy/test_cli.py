"""The export command line (keras_dssdn.cli.export, tools/export.py): one error line and its exit status."""

import pytest

from keras_dssdn.cli.export import build_parser, main
from keras_dssdn.errors import BundleExistsError, ModelFileError

from _export_helpers import check_bundle, tiny_dssdn


def test_cli_exports_a_saved_model_on_real_data(tmp_path, shared_data, capsys):
    root = shared_data / "tut17-dev"
    if not root.is_dir():
        pytest.skip(f"{root} not found")
    model = tiny_dssdn("spc", shape=(128, 44, 1), classes=15, widths=(8, 12))
    path = tmp_path / "m.keras"
    model.save(path)
    out = tmp_path / "bundle"
    args = ["--model", str(path), "--data", str(root), "--fold", "1", "--out", str(out), "--eval-limit", "2",
            "--num-calibration", "10", "--num-verify", "4", "--quiet"]
    assert main(args) == 0
    assert "bit-exact yes" in capsys.readouterr().out
    report = check_bundle(out)
    assert report["data"]["evaluation"]["limited"] and report["command"].startswith("python tools/export.py")
    assert main(args) == BundleExistsError.exit_code  # exists, no --force
    err = capsys.readouterr().err
    assert "--force" in err and err.startswith("error: ") and "Traceback" not in err


def test_cli_user_errors_are_one_line_with_their_exit_status(tmp_path, capsys):
    out = str(tmp_path / "bundle")
    assert main(["--model", str(tmp_path / "missing.keras"), "--out", out]) == ModelFileError.exit_code
    err = capsys.readouterr().err
    assert err.startswith("error: Model file not found") and len(err.strip().splitlines()) == 1
    assert main(["--run-dir", str(tmp_path), "--out", out, "--data", str(tmp_path / "nowhere")]) == 2
    assert "--data" in capsys.readouterr().err
    assert main(["--run-dir", str(tmp_path), "--out", out]) == 4  # not a run folder
    assert "not a training run folder" in capsys.readouterr().err
    assert main(["--model", "m.keras", "--out", out, "--deploy", "qat"]) == 2  # needs --qat-epochs
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--out", out])  # --model or --run-dir is required
