"""One cell's S-curve from raw readings (labstack.fit.scurve): values, honest errors, flags.

Readings are drawn from the model the fit assumes: a cell's state with
``P(+1) = logistic((V - V0) / w)``, read out as one of two levels plus Gaussian
amplifier noise. The pull ``(fit - truth) / stderr`` over many seeds must have
std ≈ 1 for the offset; a slow cell, whose successive samples are correlated, must
get larger errors than a fast one (counting every sample would understate them).
"""

from __future__ import annotations

import numpy as np
import pytest

from labstack.fit import fit_scurve, logistic

VOLTS = np.linspace(-0.3, 0.3, 31)
V0, W = 0.043, 0.05
LOW, HIGH = -1e-3, 2e-3


def readings(rng: np.random.Generator, n: int, noise: float = 3e-4, stay: float = 0.0,
             v0: float = V0, w: float = W) -> np.ndarray:
    """(points, samples) readings; ``stay`` is the lag-1 autocorrelation of each point's states."""
    p = logistic(VOLTS, v0, w)
    state = rng.random(VOLTS.size) < p
    states = np.empty((VOLTS.size, n), dtype=bool)
    for j in range(n):  # a two-state Markov chain with stationary P(+1) = p
        up = rng.random(VOLTS.size) < p * (1 - stay)
        down = rng.random(VOLTS.size) < (1 - p) * (1 - stay)
        state = np.where(state, ~down, up)
        states[:, j] = state
    return np.where(states, HIGH, LOW) + rng.normal(0, noise, states.shape)


def pulls(fits, name: str, truth: float) -> np.ndarray:
    return np.array([(f.fit[name] - truth) / f.fit.error(name) for f in fits])


@pytest.fixture(scope="module")
def independent():
    """150 cells, 31 points of 300 independent samples each."""
    return [fit_scurve(VOLTS, readings(np.random.default_rng(seed), 300), cell=seed) for seed in range(150)]


def test_offset_is_unbiased_with_honest_errors(independent):
    assert all(f.ok for f in independent), [f.fit.message for f in independent if not f.ok][:3]
    assert [f.cell for f in independent] == list(range(150))
    z = pulls(independent, "v0_V", V0)
    assert abs(z.mean()) < 0.3 and 0.8 < z.std(ddof=1) < 1.2, (z.mean(), z.std(ddof=1))
    chi2 = np.array([f.fit.chi2_reduced for f in independent])
    assert abs(chi2.mean() - 1) < 0.1


def test_width_within_a_few_percent(independent):
    """The width is weighted by errors estimated from the data (Neyman chi-square), which
    biases it low: by ~3 % (1.6 sigma) at 300 samples a point, ~0.8 % (1 sigma) at the
    node's 61 x 3000. The bounds here hold that bias where it is; the counts likelihood
    of labstack.fit.logistic has none but has no misassignment term."""
    z = pulls(independent, "width_V", W)
    rel = np.mean([f.fit["width_V"] / W - 1 for f in independent])
    assert abs(rel) < 0.05 and abs(z.mean()) < 2.5 and z.std(ddof=1) < 1.5, (rel, z.mean(), z.std(ddof=1))


def test_a_slow_cell_gets_larger_errors():
    """Successive samples with lag-1 correlation 0.8 hold (1 - 0.8) / (1 + 0.8) of the
    information: the effective count widens the errors (ideally 3x; the short series'
    estimate of the correlation gives ~2.5x)."""
    fast = [fit_scurve(VOLTS, readings(np.random.default_rng(s), 300)) for s in range(20)]
    slow = [fit_scurve(VOLTS, readings(np.random.default_rng(s), 300, stay=0.8)) for s in range(20)]
    ratio = np.mean([f.fit.error("v0_V") for f in slow]) / np.mean([f.fit.error("v0_V") for f in fast])
    assert 2.0 < ratio < 3.5, ratio


def test_misassignment_is_folded_in_so_a_noisy_readout_keeps_the_width():
    """Levels 4.5 sigma apart misread ~1 % of samples: without the e-term the fitted
    curve would flatten at both ends and its width would come out wrong."""
    noise = (HIGH - LOW) / 4.5
    fits = [fit_scurve(VOLTS, readings(np.random.default_rng(seed), 2000, noise=noise)) for seed in range(20)]
    assert all(f.ok for f in fits)
    assert np.mean([f.misassignment for f in fits]) == pytest.approx(0.012, rel=0.2)
    assert abs(pulls(fits, "width_V", W).mean()) < 1.0


def test_threshold_and_fit_details_are_reported(independent):
    r = independent[1]
    assert r.threshold_V == pytest.approx(0.5 * (LOW + HIGH), abs=2e-5)
    assert len(r.fit.extra["p"]) == VOLTS.size and r.fit.dof == VOLTS.size - 2
    assert r.fit.extra["readout_levels_V"] == pytest.approx([LOW, HIGH], abs=2e-5)


@pytest.mark.parametrize(("health", "flag"), [("", "no_switching"), ("ok", "no_switching"), ("dead", "dead"), ("stuck_plus", "stuck_plus")])
def test_a_cell_that_never_switches_is_flagged_with_the_readout_verdict(health, flag):
    rng = np.random.default_rng(2)
    silent = rng.normal(LOW, 3e-4, (VOLTS.size, 300))
    r = fit_scurve(VOLTS, silent, cell=7, health=health)
    assert not r.ok and r.flag == flag and r.cell == 7
    assert not r.fit.success and "sigma apart" in r.fit.message


