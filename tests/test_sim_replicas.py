"""Replicas: many independent heat-bath chains by table look-up (labstack.sim.replicas).

Each check has an independent answer: the local fields of the sparse coupling matrix
for the table, a numpy re-implementation of the documented update and random
counters for the kernel's bits, exact enumeration (labstack.fit.ising) for the law,
and the product of two exact laws for the independence of replicas. The statistical
tests take one sample per replica after 100 sweeps, so the samples are independent
draws (replicas share no random word), and each is shown to reject a wrong law.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from scipy.special import expit

from labstack.fit import ising
from labstack.sim import replica_kernels
from labstack.sim.dynamics import CellEnsemble, CouplingGraph
from labstack.sim.replicas import Replicas, thresholds
from labstack.sim.truth import _coupler_pairs

T_EFF = 0.035
ALPHA = 1e-3
R = replica_kernels.REPLICAS


def chip(rows: int, cols: int, n: int | None = None, seed: int = 1):
    """(pairs, h, J, graph) of a rows x cols grid (chain if rows == 1) cut to ``n`` cells."""
    n = rows * cols if n is None else n
    if rows == 1:
        pairs = _coupler_pairs(n, "chain", None)
    else:
        pairs = np.array([p for p in _coupler_pairs(rows * cols, "grid", (rows, cols)) if max(p) < n])
    rng = np.random.default_rng(seed)
    h, j = rng.normal(0.0, 0.02, n), rng.normal(0.01, 0.02, len(pairs))
    return pairs, h, j, CouplingGraph.build(n, pairs, j)


def goodness_of_fit(index: np.ndarray, p_exact: np.ndarray) -> tuple[float, float]:
    """(chi-square p, G-test p) of state indices against ``p_exact``, pooled to >= 10 expected."""
    counts = np.bincount(index, minlength=len(p_exact)).astype(float)
    expected = len(index) * p_exact
    order = np.argsort(expected)[::-1]
    keep, rest = order[expected[order] >= 10], order[expected[order] < 10]
    obs, exp = counts[keep], expected[keep]
    if rest.size:
        obs, exp = np.append(obs, counts[rest].sum()), np.append(exp, expected[rest].sum())
    chi2_p = stats.chisquare(obs, exp).pvalue
    g = 2.0 * np.sum(obs[obs > 0] * np.log(obs[obs > 0] / exp[obs > 0]))
    return float(chi2_p), float(stats.chi2.sf(g, len(obs) - 1))


def independent_draws(graph, h, n_replicas: int, seed: int, stuck=None) -> np.ndarray:
    """One state per replica after 100 sweeps: ``(n_replicas, n)`` independent draws."""
    reps = Replicas(graph, h, T_EFF, n_replicas, np.random.default_rng(seed), stuck=stuck)
    return reps.sample(1, 100)[0]


# ------------------------------------------------------------------ table and bits
@pytest.mark.parametrize(("rows", "cols", "n"), [(1, 11, 11), (3, 5, 14), (4, 4, 16), (7, 3, 20)])
def test_table_gives_each_cell_its_heat_bath_probability(rows: int, cols: int, n: int) -> None:
    """The threshold a cell reads for its neighbours' bits is round(sigmoid(2 h_loc / T) 2**31)."""
    _, h, _, graph = chip(rows, cols, n)
    lat = graph.lattice()
    assert lat is not None
    table = thresholds(lat, h, T_EFF).reshape(2, lat.length, 16)
    spins = np.random.default_rng(2).choice(np.array([-1, 1], np.int8), n)
    up = np.zeros(2 * lat.length, np.int64)
    up[lat.cells] = spins > 0
    up = up.reshape(2, lat.length)
    s = lat.stride
    for i in range(n):
        q, m = divmod(int(lat.cells[i]), lat.length)
        parity = (i % cols) & 1
        o = up[1 - q]
        index = o[m - s] | o[m + s] << 1 | o[m - 1 + parity] << 2 | o[m + parity] << 3
        h_loc = graph.local_fields(h, spins.astype(float))[i]
        assert table[q, m, index] == np.rint(expit(2 * h_loc / T_EFF) * 2.0**31), i
    assert np.count_nonzero(table) == np.count_nonzero(table.reshape(2 * lat.length, 16)[lat.cells])


_GAMMA, _M1, _M2 = np.uint64(0x9E3779B97F4A7C15), np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)


