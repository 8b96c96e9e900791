"""The pieces of the crosstalk, coupler and validation routines, without an instrument.

Fast checks of the algebra each node relies on, against the simulator's own
physics (``VirtualLab.fields``, :mod:`labstack.fit.ising`), not against themselves.
"""

from __future__ import annotations

import numpy as np
import pytest

from labstack.calibrate import CalibrationState, StateChange
from labstack.calibrations import couplers, crosstalk, validation
from labstack.calibrations.virtual_bias import BiasModel
from labstack.clock import VirtualClock
from labstack.fit import ising
from labstack.sim.lab import VirtualLab
from labstack.sim.truth import GroundTruth

T_CHIP = 0.010


def _lab(n=12, crosstalk_level=0.05, seed=5) -> VirtualLab:
    return VirtualLab(GroundTruth.from_seed(seed, n, crosstalk=crosstalk_level))


def _scurve_state(tmp_path, lab: VirtualLab, with_crosstalk: bool, dead=()) -> CalibrationState:
    """A state holding what a perfect S-curve (all lines swept together) and crosstalk node give."""
    t, c = lab.truth, lab.truth.cells
    t_eff = t.noise.t_eff(T_CHIP)
    x = t.crosstalk_K_per_V.sum(axis=1)
    change = StateChange()
    for i in range(t.n_cells):
        if i in dead:
            change.flag(f"cells.{i}.bias_offset_V", "no_switching", "V")
            change.flag(f"cells.{i}.scurve_width_V", "no_switching", "V")
            continue
        change.set(f"cells.{i}.bias_offset_V", c.alpha_K_per_V[i] * c.v0_V[i] / (c.alpha_K_per_V[i] + x[i]), 1e-4)
        change.set(f"cells.{i}.scurve_width_V", t_eff / (2 * (c.alpha_K_per_V[i] + x[i])), 1e-4)
        if with_crosstalk:
            row = t.crosstalk_K_per_V[i] / c.alpha_K_per_V[i]
            change.set(f"cells.{i}.crosstalk_row_V_per_V", row, np.full(t.n_cells, 1e-3))
    if with_crosstalk:
        matrix = t.crosstalk_K_per_V / c.alpha_K_per_V[:, None]
        change.set("crosstalk.matrix_V_per_V", matrix, np.full(matrix.shape, 1e-3))
    state = CalibrationState.load(tmp_path / "state")
    state.apply(change, clock=VirtualClock(), node="test")
    return state


def test_virtual_biases_program_the_simulators_fields(tmp_path):
    lab = _lab()
    lab.cryostat.t_chip = T_CHIP
    dead = (3,)
    model = BiasModel.from_state(_scurve_state(tmp_path, lab, True, dead), lab.truth.n_cells)
    np.testing.assert_allclose(model.offset_V[model.valid], lab.truth.cells.v0_V[model.valid], atol=1e-12)
    theta = np.random.default_rng(1).uniform(-1, 1, lab.truth.n_cells)
    lab.bias_V[:] = model.voltages_for_theta(theta, fixed_V=0.3)
    assert lab.bias_V[3] == pytest.approx(0.3)  # the dead cell's line stays where it was put
    got = lab.fields() / lab.truth.noise.t_eff(T_CHIP)
    np.testing.assert_allclose(got[model.valid], theta[model.valid], atol=1e-9)


def test_without_crosstalk_compensation_fields_are_off(tmp_path):
    """The check above is not vacuous: ignoring crosstalk misses the target by ~0.3 T_eff."""
    lab = _lab()
    model = BiasModel.from_state(_scurve_state(tmp_path, lab, False), lab.truth.n_cells)
    theta = np.random.default_rng(1).uniform(-1, 1, lab.truth.n_cells)
    lab.bias_V[:] = model.voltages_for_theta(theta)
    got = lab.fields() / lab.truth.noise.t_eff(T_CHIP)
    assert np.max(np.abs(got - theta)) > 0.1


def test_crosstalk_patterns_are_balanced_and_orthogonal():
    for n in (1, 5, 6, 7, 10, 18, 21, 22, 40):
        for compact in (False, True):
            p = crosstalk.patterns(n, compact)
            assert p.shape[1] == n and p.shape[0] >= n + 1
            np.testing.assert_array_equal(p.sum(axis=0), 0)
            np.testing.assert_array_equal(p.T @ p, p.shape[0] * np.eye(n))
    # a check's compact patterns: the Paley orders between the powers of two
    assert [crosstalk.patterns(n, compact=True).shape[0] for n in (10, 18, 21, 22, 40)] == [12, 20, 24, 24, 44]
    assert [crosstalk.patterns(n).shape[0] for n in (10, 18, 21, 22, 40)] == [16, 32, 32, 32, 64]
    params = crosstalk.Parameters()
    offsets, group_of = crosstalk.design(16, params)
    for j in range(16):
        pushed = offsets[:, j] != 0
        assert set(group_of[pushed]) == {j % params.groups}
        assert offsets[pushed, j].min() == pytest.approx(params.push_V - params.step_V)


