"""Every notebook runs top to bottom on the virtual lab."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).parents[1] / "notebooks").glob("*.ipynb"))


def test_there_are_notebooks():
    assert NOTEBOOKS, "notebooks/ holds no notebook"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_executes(path: Path, tmp_path: Path):
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    if path.name.startswith("01_"):
        assert "bias_scurve" in text and "calibration state v" in text
    expected = {
        "02_": ["pulls: mean", "kept (still valid)"],
        "03_": ["tau measured", "live updates"],
        "04_": ["result: PASS", "named difference: cells.2.bias_offset_V", "same samples without hardware: True",
                "expected write 'READ?', got write 'FETCH?'"],
        "05_": ["serving on 127.0.0.1", "lab time ran on by", "via PyVisaLibrary at TCPIP0::127.0.0.1::",
                "(served lab: as of its clock now)", "labstack watch stopped after 3 pass(es)", "service exit code 0"],
        "06_": ["stopped: converged", "open loop: KL = ", "SCPI writes per iteration"],
    }
    for phrase in expected.get(path.name[:3], []):
        assert phrase in text, f"{path.name} no longer prints {phrase!r}"
    if path.name.startswith("06_"):  # the last line is the trained score
        last = text.strip().splitlines()[-1]
        assert last.startswith("KL = ") and last.endswith(" nats"), last
        assert float(last.split()[2]) < 0.004, last
