"""Acceptance of the cryostat, readout, effective-temperature and thermalization routines.

Every recovered number is compared with the simulator's ground truth at the time of
its acquisition (:mod:`tests.acquisition_truth`) in units of its own standard error:
at least 95 % of cells within 3 sigma, so the errors the routines report are honest
as well as the values right. Each runs on the realistic chips of every acceptance
seed. Bias S-curves run with lean parameters (their own acceptance is
tests/test_bias_scurve.py).
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import ndtr

from labstack.calibrate import CalibrationGraph, CalibrationState, Context, family_n_sigma
from labstack.calibrations import thermalization
from labstack.data import load_run
from labstack.session import routines
from labstack.sim.dynamics import correlation_time
from tests.acquisition_truth import (
    honest_coverage,
    runs_of,
    truth_at_middle,
    truth_at_start,
    within,
)
from tests.conftest import ACCEPTANCE_SEEDS

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


@pytest.mark.parametrize("seed", ACCEPTANCE_SEEDS)
def test_cryostat_recovers_base_heater_and_time_constants(virtual_station, tmp_path, seed):
    station, lab = virtual_station(seed=seed, cells=16)
    graph = _graph(station, tmp_path, ["cryostat"])
    graph.calibrate_all()
    state = CalibrationState.load(tmp_path / "calibration_state")
    c = lab.truth.cryostat
    run = runs_of(tmp_path, "cryostat")[0]  # the warm-up; the cool-down is a run of its own
    base = truth_at_start(lab, run).mc_base_K  # with the bias lines where they were
    truth = {
        "mc_base_K": base,
        "mc_tau_base_s": c.mc_tau_s(base),
        "heating_K2_per_A2": c.heater_resistance_ohm / c.mc_cooling_W_per_K2,
        "chip_tau_s": c.chip_tau_s,
    }
    for key, value in truth.items():
        entry = state.get(f"cryostat.{key}")
        assert abs(entry.value - value) < 3 * entry.stderr, (key, entry.value, entry.stderr, value)
        assert entry.stderr < 0.05 * value  # and precise enough to be useful
    # the fridge is back near base afterwards (three time constants of cool-down)
    assert lab.cryostat.t_mc == pytest.approx(c.mc_base_K, rel=0.1)


def _expected_fidelity(lab, at, thresholds: np.ndarray, cells: list[int]) -> np.ndarray:
    """Closed form: each cell's fidelity at its calibrated threshold, the levels as they were
    (``at``), both neighbours' leaks with the neighbours in any state (stuck ones in theirs),
    and Gaussian noise of the amplifier's white plus all its 1/f variance (the level wanders)."""
    t, chain = lab.truth, lab.readout
    amp = at.readout_amp_V  # with the gain as it had drifted then
    gain = amp.max() / t.readout_amp_out_V().max()
    flicker = float(np.sum(chain.flicker.variance)) if chain.flicker is not None else 0.0
    sigma = gain * np.sqrt(chain.amplifier.noise_rms_V**2 + flicker)
    c = np.concatenate([[0.0], chain.crosstalk, [0.0]])
    out = []
    for i in cells:
        leaks = []  # (leak of the left neighbour, of the right one), with their possible states
        for j, frac in ((i - 1, c[i]), (i + 1, c[i + 1])):
            if 0 <= j < t.n_cells:
                states = (t.cells.stuck[j],) if t.cells.stuck[j] else (-1, 1)
                leaks.append([frac * amp[j] * s for s in states])
            else:
                leaks.append([0.0])
        delta = thresholds[i] - at.readout_offset_V[i]
        wrong = [
            0.5 * (ndtr(-(amp[i] + a + b - delta) / sigma) + ndtr(-(amp[i] - a - b + delta) / sigma))
            for a in leaks[0] for b in leaks[1]
        ]
        out.append(1.0 - float(np.mean(wrong)))
    return np.array(out)


# two seeds at 16 cells, one at 64: the family module (tests/test_family.py) flags broken
# cells on three more chips, and bench/bench_family.py on twenty
CASES = [(16, s, ["readout", "cryostat", "bias_scurve"]) for s in ACCEPTANCE_SEEDS[:2]]
CASES += [(64, s, ["readout"]) for s in ACCEPTANCE_SEEDS[2:]]


