"""Runs pause, resume and abort from Python and the CLI; suspenders wait on the station clock.

On the ideal chip (``realism=ideal``: DAC lines without filters, thermometers that read the
stage): what is under test is the safety logic, which compares exact values.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
from qcodes.parameters import Parameter
from safety_helpers import write_station

from labstack.cli import main
from labstack.data import list_runs, load_run
from labstack.measure import Read, Sweep, run_sequence
from labstack.safety import RunAborted

SUSPENDER = """\
  suspenders:
    - {signal: ls372.ch06.temperature, high: 0.03, settle_s: 20, poll_s: 1, timeout_s: 3600}
"""


def _sweep(action, n=8):
    """A sweep whose 'knob' calls ``action(k)`` as point k is set; reads the mixing chamber."""
    knob = Parameter("knob", set_cmd=action)
    return Sweep("k", {knob: np.arange(n)}, body=[Read("ls372.ch06.temperature", name="t_mc")])


def test_pause_and_resume_from_another_thread(virtual_station, tmp_path):
    station, lab = virtual_station(str(write_station(tmp_path)), seed=7, cells=4, realism="ideal")
    control = station.control

    def at(k):
        if k == 3:  # what a notebook cell does while the run goes on in a thread
            control.pause("look at the data")
            threading.Timer(0.3, control.resume).start()

    run = run_sequence(_sweep(at), station, name="paused", data_dir=tmp_path, progress=False)
    assert run.info["status"] == "completed"
    assert [e["kind"] for e in run.info["control_events"]] == ["pause", "resume"]
    assert np.all(np.isfinite(run.dataset()["t_mc"].values))


def test_abort_from_the_cli_leaves_the_station_safe_and_keeps_the_data(virtual_station, tmp_path):
    station, lab = virtual_station(str(write_station(tmp_path)), seed=7, cells=4, realism="ideal")
    station.parameter("qdac1.ch02.dc_constant_V")(0.3)
    station.components["ls372"].sample_heater.output_range("100μA")
    data_dir = tmp_path / "data"
    station.control.wall_poll_s = 0.0  # poll the file at every point (default: every 0.1 s)

    def at(k):
        if k == 4:
            assert main(["control", "abort", "operator", "stop", "--data-dir", str(data_dir)]) == 0

    with pytest.raises(RunAborted, match="operator stop"):
        run_sequence(_sweep(at), station, name="aborted", data_dir=data_dir, progress=False, flush_every=1)
    assert lab.bias_V[1] == 0.0  # ramped to the safe value ...
    ls372 = station.components["ls372"].visa_handle.visalib.instruments.get("ls372")
    assert ls372.outputs[0].range == 0  # ... and the heater is off
    (info,) = list_runs(data_dir)
    run = load_run(info.id, data_dir)
    assert run.info["status"] == "failed" and "RunAborted" in run.info["error"]
    assert np.all(np.isfinite(run.dataset()["t_mc"].values[:5]))
    # the abort is not sticky: the next run goes through
    run = run_sequence(_sweep(lambda k: None, 3), station, name="next", data_dir=data_dir, progress=False)
    assert run.info["status"] == "completed"


def test_suspender_waits_on_the_station_clock_until_back_in_band(virtual_station, tmp_path):
    station, lab = virtual_station(str(write_station(tmp_path, SUSPENDER)), seed=7, cells=4, realism="ideal")

    def at(k):
        if k == 3:
            lab.faults.excursion(0.05)

    t0 = lab.clock.now()
    run = run_sequence(_sweep(at), station, name="suspended", data_dir=tmp_path, progress=False)
    t = run.dataset()["t_mc"].values
    assert t[3] > 0.05  # the point taken during the excursion is kept, and flagged by the events
    assert np.all(t[4:] <= 0.03) and np.all(t[:3] < 0.03)
    kinds = [e["kind"] for e in run.info["control_events"]]
    assert kinds == ["suspend", "unsuspend"]
    # cooling from 60 mK to 30 mK alone takes C/a (1/0.03 - 1/0.06) = 333 s of lab time
    assert lab.clock.now() - t0 > 300 + 20


def test_interlock_trip_aborts_and_switches_the_heater_off(virtual_station, tmp_path):
    station, lab = virtual_station(str(write_station(tmp_path)), seed=7, cells=4, realism="ideal")
    station.components["ls372"].sample_heater.output_range("100μA")

    def at(k):
        if k == 2:
            lab.faults.excursion(0.6)  # above max_temperature_K 0.5

    with pytest.raises(RunAborted, match="interlock"):
        run_sequence(_sweep(at), station, name="trip", data_dir=tmp_path, progress=False)
    ls372 = station.components["ls372"].visa_handle.visalib.instruments.get("ls372")
    assert ls372.outputs[0].range == 0