def test_crosstalk_pushes_a_line_near_the_top_of_its_range_down_and_stays_in_range():
    """A chip with twice the default spreads has offsets up to 0.75 V: pushing those lines
    0.55 + 0.25 V up would ask the DAC for 1.55 V, which the guard refuses (seen on a
    fresh family chip); they are pushed as far down instead, everything else as before."""
    params = crosstalk.Parameters()
    centres = np.array([-0.75, -0.2, 0.0, 0.69, 0.71, 0.75])
    directions = crosstalk.push_directions(centres, params)
    np.testing.assert_array_equal(directions, [1, 1, 1, 1, -1, -1])
    offsets, _ = crosstalk.design(centres.size, params)
    volts = centres[None, :] + offsets * directions[None, :]
    assert volts.min() >= params.limits_V[0] and volts.max() <= params.limits_V[1]
    pushed = offsets != 0
    # a pushed line keeps its cell saturated: at least push - step from its centre, either way
    assert np.all(np.abs(volts - centres)[pushed] >= params.push_V - params.step_V - 1e-12)


def test_routines_keep_within_the_station_limits_not_only_their_own(virtual_station, tmp_path):
    """A lab whose guard allows +-1.2 V on the bias lines, narrower than the routines'
    default 1.5 V: the limits they work to are the guard's, so crosstalk pushes a line at
    0.5 V down (0.5 + 0.8 V would be refused) where a 1.5 V lab would push it up."""
    from safety_helpers import write_station

    from labstack.calibrate import Context
    from labstack.calibrations._common import line_limits

    station, _ = virtual_station(str(write_station(tmp_path)), seed=7, cells=4)
    ctx = Context.create(tmp_path, station)
    low, high = line_limits(ctx, station.layout.bias, (-1.5, 1.5))
    np.testing.assert_array_equal(low, -1.2)
    np.testing.assert_array_equal(high, 1.2)
    assert station.line_limits("nowhere.ch01") == (-np.inf, np.inf)  # not guarded: no bound
    params = crosstalk.Parameters()
    centres = np.array([0.0, 0.5, 0.5, -0.5])
    np.testing.assert_array_equal(crosstalk.push_directions(centres, params, high), [1, -1, -1, 1])
    np.testing.assert_array_equal(crosstalk.push_directions(centres, params), [1, 1, 1, 1])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_log_odds_coupling_recovers_beta_through_misassignment_and_fields(seed):
    rng = np.random.default_rng(seed)
    theta, beta = rng.uniform(-0.8, 0.8, 2), float(rng.uniform(-0.8, 0.8))
    p = ising.boltzmann(theta, np.array([[0, 1]]), np.array([beta]), 1.0)
    states = ising.all_states(2)[rng.choice(4, size=20000, p=p)] > 0
    e_a, e_b = 0.03, 0.01
    s_a = states[:, 0] ^ (rng.random(20000) < e_a)
    s_b = states[:, 1] ^ (rng.random(20000) < e_b)
    est, err = couplers.log_odds_coupling(s_a.astype(float), s_b.astype(float), e_a, e_b)
    assert abs(est - beta) < 3.5 * err
    assert err < 0.03


def _glauber_pair(rng: np.random.Generator, n: int, beta: float, stay: float) -> tuple[np.ndarray, np.ndarray]:
    """Two coupled cells sampled every step: each keeps its state with probability ``stay``,
    else redraws it from its conditional given the other (a correlated series, as a chip gives)."""
    a, b = np.empty(n, dtype=bool), np.empty(n, dtype=bool)
    a[0] = b[0] = True
    keep, u = rng.random((n, 2)) < stay, rng.random((n, 2))
    for t in range(1, n):
        sb = 1.0 if b[t - 1] else -1.0
        a[t] = a[t - 1] if keep[t, 0] else u[t, 0] < 1.0 / (1.0 + np.exp(-2 * beta * sb))
        sa = 1.0 if a[t] else -1.0
        b[t] = b[t - 1] if keep[t, 1] else u[t, 1] < 1.0 / (1.0 + np.exp(-2 * beta * sa))
    return a, b


