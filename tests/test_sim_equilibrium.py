"""Sampled state frequencies of small coupled chips against exact enumeration.

Statistics: states with small expected counts are pooled so that every bin expects
at least 10 counts; the chi-square and the G-test (G = 2 n KL) then follow
chi-square laws. The significance of both tests is ALPHA = 0.001, and the same
data must reject a slightly wrong model (temperature 15 % off) at p < 1e-6, so a
sampler with the wrong distribution cannot pass.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from labstack.fit import ising
from labstack.sim.dynamics import CellEnsemble, CouplingGraph
from labstack.sim.truth import GroundTruth

ALPHA = 1e-3
T_EFF = 0.035


def chip(topology: str, n: int, seed: int) -> tuple[GroundTruth, np.ndarray, np.ndarray]:
    """A chip with fields and couplings comparable to T_eff (a non-trivial distribution)."""
    truth = GroundTruth.from_seed(seed, n, topology)
    rng = np.random.default_rng(seed + 100)
    h = rng.normal(0.0, 0.02, n)
    j = rng.normal(0.01, 0.02, truth.couplers.n)
    return truth, h, j


def pooled(counts: np.ndarray, expected: np.ndarray, min_expected: float = 10.0):
    order = np.argsort(expected)[::-1]
    keep = order[expected[order] >= min_expected]
    rest = order[expected[order] < min_expected]
    obs = np.append(counts[keep], counts[rest].sum())
    exp = np.append(expected[keep], expected[rest].sum())
    return obs, exp


def goodness_of_fit(samples: np.ndarray, p_exact: np.ndarray) -> tuple[float, float, float]:
    """(KL in nats, chi-square p, G-test p) of sampled states against ``p_exact``."""
    n = len(samples)
    counts = np.bincount(ising.state_index(samples), minlength=len(p_exact)).astype(float)
    obs, exp = pooled(counts, n * p_exact)
    chi2_p = stats.chisquare(obs, exp).pvalue
    g = 2.0 * np.sum(obs[obs > 0] * np.log(obs[obs > 0] / exp[obs > 0]))
    g_p = stats.chi2.sf(g, len(obs) - 1)
    return ising.kl_divergence(counts / n, p_exact), float(chi2_p), float(g_p)


@pytest.mark.parametrize(("topology", "n", "seed"), [("chain", 10, 3), ("grid", 9, 4)])
def test_independent_samples_match_boltzmann(topology: str, n: int, seed: int) -> None:
    truth, h, j = chip(topology, n, seed)
    graph = CouplingGraph.build(n, truth.couplers.pairs, j)
    cells = CellEnsemble(truth.cells.gamma0_Hz, truth.cells.barrier_K, truth.cells.stuck,
                         np.random.default_rng(seed))
    # a period far beyond the relaxation time: every sample an independent draw
    samples = cells.sample(20_000, 1.0, h, T_EFF, graph)
    p = ising.boltzmann(h, truth.couplers.pairs, j, T_EFF)
    kl, chi2_p, g_p = goodness_of_fit(samples, p)
    assert chi2_p > ALPHA and g_p > ALPHA, (kl, chi2_p, g_p)
    assert kl < 0.05
    wrong = ising.boltzmann(h, truth.couplers.pairs, j, 1.15 * T_EFF)
    _, chi2_wrong, g_wrong = goodness_of_fit(samples, wrong)
    assert chi2_wrong < 1e-6 and g_wrong < 1e-6


def test_kinetic_samples_match_boltzmann() -> None:
    """The small-step physical dynamics, thinned to ~8 correlation times, has the same law."""
    n, seed = 8, 5
    truth, h, j = chip("chain", n, seed)
    graph = CouplingGraph.build(n, truth.couplers.pairs, j)
    cells = CellEnsemble(truth.cells.gamma0_Hz, truth.cells.barrier_K, truth.cells.stuck,
                         np.random.default_rng(seed))
    r0 = cells.attempt_rates(T_EFF)
    period = 8.0 / (2.0 * r0.min())  # 8 zero-field correlation times of the slowest cell
    assert cells._plan(period, T_EFF)[1] < np.inf  # this is the step-by-step path
    samples = cells.sample(12_000, period, h, T_EFF, graph)
    p = ising.boltzmann(h, truth.couplers.pairs, j, T_EFF)
    kl, chi2_p, g_p = goodness_of_fit(samples, p)
    assert chi2_p > ALPHA and g_p > ALPHA, (kl, chi2_p, g_p)


def test_stuck_cells_hold_and_pull_their_neighbours() -> None:
    """A stuck cell is a fixed spin: the rest follows the conditional Boltzmann law."""
    n = 6
    truth, h, j = chip("chain", n, 11)
    stuck = np.zeros(n, dtype=np.int8)
    stuck[2] = 1
    graph = CouplingGraph.build(n, truth.couplers.pairs, j)
    cells = CellEnsemble(truth.cells.gamma0_Hz, truth.cells.barrier_K, stuck, np.random.default_rng(1))
    samples = cells.sample(10_000, 1.0, h, T_EFF, graph)
    assert np.all(samples[:, 2] == 1)
    p = ising.boltzmann(h, truth.couplers.pairs, j, T_EFF)
    p = np.where(ising.all_states(n)[:, 2] > 0, p, 0.0)
    p /= p.sum()
    _, chi2_p, g_p = goodness_of_fit(samples, p)
    assert chi2_p > ALPHA and g_p > ALPHA


def test_dense_graph_uses_the_general_kernel_and_matches_boltzmann() -> None:
    """All-to-all couplings (degree 6 > 4): the field is summed per update, same law."""
    n = 7
    truth = GroundTruth.from_seed(2, n, "none")
    pairs = np.array([[a, b] for a in range(n) for b in range(a + 1, n)])
    rng = np.random.default_rng(2)
    h, j = rng.normal(0.0, 0.02, n), rng.normal(0.0, 0.012, len(pairs))
    graph = CouplingGraph.build(n, pairs, j)
    assert graph.layout().nbr.shape[1] == 6 and len(graph.colors) == n
    cells = CellEnsemble(truth.cells.gamma0_Hz, truth.cells.barrier_K, truth.cells.stuck,
                         np.random.default_rng(2))
    samples = cells.sample(10_000, 1.0, h, T_EFF, graph)
    _, chi2_p, g_p = goodness_of_fit(samples, ising.boltzmann(h, pairs, j, T_EFF))
    assert chi2_p > ALPHA and g_p > ALPHA


def test_long_waits_use_dobrushin_sweeps_and_still_forget_the_start() -> None:
    """Weak couplings: few heat-bath sweeps per long wait; strong ones: the safe cap.
    Either way successive long-wait samples are independent draws of the Boltzmann law."""
    n, seed = 8, 6
    truth, h, _ = chip("chain", n, seed)
    cells = CellEnsemble(truth.cells.gamma0_Hz, truth.cells.barrier_K, truth.cells.stuck,
                         np.random.default_rng(seed))
    weak_j = np.full(truth.couplers.n, 0.002)
    weak = CouplingGraph.build(n, truth.couplers.pairs, weak_j)
    strong = CouplingGraph.build(n, truth.couplers.pairs, np.full(truth.couplers.n, 0.05))
    few = cells._plan(1.0, T_EFF, weak)[0]
    assert few < 20
    assert cells._plan(1.0, T_EFF, strong)[0] == cells.long_wait_sweeps
    samples = cells.sample(20_000, 1.0, h, T_EFF, weak)
    p = ising.boltzmann(h, truth.couplers.pairs, weak_j, T_EFF)
    kl, chi2_p, g_p = goodness_of_fit(samples, p)
    assert chi2_p > ALPHA and g_p > ALPHA, (kl, chi2_p, g_p)
    x = samples[:, 0].astype(float) - samples[:, 0].mean()
    lag1 = float(np.mean(x[1:] * x[:-1]) / np.mean(x * x))
    assert abs(lag1) < 4 / np.sqrt(len(x))
