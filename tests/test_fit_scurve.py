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
