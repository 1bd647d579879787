"""Runs notebooks/walkthrough.ipynb top to bottom (small settings), so a broken cell fails the suite."""

import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "walkthrough.ipynb"


def test_notebook_outputs_are_cleared_in_the_repository():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not c.get("outputs") and not c.get("execution_count") for c in nb.cells if c.cell_type == "code")


def test_walkthrough_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_DSSDN_NOTEBOOK_WORK", str(tmp_path / "work"))
    monkeypatch.setenv("KERAS_DSSDN_NOTEBOOK_EPOCHS", "3")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    text = "\n".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "TFLM int8:" in text and "params" in text
    assert (tmp_path / "work" / "bundle" / "micro").is_dir()
    assert (tmp_path / "work" / "runs" / "small" / "confusion.png").is_file()
