"""The training loop's readout split: fitted once, reused while the levels stay, refitted when they move."""

from __future__ import annotations

import numpy as np
import pytest

from labstack.fit import ising
from labstack.train.readout import ReadoutError, ReadoutSplit
from labstack.train.stats import measure


def readings(rng: np.random.Generator, up: np.ndarray, low: np.ndarray, high: np.ndarray, noise: float) -> np.ndarray:
    """(cells, samples) volts: level ``high`` where ``up`` else ``low``, plus white noise."""
    level = np.where(up, high[:, None], low[:, None])
    return level + noise * rng.standard_normal(up.shape)


def test_a_split_fitted_once_thresholds_later_samples_as_a_fresh_fit_does():
    rng = np.random.default_rng(3)
    low, high = np.array([0.0, 0.1, -0.2]), np.array([1.0, 0.9, 0.5])
    first = readings(rng, rng.random((3, 20_000)) < [[0.3], [0.5], [0.7]], low, high, 0.12)
    split = ReadoutSplit.fit(first)
    later_up = rng.random((3, 20_000)) < [[0.8], [0.2], [0.5]]  # other fields: other occupations
    later = readings(rng, later_up, low, high, 0.12)
    assert split.follow(later) is split  # nothing moved: nothing refitted
    edges = np.array([[0, 1], [1, 2]])
    reused, fresh = measure(later, edges, split=split), measure(later, edges)
    assert np.allclose(reused.value, fresh.value, atol=3 * fresh.stderr.max())
    truth = np.concatenate([2 * later_up.mean(axis=1) - 1, [(2 * later_up[0] - 1) @ (2 * later_up[1] - 1) / 20_000,
                                                             (2 * later_up[1] - 1) @ (2 * later_up[2] - 1) / 20_000]])
    assert np.all(np.abs(reused.value - truth) < 4 * reused.stderr)


def test_a_cell_whose_levels_drift_is_refitted_and_the_others_kept():
    rng = np.random.default_rng(4)
    low, high = np.array([0.0, 0.0]), np.array([1.0, 1.0])
    up = rng.random((2, 20_000)) < 0.5
    split = ReadoutSplit.fit(readings(rng, up, low, high, 0.1))
    drifted = readings(rng, up, low + [0.0, 0.3], high + [0.0, 0.3], 0.1)  # cell 1's levels moved 3 sigma
    followed = split.follow(drifted)
    assert followed.refits == 1
    assert followed.threshold[0] == split.threshold[0]
    assert followed.threshold[1] == pytest.approx(0.8, abs=0.02)
    assert np.array_equal(followed.states(drifted), up)  # 5 sigma from the threshold: every sample right


def test_a_flat_cell_is_refused_by_name():
    rng = np.random.default_rng(5)
    good = readings(rng, rng.random((1, 5000)) < 0.5, np.array([0.0]), np.array([1.0]), 0.1)
    flat = 0.1 * rng.standard_normal((1, 5000))
    with pytest.raises(ReadoutError, match=r"\[7\]"):
        ReadoutSplit.fit(np.concatenate([good, flat]), cells=[3, 7])


def _assert_textbook_moments(m, states, errors, edges):
    """Assert ``m``'s values and Fisher matrix are the float64 formulas; return the spins
    (sample, cell), the features (spins then edge products) and the readout scale."""
    s = np.where(states, 1.0, -1.0).T
    f = np.concatenate([s, s[:, edges[:, 0]] * s[:, edges[:, 1]]], axis=1)
    scale = np.concatenate([1 - 2 * errors, (1 - 2 * errors[edges[:, 0]]) * (1 - 2 * errors[edges[:, 1]])])
    np.testing.assert_allclose(m.value, f.mean(axis=0) / scale, rtol=1e-12, atol=1e-15)
    centred = f - f.mean(axis=0)
    np.testing.assert_allclose(m.fisher, centred.T @ centred / len(f) / np.outer(scale, scale), atol=1e-12)
    return s, f, scale


def test_counted_statistics_equal_the_float64_formulas():
    """The training loop's fast statistics (integer counts, float32 rows) are the textbook
    float64 formulas: lag-1 effective counts, means, correlations and the Fisher matrix."""
    from labstack.fit.two_level import effective_count
    from labstack.train.calibration import n_effective
    from labstack.train.stats import from_states

    rng = np.random.default_rng(2)
    states = rng.random((8, 5000)) < 0.3
    states[3] = np.cumsum(rng.random(5000) < 0.05) % 2 == 0  # slow telegraph: ess << n
    states[4] = True  # frozen: counts every sample
    states[6] = np.arange(5000) % 2 == 0  # anticorrelated: clipped to n
    np.testing.assert_allclose(n_effective(states), effective_count(states.astype(float)), rtol=1e-12)
    edges = np.array([[0, 1], [1, 2], [3, 5], [6, 7]])
    errors = np.linspace(0.0, 0.03, 8)
    m = from_states(states, errors, edges)
    s, f, scale = _assert_textbook_moments(m, states, errors, edges)
    np.testing.assert_array_equal(m.counts, np.bincount(ising.state_index(s), minlength=2**8))


@pytest.mark.parametrize("cells, samples", [(8, 5000), (12, 5000), (12, 20000)])
def test_counted_and_row_statistics_agree(cells, samples):
    """Both ways of summing (the states counted and Walsh-transformed when there are few
    cells for the samples; float32 rows otherwise) give the float64 formulas' numbers."""
    from labstack.train.calibration import n_effective
    from labstack.train.stats import from_states

    rng = np.random.default_rng(cells + samples)
    states = rng.random((cells, samples)) < rng.uniform(0.05, 0.95, (cells, 1))
    states[:, 1:] = np.where(rng.random((cells, samples - 1)) < 0.4, states[:, :-1], states[:, 1:])
    edges = np.array([[i, i + 1] for i in range(cells - 1)] + [[0, cells - 1]])
    errors = rng.uniform(0.0, 0.04, cells)
    m = from_states(states, errors, edges)
    s, f, scale = _assert_textbook_moments(m, states, errors, edges)
    assert m.n_eff == pytest.approx(float(np.min(n_effective(states))), rel=1e-12)
    ess = np.minimum(n_effective(states)[edges[:, 0]], n_effective(states)[edges[:, 1]])
    var = np.clip(1 - (f.mean(axis=0)) ** 2, 1 / samples, None) / np.concatenate([n_effective(states), ess])
    np.testing.assert_allclose(m.stderr, np.sqrt(var) / scale, rtol=1e-10)
    np.testing.assert_array_equal(m.counts, np.bincount(ising.state_index(s), minlength=2**cells))


def test_parity_sums_are_sums_of_spin_products():
    """The Walsh-Hadamard transform of the state counts is, for every set of cells, the
    sum over the samples of the product of their spins (brute force on 5 cells)."""
    from labstack.train.stats import parity_sums, state_indices

    rng = np.random.default_rng(5)
    states = rng.random((5, 300)) < 0.35
    counts = np.bincount(state_indices(states), minlength=32)
    spins = np.where(states, 1, -1)
    got = parity_sums(counts, 5)
    for mask in range(32):
        cells = [i for i in range(5) if mask >> i & 1]
        assert got[mask] == int(np.prod(spins[cells], axis=0).sum()), mask
    with pytest.raises(ValueError, match="2\\*\\*4 states"):
        parity_sums(counts, 4)