def splitmix64(key: np.uint64, counter: np.ndarray) -> np.ndarray:
    """SplitMix64 word at ``counter`` of stream ``key``, in numpy (wrapping uint64 arithmetic)."""
    with np.errstate(over="ignore"):
        z = key + (counter.astype(np.uint64) + np.uint64(1)) * _GAMMA
        z = (z ^ (z >> np.uint64(30))) * _M1
        z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


def reference_sweeps(graph, lat, h, spins: np.ndarray, key: np.uint64, n_sweeps: int) -> np.ndarray:
    """The documented update, cell by cell in numpy: ``(n_blocks R, n)`` spins after the sweeps."""
    spins = spins.astype(float).copy()
    n_blocks = len(spins) // R
    lane = np.arange(len(spins)) % R
    block = np.arange(len(spins)) // R
    q_of, m_of = np.divmod(lat.cells, lat.length)
    half_class = lat.length * R // 2
    for k in range(n_sweeps):
        for q in range(2):
            h_loc = np.stack([graph.local_fields(h, s) for s in spins])  # (replicas, n)
            threshold = np.rint(expit(2 * h_loc / T_EFF) * 2.0**31)
            for i in np.flatnonzero(q_of == q):
                counter = ((k * n_blocks + block) * 2 + q) * half_class + (m_of[i] * R + lane) // 2
                word = splitmix64(key, counter)
                half = (word >> (np.uint64(32) * (lane & 1).astype(np.uint64))) & np.uint64(0xFFFFFFFF)
                spins[:, i] = np.where((half >> np.uint64(1)) < threshold[:, i], 1.0, -1.0)
    return spins.astype(np.int8)


@pytest.mark.parametrize(("rows", "cols", "n"), [(1, 9, 9), (3, 5, 14), (5, 4, 20)])
def test_kernel_bits_match_the_documented_update(rows: int, cols: int, n: int) -> None:
    """Layout, index bits, thresholds and random counters, against numpy, bit for bit."""
    _, h, _, graph = chip(rows, cols, n, seed=5)
    start = np.random.default_rng(6).choice(np.array([-1, 1], np.int8), (2 * R, n))
    reps = Replicas(graph, h, T_EFF, 2 * R, np.random.default_rng(7), spins=start)
    reps.sweeps(3, threads=2)
    key = np.random.default_rng(7).integers(0, 2**64 - 1, dtype=np.uint64, endpoint=True)
    expected = reference_sweeps(graph, graph.lattice(), h, start, key, 3)
    assert np.array_equal(reps.spins, expected)
    assert 0.2 < np.mean(reps.spins != start) < 0.8  # the sweeps did move the replicas


def test_threads_do_not_change_a_bit() -> None:
    _, h, _, graph = chip(37, 41, seed=3)  # odd sizes: padding slots
    runs = []
    for threads in (1, 2):
        reps = Replicas(graph, h, T_EFF, 3 * R, np.random.default_rng(4))
        runs.append(reps.sample(3, 4, threads=threads))
    assert np.array_equal(runs[0], runs[1])
    assert runs[0].shape == (3, 3 * R, 37 * 41)
    assert np.mean(runs[0][0] != runs[0][2]) > 0.1


# ------------------------------------------------------------------------- law
@pytest.mark.parametrize(("rows", "cols", "n", "seed"), [(1, 10, 10, 3), (3, 3, 9, 4),
                                                         (4, 4, 16, 5), (3, 4, 11, 6)])
def test_samples_match_exact_enumeration(rows: int, cols: int, n: int, seed: int) -> None:
    """Independent draws against the exact Boltzmann law; T 5 % off or one coupling dropped fails."""
    pairs, h, j, graph = chip(rows, cols, n, seed)
    draws = independent_draws(graph, h, 1 << 16, seed)
    index = ising.state_index(draws)
    chi2_p, g_p = goodness_of_fit(index, ising.boltzmann(h, pairs, j, T_EFF))
    assert chi2_p > ALPHA and g_p > ALPHA, (chi2_p, g_p)
    warmer = goodness_of_fit(index, ising.boltzmann(h, pairs, j, 1.05 * T_EFF))
    assert max(warmer) < 1e-6, warmer
    dropped = np.where(np.arange(len(j)) == np.argmax(np.abs(j)), 0.0, j)
    missing = goodness_of_fit(index, ising.boltzmann(h, pairs, dropped, T_EFF))
    assert max(missing) < 1e-6, missing


