"""The training loop's readout split: fitted once, reused while the levels stay, refitted when they move."""

from __future__ import annotations

import numpy as np
import pytest

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
