"""What the report, figure and dashboard tests share: small fast calibrations, a browser.

``FULL_FAST`` calibrates every installed node of a 4-cell chip in a few seconds
(fewer points, samples and temperatures than a real chip needs, enough for every
fit to run). The browser test's chip is kept calibrated by ``labstack watch`` on a
served lab (``tests/test_dashboard_browser.py``).
"""

from __future__ import annotations

import os
import shutil
from typing import Any

import pytest

from tests.golden.scripts import CALIBRATION_PARAMS

FULL_FAST: dict[str, dict[str, Any]] = {
    **CALIBRATION_PARAMS,
    # three temperatures: the exponent of T_eff is measured, which two cannot do
    "effective_temperature": {"temperatures_K": (0.0, 0.03, 0.08), "n_samples": 200, "n_points": 7},
    "thermalization": {"temperatures_K": (0.0, 0.028), "n_samples": 8000},
    "crosstalk": {"n_samples": 400},
    "couplers": {"n_points": 5, "n_samples": 1500},
    "validation": {"n_samples": 8000},
}

CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


def chromium_or_fail() -> str:
    """Debian's chromium; missing on CI is a failure (``.ci/run`` installs it), elsewhere a skip."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("chromium is missing on CI: .ci/run installs it with apt-get")
        pytest.skip("chromium not installed on this developer machine (apt-get install chromium)")
    return browser


def launch_browser(playwright: Any) -> Any:
    """Headless Chromium from the system (never a browser Playwright would download)."""
    return playwright.chromium.launch(executable_path=chromium_or_fail(), args=CHROMIUM_ARGS)
