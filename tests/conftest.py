"""Shared test settings: quiet TensorFlow, deterministic seeds, path to ../shared/data, the test tiers.

Tiers (docs/install.md, "Test tiers"):
  python -m pytest -q tests             the default tier: every module, minutes
  python -m pytest -q tests --runslow   also the tests marked ``@pytest.mark.slow`` (notebook from
                                        scratch, multi-worker training, full exports, kill-resume, ...)
  python -m pytest -q tests -m slow --runslow   the slow tier alone
At the end pytest prints the tier's wall time and its five slowest tests (the time guard), so that
growth shows the day it happens.
"""

import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SLOWEST_SHOWN = 5
_STARTED = time.monotonic()


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False,
                     help="also run the tests marked slow (the slow tier; see tests/conftest.py)")


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: a test of the slow tier, run only with --runslow")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="slow tier: run with --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    """With KERAS_DSSDN_TEST_TIMES=FILE, append "<wall s>\t<cpu s>\t<test id>" per test as the run goes: a
    record that survives a killed run (--durations prints only at the end). CPU seconds (this process and its
    children, user + system) say more than wall seconds on a machine shared with other work."""
    target = os.environ.get("KERAS_DSSDN_TEST_TIMES")
    wall, cpu = time.monotonic(), _cpu_seconds()
    yield
    if target:
        with open(target, "a") as f:
            f.write(f"{time.monotonic() - wall:.2f}\t{_cpu_seconds() - cpu:.2f}\t{item.nodeid}\n")


def _cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """The time guard: the tier's wall time and its slowest tests (setup + call + teardown)."""
    per_test = {}
    for reports in terminalreporter.stats.values():
        for report in reports:
            if getattr(report, "when", None) in ("setup", "call", "teardown"):
                per_test[report.nodeid] = per_test.get(report.nodeid, 0.0) + report.duration
    tier = "default + slow tiers" if config.getoption("--runslow") else "default tier"
    wall = time.monotonic() - _STARTED
    terminalreporter.write_line(f"test-time guard: {tier}, {len(per_test)} tests, {wall:.0f} s wall")
    for nodeid, seconds in sorted(per_test.items(), key=lambda kv: -kv[1])[:SLOWEST_SHOWN]:
        terminalreporter.write_line(f"  {seconds:7.1f} s  {nodeid}")


@pytest.fixture(autouse=True)
def _seed():
    import keras

    keras.utils.set_random_seed(1234)
    yield


class CommandResult:
    def __init__(self, returncode, stdout, stderr):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


@pytest.fixture
def run_command(capsys):
    """``run_command("dssdn-train", *args) -> CommandResult``: the console script's main (its target in
    setup.cfg) in this process, with the same message and exit status as the installed command but without a
    TensorFlow start-up per call; a traceback on stderr fails the test."""
    import importlib

    from _scripts import console_scripts

    scripts = console_scripts()

    def run(command, *args):
        module, func = scripts[command].split(":")
        capsys.readouterr()
        status = getattr(importlib.import_module(module), func)([str(a) for a in args])
        out = capsys.readouterr()
        assert "Traceback" not in out.err, out.err[-3000:]
        return CommandResult(status, out.out, out.err)

    return run


@pytest.fixture
def shared_data():
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder not found at {SHARED_DATA} (expected ../shared/data beside the checkout)")
    return SHARED_DATA
