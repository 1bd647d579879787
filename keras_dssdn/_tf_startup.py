"""Start one of the package's commands without TensorFlow's C++ start-up lines on the user's terminal.

TensorFlow 2.17 honours ``TF_CPP_MIN_LOG_LEVEL`` for every C++ log line. TensorFlow 2.21 logs through absl and
writes the lines it emits before ``absl::InitializeLog()`` whatever that variable says, even when it is in the
environment the process started with (measured: ``TF_CPP_MIN_LOG_LEVEL=3 python -c "import tensorflow"`` prints
"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR", "I0000 ... port.cc:153]
oneDNN custom operations are on ..." and "I0000 ... cudart_stub.cc:31] Could not find cuda drivers ...", twice).

:func:`quiet_command_start` (called by ``keras_dssdn/__init__.py`` when one of the package's commands starts)
sets ``TF_CPP_MIN_LOG_LEVEL=3`` and imports TensorFlow with file descriptor 2 sent through a pipe to a small
forked filter process, which copies every line to the real stderr as it arrives except C++ log lines below the
level (I, W and E lines; F lines and everything else pass). Because the filter is another process, nothing is
lost if the import fails or the process dies inside it (a C++ fatal error, a signal): the filter reads the pipe
to its end and exits. A Python error raised by the import is printed by Python after file descriptor 2 is
restored, as usual. A user's own ``TF_CPP_MIN_LOG_LEVEL`` (any value) turns all of this off: TensorFlow's output
is then exactly TensorFlow's. Not POSIX (no ``fork``): the variable is only set.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import sys
import time
import warnings

#: The level a command starts with when the user set none (3: only fatal lines).
COMMAND_LOG_LEVEL = 3
#: A C++ log line: absl (TF >= 2.18) "I0000 00:00:1796.. 123 file.cc:45] ..." or TF 2.17 "2026-.. I tensorflow/..".
_LOG_LINE = re.compile(rb"^(?:([IWEF])\d{4} \d\d:\d\d:[\d.]+\s+\d+ \S+:\d+\]"
                       rb"|\d{4}-\d\d-\d\d \d\d:\d\d:[\d.]+: ([IWEF]) \S+:\d+\])")
_ABSL_PRE_INIT = b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"
_LEVEL = {b"I": 0, b"W": 1, b"E": 2, b"F": 3}
#: How long the command waits for the filter to copy the last import lines (it waits no longer: a process
#: started during the import that kept the pipe open must not hold the command up).
_FILTER_WAIT_S = 5.0


def keep_line(line: bytes, min_level: int) -> bool:
    """Whether one stderr line (bytes, with or without its newline) is shown at ``min_level`` (0-3)."""
    if line.strip() == _ABSL_PRE_INIT:
        return min_level < 1
    m = _LOG_LINE.match(line)
    if not m:
        return True
    return _LEVEL[m.group(1) or m.group(2)] >= min_level


def quiet_command_start() -> None:
    """See the module doc. A no-op where the user set ``TF_CPP_MIN_LOG_LEVEL`` or TensorFlow is imported."""
    if "TF_CPP_MIN_LOG_LEVEL" in os.environ or "tensorflow" in sys.modules:
        return
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = str(COMMAND_LOG_LEVEL)
    if not hasattr(os, "fork"):
        return
    import_filtered("tensorflow", COMMAND_LOG_LEVEL)


def import_filtered(module: str, min_level: int) -> None:
    """``import module`` with file descriptor 2 going through :func:`_filter` (a forked process) meanwhile."""
    sys.stderr.flush()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the filter process: never returns
        os.close(write_end)
        try:
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the command; the filter drains the pipe
            _filter(read_end, 2, min_level)
        finally:
            os._exit(0)
    os.close(read_end)
    saved = os.dup(2)
    os.dup2(write_end, 2)
    os.close(write_end)
    try:
        __import__(module)
    finally:
        os.dup2(saved, 2)  # the pipe's last write end closes: the filter reads to the end and exits
        os.close(saved)
        _wait(pid, _FILTER_WAIT_S)


def _filter(read_fd: int, out_fd: int, min_level: int) -> None:
    """Copy ``read_fd`` to ``out_fd`` line by line until end of file, dropping lines :func:`keep_line` refuses."""
    pending = b""
    while True:
        chunk = os.read(read_fd, 65536)
        if not chunk:
            break
        lines = (pending + chunk).split(b"\n")
        pending = lines.pop()
        kept = b"".join(line + b"\n" for line in lines if keep_line(line, min_level))
        _write_all(out_fd, kept)
    if pending and keep_line(pending, min_level):
        _write_all(out_fd, pending)


def _write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data):]


def _wait(pid: int, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return
        if done:
            return
        time.sleep(0.005)


def _warning_to_fd2(message, category, filename, lineno, file=None, line=None) -> None:
    _write_all(2, warnings.formatwarning(message, category, filename, lineno, line).encode())


@contextlib.contextmanager
def native_output_captured(replay_on_error: bool = True):
    """Inside the block, what native code writes to file descriptors 1 and 2 (the TFLite converter's absl lines and
    "fully_quantize: ..." notice, LiteRT's "Created TensorFlow Lite XNNPACK delegate" line) and Python warnings go
    to a temporary file instead of the terminal; if the block raises, that output is written to stderr after all
    (nothing that explains a failure is lost) unless ``replay_on_error`` is false (the caller's error says it all).
    Not for code that prompts or reports progress."""
    import tempfile

    sys.stdout.flush()
    sys.stderr.flush()
    saved = (os.dup(1), os.dup(2))
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 1)
        os.dup2(tmp.fileno(), 2)
        ok = False
        try:
            with warnings.catch_warnings():  # to the captured fd 2 even where sys.stderr is not fd 2 (pytest)
                warnings.showwarning = _warning_to_fd2
                yield
            ok = True
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
            if not ok and replay_on_error:
                tmp.seek(0)
                _write_all(2, tmp.read()[-20000:])
