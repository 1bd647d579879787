"""notebooks/walkthrough.ipynb: stored executed (so it reads where notebooks are rendered), and run here from scratch
top to bottom (small settings), so a broken cell fails the suite.

The stored outputs are remade with the tf217 stack: `.venv/bin/python tools/execute_notebook.py`.
"""

import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "walkthrough.ipynb"


def test_notebook_is_stored_executed():
    """Every code cell ran, in order, without an error; the plots are stored as images (tools/execute_notebook.py)."""
    nb = nbformat.read(NOTEBOOK, as_version=4)
    cells = [c for c in nb.cells if c.cell_type == "code"]
    assert [c.get("execution_count") for c in cells] == list(range(1, len(cells) + 1))
    assert all(c.outputs for c in cells)
    outputs = [o for c in cells for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 3  # log-mel map, learning curves, confusion matrix
    assert not [o for o in outputs if o.output_type == "stream" and o.name == "stderr"]  # machine-dependent logs
    text = "\n".join(o.get("text", "") for o in outputs)
    assert "TFLM int8:" in text and "best epoch" in text and "outputs go to walkthrough_output" in text


@pytest.mark.slow
def test_walkthrough_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_DSSDN_NOTEBOOK_WORK", str(tmp_path / "work"))
    monkeypatch.setenv("KERAS_DSSDN_NOTEBOOK_EPOCHS", "3")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    for cell in nb.cells:  # from scratch: nothing of the stored run is kept
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    NotebookClient(nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    text = "\n".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "TFLM int8:" in text and "params" in text
    assert (tmp_path / "work" / "bundle" / "micro").is_dir()
    assert (tmp_path / "work" / "runs" / "small" / "confusion.png").is_file()
