"""Two-level readings (labstack.fit.two_level): the split between the readout levels,
and the number of independent samples in a correlated series of states."""

from __future__ import annotations

import numpy as np
import pytest

from labstack.fit import effective_count, two_level_threshold


def telegraph(rng: np.random.Generator, shape: tuple[int, ...], flip: float) -> np.ndarray:
    """Symmetric two-state Markov chains (0/1, samples last) started in equilibrium:
    lag-1 autocorrelation ``1 - 2 flip``."""
    start = rng.random(shape[:-1] + (1,)) < 0.5
    flips = np.cumsum(rng.random(shape) < flip, axis=-1)
    flips[..., 0] = 0
    return ((start + flips) % 2).astype(np.float64)


@pytest.mark.parametrize("fraction_high", [0.3, 0.5, 0.9])
def test_threshold_finds_both_levels_and_the_noise(fraction_high):
    rng = np.random.default_rng(3)
    low, high, noise = -1e-3, 2e-3, 2e-4
    state = rng.random(50_000) < fraction_high
    readings = np.where(state, high, low) + rng.normal(0, noise, state.size)
    threshold, lo, hi, rms = two_level_threshold(readings)
    assert lo == pytest.approx(low, abs=5e-6) and hi == pytest.approx(high, abs=5e-6)
    assert threshold == pytest.approx(0.5 * (lo + hi))
    assert rms == pytest.approx(noise, rel=0.02)
    # with levels 15 sigma apart, thresholding recovers every state
    assert np.array_equal(readings > threshold, state)


def test_one_level_gives_a_small_separation():
    """No switching: the split still returns, but the levels are not ``MIN_SEPARATION`` apart."""
    readings = np.random.default_rng(4).normal(0.0, 1e-3, 20_000)
    threshold, lo, hi, rms = two_level_threshold(readings)
    assert lo < threshold < hi
    assert (hi - lo) / rms < 4


def test_independent_samples_count_in_full():
    states = (np.random.default_rng(5).random((20, 4000)) < 0.3).astype(np.float64)
    n_eff = effective_count(states)
    assert n_eff.shape == (20,)
    assert np.all(n_eff <= 4000) and np.all(n_eff > 0.9 * 4000)


@pytest.mark.parametrize("flip", [0.02, 0.1, 0.3])
def test_correlated_samples_count_as_the_variance_of_their_mean_says(flip):
    """Honest errors: p(1-p)/n_eff is the variance of a chain's mean over many chains."""
    rng = np.random.default_rng(6)
    states = telegraph(rng, (2000, 2000), flip)
    n_eff = effective_count(states)
    rho = 1 - 2 * flip
    assert np.median(n_eff) == pytest.approx(2000 * (1 - rho) / (1 + rho), rel=0.05)
    observed = states.mean(axis=1).var(ddof=1)
    assert 0.25 / np.median(n_eff) == pytest.approx(observed, rel=0.12)


