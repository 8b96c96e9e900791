"""Faults the virtual lab injects are retried, reconnected or reported cleanly, never silently.

On the ideal chip (``realism=ideal``: DAC lines without filters, thermometers that read the
stage): what is under test is the safety logic, which compares exact values.
"""

from __future__ import annotations

import numpy as np
import pytest
from qcodes.parameters import Parameter
from safety_helpers import write_station

from labstack.calibrate import CalibrationGraph, CalibrationState, Context
from labstack.data import list_runs, load_run
from labstack.measure import Read, Sweep, run_sequence
from labstack.safety import InstrumentFault, SafetyError
from labstack.sim.faults import COMM_KINDS


@pytest.fixture
def station_lab(virtual_station, tmp_path):
    station, lab = virtual_station(str(write_station(tmp_path)), seed=7, cells=4, realism="ideal")
    station.components["sampler"].n_samples(50)
    return station, lab


@pytest.mark.parametrize("kind", COMM_KINDS)
def test_each_fault_on_a_query_is_survived(station_lab, kind):
    station, lab = station_lab
    stats = station.safety.hardener.stats
    temperature = station.parameter("ls372.ch06.temperature")
    samples = station.parameter("sampler.samples")
    lab.faults.inject(kind, "ls372")
    lab.faults.inject(kind, "sampler")
    t = temperature()
    data = samples()
    assert abs(t - lab.cryostat.t_mc) < 0.01 * lab.cryostat.t_mc
    assert data.shape == (4, 50) and np.all(np.isfinite(data))
    assert [e.kind for e in lab.faults.log] == [kind, kind]
    assert stats.recovered >= 2 and stats.failures == 0
    if kind == "dropped":
        assert stats.reconnects >= 2


def test_guard_is_back_after_a_reconnect(station_lab):
    station, lab = station_lab
    lab.faults.inject("dropped", "qdac1", count=2)
    ch1 = station.parameter("qdac1.ch01.dc_constant_V")
    ch1(0.1)
    assert lab.bias_V[0] == pytest.approx(0.1)
    assert station.safety.hardener.stats.reconnects >= 1
    with pytest.raises(SafetyError):
        station.components["qdac1"].write("sour1:volt 1.0")


def test_a_non_idempotent_command_is_not_repeated(station_lab):
    station, lab = station_lab
    lab.faults.inject("dropped", "sampler")
    with pytest.raises(InstrumentFault) as info:
        station.components["sampler"].write("INIT")
    assert info.value.attempts == 1 and info.value.instrument == "sampler" and "INIT" in str(info.value)


def test_stuck_instrument_stops_the_run_cleanly_keeping_the_points(station_lab, tmp_path):
    station, lab = station_lab
    trigger = Parameter("trigger", set_cmd=lambda v: v >= 5 and lab.faults.stick("ls372", 1e6))
    seq = Sweep("k", {trigger: np.arange(10)}, body=[Read("ls372.ch06.temperature", name="t_mc")])
    with pytest.raises(InstrumentFault) as info:
        run_sequence(seq, station, name="stuck", data_dir=tmp_path, progress=False, flush_every=1)
    assert info.value.instrument == "ls372" and "KRDG" in str(info.value)
    (run_info,) = list_runs(tmp_path)
    run = load_run(run_info.id, tmp_path)
    assert run.info["status"] == "failed" and "ls372" in run.info["error"]
    t = run.dataset()["t_mc"].values
    assert np.all(np.isfinite(t[:5])) and np.all(np.abs(t[:5] - 0.01) < 0.005)


def test_interrupted_calibration_leaves_the_state_as_it_was(station_lab, tmp_path):
    from labstack.calibrations import bias_scurve

    station, lab = station_lab
    ctx = Context.create(tmp_path, station)
    graph = CalibrationGraph(ctx)
    graph.add_module(bias_scurve, bias_scurve.Parameters(n_points=5, n_samples=50))
    version = ctx.state.version
    lab.faults.inject("stuck", "sampler")
    lab.faults.stick("sampler", 1e6)
    with pytest.raises(InstrumentFault, match="sampler"):
        graph.calibrate("bias_scurve")
    reloaded = CalibrationState.load(tmp_path / "calibration_state")
    assert reloaded.version == version and len(reloaded) == 0
    assert not [p for p in (tmp_path / "calibration_state").iterdir() if ".tmp" in p.name]
