#!/usr/bin/env python
"""Store notebooks/walkthrough.ipynb executed: run it top to bottom with this interpreter's kernel, in a scratch
folder (its data, run and bundle are deleted afterwards), and write it back with its outputs (tables, plots).

    .venv/bin/python tools/execute_notebook.py            # the tf217 stack (docs/install.md)

The notebook's own defaults are used (8 epochs; the test-suite runs it from scratch with 3). Plots are stored as
PNG (matplotlib's inline backend: MPLBACKEND is unset for the kernel). Outputs written to stderr (TensorFlow's log
lines, library warnings) are not stored: they depend on the machine and say nothing about the walkthrough. A cell
that fails stops the run and leaves the stored notebook unchanged.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from keras_dssdn.fileio import write_text_atomic  # noqa: E402

NOTEBOOK = ROOT / "notebooks" / "walkthrough.ipynb"


def main() -> int:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    env_backend = os.environ.pop("MPLBACKEND", None)  # the kernel inherits this process's environment
    os.environ.pop("KERAS_DSSDN_NOTEBOOK_WORK", None)
    os.environ.pop("KERAS_DSSDN_NOTEBOOK_EPOCHS", None)
    scratch = tempfile.mkdtemp(prefix="walkthrough-")
    try:
        NotebookClient(nb, timeout=1800, kernel_name="python3", record_timing=False,
                       resources={"metadata": {"path": scratch}}).execute()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        if env_backend is not None:
            os.environ["MPLBACKEND"] = env_backend
    for cell in nb.cells:
        cell.metadata.pop("execution", None)  # timings of an earlier run
        if cell.cell_type == "code":
            cell.outputs = [o for o in cell.outputs if not (o.output_type == "stream" and o.name == "stderr")]
    write_text_atomic(NOTEBOOK, nbformat.writes(nb) + "\n")
    print(f"{NOTEBOOK}: stored executed with Python {sys.version.split()[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
