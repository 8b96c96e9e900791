"""Package discovery for labstack's layout.

The design card puts ``drivers/``, ``calibrations/`` and ``station_configs/`` at the
top of the repository, but they install as ``labstack.drivers``,
``labstack.calibrations`` and ``labstack.station_configs``: no top-level
``drivers`` package ever lands in site-packages. Everything else about the
project is declared in pyproject.toml.
"""

from setuptools import find_packages, setup

MAPPED_DIRS = {
    "labstack": "labstack",
    "labstack.drivers": "drivers",
    "labstack.calibrations": "calibrations",
    "labstack.station_configs": "station_configs",
}


def _packages() -> tuple[list[str], dict[str, str]]:
    packages: list[str] = []
    package_dir: dict[str, str] = {"": "."}
    for name, directory in MAPPED_DIRS.items():
        package_dir[name] = directory
        packages.append(name)
        for sub in find_packages(where=directory):
            packages.append(f"{name}.{sub}")
            package_dir[f"{name}.{sub}"] = f"{directory}/{sub.replace('.', '/')}"
    return packages, package_dir


PACKAGES, PACKAGE_DIR = _packages()

setup(packages=PACKAGES, package_dir=PACKAGE_DIR, py_modules=["pyvisa_labstack", "pyvisa_labstack_record", "pyvisa_labstack_playback"])
