"""``labstack serve`` as a process, and ``labstack watch`` keeping a served chip calibrated.

The watch runs as its own process (it is stopped with SIGTERM), against a lab
service in this process at high speed, restarted mid-test on the same directory.
"""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest
import yaml
from qcodes.instrument import Instrument

from labstack.cli import main
from labstack.data import list_runs
from labstack.service import LabService
from labstack.service.status import overview, state_timeline, watch_passes
from labstack.session import calibration_status
from tests.service_helpers import RawClient, read_json, wait_for

LAB = "seed=3,cells=4,realism=ideal"  # the watch loop under test, on the quick ideal chip
SPEED = 40000.0  # readout's 24 h timeout comes every ~2 s of wall time
#: the waits below are bounds, not expectations: quiet, the module takes ~25 s; with the
#: cores shared four ways (a slow CI machine) the watch's first pass alone took 70 s
pytestmark = pytest.mark.timeout(900)


def _cli(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "labstack.cli", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def test_serve_prints_addresses_writes_a_station_file_and_stops_on_sigterm(tmp_path):
    directory = tmp_path / "svc"
    serve = _cli("serve", "--seed", "3", "--cells", "4", "--dir", str(directory), "--speed", "100",
                 "--host", "0.0.0.0", "--allow-remote")
    try:
        assert serve.stdout is not None
        lines = []
        for line in serve.stdout:
            lines.append(line)
            if line.startswith("serving on"):
                break
        printed = "".join(lines)
        addresses = dict(
            (parts[0], parts[1]) for parts in (line.split() for line in lines) if len(parts) == 2 and "::SOCKET" in parts[1]
        )
        assert sorted(addresses) == ["clock", "ls372", "qdac1", "qdac2", "sampler"], printed
        assert "serving on 0.0.0.0" in printed
        station = yaml.safe_load((directory / "station.yaml").read_text())
        assert {n: s["address"] for n, s in station["instruments"].items()} == addresses
        assert {s["init"]["visalib"] for s in station["instruments"].values()} == {"@py"}
        assert station["labstack"]["service"]["lab"] == "seed=3,cells=4"
        clock = RawClient(int(addresses["clock"].split("::")[2]))
        assert clock.ask("*IDN?") == "labstack,VCLOCK-1,0001,1.0"
        clock.close()
        info = wait_for(lambda: read_json(directory / "service.json"), 10, "service.json")
        assert info["status"] == "running" and info["speed"] == 100.0 and info["lab"] == "seed=3,cells=4"
        serve.send_signal(signal.SIGTERM)
        out, err = serve.communicate(timeout=30)
    finally:
        if serve.poll() is None:
            serve.kill()
    assert serve.returncode == 0, err
    assert "WARNING: serving the lab's instruments on 0.0.0.0" in err  # the explicit flag, and a warning
    assert "stopped" in out and read_json(directory / "service.json")["status"] == "stopped"


def test_watch_keeps_a_served_chip_calibrated_stops_cleanly_and_survives_a_restart(tmp_path):
    svc, data = tmp_path / "svc", tmp_path / "data"
    station_file = svc / "station.yaml"
    status_file = data / "watch" / "status.json"
    service = LabService(LAB, svc, speed=SPEED).run_in_thread()
    watch = _cli("watch", "--station", str(station_file), "--data-dir", str(data), "--only", "readout",
                 "--every", "1e9", "--poll", "0.1", "--reconnect", "0.3")
    try:
        def passes(after: int = 0, trigger: str = "") -> list[dict]:
            return [p for p in watch_passes(data)[after:] if p["trigger"].startswith(trigger) and p["outcome"] == "ok"]

        (startup,) = wait_for(lambda: passes(trigger="startup"), 240, "the startup pass")
        assert startup["recalibrated"] == ["readout"] and startup["versions"] and startup["run_id"]
        # a fast clock: readout times out (24 h of lab time) and the watch maintains it
        stale = wait_for(lambda: passes(trigger="stale: readout"), 120, "a pass after readout timed out")[0]
        assert [c["function"] for c in stale["checked"]] == ["check_state", "check_data"]
        assert "timed out" in stale["checked"][0]["detail"] and stale["versions"]
        assert stale["lab_s"] > 0 and stale["wall_s"] > 0 and stale["status"] == {"readout": "fresh"}
        # labstack status on the served station: by the served clock now, not frozen at the last update
        report = calibration_status(station_file, data, names=["readout"])
        assert "served lab" in report.note and report.as_of > stale["ended_utc"]

        # the service goes away and comes back on the same ports; the watch reconnects and carries on
        seen = len(watch_passes(data))
        service.stop()
        service = LabService(LAB, svc, speed=SPEED).run_in_thread()
        assert service.resumed_utc is not None  # the lab calendar continued
        wait_for(lambda: passes(seen, "reconnected"), 120, "a pass after reconnecting")

        # SIGTERM while a node acquires: its run is stopped between points, flushed, station safe
        wait_for(lambda: (read_json(status_file) or {}).get("node") == "readout", 120, "a pass acquiring", every=0.02)
        watch.send_signal(signal.SIGTERM)
        out, err = watch.communicate(timeout=120)
    finally:
        if watch.poll() is None:
            watch.kill()
            watch.communicate()
        service.stop()
        Instrument.close_all()
    assert watch.returncode == 0, out + err
    assert "lost the lab" in out and "reconnected" in out
    assert "stopped after" in out and "station left in its safe state" in out
    status = read_json(status_file)
    assert status["state"] == "stopped" and status["stop_reason"] == "SIGTERM" and status["safe_state"] == "ok"
    runs = list_runs(data)
    assert runs and all(r.status in ("completed", "failed") for r in runs)  # none left "running"
    last = runs[-1]
    assert last.dataset() is not None  # flushed and readable, aborted or not
    lab = service.server.lab
    assert (lab.bias_V == 0).all() and (lab.coupler_V == 0).all()  # safe state: DACs at 0 V
    assert service.server.instruments.get("ls372").outputs[0].range == 0  # heater off
    # what a dashboard reads
    view = overview(data, svc)
    assert view["watch"]["state"] == "stopped" and view["service"]["status"] == "stopped"
    assert [h["version"] for h in view["history"]] == list(range(1, len(view["history"]) + 1))
    assert {r["id"] for r in view["runs"]} >= {p["run_id"] for p in view["passes"] if p["run_id"]}
    timeline = state_timeline(data, "readout")  # per-entry history, recalibrations marked
    assert {row["version"] for row in timeline if row["recalibrated"]} >= set(startup["versions"])
    assert len({row["version"] for row in timeline}) >= 2  # later passes added versions


def test_watch_refuses_a_clock_that_never_moves_by_itself(tmp_path, capsys):
    code = main(["watch", "--station", "virtual", "--cells", "4", "--data-dir", str(tmp_path), "--passes", "1"])
    assert code == 2
    assert "clock stands still" in capsys.readouterr().err


@pytest.fixture(autouse=True)
def _no_instruments_left():
    yield
    Instrument.close_all()
