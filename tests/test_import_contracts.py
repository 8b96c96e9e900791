"""Imports flow one way: the import-linter contracts in pyproject.toml hold, and each one bites.

The check runs import-linter on a copy of the tree laid out as installed
(tests/import_contracts.py says why). Each contract is proven by planting a violation
in that copy and seeing exactly the expected contracts broken, by name; the copy is
built once for the module and every plant is removed after its test.
"""

from __future__ import annotations

import shutil
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from import_contracts import PYPROJECT, assemble, contracts, lint, package_folders

CONTRACTS = contracts()


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return assemble(tmp_path_factory.mktemp("installed-layout"))


def outcome(output: str) -> tuple[set[str], set[str]]:
    """(kept, broken) contract ids, read from lint-imports' report."""
    kept = {cid for cid, name in CONTRACTS.items() if f"{name} KEPT" in output}
    broken = {cid for cid, name in CONTRACTS.items() if f"{name} BROKEN" in output}
    return kept, broken


def test_the_repository_keeps_every_contract(tree: Path):
    result = lint(tree)
    assert result.returncode == 0, result.stdout + result.stderr
    assert outcome(result.stdout) == (set(CONTRACTS), set())
    assert f"Contracts: {len(CONTRACTS)} kept, 0 broken." in result.stdout


def test_the_copy_is_laid_out_as_installed(tree: Path):
    assert (tree / "labstack" / "calibrations" / "bias_scurve.py").is_file()
    for name, folder in package_folders().items():
        target = tree.joinpath(*name.split("."))
        for source in folder.rglob("*.py"):
            assert (target / source.relative_to(folder)).read_bytes() == source.read_bytes()


# (files to plant in the installed layout, contracts that must break and no others)
PLANTS = {
    "calibrations import the simulator": (
        {"labstack/calibrations/zz_planted.py": "import labstack.sim.lab\n"},
        {"calibrations-reach-the-lab-through-pyvisa"},
    ),
    "calibrations import the PyVISA backend (and through it the simulator)": (
        {"labstack/calibrations/zz_planted.py": "from labstack.visa import open_station\n"},
        {"calibrations-reach-the-lab-through-pyvisa"},
    ),
    "the simulator imports the calibration engine": (
        {"labstack/sim/zz_planted.py": "import labstack.calibrate\n"},
        {"sim-knows-no-calibration", "layers"},
    ),
    "the simulator imports storage (below it in the layers)": (
        {"labstack/sim/zz_planted.py": "from labstack.data import store\n"},
        {"sim-knows-no-calibration"},
    ),
    "the simulator imports qcodes": (
        {"labstack/sim/zz_planted.py": "import qcodes\n"},
        {"sim-knows-no-calibration"},
    ),
    "a driver imports the station": (
        {"labstack/drivers/zz_planted.py": "import labstack.station\n"},
        {"drivers-stand-alone", "layers"},
    ),
    "a driver imports the clock (below it in the layers)": (
        {"labstack/drivers/zz_planted.py": "from labstack.clock import Clock\n"},
        {"drivers-stand-alone"},
    ),
    "a driver imports labstack's __init__": (
        {"labstack/drivers/zz_planted.py": "from labstack import __version__\n"},
        {"drivers-skip-labstack-init"},
    ),
    "fit imports scpi_text (below it in the layers)": (
        {"labstack/fit/zz_planted.py": "import labstack.scpi_text\n"},
        {"fit-and-data-stand-alone"},
    ),
    "data imports fit": (
        {"labstack/data/zz_planted.py": "from labstack.fit import lsq\n"},
        {"fit-and-data-stand-alone", "layers"},
    ),
    "the core imports a calibration, inside a function": (
        {
            "labstack/session/zz_planted.py": "def f():\n    from labstack.calibrations import bias_scurve\n"
        },
        {"core-never-imports-calibrations"},
    ),
    "a cycle between two packages (measure imports station)": (
        {"labstack/station/zz_planted.py": "import labstack.measure\n"},
        {"no-cycles", "layers"},
    ),
    "a cycle between two modules of one package": (
        {
            "labstack/fit/zz_a.py": "from labstack.fit import zz_b\n",
            "labstack/fit/zz_b.py": "from labstack.fit import zz_a\n",
        },
        {"no-cycles"},
    ),
    "an upward import that closes a cycle (session imports station)": (
        {"labstack/station/zz_planted.py": "import labstack.session\n"},
        {"layers", "no-cycles"},
    ),
    "an upward import (the simulator imports safety)": (
        {"labstack/sim/zz_planted.py": "import labstack.safety\n"},
        {"layers"},
    ),
    "a new package not placed in the layers": (
        {
            "labstack/zz_newpackage/__init__.py": "",
            "labstack/zz_newpackage/core.py": "import labstack.clock\n",
        },
        {"layers"},
    ),
    "an import of calibrations by its folder name": (
        {"labstack/calibrations/zz_planted.py": "from calibrations import _common\n"},
        {"no-top-level-drivers-or-calibrations"},
    ),
}


@contextmanager
def planted(tree: Path, files: dict[str, str]) -> Iterator[None]:
    """Write ``files`` into the tree for the duration of the block, then remove them."""
    created = []
    try:
        for relative, text in files.items():
            path = tree / relative
            for folder in reversed(path.parents):
                if folder.is_relative_to(tree) and not folder.exists():
                    folder.mkdir()
                    created.append(folder)
            path.write_text(text)
            created.append(path)
        yield
    finally:
        for path in reversed(created):
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)


@pytest.mark.parametrize(("files", "expected"), list(PLANTS.values()), ids=list(PLANTS))
def test_a_planted_violation_breaks_the_contract_named(
    tree: Path, files: dict[str, str], expected: set[str]
):
    with planted(tree, files):
        result = lint(tree)
    assert result.returncode == 1, result.stdout + result.stderr
    kept, broken = outcome(result.stdout)
    assert broken == expected, result.stdout
    assert kept == set(CONTRACTS) - expected
    if "zz_newpackage" in str(files):
        assert "- labstack.zz_newpackage" in result.stdout


def test_fit_and_data_may_import_the_clock(tree: Path):
    files = {
        "labstack/fit/zz_planted.py": "import labstack.clock\n",
        "labstack/data/zz_planted.py": "from labstack.clock import Clock\n",
    }
    with planted(tree, files):
        result = lint(tree)
    assert result.returncode == 0, result.stdout


def test_every_contract_has_a_planted_violation():
    proven = set().union(*(expected for _, expected in PLANTS.values()))
    assert proven == set(CONTRACTS)


def test_fit_and_data_contract_names_every_package_but_the_clock(tree: Path):
    """Its forbidden list is written out (wildcards cannot except labstack.clock): keep it whole."""
    declared = tomllib.loads(PYPROJECT.read_text())["tool"]["importlinter"]["contracts"]
    (contract,) = [c for c in declared if c["id"] == "fit-and-data-stand-alone"]
    children = {p.stem for p in (tree / "labstack").glob("*.py")} | {
        p.parent.name for p in (tree / "labstack").glob("*/__init__.py")
    }
    assert set(contract["forbidden_modules"]) == {
        f"labstack.{c}" for c in children - {"__init__", "clock"}
    }
