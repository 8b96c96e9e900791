"""What software produced a run: package versions and the labstack git revision.

Stored with every run so that a surprising result months later can be traced to the
code that made it.
"""

from __future__ import annotations

import functools
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

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

