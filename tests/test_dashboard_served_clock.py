"""The dashboard judges node status by a served lab's clock, read from its service file.

A chip calibrated on a lab served at high speed goes stale by that lab's clock with
no new calibration: the dashboard (and :func:`labstack.service.status.node_table`,
and ``labstack status`` on the data directory) must show it going stale, say which clock it judges by, follow the clock over the
event stream, and hold the clock where it stood once the service stops.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta

from fastapi.testclient import TestClient
from qcodes.instrument import Instrument

from labstack.calibrate import CalibrationState
from labstack.cli import main
from labstack.presentation.dashboard import Dashboard, create_app
from labstack.service import LabService
from labstack.service.status import node_table, served_lab
from labstack.session import calibrate_station
from labstack.station import load_station
from tests.service_helpers import read_json, wait_for

LAB = "seed=3,cells=4"
SPEED = 50000.0  # readout's 24 h timeout passes in under 2 s of wall time


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text)


def test_dashboard_shows_status_by_the_served_labs_clock_now(tmp_path, capsys):
    data = tmp_path / "data"
    service = LabService(LAB, tmp_path / "svc", speed=SPEED).run_in_thread()
    try:
        station = load_station(service.station_file)
        calibrate_station(station, data_dir=data, names=["readout"], params={"readout": {"n_samples": 300}},
                          progress=False)
        station.close()
        state = CalibrationState.load(data / "calibration_state")
        last_update = _utc(state.history()[-1].utc)
        record = served_lab(data)
        assert record == {"lab": LAB, "speed": SPEED, "service_file": str(service.service_file)}

        dash = Dashboard(data)
        with TestClient(create_app(dash), base_url="http://127.0.0.1") as client:
            recorded = _utc(read_json(service.service_file)["lab_utc"])
            first = client.get("/api/nodes").json()
            with service.server.lock:
                lab_after = service.server.lab.clock.utcnow()
            assert first["clock"] == "served"
            assert f"served lab '{LAB}'" in first["note"] and "its clock now" in first["note"]
            as_of = _utc(first["as_of"])
            # the served clock now, extrapolated from its file: at least where the file says the
            # lab was before the request (a bound that holds when a loaded machine makes the
            # service lag, and the dashboard extrapolates at its measured pace: at 50 000 lab s
            # per wall s, 50 ms behind is 40 lab minutes), at most where it got to after it
            assert recorded <= as_of <= lab_after + timedelta(seconds=2 * SPEED)
            # not behind the state's last update (equal when a loaded machine's service has not
            # rewritten its file since the calibration ended: the clock stands at its last word)
            assert as_of >= last_update
            readout = next(n for n in first["nodes"] if n["name"] == "readout")
            until = _utc(readout["valid_until_utc"])
            assert readout["status"] == ("fresh" if as_of < until else "stale")

            # no new calibration, yet readout goes stale as the served clock runs on
            def stale() -> dict | None:
                view = client.get("/api/nodes").json()
                row = next(n for n in view["nodes"] if n["name"] == "readout")
                return view if row["status"] == "stale" else None

            later = wait_for(stale, 60, "readout to go stale by the served clock", every=0.2)
            assert later["state_version"] == state.version == CalibrationState.current_version(data / "calibration_state")
            assert _utc(later["as_of"]) >= until
            assert "timed out" in next(n for n in later["nodes"] if n["name"] == "readout")["reason"]
            summary = client.get("/api/summary").json()
            assert summary["clock"] == "served" and summary["note"] == later["note"]
            assert {r["node"]: (r["status"], r["clock"]) for r in node_table(data)}["readout"] == ("stale", "served")
            # labstack status on the data directory, with no station: the same clock, said so
            capsys.readouterr()
            assert main(["status", "--data-dir", str(data)]) == 1
            printed = capsys.readouterr().out
            assert f"served lab '{LAB}'" in printed
            assert next(line for line in printed.splitlines() if line.startswith("readout ")).split()[1] == "stale"

            # the event stream follows the served clock: its service file is rewritten every second
            seq = dash.watcher.snapshot()["seq"]
            moved = wait_for(lambda: dash.watcher.snapshot()["seq"] > seq and dash.watcher.snapshot(), 5,
                             "a snapshot after the service file was rewritten")
            assert moved["lab_clock"]["status"] == "running" and moved["lab_clock"]["speed"] == SPEED
            assert moved["lab_service"]["service_file"] == str(service.service_file)

            # a stopped service's clock stands where it stopped (it continues from there)
            service.stop()
            info = read_json(service.service_file)
            assert info["status"] == "stopped"
            stopped = client.get("/api/nodes").json()
            assert stopped["clock"] == "served" and "is stopped" in stopped["note"]
            assert _utc(stopped["as_of"]) == _utc(info["lab_utc"])
            time.sleep(0.3)
            assert client.get("/api/nodes").json()["as_of"] == stopped["as_of"]
    finally:
        service.stop()
        Instrument.close_all()


def test_a_served_lab_whose_service_file_is_gone_falls_back_to_the_last_update(tmp_path):
    from labstack.service.status import status_clock

    state = CalibrationState.load(tmp_path / "calibration_state")
    at = status_clock(tmp_path, state=state, lab_service={"lab": LAB, "speed": 1.0,
                                                          "service_file": str(tmp_path / "gone.json")})
    assert at.kind == "virtual" and "cannot be read" in at.note and "last state update" in at.note
    running = {"status": "running", "lab": LAB, "speed": 100.0, "lab_utc": "2026-01-01T00:00:00+00:00",
               "updated_utc": "2026-03-01T00:00:00+00:00"}
    path = tmp_path / "service.json"
    import json

    path.write_text(json.dumps(running))
    heard = _utc(running["updated_utc"])
    fresh = status_clock(tmp_path, state=state, lab_service={"service_file": str(path)},
                         wall_now=heard + timedelta(seconds=2))
    assert fresh.kind == "served" and fresh.utc == _utc(running["lab_utc"]) + timedelta(seconds=200)
    # a lagging service is extrapolated at the pace it ran, and "now" does not go back
    path.write_text(json.dumps({**running, "pace": 10.0, "lag_s": 5000.0}))
    slower = status_clock(tmp_path, state=state, lab_service={"service_file": str(path)},
                          wall_now=heard + timedelta(seconds=3))
    assert slower.utc == fresh.utc  # not back from 200 s to 30 s
    # the same lagging file from another service (started anew): nothing judged before it
    path.write_text(json.dumps({**running, "pace": 10.0, "lag_s": 5000.0, "started_utc": "2026-03-01T00:00:00"}))
    anew = status_clock(tmp_path, state=state, lab_service={"service_file": str(path)},
                        wall_now=heard + timedelta(seconds=3))
    assert anew.utc == _utc(running["lab_utc"]) + timedelta(seconds=30)
    silent = status_clock(tmp_path, state=state, lab_service={"service_file": str(path)},
                          wall_now=heard + timedelta(seconds=60))
    assert silent.utc == _utc(running["lab_utc"]) and "said nothing for 60 s" in silent.note