@pytest.mark.parametrize("beta", [0.0, 0.6])
def test_log_odds_coupling_error_is_honest_on_correlated_samples(beta):
    """Samples correlated in time (cells slower than the sample rate): the stated error
    matches the scatter of the estimate over repeats, neither padded nor optimistic."""
    rng = np.random.default_rng(7)
    e = 0.01
    pulls = []
    for _ in range(80):
        a, b = _glauber_pair(rng, 4000, beta, 0.8)
        a ^= rng.random(a.size) < e
        b ^= rng.random(b.size) < e
        est, err = couplers.log_odds_coupling(a.astype(float), b.astype(float), e, e)
        pulls.append((est - beta) / err)
    rms = float(np.sqrt(np.mean(np.square(pulls))))
    assert 0.8 <= rms <= 1.25, rms


def test_coupler_matchings_never_share_a_cell():
    grid = [(r * 4 + c, r * 4 + c + 1) for r in range(4) for c in range(3)]
    grid += [(r * 4 + c, (r + 1) * 4 + c) for r in range(3) for c in range(4)]
    groups = couplers.matchings(grid)
    assert sorted(k for g in groups for k in g) == list(range(len(grid)))
    for g in groups:
        cells = [c for k in g for c in grid[k]]
        assert len(cells) == len(set(cells))
    assert len(couplers.matchings([(i, i + 1) for i in range(9)])) == 2


def test_readout_unmixing_inverts_per_cell_misassignment():
    rng = np.random.default_rng(3)
    n = 4
    exact = ising.boltzmann(rng.normal(0, 0.5, n), np.array([[0, 1], [1, 2], [2, 3]]), rng.normal(0, 0.5, 3), 1.0)
    errors = [0.01, 0.05, 0.0, 0.02]
    states = ising.all_states(n) > 0
    mixed = np.zeros_like(exact)
    for k, s in enumerate(states):  # forward model: every bit flips independently
        for m, t in enumerate(states):
            flips = s != t
            mixed[m] += exact[k] * np.prod([e if f else 1 - e for e, f in zip(errors, flips, strict=True)])
    np.testing.assert_allclose(validation.unmix(mixed, errors), exact, atol=1e-12)
    assert validation.kl(mixed, exact) > 1e-3


def test_family_threshold_keeps_false_alarms_rare():
    from labstack.calibrate import family_n_sigma

    z = np.random.default_rng(4).normal(size=(4000, 240))
    alarms = np.mean(np.any(np.abs(z) > family_n_sigma(240), axis=1))
    assert alarms < 0.02
    assert np.mean(np.any(np.abs(z) > 3.0, axis=1)) > 0.4  # what a plain 3 sigma would do


def test_effective_temperature_check_passes_noise_and_catches_a_warmer_chip(tmp_path):
    """The cheap check: widths drawn around the state's prediction (with the state's
    own uncertainty) pass 99 % of the time; a chip 15 % warmer fails."""
    from labstack.calibrate import Spec
    from labstack.calibrations import effective_temperature as et
    from labstack.fit import FitResult

    n, t_chip, t_x = 14, 0.010, 0.030
    rng = np.random.default_rng(9)
    alpha = rng.uniform(0.25, 0.35, n)
    alpha_err = 0.02 * alpha  # the state's alphas are known to 2 %
    change = StateChange()
    change.set("noise.t_excess_K", t_x, 0.0005, "K")
    change.set("noise.t_eff_exponent", 2.0, 0.0, "")
    for i in range(n):
        change.set(f"cells.{i}.alpha_K_per_V", alpha[i], alpha_err[i], "K/V")
    state = CalibrationState.load(tmp_path / "state")
    state.apply(change, clock=VirtualClock(), node="test")
    t_eff = float(np.hypot(t_chip, t_x))

    def verdict(t_true: float, trial: int) -> Spec:
        r = np.random.default_rng(trial)
        true_alpha = alpha * (1 + 0.02 * r.normal(size=n))  # truth within the state's errors
        err = 0.04 * t_true / (2 * true_alpha)  # a 200-sample check: 4 % per width
        widths = t_true / (2 * true_alpha) + err * r.normal(size=n)
        result = et.Result(widths[None], err[None], np.array([t_chip]), FitResult.failed("t_eff", "check"))
        return et.check(result, et.Parameters(), state).spec

    alarms = np.mean([verdict(t_eff, k) is not Spec.IN_SPEC for k in range(300)])
    assert alarms < 0.03, alarms
    warm = [verdict(1.15 * t_eff, k) for k in range(20)]
    assert sum(v is Spec.OUT_OF_SPEC for v in warm) >= 19, [v.value for v in warm]


