"""Imports flow one way: calibrations -> labstack core -> drivers / sim; sim knows no calibration.

Checked on the source with the ast module (every import statement, including
ones inside functions), so a violation fails here rather than surfacing as a
circular import later.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def violations(folder: str, forbidden: tuple[str, ...]) -> list[str]:
    found = []
    for path in sorted((ROOT / folder).rglob("*.py")):
        for name in imported_modules(path):
            if any(name == f or name.startswith(f + ".") for f in forbidden):
                found.append(f"{path.relative_to(ROOT)} imports {name}")
    return found


@pytest.mark.parametrize(
    ("folder", "forbidden"),
    [
        ("labstack/sim", ("labstack.calibrate", "labstack.measure", "labstack.data", "labstack.calibrations", "labstack.station", "qcodes")),
        ("drivers", ("labstack",)),
        ("labstack", ("labstack.calibrations", "calibrations")),
    ],
)
def test_layer(folder: str, forbidden: tuple[str, ...]):
    assert violations(folder, forbidden) == []


def test_the_checker_sees_a_violation(tmp_path: Path):
    bad = tmp_path / "m.py"
    bad.write_text("def f():\n    from labstack.calibrations import bias_scurve\n")
    assert "labstack.calibrations" in imported_modules(bad)