def test_frozen_and_anticorrelated_rows():
    n = 1000
    frozen = np.ones(n)
    alternating = np.arange(n) % 2.0
    nearly_frozen = np.r_[np.zeros(n // 2), np.ones(n - n // 2)]  # one switch
    n_eff = effective_count(np.stack([frozen, alternating, nearly_frozen]))
    assert n_eff[0] == n  # no variance: nothing to correlate
    assert n_eff[1] == n  # anticorrelation never counts as more than n
    assert n_eff[2] == pytest.approx(n * 0.01 / 1.99)  # rho capped at 0.99


@pytest.mark.parametrize("share", [0.03, 0.5, 0.9])
def test_point_shares_are_unbiased_under_an_offset_and_vary_as_their_factor_says(share):
    """Rows of readings 3 noise sigmas apart, each row shifted by its own offset: the fitted
    shares are unbiased and scatter as binomial times share_variance_factor (the offset
    fitted too); the offsets come back; far-apart levels cost nothing (factor 1)."""
    from labstack.fit.two_level import point_shares, share_variance_factor

    rng = np.random.default_rng(3)
    rows, n = 800, 1000
    upper = rng.random((rows, n)) < share
    shift = rng.normal(0.0, 0.2, rows)
    readings = 3.0 * upper + shift[:, None] + rng.normal(size=(rows, n))
    p, found, step = point_shares(readings, 0.0, 3.0, 1.0)
    predicted = np.sqrt(share_variance_factor(np.array([share]), 3.0)[0] * share * (1 - share) / n)
    assert abs(p.mean() - share) < 4 * predicted / np.sqrt(rows)
    assert p.std(ddof=1) == pytest.approx(predicted, rel=0.1)
    assert np.std(found - shift) < 0.06  # each row's offset, to ~sigma / sqrt(n) and the share's coupling
    assert step == pytest.approx(3.0, rel=0.02)
    assert share_variance_factor(np.array([share]), 3.0)[0] > 1.3  # overlapping levels cost
    assert np.all(share_variance_factor(np.array([1e-6, 0.5]), 100.0) == 1.0)  # far apart: no cost, no NaN


def _point_shares_by_definition(x, lo, hi, sigma):
    """The point EM as written from its model, every quantity over every reading, plain
    steps run to its fixed point: the reference the accelerated, sufficient-statistics
    form of point_shares must reproduce."""
    from scipy import special

    step = (hi - lo) / sigma
    p = np.clip(((x - lo) / sigma > 0.5 * step).mean(axis=1), 1e-6, 1 - 1e-6)
    e = special.ndtr(-0.5 * step)
    p = np.clip((p - e) / (1 - 2 * e), 1e-6, 1 - 1e-6)
    low, gap, noise = np.full(x.shape[0], float(lo)), float(hi - lo), float(sigma)
    for _ in range(20_000):
        step = gap / noise
        log_odds = step * (x - low[:, None]) / noise - 0.5 * step * step + np.log(p / (1 - p))[:, None]
        r = 0.5 * (1.0 + np.tanh(0.5 * log_odds))
        new_p = np.clip(r.mean(axis=1), 1e-9, 1 - 1e-9)
        low = (x - r * gap).mean(axis=1)
        above = x - low[:, None]
        new_gap = float((r * above).sum() / r.sum())
        noise = float(np.sqrt(np.mean((above - r * new_gap) ** 2 + r * (1 - r) * new_gap**2)))
        done = np.max(np.abs(new_p - p)) < 1e-13 and abs(new_gap - gap) < 1e-13 * abs(gap)
        p, gap = new_p, new_gap
        if done:
            break
    return p, low - lo, gap / noise


@pytest.mark.parametrize("separation", [2.0, 4.0, 15.0])
def test_point_shares_is_the_em_of_its_model(separation):
    """Sweep-like rows (a logistic of shares, each row's own offset wander, levels in volts
    on an offset): the fast form gives the reference EM's shares, offsets and separation,
    the fixed point plain steps reach only after hundreds of steps."""
    from labstack.fit.two_level import point_shares

    rng = np.random.default_rng(int(separation))
    sigma, rows = 1e-3, 41
    share = 1 / (1 + np.exp(-np.linspace(-6, 6, rows)))
    states = rng.random((rows, 2000)) < share[:, None]
    wander = rng.normal(0.0, 0.3 * separation * sigma, rows)[:, None]
    x = 0.05 + wander + separation * sigma * states + rng.normal(0.0, sigma, states.shape)
    fast = point_shares(x, 0.05, 0.05 + separation * sigma, sigma)
    reference = _point_shares_by_definition(x, 0.05, 0.05 + separation * sigma, sigma)
    # the accelerated EM stops once a step moves no share by 1e-9: at the fixed point to ~1e-8
    np.testing.assert_allclose(fast[0], reference[0], atol=1e-8)
    np.testing.assert_allclose(fast[1], reference[1], atol=1e-7 * sigma)
    assert fast[2] == pytest.approx(reference[2], rel=1e-8)
