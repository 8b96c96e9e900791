"""What the report, figure and dashboard tests share: small fast calibrations, a browser.

``FULL_FAST`` calibrates every installed node of a 4-cell chip in a few seconds
(fewer points, samples and temperatures than a real chip needs, enough for every
fit to run). :class:`CalibrationLoop` keeps recalibrating a small virtual chip in a
thread, so a dashboard watching its data directory sees real state changes.
"""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path
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


class CalibrationLoop:
    """Recalibrates ``names`` of a small virtual chip into ``data_dir`` until stopped.

    ``force=True`` so every round writes new values: a stand-in for ``labstack serve``
    plus ``labstack watch`` (scheduled maintain), which the browser test can swap in.
    """

    def __init__(self, data_dir: Path, lab: str, names: list[str], params: dict[str, Any]) -> None:
        self.data_dir, self.lab, self.names, self.params = data_dir, lab, names, params
        self.rounds = 0
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="calibration-loop", daemon=True)

    def _run(self) -> None:
        from labstack.session import calibrate_station
        from labstack.visa import open_station

        station = open_station("virtual", lab=self.lab)
        try:
            while not self._stop.is_set():
                calibrate_station(station, data_dir=self.data_dir, names=self.names, params=self.params,
                                  progress=False, force=self.rounds > 0)
                self.rounds += 1
        except BaseException as exc:  # reported by the test, never lost in the thread
            self.error = exc
        finally:
            station.close()

    def start(self) -> CalibrationLoop:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=120)
