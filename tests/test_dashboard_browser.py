"""The dashboard in headless Chromium, against a served chip that a watch keeps calibrated.

The lab is served at high speed (``LabService``, the ``labstack serve`` machinery, in
this process so the test can move the chip), ``labstack watch`` runs as its own
process on the lab's station file and a data directory, and the dashboard serves
that directory; Playwright drives Debian's Chromium (never a downloaded browser).

The page must show the state's own numbers, judge node status by the served lab's
clock (and say so): paused from the page, the watch makes no pass and bias_scurve
goes stale on the page as the fast clock runs on. Then it must follow a real
recalibration live: one cell's offset jumps on the served lab, the watch is
resumed, its stale pass finds the cell out of spec and recalibrates it (the page
shows the node running), and the history plot gains a point per cell without a
reload. Run control needs the token.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from labstack.calibrate import CalibrationState
from labstack.fit.precision import format_value
from labstack.presentation.dashboard import DashboardServer
from labstack.service import LabService
from labstack.service.status import watch_passes
from tests.dashboard_helpers import chromium_or_fail, launch_browser
from tests.service_helpers import wait_for

LAB = "seed=7,cells=4"
#: bias_scurve's 4 h timeout passes in ~4 s of wall time; readout's and cryostat's 24 h in ~24 s
SPEED = 3600.0
#: a small chip's calibration: bias_scurve and what it depends on, few points and samples
SETTINGS = ("bias_scurve.n_points=21", "bias_scurve.n_samples=400", "bias_scurve.check_points=21",
            "bias_scurve.check_samples=400", "readout.n_samples=500")
JUMP_CELL, JUMP_V = 2, 0.1  # a flux jump: this cell's offset V0 moves by 100 mV (tolerance 10 mV)
#: bounds, not expectations: quiet, the whole test takes ~30 s; with the cores shared four
#: ways (a slow CI machine) ~100 s, and the first pass alone up to twice that beside other tests
FIRST_PASS_S = 300.0
RECALIBRATION_S = 120.0
pytestmark = pytest.mark.timeout(900)
POINTS = "document.querySelectorAll('#history [id^=\"history-cell-\"] use').length"


def _passes(data_dir: Path, trigger: str = "") -> list[dict]:
    return [p for p in watch_passes(data_dir) if p["trigger"].startswith(trigger) and p["outcome"] == "ok"]


@pytest.fixture
def watched(tmp_path: Path):
    """(data_dir, service, watch): a served chip, and labstack watch starting to keep it calibrated.

    Chromium is looked for first: a skip after the watch started would stop it before it
    installed its SIGTERM handler, and its teardown would report the kill as an error."""
    chromium_or_fail()
    data_dir = tmp_path / "data"
    service = LabService(LAB, tmp_path / "svc", speed=SPEED).run_in_thread()
    watch = subprocess.Popen(
        [sys.executable, "-m", "labstack.cli", "watch", "--station", str(service.station_file),
         "--data-dir", str(data_dir), "--only", "bias_scurve", "--every", "1e9", "--poll", "0.1",
         *[arg for setting in SETTINGS for arg in ("--set", setting)]],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        yield data_dir, service, watch
    finally:
        if watch.poll() is None and not getattr(watch, "stop_sent", False):
            # once only: a second SIGTERM while it closes down (slow on a loaded machine)
            # would meet the default handler, restored by then, and kill it mid-cleanup
            watch.send_signal(signal.SIGTERM)
        try:
            out = watch.communicate(timeout=60)[0]
        except subprocess.TimeoutExpired:  # never leave it running: it would load every later test
            watch.kill()
            out = watch.communicate()[0] + "\n[killed: no clean stop within 60 s of SIGTERM]"
        service.stop()
    assert watch.returncode == 0, out
    assert "station left in its safe state" in out


def test_dashboard_follows_a_served_chip_that_a_watch_recalibrates(watched, tmp_path):
    chromium_or_fail()
    from playwright.sync_api import sync_playwright

    data_dir, service, watch = watched
    # the browser starts and the page opens while the watch makes its first pass
    with DashboardServer(data_dir, port=0) as server, sync_playwright() as pw:
        browser = launch_browser(pw)
        page = browser.new_page(viewport={"width": 1300, "height": 1800})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
        page.goto(f"{server.url}#token={server.dashboard.token}")

        def started() -> list[dict]:
            assert watch.poll() is None, f"labstack watch exited: {watch.communicate()[0]}"
            return _passes(data_dir, "startup")

        (startup,) = wait_for(started, FIRST_PASS_S, "the watch's startup pass", every=0.1)
        assert startup["recalibrated"] == ["bias_scurve", "cryostat", "readout"]
        page.wait_for_function(f"Number(document.getElementById('history').dataset.version) >= "
                               f"{startup['state_version_after']}", timeout=90_000)

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

        # node status by the served lab's clock, which runs on between passes: the page says so
        assert page.locator("#clock").get_attribute("data-clock") == "served"
        assert f"served lab '{LAB}'" in page.locator("#graph-note").text_content()

        # a person pauses the watch from the page (the token came in the URL): with no pass to
        # verify it, bias_scurve goes stale on the page as the served clock runs on, no new version
        page.click("#control button[data-action='pause']")
        page.wait_for_function("document.getElementById('control-result').textContent.includes('pause requested')")
        page.wait_for_function("document.querySelector(\"#nodes tr[data-node='bias_scurve'] .status\")"
                               ".textContent === 'stale'", timeout=90_000)
        assert "timed out" in page.locator("#nodes tr[data-node='bias_scurve']").text_content()
        # ... in the newest state: stale by the clock alone
        current = CalibrationState.current_version(data_dir / "calibration_state")
        assert page.locator("#state-version").text_content() == f"v{current}"

        # a flux jump on the served lab; on resume the stale pass finds the cell out of spec and recalibrates
        before = shown["points"]
        seen = len(watch_passes(data_dir))
        with service.server.lock:  # the chip's own jump mechanism (its truth's V0 is only the start)
            lab = service.server.lab
            lab.drift.schedule_jump(JUMP_CELL, JUMP_V, at=lab.clock.now())
        page.click("#control button[data-action='resume']")
        page.wait_for_function("document.getElementById('control-result').textContent.includes('resume requested')")
        # the node the watch runs, live
        page.wait_for_function("!document.getElementById('running').hidden && "
                               "document.getElementById('running-node').textContent === 'bias_scurve'",
                               timeout=RECALIBRATION_S * 1000)

        # the recalibration reaches the page without a reload: the history plot gains a point per cell
        page.wait_for_function(f"{POINTS} >= {before + 4}", timeout=RECALIBRATION_S * 1000)
        assert page.evaluate("performance.getEntriesByType('navigation').length") == 1  # never reloaded
        # the pass's record is appended once its run is closed, just after its versions
        found = wait_for(lambda: [p for p in watch_passes(data_dir)[seen:] if "bias_scurve" in p["recalibrated"]],
                         30, "the record of the pass that recalibrated bias_scurve")[0]
        assert found["trigger"].startswith("stale: bias_scurve") and "timed out" in found["trigger"]
        # its cheap check saw the cell move (out of spec; bad data if the jump came mid-sweep), so it recalibrated
        assert any(c["node"] == "bias_scurve" and c["function"] == "check_data"
                   and c["outcome"] in ("out_of_spec", "bad_data") for c in found["checked"]), found["checked"]
        new_v0 = CalibrationState.load(data_dir / "calibration_state").at(found["state_version_after"])
        moved = new_v0.value(f"cells.{JUMP_CELL}.bias_offset_V") - state.value(f"cells.{JUMP_CELL}.bias_offset_V")
        assert moved == pytest.approx(JUMP_V, abs=0.03)  # the recalibration measured the jump

        watch.send_signal(signal.SIGTERM)  # it stops (safe state, station closed) while the page is checked on
        watch.stop_sent = True  # type: ignore[attr-defined]

        # control needs the token: this page had it (from the URL), a fresh one has not
        anonymous = browser.new_context().new_page()  # another person: no token
        anonymous.goto(server.url)
        anonymous.wait_for_function("document.getElementById('history').dataset.version", timeout=90_000)
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
