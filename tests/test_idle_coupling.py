"""The offset error an imperfectly known coupler zero adds to a bias S-curve."""

from __future__ import annotations

import math

import numpy as np
import pytest

from labstack.calibrate import CalibrationState, Context, StateChange
from labstack.calibrations.idle_coupling import idle_coupling, offset_errors
from labstack.session import calibrate_station
from labstack.sim.truth import GroundTruth
from labstack.visa import open_station
from tests.conftest import lab_description, lab_of


def test_propagation_follows_the_closed_form():
    coupling = {"pairs": [[0, 1], [1, 2]], "slope_per_V": [1.5, 2.0], "zero_err_V": [0.004, math.nan]}
    v0 = np.array([0.0, 0.3, -0.2])
    w = np.array([0.05, 0.04, 0.06])
    err = offset_errors(coupling, v0, w)
    m01 = math.tanh((0.0 - 0.3) / (2 * 0.04))  # cell 1 seen from cell 0
    m10 = math.tanh((0.3 - 0.0) / (2 * 0.05))
    assert err[0] == pytest.approx(2 * 0.05 * 1.5 * 0.004 * abs(m01))
    assert err[1] == pytest.approx(2 * 0.04 * 1.5 * 0.004 * abs(m10))  # coupler 1-2: zero unknown
    assert err[2] == 0.0
    # a neighbour sitting at its own centre has no mean spin: it shifts nothing
    assert offset_errors(coupling, np.array([0.0, 0.0, 0.5]), w)[0] == pytest.approx(0.0)


def test_nothing_known_before_the_coupler_node(tmp_path):
    state = CalibrationState.load(tmp_path / "s")
    c = idle_coupling(state, [(0, 1)])
    assert all(math.isnan(x) for x in c["slope_per_V"] + c["zero_err_V"])
    assert offset_errors(c, np.zeros(2), np.full(2, 0.05)).tolist() == [0.0, 0.0]


def _offsets(tmp_path, name, truth, zero_shift_V):
    """S-curve offsets of an ideal chip with its couplers idling ``zero_shift_V`` off their zeros."""
    path = truth.save(tmp_path / f"{name}.json")
    description = lab_description(truth=path, seed=3)
    station = open_station("virtual", lab=description)
    try:
        data_dir = tmp_path / name
        ctx = Context.create(data_dir, station)
        known = StateChange()
        for k, vc0 in enumerate(truth.couplers.vc0_V):
            known.set(f"couplers.{k}.zero_coupling_V", float(vc0 + zero_shift_V), 0.0, "V")
        ctx.state.apply(known, clock=ctx.clock, node="coupler_zero", run_id="truth")
        calibrate_station(station, data_dir=data_dir, progress=False, names=["bias_scurve"],
                          params={"bias_scurve": {"n_samples": 4000}})
        state = CalibrationState.load(data_dir / "calibration_state")
        entries = [state.get(f"cells.{i}.bias_offset_V") for i in range(truth.n_cells)]
        widths = np.array([state.value(f"cells.{i}.scurve_width_V") for i in range(truth.n_cells)])
        return np.array([e.value for e in entries]), np.array([e.stderr for e in entries]), widths, lab_of(description)
    finally:
        station.close()


def test_a_wrong_zero_shifts_offsets_as_the_propagation_says(tmp_path):
    """Validated against the simulator: couplers idling 30 mV off their zeros shift each
    offset by sum_j 2 w_i (kappa/T_eff) dVc m_j, the term the propagation turns into an error."""
    truth = GroundTruth.from_seed(3, 6, "chain", realism="ideal")
    truth.cells.v0_V[:] = [-0.3, 0.2, -0.25, 0.3, -0.2, 0.25]  # neighbours saturated at +-1
    v_true, e_true, w, lab = _offsets(tmp_path, "at_zero", truth, 0.0)
    v_off, e_off, _, _ = _offsets(tmp_path, "off_zero", truth, 0.03)
    t_eff = lab.truth.noise.t_eff(lab.truth_at().t_chip_K)
    slope = np.abs(truth.couplers.kappa_K_per_V) / t_eff
    predicted = np.zeros(6)
    for k, (a, b) in enumerate(truth.couplers.pairs):
        for i, j in ((a, b), (b, a)):
            m = math.tanh((v_true[i] - v_true[j]) / (2 * w[j]))
            # J = kappa (Vc - Vc0) = kappa * 0.03 > 0 favours alignment: the centre moves toward
            # the neighbour's side, against its spin: dV0 = -J m / alpha = -2 w (kappa/T) dVc m
            predicted[i] -= 2 * w[i] * slope[k] * 0.03 * m
    shift = v_off - v_true
    z = (shift - predicted) / np.hypot(e_true, e_off)
    assert np.all(np.abs(z) < 3.5), (shift, predicted, z)
    # and the shift is real: ignoring it (the uncorrected model) is many sigma off
    assert np.max(np.abs(shift / np.hypot(e_true, e_off))) > 5