def _merged_teff(crosstalk, crosstalk_err=None, n_t=3, n_points=9):
    """A merged effective-temperature dataset's bias part: four cells in two colour classes,
    each class swept on grids 2 mV (even) and 3 mV (odd) wide per step."""
    import xarray as xr

    colour = np.array([0, 1, 0, 1])
    k = np.linspace(-3.5, 3.5, n_points)
    span = np.array([2e-3, 3e-3, 2e-3, 3e-3])
    bias = np.broadcast_to(0.1 * np.arange(4)[None, :, None] + span[None, :, None] * k, (n_t, 4, n_points)).copy()
    data = {
        "bias": (("temperature", "cell", "point"), bias),
        "colour": (("cell",), colour),
        "measured": (("cell",), np.ones(4, bool)),
        "crosstalk": (("cell", "line"), np.asarray(crosstalk, float)),
    }
    if crosstalk_err is not None:
        data["crosstalk_err"] = (("cell", "line"), np.asarray(crosstalk_err, float))
    return xr.Dataset(data)


def test_effective_temperature_applies_significant_crosstalk_only_and_states_its_error():
    """An entry many sigma from zero moves the bias a cell's field sees, and its error goes
    into the gain's; an entry consistent with zero is taken as zero (applying it only adds
    its noise to the step: shown below to bias the gains by more than their errors said)."""
    from labstack.calibrations import effective_temperature as et

    c = np.zeros((4, 4))
    c[0, 2], c[2, 0] = 0.05, 0.006  # a real neighbour and a noisy zero, both co-moving
    c[1, 0] = 0.2  # a line of the other class: parked, never applied
    err = np.full((4, 4), 0.004)
    ds = _merged_teff(c, err)
    bias = ds["bias"].values
    eff = et.effective_bias(ds)
    np.testing.assert_allclose(eff[:, 0], bias[:, 0] + 0.05 * bias[:, 2])
    np.testing.assert_array_equal(eff[:, 2], bias[:, 2])  # 1.5 sigma: not applied
    np.testing.assert_array_equal(eff[:, 1], bias[:, 1])
    # line 2's grid step equals line 0's: the gain's relative error is the entry's sigma
    rel = et.crosstalk_rel_errors(ds)
    assert rel[0] == pytest.approx(0.004)
    assert rel[2] == 0.0 and rel[1] == 0.0
    # a dataset without errors (older runs) applies every entry, as before
    np.testing.assert_allclose(et.effective_bias(_merged_teff(c))[:, 2], bias[:, 2] + 0.006 * bias[:, 0])

    # the wrong model: eight co-moving entries, each truly zero and measured with 0.004 V/V
    # of noise, all applied, scale a cell's step (and its gain) by 1 + their sum: about 1.1 %
    # rms, unstated. The gate leaves almost every such step alone.
    rng = np.random.default_rng(3)
    noise = 0.004 * rng.normal(size=(2000, 8))
    applied_all = np.sqrt(np.mean(noise.sum(axis=1) ** 2))
    gated = np.where(np.abs(noise) > et.SIGNIFICANT_CROSSTALK * 0.004, noise, 0.0)
    applied_gated = np.sqrt(np.mean(gated.sum(axis=1) ** 2))
    assert 0.009 < applied_all < 0.0135
    assert applied_gated < 0.15 * applied_all


def test_the_re_zero_recovers_the_field_at_programmed_zero_with_honest_errors():
    """Shots of a cell whose programmed zero is off by ``theta_true``: the re-zero's
    ``artanh`` of the mean spin, with the readout's misassignment undone, lands within its
    error (pull rms near 1 over seeds); the same shots taken at face value (misassignment
    ignored) are biased by many sigma."""
    theta_true = 0.42
    p_up = 0.5 * (1 + np.tanh(theta_true))
    pulls, naive = [], []
    for seed in range(30):
        rng = np.random.default_rng(seed)
        up = rng.random(40_000) < p_up
        readings = np.where(up, 1.0, -1.0) + rng.normal(0.0, 0.53, up.size)  # ~3 % misassigned
        theta, err = validation.zero_field_theta(readings)
        pulls.append((theta - theta_true) / err)
        naive.append((np.arctanh(np.mean(np.sign(readings))) - theta_true) / err)
    pulls = np.asarray(pulls)
    assert np.all(np.abs(pulls) < 4) and 0.7 < np.sqrt(np.mean(pulls**2)) < 1.3, np.round(pulls, 2)
    assert np.mean(naive) < -3  # misassignment pulls the mean spin toward zero by ~4.6 sigma


