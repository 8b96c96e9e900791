"""Cross-check with a peer: this simulator and thrml (Extropic) on the same Ising model.

First both are checked against exact enumeration on a 3x3 grid (this pins thrml's
sign and temperature conventions), then on an 8x8 grid, too big to enumerate, the
marginals <s_i> and nearest-neighbour correlations <s_i s_j> of the two samplers
must agree within their statistical errors (batch means over 20 batches): every
|z| < 4.5 and the sum of z^2 consistent with chi-square at ALPHA = 0.001. The same
comparison must fail for a model 10 % warmer, so the test has power.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from labstack.fit import ising
from labstack.sim.dynamics import CellEnsemble, CouplingGraph
from labstack.sim.truth import GroundTruth

pytest.importorskip("thrml")
from labstack.sim.thrml_peer import PeerModel  # noqa: E402

ALPHA = 1e-3
T_EFF = 0.035


def grid_model(side: int, seed: int):
    n = side * side
    truth = GroundTruth.from_seed(seed, n, "grid")
    rng = np.random.default_rng(seed)
    h = rng.normal(0.0, 0.015, n)
    j = rng.normal(0.012, 0.012, truth.couplers.n)
    graph = CouplingGraph.build(n, truth.couplers.pairs, j)
    return truth, h, j, graph


def moments(samples: np.ndarray, pairs: np.ndarray, batches: int = 20):
    """Means and batch-means standard errors of s_i and s_i s_j."""
    s = samples.astype(float)
    obs = np.concatenate([s, s[:, pairs[:, 0]] * s[:, pairs[:, 1]]], axis=1)
    per_batch = obs[: len(obs) // batches * batches].reshape(batches, -1, obs.shape[1]).mean(1)
    return per_batch.mean(0), per_batch.std(0, ddof=1) / np.sqrt(batches)


def ours(truth, h, graph, n_samples: int, t_eff: float, seed: int) -> np.ndarray:
    cells = CellEnsemble(truth.cells.gamma0_Hz, truth.cells.barrier_K,
                         np.zeros(truth.n_cells, np.int8), np.random.default_rng(seed))
    cells.gibbs(200, h, t_eff, graph)  # warm-up
    return cells.gibbs(n_samples, h, t_eff, graph, sweeps_per_sample=2)


def test_thrml_conventions_match_exact_enumeration() -> None:
    truth, h, j, graph = grid_model(3, 8)
    pairs = truth.couplers.pairs
    exact = np.concatenate(ising.marginals_and_correlations(
        ising.boltzmann(h, pairs, j, T_EFF), truth.n_cells, pairs))
    peer = PeerModel.build(truth.n_cells, pairs, h, j, T_EFF, graph.colors)
    for samples in (peer.samples(10_000, 2, seed=1), ours(truth, h, graph, 10_000, T_EFF, 1)):
        mean, err = moments(samples, pairs)
        assert np.all(np.abs(mean - exact) < 4.5 * err + 1e-3), np.max(np.abs(mean - exact) / err)


def test_marginals_and_correlations_agree_with_thrml() -> None:
    truth, h, j, graph = grid_model(8, 9)
    pairs = truth.couplers.pairs
    peer = PeerModel.build(truth.n_cells, pairs, h, j, T_EFF, graph.colors)
    theirs_mean, theirs_err = moments(peer.samples(20_000, 2, n_warmup=200, seed=3), pairs)

    def z_scores(t_eff: float) -> np.ndarray:
        mean, err = moments(ours(truth, h, graph, 20_000, t_eff, 4), pairs)
        return (mean - theirs_mean) / np.hypot(err, theirs_err)

    z = z_scores(T_EFF)
    assert np.max(np.abs(z)) < 4.5, np.max(np.abs(z))
    assert stats.chi2.sf(np.sum(z**2), len(z)) > ALPHA
    z_warm = z_scores(1.1 * T_EFF)
    assert stats.chi2.sf(np.sum(z_warm**2), len(z_warm)) < 1e-6
