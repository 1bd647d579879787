"""The console scripts of setup.cfg, ``{name: "module:function"}``: read by tests/conftest.py's ``run_command``
fixture and by tests/test_architecture.py (which needs them when it collects its parametrised tests)."""

import configparser
from pathlib import Path

SETUP_CFG = Path(__file__).resolve().parents[1] / "setup.cfg"


def console_scripts() -> dict:
    cfg = configparser.ConfigParser()
    cfg.read(SETUP_CFG)
    lines = [line.strip() for line in cfg["options.entry_points"]["console_scripts"].strip().splitlines()]
    return dict(tuple(part.strip() for part in line.split("=", 1)) for line in lines if line)