def test_two_temperatures_give_an_arrhenius_line_with_propagated_errors():
    """A cell measurable at only two temperatures gets the line through them (a barrier and
    a rate, untested): its errors are those the two points carry, as a Monte Carlo of the
    points says; one temperature alone gives none."""
    from calibrations.thermalization import _arrhenius

    x, err = np.array([30.0, 40.0]), np.array([0.2, 0.3])
    barrier, ln_g0 = 0.25, 20.0
    y = ln_g0 - barrier * x
    f = _arrhenius(x, y, err)
    assert f.success and f.dof == 0
    assert f["barrier_K"] == pytest.approx(barrier) and f["ln_gamma0"] == pytest.approx(ln_g0)
    rng = np.random.default_rng(1)
    draws = [_arrhenius(x, y + err * rng.normal(size=2), err) for _ in range(4000)]
    assert np.std([d["barrier_K"] for d in draws]) == pytest.approx(f.error("barrier_K"), rel=0.05)
    assert np.std([d["ln_gamma0"] for d in draws]) == pytest.approx(f.error("ln_gamma0"), rel=0.05)
    assert not _arrhenius(np.array([30.0, 30.0]), y, err).success


def test_a_check_samples_as_fast_as_the_measured_correlation_times_allow(tmp_path):
    """Five of the slowest measured cell's correlation times apart, between the check's
    slowest and fastest rates; the slowest rate while no measured cell has a time stored."""
    from types import SimpleNamespace

    from labstack.calibrations._common import decorrelated_rate

    state = CalibrationState.load(tmp_path / "state")
    n = 4
    ctx = SimpleNamespace(station=SimpleNamespace(layout=SimpleNamespace(n_cells=n)), state=state)
    change = StateChange()
    for i in range(n):
        change.set(f"cells.{i}.bias_offset_V", 0.1 * i, 1e-3, "V")
    change.flag("cells.3.bias_offset_V", "no_switching", "V")  # not measured by a check
    for i, tau in enumerate((2e-6, 40e-6, 5e-6)):
        change.set(f"cells.{i}.tau_c_s", tau, tau * 0.1, "s")
    state.apply(change, clock=VirtualClock(), node="test")
    assert decorrelated_rate(ctx, 1e3, 1e4) == pytest.approx(1 / (5 * 40e-6))  # 5 kHz
    assert decorrelated_rate(ctx, 1e3, 2e3) == 2e3  # capped
    slow = StateChange()
    slow.set("cells.1.tau_c_s", 2e-3, 2e-4, "s")
    state.apply(slow, clock=VirtualClock(), node="test")
    assert decorrelated_rate(ctx, 1e3, 1e4) == 1e3  # a millisecond cell: never slower than the floor
    missing = StateChange()
    missing.flag("cells.2.tau_c_s", "fit_failed", "s")
    missing.set("cells.1.tau_c_s", 20e-6, 2e-6, "s")
    state.apply(missing, clock=VirtualClock(), node="test")
    assert decorrelated_rate(ctx, 1e3, 1e4) == pytest.approx(1e4)  # a cell without a time does not hold the others back
    none = StateChange()
    for i in range(3):
        none.flag(f"cells.{i}.tau_c_s", "fit_failed", "s")
    state.apply(none, clock=VirtualClock(), node="test")
    assert decorrelated_rate(ctx, 1e3, 1e4) == 1e3  # no time measured at all: the floor


def test_a_check_waits_the_lines_measured_settle_time_never_longer_than_before(tmp_path):
    """``stored_settle``: the measured ``dac.settle_s`` once bias settling has run, at most
    the routine's own wait; the routine's wait until then, and when the entry is flagged."""
    from types import SimpleNamespace

    from labstack.calibrations._common import stored_settle

    state = CalibrationState.load(tmp_path / "state")
    ctx = SimpleNamespace(state=state)
    assert stored_settle(ctx, 0.5) == 0.5
    change = StateChange()
    change.set("dac.settle_s", 0.14, None, "s")
    state.apply(change, clock=VirtualClock(), node="test")
    assert stored_settle(ctx, 0.5) == pytest.approx(0.14)
    assert stored_settle(ctx, 0.1) == pytest.approx(0.1)  # a slow line never lengthens a wait
    flagged = StateChange()
    flagged.flag("dac.settle_s", "fit_failed", "s")
    state.apply(flagged, clock=VirtualClock(), node="test")
    assert stored_settle(ctx, 0.5) == 0.5