def test_stuck_cells_stay_and_the_rest_follow_the_conditional_law() -> None:
    pairs, h, j, graph = chip(3, 3, 9, seed=8)
    stuck = np.zeros(9, np.int8)
    stuck[4], stuck[0] = 1, -1
    draws = independent_draws(graph, h, 1 << 15, 9, stuck=stuck)
    assert np.all(draws[:, 4] == 1) and np.all(draws[:, 0] == -1)
    p = ising.boltzmann(h, pairs, j, T_EFF)
    states = ising.all_states(9)
    allowed = (states[:, 4] == 1) & (states[:, 0] == -1)
    conditional = np.where(allowed, p, 0.0) / p[allowed].sum()
    chi2_p, g_p = goodness_of_fit(ising.state_index(draws), conditional)
    assert chi2_p > ALPHA and g_p > ALPHA, (chi2_p, g_p)


def test_chip_without_couplings_samples_independent_cells() -> None:
    h = np.random.default_rng(10).normal(0.0, 0.03, 6)
    draws = independent_draws(None, h, 1 << 15, 11)
    chi2_p, g_p = goodness_of_fit(ising.state_index(draws), ising.boltzmann(h, np.zeros((0, 2)), [], T_EFF))
    assert chi2_p > ALPHA and g_p > ALPHA, (chi2_p, g_p)


# ------------------------------------------------------------------ independence
def pairs_at(n_replicas: int, offset: int) -> tuple[np.ndarray, np.ndarray]:
    """Disjoint replica pairs ``(r, r + offset)``: lanes of one word (1), of neighbouring words
    (2), of the other vector of a block (16) or of another block (32)."""
    r = np.arange(n_replicas)
    first = r[(r // offset) % 2 == 0]
    return first, first + offset


@pytest.mark.parametrize("offset", [1, 2, 16, 32])
def test_replicas_are_independent(offset: int) -> None:
    """Pairs of replicas follow the product of two exact laws, and their correlation is ~0.

    The same statistics on a replica paired with a copy of itself fail, so they can fail.
    """
    pairs, h, j, graph = chip(1, 3, 3, seed=12)
    draws = independent_draws(graph, h, 1 << 16, 13)
    p = ising.boltzmann(h, pairs, j, T_EFF)
    joint = np.outer(p, p).reshape(-1)  # index a + 8 b for states a, b
    a, b = pairs_at(len(draws), offset)
    index = ising.state_index(draws[a]) + 8 * ising.state_index(draws[b])
    assert min(goodness_of_fit(index, joint)) > ALPHA
    x, y = draws[a].astype(float), draws[b].astype(float)
    corr = np.array([np.corrcoef(x[:, i], y[:, i])[0, 1] for i in range(3)])
    assert np.all(np.abs(corr) * np.sqrt(len(a)) < 4.0), corr  # |z| < 4: p ~ 6e-5 each
    copy = ising.state_index(draws[a]) * 9  # b := a
    assert max(goodness_of_fit(copy, joint)) < 1e-6
    assert np.corrcoef(x[:, 0], x[:, 0])[0, 1] * np.sqrt(len(a)) > 4.0


# ----------------------------------------------------------------------- API
def test_replicas_of_an_ensemble_start_from_its_state_and_keep_its_stuck_cells() -> None:
    _, h, _, graph = chip(4, 4, 16, seed=14)
    stuck = np.zeros(16, np.int8)
    stuck[5] = -1
    cells = CellEnsemble(np.ones(16), np.ones(16), stuck, np.random.default_rng(15))
    reps = Replicas.of(cells, graph, h, T_EFF, 40)
    assert reps.spins.shape == (40, 16)
    assert np.all(reps.spins == cells.spins)
    reps.sweeps(20)
    assert np.all(reps.spins[:, 5] == -1)
    assert len({tuple(s) for s in reps.spins}) > 30  # the replicas went their own ways


def test_non_lattice_graphs_are_refused() -> None:
    triangle = CouplingGraph.build(3, np.array([(0, 1), (1, 2), (0, 2)]), np.ones(3))
    with pytest.raises(ValueError, match="chain or a grid"):
        Replicas(triangle, np.zeros(3), T_EFF, 32, np.random.default_rng(0))
