"""Acceptance of the cryostat, readout, effective-temperature and thermalization routines.

Every recovered number is compared with the simulator's ground truth (``lab.truth``)
in units of its own standard error: at least 95 % of cells within 3 sigma, so the
errors the routines report are honest as well as the values right. Bias S-curves
run with lean parameters (their own acceptance is tests/test_bias_scurve.py).
"""

from __future__ import annotations

import numpy as np
import pytest

from labstack.calibrate import CalibrationGraph, CalibrationState, Context
from labstack.session import routines

#: lean S-curves: independent samples (slower than any correlation time), fewer of them
LEAN_SCURVE = dict(n_points=31, n_samples=500, sample_rate_Hz=50.0)


def _graph(station, tmp_path, names, **params) -> CalibrationGraph:
    ctx = Context.create(tmp_path, station)
    graph = CalibrationGraph(ctx)
    available = routines()
    for name in names:
        module = available[name]
        p = module.Parameters(**LEAN_SCURVE) if name == "bias_scurve" else params.get(name)
        graph.add_module(module, p)
    return graph


def _within(values, errors, truth, n_sigma=3.0) -> float:
    pulls = (np.asarray(values) - np.asarray(truth)) / np.asarray(errors)
    return float(np.mean(np.abs(pulls) < n_sigma))


def test_cryostat_recovers_base_heater_and_time_constants(virtual_station, tmp_path):
    station, lab = virtual_station(seed=5, cells=16)
    graph = _graph(station, tmp_path, ["cryostat"])
    graph.calibrate_all()
    state = CalibrationState.load(tmp_path / "calibration_state")
    c = lab.truth.cryostat
    truth = {
        "mc_base_K": c.mc_base_K,
        "mc_tau_base_s": c.mc_tau_s(c.mc_base_K),
        "heating_K2_per_A2": c.heater_resistance_ohm / c.mc_cooling_W_per_K2,
        "chip_tau_s": c.chip_tau_s,
    }
    for key, value in truth.items():
        entry = state.get(f"cryostat.{key}")
        assert abs(entry.value - value) < 3 * entry.stderr, (key, entry.value, entry.stderr, value)
        assert entry.stderr < 0.05 * value  # and precise enough to be useful
    # the fridge is back near base afterwards (three time constants of cool-down)
    assert lab.cryostat.t_mc == pytest.approx(c.mc_base_K, rel=0.1)


@pytest.mark.parametrize("cells,seed,names", [(16, 21, ["readout", "cryostat", "bias_scurve"]), (64, 8, ["readout"])])
def test_readout_levels_and_broken_cells(virtual_station, tmp_path, cells, seed, names):
    station, lab = virtual_station(seed=seed, cells=cells, dead=0.1, stuck=0.1)
    graph = _graph(station, tmp_path, names)
    graph.maintain("readout")
    true_off = lab.readout.offset + lab.readout.drift  # offsets drift slowly: as they were
    graph.calibrate_all()
    state = CalibrationState.load(tmp_path / "calibration_state")
    t = lab.truth.cells
    broken = t.dead | (t.stuck != 0)
    healthy = np.flatnonzero(~broken)
    # every broken cell is flagged by both nodes, every healthy one passes readout
    health = np.array([state.value(f"cells.{i}.health") for i in range(cells)])
    assert set(np.flatnonzero(health != "ok")) == set(np.flatnonzero(broken))
    for i in np.flatnonzero(broken):
        assert not state.get(f"cells.{i}.readout_amp_V").valid
        if "bias_scurve" in names:  # the S-curve node names the readout's verdict
            entry = state.get(f"cells.{i}.bias_offset_V")
            assert not entry.valid and health[i] in entry.note
    # a call the classifier is sure of (p > 0.99) is right
    for i in np.flatnonzero(broken):
        expected = "dead" if t.dead[i] else ("stuck_plus" if t.stuck[i] > 0 else "stuck_minus")
        if "p=1.00" in state.get(f"cells.{i}.health").note:
            assert health[i] == expected, (i, health[i], expected)
    amp = [state.get(f"cells.{i}.readout_amp_V") for i in healthy]
    off = [state.get(f"cells.{i}.readout_offset_V") for i in healthy]
    assert _within([e.value for e in amp], [e.stderr for e in amp], t.readout_amp_V[healthy]) >= 0.95
    assert _within([e.value for e in off], [e.stderr for e in off], true_off[healthy]) >= 0.95
    fidelity = [state.value(f"cells.{i}.readout_fidelity") for i in healthy]
    assert min(fidelity) > 0.999


def test_effective_temperature_and_thermalization_on_16_cells(virtual_station, tmp_path):
    station, lab = virtual_station(seed=21, cells=16, dead=0.1)
    names = ["readout", "cryostat", "bias_scurve", "effective_temperature", "thermalization"]
    lean = {  # one hot temperature each; bias points at base keep the Arrhenius fit checked
        "effective_temperature": routines()["effective_temperature"].Parameters(
            temperatures_K=(0.0, 0.08), n_samples=300
        ),
        "thermalization": routines()["thermalization"].Parameters(
            temperatures_K=(0.0, 0.028), n_samples=12000
        ),
    }
    graph = _graph(station, tmp_path, names, **lean)
    graph.calibrate_all()
    state = CalibrationState.load(tmp_path / "calibration_state")
    t = lab.truth
    dead = np.flatnonzero(t.cells.dead)
    assert len(dead) == 2
    live = [i for i in range(16) if i not in dead]
    for i in dead:
        assert not state.get(f"cells.{i}.bias_offset_V").valid
    tx = state.get("noise.t_excess_K")
    assert abs(tx.value - t.noise.t_excess_K) < 3 * tx.stderr
    alpha = [state.get(f"cells.{i}.alpha_K_per_V") for i in live]
    assert _within([e.value for e in alpha], [e.stderr for e in alpha], t.cells.alpha_K_per_V[live]) >= 0.95
    barrier = [state.get(f"cells.{i}.barrier_K") for i in live]
    gamma = [state.get(f"cells.{i}.gamma0_Hz") for i in live]
    assert _within([e.value for e in barrier], [e.stderr for e in barrier], t.cells.barrier_K[live]) >= 0.95
    # gamma0 is log-normal: judge ln gamma0 with its relative error
    ln_g = [np.log(e.value) for e in gamma]
    ln_err = [e.stderr / e.value for e in gamma]
    assert _within(ln_g, ln_err, np.log(t.cells.gamma0_Hz[live])) >= 0.95
    # correlation time at base, zero field: the Kramers value of the truth
    t_eff = t.noise.t_eff(t.cryostat.mc_base_K)
    true_tau = np.exp(t.cells.barrier_K[live] / t_eff) / (2 * t.cells.gamma0_Hz[live])
    tau = np.array([state.value(f"cells.{i}.tau_c_s") for i in live])
    assert np.all(np.abs(np.log(tau / true_tau)) < 0.15)
    assert state.value("thermalization.ess_per_s_min") > 1e4
    # right after: nothing to recalibrate (the fridge waits take hours of virtual time,
    # so bias_scurve's 4 h timeout may have passed: then only its cheap check runs)
    graph.clear_log()
    status = graph.calibrate_all()
    assert graph.calls("calibrate") == []
    assert set(graph.calls("check_data")) <= {"bias_scurve"}
    assert all(s.value == "fresh" for s in status.values()), status
