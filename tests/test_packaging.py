"""Packaging is declared in pyproject.toml alone; its package list misses no folder.

``[tool.setuptools] packages`` is written out (labstack.drivers, labstack.calibrations
and labstack.station_configs come from folders beside labstack/, see
``[tool.setuptools.package-dir]``), so a new folder with an ``__init__.py`` must be added
there by hand or it silently stays out of the wheel. This test fails until it is.
"""

from __future__ import annotations

import importlib.metadata
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SETUPTOOLS = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


def folders_with_init() -> set[str]:
    """Package names of every folder with an __init__.py, as they install."""
    roots = {"labstack": "labstack", **SETUPTOOLS["package-dir"]}
    names = set()
    for name, folder in roots.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            relative = init.parent.relative_to(ROOT / folder)
            names.add(".".join([name, *relative.parts]))
    return names


def test_every_package_folder_is_listed_and_every_listed_package_exists():
    assert set(SETUPTOOLS["packages"]) == folders_with_init()
    assert len(SETUPTOOLS["packages"]) == len(set(SETUPTOOLS["packages"]))


def test_package_dir_maps_only_the_three_folders_beside_labstack():
    assert SETUPTOOLS["package-dir"] == {
        "labstack.drivers": "drivers",
        "labstack.calibrations": "calibrations",
        "labstack.station_configs": "station_configs",
    }


def test_shims_and_station_files_ship():
    for module in SETUPTOOLS["py-modules"]:
        assert (ROOT / f"{module}.py").is_file()
    assert SETUPTOOLS["package-data"]["labstack.station_configs"] == ["*.yaml", "sequences/*.yaml"]


def test_the_installed_labstack_has_its_mapped_packages_and_calibration_entry_points():
    import labstack.calibrations.bias_scurve
    import labstack.drivers.sampler
    import labstack.station_configs

    assert Path(labstack.calibrations.bias_scurve.__file__).parent == ROOT / "calibrations"
    assert Path(labstack.drivers.sampler.__file__).parent == ROOT / "drivers"
    assert Path(labstack.station_configs.__file__).parent == ROOT / "station_configs"
    routines = importlib.metadata.entry_points(group="labstack.calibrations")
    assert {ep.name for ep in routines} >= {"bias_scurve", "validation"}
    for ep in routines:
        assert ep.load().__name__ == ep.value
