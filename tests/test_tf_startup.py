"""keras_dssdn._tf_startup: a command's TensorFlow start-up lines are filtered, nothing else is lost."""

import os
import subprocess
import sys
import textwrap

import pytest

from keras_dssdn import _tf_startup
from keras_dssdn._tf_startup import keep_line, quiet_command_start

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="the filter needs os.fork (POSIX)")

INFO = "I0000 00:00:1796185318.269035   26760 port.cc:153] oneDNN custom operations are on."
WARN = "W0000 00:00:1796185318.269035   26760 x.cc:1] a warning"
ERROR = "E0000 00:00:1796185326.501472   26890 cuda_platform.cc:52] failed call to cuInit"
FATAL = "F0000 00:00:1796185326.501472   26890 x.cc:9] Check failed: something"
PRE_INIT = "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"


def test_keep_line_by_level():
    for level, kept in ((0, {INFO, WARN, ERROR, FATAL, PRE_INIT}), (1, {WARN, ERROR, FATAL}), (3, {FATAL})):
        assert {line for line in (INFO, WARN, ERROR, FATAL, PRE_INIT) if keep_line(line.encode(), level)} == kept
    assert keep_line(b"Traceback (most recent call last):", 3) and keep_line(b"plain text", 3)


def _import_through_filter(tmp_path, body):
    """Run a child that imports a module (``body``) through ``import_filtered`` at level 3; returns it finished."""
    (tmp_path / "fake_tf.py").write_text(textwrap.dedent(body))
    code = ("import sys, importlib.util\n"  # the module alone: importing keras_dssdn would import TensorFlow
            f"spec = importlib.util.spec_from_file_location('tf_startup', {_tf_startup.__file__!r})\n"
            "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n"
            "m.import_filtered('fake_tf', 3)\nprint('imported', flush=True)\nsys.stderr.write('after\\n')")
    return subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)


def test_filter_drops_low_levels_keeps_the_rest_in_order(tmp_path):
    out = _import_through_filter(tmp_path, f"""
        import os, sys
        os.write(2, b"{PRE_INIT}\\n{INFO}\\n")
        sys.stderr.write("a python warning\\n"); sys.stderr.flush()
        os.write(2, b"{ERROR}\\n{FATAL}\\nno newline at the end")
    """)
    assert out.returncode == 0, out.stderr
    assert out.stdout == "imported\n"
    assert out.stderr == f"a python warning\n{FATAL}\nno newline at the endafter\n"


def test_failed_import_keeps_its_error(tmp_path):
    out = _import_through_filter(tmp_path, f"""
        import os
        os.write(2, b"{INFO}\\n")
        raise ImportError("libsomething.so: cannot open shared object file")
    """)
    assert out.returncode == 1 and out.stdout == ""
    assert "ImportError: libsomething.so: cannot open shared object file" in out.stderr
    assert "oneDNN" not in out.stderr


def test_crash_inside_the_import_loses_nothing(tmp_path):
    """A C++ fatal error aborts the process in the middle of the import: the filter still shows its line."""
    out = _import_through_filter(tmp_path, f"""
        import os
        os.write(2, b"{INFO}\\n{FATAL}\\nlast words\\n")
        os.abort()
    """)
    assert out.returncode == -6 and out.stdout == ""
    assert out.stderr.splitlines()[:2] == [FATAL, "last words"]


def test_only_without_a_users_level(monkeypatch):
    """A user's TF_CPP_MIN_LOG_LEVEL (any value) turns the filter off; without one the command imports TF through
    it at level 3."""
    calls = []
    monkeypatch.setattr(_tf_startup, "import_filtered", lambda module, level: calls.append((module, level)))
    monkeypatch.delitem(sys.modules, "tensorflow")  # as at a command's start (restored after the test)
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "0")
    quiet_command_start()
    assert calls == [] and os.environ["TF_CPP_MIN_LOG_LEVEL"] == "0"
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL")
    quiet_command_start()
    assert calls == [("tensorflow", 3)] and os.environ["TF_CPP_MIN_LOG_LEVEL"] == "3"