def test_a_falling_curve_lands_outside_the_sweep_and_fails():
    """A rising logistic cannot follow a curve that falls (a cell read with the wrong sign)."""
    rng = np.random.default_rng(0)
    states = rng.random((VOLTS.size, 300)) < (1 - logistic(VOLTS, 0.0, W))[:, None]
    r = fit_scurve(VOLTS, np.where(states, HIGH, LOW) + rng.normal(0, 3e-4, states.shape))
    assert not r.ok and r.flag == "fit_failed"
    assert "outside the swept range" in r.fit.message


def test_readout_leak_of_neighbours_moves_a_fixed_threshold_not_the_shares():
    """Every line sweeps together, so while a cell switches its channel neighbours (which
    switch later) read -1 and pull both of its levels down. Against a threshold set by
    the whole sweep its +1 readings are then misread more often than its -1 ones and the
    centre moves (the wrong model: many sigma off); each point's share of the upper level,
    fitted with the offset the levels sit at in that point, takes the shift out, and so
    does the leak the readout node measured, subtracted first."""
    from labstack.calibrations.cell_states import subtract_leak
    from labstack.fit import fit_scurve

    rng = np.random.default_rng(4)
    volts = np.linspace(-0.3, 0.3, 41)
    centres, width, amp, noise, leak_each = (0.0, -0.1, 0.15), 0.02, 2.0, 1.0, 0.25
    n = 3000
    states = []
    for v0 in centres:  # cell 1 switches first, its neighbours 0 and 2 later
        p = 1 / (1 + np.exp(-(volts - v0) / width))
        states.append(np.where(rng.random((volts.size, n)) < p[:, None], 1.0, -1.0))
    states = np.array(states)
    readings = amp * states + noise * rng.normal(size=states.shape)
    readings[1] += leak_each * (states[0] + states[2])
    readings[0] += leak_each * states[1]
    readings[2] += leak_each * states[1]
    true_v0 = centres[1]
    fixed_v0, fixed_err = _fixed_threshold_fit(volts, readings[1])
    assert abs(fixed_v0 - true_v0) > 5 * fixed_err  # the wrong model: many sigma off
    raw = fit_scurve(volts, readings[1], cell=1).fit
    assert abs(raw["v0_V"] - true_v0) < 3 * raw.error("v0_V")
    leak = np.array([leak_each, 2 * leak_each, leak_each])  # what each cell's neighbours add together
    clean = fit_scurve(volts, subtract_leak(readings, leak)[1], cell=1).fit
    assert abs(clean["v0_V"] - true_v0) < 3 * clean.error("v0_V")
    # unknown leak (NaN) or a cell without two-level neighbours: readings untouched
    np.testing.assert_array_equal(subtract_leak(readings, np.full(3, np.nan)), readings)


def _fixed_threshold_fit(volts: np.ndarray, readings: np.ndarray) -> tuple[float, float]:
    """The model the shares replaced: one threshold for the whole sweep, halfway between the
    levels, and the misassignment ``e`` of Gaussian noise folded in. (V0, its error)."""
    from scipy import optimize, special

    from labstack.fit.two_level import two_level_threshold

    threshold, lo, hi, noise = two_level_threshold(readings.ravel())
    e = float(special.ndtr(-(hi - lo) / noise / 2))
    p = (readings > threshold).mean(axis=1)
    n = readings.shape[1]
    err = np.sqrt((p * n + 0.5) * (n - p * n + 0.5) / (n + 1) ** 3)
    popt, pcov = optimize.curve_fit(lambda v, v0, w: e + (1 - 2 * e) * logistic(v, v0, w), volts, p,
                                    p0=[float(volts[np.argmin(np.abs(p - 0.5))]), 0.02], sigma=err,
                                    absolute_sigma=True)
    return float(popt[0]), float(np.sqrt(pcov[0, 0]))


def test_a_slow_offset_wander_moves_a_fixed_threshold_fit_beyond_its_errors_not_the_shares():
    """The amplifier's offset wanders slowly (1/f, drift): over one short sweep it moves
    neighbouring points together. On a weakly read cell (levels 3 noise sigmas apart) a
    wander of 0.3 sigma moves a fixed threshold's centre by more than its error says;
    the per-point shares stay honest."""
    from labstack.fit import fit_scurve

    rng = np.random.default_rng(11)
    volts = np.linspace(-0.1, 0.1, 31)
    width, amp, noise, n = 0.02, 1.5, 1.0, 1000
    fixed, shares = [], []
    for _ in range(60):
        p = logistic(volts, 0.0, width)
        states = np.where(rng.random((volts.size, n)) < p[:, None], 1.0, -1.0)
        wander = 0.3 * noise * np.cumsum(rng.normal(size=volts.size)) / np.sqrt(volts.size)
        readings = amp * states + wander[:, None] + noise * rng.normal(size=states.shape)
        v0, err = _fixed_threshold_fit(volts, readings)
        fixed.append(v0 / err)
        r = fit_scurve(volts, readings).fit
        shares.append(r["v0_V"] / r.error("v0_V"))
    fixed_rms, shares_rms = np.sqrt(np.mean(np.square(fixed))), np.sqrt(np.mean(np.square(shares)))
    assert fixed_rms > 1.4, fixed_rms  # the wrong model's errors are optimistic
    assert 0.75 < shares_rms < 1.3, shares_rms