@pytest.mark.parametrize("cells,seed,names", CASES)
def test_readout_levels_and_broken_cells(virtual_station, tmp_path, cells, seed, names):
    station, lab = virtual_station(seed=seed, cells=cells, dead=0.1, stuck=0.1)
    graph = _graph(station, tmp_path, names)
    graph.maintain("readout")
    graph.calibrate_all()
    state = CalibrationState.load(tmp_path / "calibration_state")
    t = lab.truth.cells
    broken = t.dead | (t.stuck != 0)
    healthy = np.flatnonzero(~broken)
    # every broken cell is flagged by both nodes, every healthy one passes readout
    health = np.array([state.value(f"cells.{i}.health") for i in range(cells)])
    notes = {i: state.get(f"cells.{i}.health").note for i in np.flatnonzero(health != "ok")}
    assert set(np.flatnonzero(health != "ok")) == set(np.flatnonzero(broken)), notes
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
    # levels as the chain had them when the readout run took its data (offsets, gain drift)
    at = truth_at_middle(lab, runs_of(tmp_path, "readout")[0], "config")
    amp = [state.get(f"cells.{i}.readout_amp_V") for i in healthy]
    off = [state.get(f"cells.{i}.readout_offset_V") for i in healthy]
    # the fidelity is a calibrated number, not ~1: that of the calibrated threshold, in closed form
    fidelity = [state.get(f"cells.{i}.readout_fidelity") for i in healthy]
    thresholds = np.array([state.value(f"cells.{i}.readout_threshold_V", 0.0) or 0.0 for i in range(cells)])
    expected = _expected_fidelity(lab, at, thresholds, list(healthy))
    # every cell within the family-wise threshold (12 cells: 3.3 sigma; 95 % within 3 sigma
    # would ask all twelve, one in thirty chips failing on noise alone), and >= 95 % of 50
    limit = family_n_sigma(len(healthy))
    for entries, truth in ((amp, at.readout_amp_V[healthy]), (off, at.readout_offset_V[healthy]), (fidelity, expected)):
        assert within([e.value for e in entries], [e.stderr for e in entries], truth, limit) == 1.0
        assert within([e.value for e in entries], [e.stderr for e in entries], truth) >= 0.95 or len(healthy) < 20
    assert min(e.value for e in fidelity) < 0.999  # a realistic readout misreads


# one seed: T_x, the exponent, barriers and attempt rates are judged against the truth on
# the three chips of tests/test_family.py too, and on twenty in bench/bench_family.py
@pytest.mark.parametrize("seed", ACCEPTANCE_SEEDS[2:])
def test_effective_temperature_and_thermalization_on_16_cells(virtual_station, tmp_path, seed):
    station, lab = virtual_station(seed=seed, cells=16, dead=0.1)
    names = ["readout", "cryostat", "bias_scurve", "bias_settling", "crosstalk", "effective_temperature", "thermalization"]
    # the routines' own parameters: a realistic chip's exponent needs every plateau's full
    # S-curves, and its readout's misreadings the rates' full sample count
    graph = _graph(station, tmp_path, names)
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
    exponent = state.get("noise.t_eff_exponent")  # measured, not assumed
    assert abs(exponent.value - t.noise.t_eff_exponent) < 3 * exponent.stderr
    taken = runs_of(tmp_path, "effective_temperature")
    runs = [r for r in taken if not r.attrs.get("part")]  # its S-curves, not the points taken for thermalization
    at = lab.truth_at(0.5 * (float(runs[0].attrs["clock_start"]) + float(runs[-1].attrs["clock_start"])))
    alpha = [state.get(f"cells.{i}.alpha_K_per_V") for i in live]
    assert not (why := honest_coverage([e.value for e in alpha], [e.stderr for e in alpha], at.alpha_K_per_V[live])), why
    barrier = [state.get(f"cells.{i}.barrier_K") for i in live]
    gamma = [state.get(f"cells.{i}.gamma0_Hz") for i in live]
    assert not (why := honest_coverage([e.value for e in barrier], [e.stderr for e in barrier], t.cells.barrier_K[live])), why
    # gamma0 is log-normal: judge ln gamma0 with its relative error
    ln_g = [np.log(e.value) for e in gamma]
    ln_err = [e.stderr / e.value for e in gamma]
    assert not (why := honest_coverage(ln_g, ln_err, np.log(t.cells.gamma0_Hz[live]))), why
    # correlation time at base, zero field: the Kramers value of the truth at its acquisition
    base_run = runs_of(tmp_path, "thermalization")[0]
    t_eff = truth_at_middle(lab, base_run, "bias_point").t_eff_K
    true_tau = correlation_time(np.zeros(len(live)), t_eff, t.cells.gamma0_Hz[live], t.cells.barrier_K[live],
                                bounded=t.dynamics.bounded_kramers)
    # judged in its own standard errors, family-wise over the live cells (a fixed 15 % had
    # been 3 sigma of the ~5 % errors: one cell in fourteen reached it on noise alone)
    tau_c = [state.get(f"cells.{i}.tau_c_s") for i in live]
    tau = np.array([e.value for e in tau_c])
    z = np.log(tau / true_tau) / (np.array([e.stderr for e in tau_c]) / tau)
    assert np.all(np.abs(z) < family_n_sigma(len(live))), z
    assert state.value("thermalization.ess_per_s_min") > 1e4
    # the warm switching points were taken on the effective-temperature node's way down, where
    # the true T_eff is the thermalization node's steps times its base value, and that node
    # used them instead of heating the fridge again
    down = [r for r in taken if r.attrs.get("part")]
    steps = sorted(truth_at_middle(lab, r, "bias_point").t_eff_K / t_eff for r in down)
    assert steps == pytest.approx(list(thermalization.Parameters().t_eff_steps), rel=0.03), steps
    merged = load_run(state.get(f"cells.{live[0]}.barrier_K").run_id, tmp_path).dataset()
    assert merged.attrs["warm_points_from"] == "effective_temperature"
    assert len(runs_of(tmp_path, "thermalization")) == 1  # its base points, at base
    # right after: nothing to recalibrate (the fridge waits take hours of virtual time,
    # so bias_scurve's 4 h timeout may have passed: then only its cheap check runs)
    graph.clear_log()
    status = graph.calibrate_all()
    assert graph.calls("calibrate") == []
    assert set(graph.calls("check_data")) <= {"bias_scurve"}
    assert all(s.value == "fresh" for s in status.values()), status
