"""Sampling at an interval set by measured correlation times (calibrations/sampling.py).

The interval follows the measured tau_c (slower cells: longer interval), tau_c is read
right at any field (the cosh correction), errors of fast, correlated samples come from
the effective count (pulls near 1), and lines far apart move in parallel within
their safety ramps.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from labstack.calibrate import Context
from labstack.calibrations import sampling
from labstack.calibrations._common import approach
from labstack.fit import fit_scurve
from labstack.sim.dynamics import CellEnsemble

T_EFF = 0.03


def telegraph(tau0: float, g: float, period: float, n: int, rng: np.random.Generator) -> np.ndarray:
    """0/1 states of a two-state cell at reduced field ``g``, zero-field tau ``tau0``, exact."""
    p_up = 1.0 / (1.0 + math.exp(-2 * g))
    stay = math.exp(-period * math.cosh(g) / tau0)  # tau(g) = tau0 / cosh g
    out = np.empty(n)
    s = float(rng.random() < p_up)
    for k in range(n):
        if rng.random() > stay:  # the chain forgets: a fresh equilibrium draw
            s = float(rng.random() < p_up)
        out[k] = s
    return out


def readings(states: np.ndarray, rng: np.random.Generator, noise: float = 0.1) -> np.ndarray:
    """Two readout levels 1 V apart plus Gaussian noise (misassignment ~1e-6)."""
    return states + noise * rng.standard_normal(states.shape)


@pytest.mark.parametrize("g", [0.0, 0.8, -1.2])
def test_correlation_time_is_read_at_zero_field_from_any_switching_point(g):
    rng = np.random.default_rng(11)
    tau0, period = 20e-6, 1e-6
    states = telegraph(tau0, g, period, 40000, rng)
    tau = sampling.correlation_times(states[None, :], period)[0]
    assert tau == pytest.approx(tau0, rel=0.12)


def test_correlation_time_is_not_shortened_by_readout_misassignment():
    """3 % of the samples misread at random (a weakly coupled readout) add transitions
    that would halve tau_c read from transition counts; the lag-2/lag-1 ratio ignores them."""
    rng = np.random.default_rng(12)
    tau0, period = 10e-6, 1e-6
    states = telegraph(tau0, 0.0, period, 40000, rng)
    noisy = np.where(rng.random(states.size) < 0.03, 1 - states, states)
    tau = sampling.correlation_times(noisy[None, :], period)[0]
    assert tau == pytest.approx(tau0, rel=0.12)
    volts = readings(states[None, None, :], rng, noise=0.27)  # levels 3.7 sigma apart: e ~ 3 %
    assert sampling.burst_correlation_times(volts, period)[0] == pytest.approx(tau0, rel=0.15)


def test_too_few_transitions_give_no_correlation_time():
    states = np.zeros((1, 1000))
    states[0, 500:503] = 1
    assert np.isnan(sampling.correlation_times(states, 1e-6)[0])


def test_slower_cells_get_a_longer_interval():
    """A burst of a chip's cells, simulated; a chip whose barriers are higher (slower cells)
    gets a longer sample interval, about in proportion to its slowest tau_c."""
    n = 16
    gamma0 = np.full(n, 2e8)
    periods, slowest = [], []
    for barrier in (0.12, 0.15):
        rng = np.random.default_rng(5)
        cells = CellEnsemble(gamma0, np.full(n, barrier) + np.linspace(0, 0.01, n), np.zeros(n, np.int8), rng)
        h = np.zeros(n)
        period = 0.2 / float(cells.attempt_rates(T_EFF).max())
        burst = cells.sample(20000, period, h, T_EFF).T > 0  # (cell, sample)
        volts = readings(burst.astype(float), rng)[:, None, :]
        tau = sampling.burst_correlation_times(volts, period)
        true_slowest = 1.0 / (2 * float(cells.attempt_rates(T_EFF).min()))
        assert sampling.slowest(tau) == pytest.approx(true_slowest, rel=0.15)
        slowest.append(sampling.slowest(tau))
        periods.append(sampling.choose_period(sampling.slowest(tau), 3.0, lowpass_tau_s=1e-7))
    assert periods[1] > 2 * periods[0]
    assert periods[1] / periods[0] == pytest.approx(slowest[1] / slowest[0], rel=0.01)


def test_interval_never_below_the_amplifier_lowpass_nor_outside_the_sampler():
    assert sampling.choose_period(1e-9, 3.0, lowpass_tau_s=1e-6) == pytest.approx(5e-6)
    assert sampling.choose_period(1e-12, 3.0) == pytest.approx(1 / sampling.MAX_RATE_HZ)
    assert sampling.choose_period(10.0, 3.0) == pytest.approx(1 / sampling.MIN_RATE_HZ)
    with pytest.raises(ValueError, match="measured correlation time"):
        sampling.choose_period(math.nan, 3.0)


def test_samples_for_hold_the_effective_count():
    assert sampling.samples_for(1000, 3e-6, 1e-6) == math.ceil(1000 * (1 + math.exp(-3)) / (1 - math.exp(-3)))
    assert sampling.samples_for_stderr(0.01, 0.5) == 2500


def test_scurve_errors_at_fast_correlated_sampling_have_pulls_near_one():
    """Samples a third of tau_c apart (rho ~ 0.7 at the centre): the fit's V0 error comes from
    the effective count, so its pulls over many repeats have rms ~1, not sqrt(5)."""
    rng = np.random.default_rng(3)
    v0, width, tau0 = 0.05, 0.02, 30e-6
    period = tau0 / 3
    volts = np.linspace(v0 - 5 * width, v0 + 5 * width, 15)
    pulls = []
    for _ in range(30):
        states = np.array([telegraph(tau0, (v - v0) / (2 * width), period, 1500, rng) for v in volts])
        r = fit_scurve(volts, readings(states, rng))
        assert r.ok, r.fit.message
        pulls.append((r.fit["v0_V"] - v0) / r.fit.error("v0_V"))
    rms = float(np.sqrt(np.mean(np.square(pulls))))
    assert 0.7 < rms < 1.35, pulls


def test_lines_far_apart_move_in_parallel_within_their_ramps(virtual_station, tmp_path):
    station, lab = virtual_station(seed=4, cells=16)
    ctx = Context.create(tmp_path, station)
    names = list(station.layout.bias)
    approach(ctx, dict.fromkeys(names, -1.0))
    t0 = station.clock.now()
    approach(ctx, dict.fromkeys(names, 1.0))
    took = station.clock.now() - t0
    channel = station.safety.channels[names[0]]
    ramp = channel.ramp
    # one ramp's time (2 V at the ramp's rate), not sixteen of them end to end
    assert took == pytest.approx(2.0 / ramp.rate, rel=0.1)
    assert all(float(station.parameter(n).get()) == pytest.approx(1.0) for n in names)
    for n in names:
        values = [v for _, v in station.safety.channels[n].history]
        times = [t for t, _ in station.safety.channels[n].history]
        steps = np.abs(np.diff(values))
        assert steps.max() <= ramp.max_step + 1e-12
        gaps = np.diff(times)
        assert np.all(gaps + 1e-9 >= steps[: gaps.size] / ramp.rate)
