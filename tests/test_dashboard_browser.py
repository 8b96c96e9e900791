"""The dashboard in headless Chromium, against a chip that keeps recalibrating.

A writer keeps calibrating a 4-cell virtual chip into a data directory; the
dashboard serves that directory; Playwright drives Debian's Chromium (never a
downloaded browser). The page must show the state's own numbers, follow a
recalibration live (the history plot gains points without a reload), show the
running node, and refuse run control without the token.

Switching the writer to the service: replace the two lines marked WRITER in
:func:`writer` by ``labstack serve --speed 1000 ...`` and ``labstack watch ...``
subprocesses on the same ``data_dir`` (``subprocess.Popen``, terminated after the
yield); nothing else in the test depends on who writes.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from labstack.calibrate import CalibrationState
from labstack.fit.precision import format_value
from labstack.presentation.dashboard import DashboardServer
from tests.conftest import lab_description
from tests.dashboard_helpers import CalibrationLoop, chromium_or_fail, launch_browser
from tests.golden.scripts import CALIBRATION_NAMES, CALIBRATION_PARAMS

FIRST_CALIBRATION_S = 180.0
RECALIBRATION_S = 120.0
POINTS = "document.querySelectorAll('#history [id^=\"history-cell-\"] use').length"


@pytest.fixture
def writer(tmp_path: Path):
    """(data_dir, writer): a chip recalibrating into data_dir until the test ends."""
    data_dir = tmp_path / "data"
    loop = CalibrationLoop(data_dir, lab_description(seed=7, cells=4, instance="dashboard-browser"), CALIBRATION_NAMES, CALIBRATION_PARAMS)  # WRITER
    loop.start()  # WRITER
    deadline = time.monotonic() + FIRST_CALIBRATION_S
    while CalibrationState.current_version(data_dir / "calibration_state") < 3:
        assert loop.error is None, loop.error
        assert time.monotonic() < deadline, "the first calibration did not finish"
        time.sleep(0.2)
    yield data_dir, loop
    loop.stop()
    assert loop.error is None, loop.error


def test_dashboard_follows_a_recalibrating_chip_in_chromium(writer, tmp_path):
    chromium_or_fail()
    from playwright.sync_api import sync_playwright

    data_dir, loop = writer
    with DashboardServer(data_dir, port=0) as server, sync_playwright() as pw:
        browser = launch_browser(pw)
        page = browser.new_page(viewport={"width": 1300, "height": 1800})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
        page.goto(f"{server.url}#token={server.dashboard.token}")
        page.wait_for_function("document.getElementById('history').dataset.version", timeout=60_000)

        # the numbers on the page are the state's, for the version the page says it shows
        shown = page.evaluate("() => ({"
                              "version: Number(document.getElementById('history').dataset.version),"
                              "cells: Object.fromEntries([...document.querySelectorAll('#cells td[data-key]')]"
                              "  .map(td => [td.dataset.key, td.textContent])),"
                              f"points: {POINTS}}})")
        state = CalibrationState.load(data_dir / "calibration_state").at(shown["version"])
        checked = 0
        for key, text in shown["cells"].items():
            if key in state:
                e = state.get(key)
                assert text == (format_value(e.value, e.stderr, e.unit) if e.valid else "flagged"), key
                checked += 1
        assert checked >= 4 * 3  # health, V0 and width of every cell at least
        assert page.locator("#nodes tr[data-node='bias_scurve'] .status").text_content() in ("fresh", "stale")
        assert page.locator("#graph g[data-node='bias_scurve']").count() == 1

        # the node now running, live
        page.wait_for_function("!document.getElementById('running').hidden", timeout=60_000)
        assert page.locator("#running-node").text_content() in ("readout", "cryostat", "bias_scurve")

        # a recalibration reaches the page without a reload: the history plot gains points
        before = shown["points"]
        page.wait_for_function(f"{POINTS} > {before}", timeout=RECALIBRATION_S * 1000)
        after = page.evaluate(POINTS)
        assert after >= before + 4  # one more V0 per cell
        assert page.evaluate("performance.getEntriesByType('navigation').length") == 1  # never reloaded

        # control needs the token: this page has it (from the URL), a fresh one has not
        page.click("#control button[data-action='pause']")
        page.wait_for_function("document.getElementById('control-result').textContent.includes('pause requested')")
        page.click("#control button[data-action='resume']")
        page.wait_for_function("document.getElementById('control-result').textContent.includes('resume requested')")
        anonymous = browser.new_context().new_page()  # another person: no token
        anonymous.goto(server.url)
        anonymous.wait_for_function("document.getElementById('history').dataset.version", timeout=60_000)
        assert anonymous.locator("#control button[data-action='abort']").is_disabled()
        status = anonymous.evaluate("fetch('/api/control/abort', {method: 'POST'}).then(r => r.status)")
        assert status == 403

        shot = tmp_path / "dashboard.png"
        page.screenshot(path=str(shot), full_page=True)
        browser.close()
    from matplotlib.image import imread

    pixels = imread(shot)
    assert pixels.shape[1] == 1300 and pixels[..., :3].std() > 0.05
    assert errors == []
    assert loop.rounds >= 2
