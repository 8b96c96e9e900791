"""Dashboard live-update latency: from a calibration-state change to the page, in headless Chromium.

A small calibrated chip (4 cells) gives a data directory; ``labstack dashboard``
serves it from its own process, as in the lab; Playwright drives Debian's
Chromium (``/usr/bin/chromium``, never a downloaded browser). This process then
writes ``--changes`` new state versions (a new V0 for cell 0, as a node's
``update`` would), spaced irregularly so the dashboard's polling phase is sampled,
and for each measures, on the page's own clock (the same machine's):

* live: until the page shows the new state version (the event stream's update);
* numbers: until the per-cell table shows the new value (one more fetch).

Target (the issue's): the live update reaches the page within 1 s. Prints both
latency distributions and ends with ``ratio: <1 s / worst live latency>``.

    python bench/bench_dashboard.py [--changes 20]
"""

from __future__ import annotations

import argparse
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from labstack.calibrate import CalibrationState, StateChange
from labstack.clock import VirtualClock
from labstack.fit.precision import format_value
from labstack.session import calibrate_station
from labstack.visa import open_station

TARGET_S = 1.0
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def calibrated(data_dir: Path) -> None:
    station = open_station("virtual", lab="seed=7,cells=4")
    try:
        calibrate_station(station, data_dir=data_dir, names=["bias_scurve"], progress=False,
                          params={"bias_scurve": {"n_points": 21, "n_samples": 400}, "readout": {"n_samples": 500}})
    finally:
        station.close()


def start_dashboard(data_dir: Path) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "labstack.cli", "dashboard", "--data-dir", str(data_dir),
                             "--port", "0"], stdout=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        found = re.search(r"(http://127\.0\.0\.1:\d+/)", line)
        if found:
            return proc, found.group(1)
    proc.kill()
    raise RuntimeError("labstack dashboard did not print its address")


def summary(name: str, lat: np.ndarray) -> str:
    q = np.percentile(lat, [50, 90, 99])
    return (f"{name:8s} n={lat.size}  min {lat.min() * 1e3:6.0f} ms  median {q[0] * 1e3:6.0f} ms  "
            f"p90 {q[1] * 1e3:6.0f} ms  p99 {q[2] * 1e3:6.0f} ms  max {lat.max() * 1e3:6.0f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int, default=20)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("needs Debian's chromium (apt-get install chromium)")
    rng = random.Random(1)
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "data"
        calibrated(data_dir)
        proc, url = start_dashboard(data_dir)
        live, numbers = [], []
        try:
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=chromium, args=ARGS)
                page = browser.new_page()
                page.goto(url)
                page.wait_for_function("window.labstack && window.labstack.drawn", timeout=60_000)
                state = CalibrationState.load(data_dir / "calibration_state")
                clock = VirtualClock()
                old = state.get("cells.0.bias_offset_V")
                for k in range(args.changes):
                    time.sleep(0.6 + rng.random())
                    value = old.value + (k + 1) * 1e-3
                    version = state.apply(StateChange().set("cells.0.bias_offset_V", value, old.stderr, "V"),
                                          clock=clock, node="bias_scurve", message="bench: new V0")
                    written = time.time()
                    text = format_value(value, old.stderr, "V")
                    page.wait_for_function(f"window.labstack.lastUpdate && window.labstack.lastUpdate.version >= {version}",
                                           timeout=30_000)
                    page.wait_for_function(f"window.labstack.cellsDrawn.version >= {version}", timeout=30_000)
                    cell = page.text_content("#cells td[data-key='cells.0.bias_offset_V']")
                    if cell != text:
                        raise AssertionError(f"v{version}: the page shows {cell!r}, the state {text!r}")
                    shown = page.evaluate("window.labstack.lastUpdate.t") / 1e3
                    drawn = page.evaluate("window.labstack.cellsDrawn.t") / 1e3
                    live.append(shown - written)
                    numbers.append(drawn - written)
                browser.close()
        finally:
            proc.terminate()
            proc.wait(timeout=20)
    live_a, numbers_a = np.array(live), np.array(numbers)
    print(summary("live", live_a))
    print(summary("numbers", numbers_a))
    print(f"target: the live update within {TARGET_S:.0f} s of the state change")
    print(f"ratio: {TARGET_S / live_a.max():.2f}")


if __name__ == "__main__":
    main()
