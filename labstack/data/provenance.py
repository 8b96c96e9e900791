"""What software produced a run: package versions and the labstack git revision.

Stored with every run so that a surprising result months later can be traced to the
code that made it.
"""

from __future__ import annotations

import functools
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

PACKAGES = ("labstack", "qcodes", "numpy", "xarray", "zarr", "pyvisa")


@functools.cache
def package_versions(packages: tuple[str, ...] = PACKAGES) -> dict[str, str]:
    """Installed version of each package (``"not installed"`` where absent); cached."""
    out = {}
    for pkg in packages:
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "not installed"
    return out


@functools.cache
def git_revision(path: str | None = None) -> str | None:
    """``<sha>`` or ``<sha>-dirty`` of the git checkout holding ``path`` (default: labstack).

    None when labstack is installed from a wheel or git is missing. Cached per process:
    one run's worth of subprocess calls is enough.
    """
    where = Path(path) if path else Path(__file__).resolve().parent
    try:
        sha = subprocess.run(
            ["git", "-C", str(where), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(where), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{sha}-dirty" if dirty else sha


#: where :mod:`labstack.calibrate` keeps the state next to the runs (its ``STATE_DIRNAME``;
#: repeated here because the data layer must not import the calibration engine)
STATE_DIRNAME = "calibration_state"


def state_version(data_dir: str | Path) -> int:
    """The calibration state version current in ``data_dir`` (0 if there is none yet)."""
    pointer = Path(data_dir) / STATE_DIRNAME / "current"
    try:
        name = pointer.read_text().strip()
    except OSError:
        return 0
    digits = name.removeprefix("v").removesuffix(".yaml")
    return int(digits) if digits.isdigit() else 0


def station_provenance(station: Any) -> dict[str, Any]:
    """What a replay needs to build ``station`` again: its file's text, the lab, the seed.

    ``lab`` is the virtual-lab description (``""`` for the default chip, None on
    hardware); ``seed`` is the virtual chip's seed as its clock instrument reports it
    (None on hardware). A station not loaded by :func:`labstack.station.load_station`
    gives empty values rather than failing: a toy station can still be measured.
    """
    seed = getattr(station, "labstack_seed", None)
    if seed is None:
        seed = _query_seed(station)
        if seed is not None:
            try:
                station.labstack_seed = seed
            except AttributeError:
                pass
    return {
        "station_file": getattr(station, "labstack_station_text", "") or "",
        "station_source": getattr(station, "labstack_source", "") or "",
        "lab": getattr(station, "labstack_lab", None),
        "seed": seed,
    }


def _query_seed(station: Any) -> int | None:
    layout = getattr(station, "labstack_layout", None)
    name = getattr(layout, "clock", None)
    components = getattr(station, "components", {})
    clock = components.get(name) if name else None
    parameter = getattr(clock, "parameters", {}).get("seed") if clock is not None else None
    if parameter is None:
        return None
    return int(parameter.get())
