"""The vectorised lattice kernel: layout, arithmetic, threads and distribution.

Each check has an independent answer: local fields from the sparse coupling matrix,
``numpy.exp2``, the serial kernel for the threaded one, exact enumeration for a
small odd-shaped grid with a stuck cell, and, on a 16x16 grid too big to
enumerate, each update's exact conditional probability computed in float64.
"""

from __future__ import annotations

import numpy as np
import pytest
from numba import njit
from scipy import stats

from labstack.fit import ising
from labstack.sim import lattice_kernels
from labstack.sim.dynamics import CellEnsemble, CouplingGraph
from labstack.sim.lattice import Lattice
from labstack.sim.truth import _coupler_pairs

T_EFF = 0.035
ALPHA = 1e-3


def grid_graph(rows: int, cols: int, n: int | None = None, seed: int = 1):
    """Couplings on a rows x cols grid (chain if rows == 1), cut to ``n`` cells."""
    n = rows * cols if n is None else n
    pairs = _coupler_pairs(rows * cols, "grid", (rows, cols)) if rows > 1 else _coupler_pairs(
        n, "chain", None)
    pairs = np.array([p for p in pairs if max(p) < n])
    rng = np.random.default_rng(seed)
    h, j = rng.normal(0.0, 0.02, n), rng.normal(0.01, 0.02, len(pairs))
    return pairs, h, j, CouplingGraph.build(n, pairs, j)


@pytest.mark.parametrize(("rows", "cols", "n"), [(1, 11, 11), (3, 5, 15), (4, 4, 16),
                                                 (5, 6, 29), (7, 3, 20)])
def test_layout_reproduces_every_local_field(rows: int, cols: int, n: int) -> None:
    """y = c0 + sum c_k s_k at each cell's slot equals -2 log2(e) (h + J s) / T."""
    _, h, _, graph = grid_graph(rows, cols, n)
    lat = graph.lattice()
    assert lat is not None and (lat.rows, lat.cols) == (rows, cols)
    rng = np.random.default_rng(2)
    spins = rng.choice(np.array([-1, 1], np.int8), n)
    layout = lat.spins_in(spins).astype(float)
    r0dt = rng.uniform(0.01, 0.1, n)
    coef = lat.coefficients(h, T_EFF, np.zeros(n, np.int8), r0dt).astype(float)
    assert np.allclose(coef[:, 6].reshape(-1)[lat.cells], r0dt, rtol=1e-7)
    assert np.count_nonzero(coef[:, 6]) == n
    s = lat.stride
    m = np.arange(s, lat.length - s - 1)
    y = np.zeros((2, lat.length))
    for q in range(2):
        o = layout[1 - q]
        y[q, m] = (coef[q, 0, m] + coef[q, 1, m] * o[m - s] + coef[q, 2, m] * o[m + s]
                   + coef[q, 3, m] * o[m - 1] + coef[q, 4, m] * o[m] + coef[q, 5, m] * o[m + 1])
    expected = -2.0 / np.log(2.0) * graph.local_fields(h, spins.astype(float)) / T_EFF
    assert np.allclose(y.reshape(-1)[lat.cells], expected, rtol=1e-5, atol=1e-4)
    assert np.array_equal(lat.spins_out(lat.spins_in(spins)), spins)


def test_only_chains_and_grids_are_taken_for_lattices() -> None:
    def detect(n: int, pairs: list[tuple[int, int]]) -> Lattice | None:
        return CouplingGraph.build(n, np.array(pairs), np.ones(len(pairs))).lattice()

    assert detect(6, [(0, 1), (1, 2), (3, 4)]).cols == 6  # a broken chain is still a chain
    assert detect(6, [(0, 3), (1, 4), (2, 5), (0, 1)]).cols == 3
    assert detect(6, [(0, 2), (0, 3)]) is None  # two different long steps
    assert detect(6, [(2, 3), (0, 3)]) is None  # (2, 3) wraps from row 0 to row 1
    triangle = CouplingGraph.build(3, np.array([(0, 1), (1, 2), (0, 2)]), np.ones(3))
    assert triangle.lattice() is None


def test_exp2_is_accurate_to_float32() -> None:
    @njit
    def many(y):
        out = np.empty_like(y)
        for i in range(y.size):
            out[i] = lattice_kernels.exp2(y[i])
        return out

    y = np.linspace(-125.0, 125.0, 200_001).astype(np.float32)
    rel = np.abs(many(y) / np.exp2(y.astype(float)) - 1.0)
    assert rel.max() < 2.5e-7, rel.max()
    assert many(np.array([-1e30, 1e30], np.float32)).tolist() == [2.0**-126, 2.0**126]


def _boundary(decide, *args) -> int:
    """The first random word ``b`` for which ``decide(b, *args)`` differs from its answer at 0."""
    lo, hi = 0, 2**32 - 1
    first = decide(lo, *args)
    while lo + 1 < hi:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if decide(mid, *args) == first else (lo, mid)
    return hi


def _near(boundary: int, p: float) -> bool:
    """Whether the rarer outcome took ``round(P 2**31)`` pairs of words (31-bit decisions)."""
    return abs(boundary - 2 * round(p * 2**31)) <= 2 + 6e-7 * p * 2**32


def test_decisions_resolve_rare_outcomes_to_31_bits() -> None:
    """The rarer outcome takes the lowest P 2**32 random words, whether P is near 0 or 1."""
    @njit
    def happens(b, odds_for, odds_against):
        return lattice_kernels._happens(np.uint32(b), np.float32(odds_for), np.float32(odds_against))

    for p in (3e-10, 1e-9, 7.7e-8, 1e-5, 0.3):
        assert happens(0, p, 1 - p) and not happens(2**32 - 1, p, 1 - p)
        assert _near(_boundary(happens, p, 1 - p), p)
        q = 1 - p  # the complement: the rarer outcome, "does not happen", gets the low words
        assert not happens(0, q, p) and happens(2**32 - 1, q, p)
        assert _near(_boundary(happens, q, p), p)
    assert not happens(0, 1.0, 2.0**126) and happens(0, 1.0, 2.0**-126)  # stuck down / up
    assert not happens(0, 0.0, 1.0)  # zero odds: never, even for word 0


def test_heat_bath_decisions_resolve_rare_outcomes_to_31_bits() -> None:
    """The heat bath's own decision: up with 1 / (1 + 2**y), the rarer side on the low words."""
    @njit
    def up(b, y):
        return lattice_kernels._heat_bath_up(np.uint32(b), np.float32(y))

    for p in (3e-10, 1e-9, 7.7e-8, 1e-5, 0.3):
        y = np.float32(np.log2((1 - p) / p))  # P(up) = p: up is the rarer outcome
        p_exact = 1 / (1 + 2.0 ** float(y))
        assert up(0, y) and not up(2**32 - 1, y)
        assert _near(_boundary(up, y), p_exact)
        assert not up(0, -y) and up(2**32 - 1, -y)  # P(up) = 1 - p: down is the rarer one
        assert _near(_boundary(up, -y), p_exact)
    assert up(0, 0.0) and not up(2**31, 0.0)  # y = 0: up on exactly the lower half
    assert not up(0, 1e30) and up(0, -1e30)  # stuck down / up: never leaves, even for word 0


@pytest.mark.parametrize("kinetic", [False, True])
def test_threads_and_chunking_do_not_change_a_bit(kinetic: bool) -> None:
    rows, cols = 37, 41  # odd sizes: padding slots and a ragged last random word
    _, h, _, graph = grid_graph(rows, cols, seed=3)
    lat = graph.lattice()
    stuck = np.zeros(lat.n, np.int8)
    stuck[[5, 400, 1200]] = [1, -1, 1]
    start = np.where(np.random.default_rng(4).random(lat.n) < 0.5, 1, -1).astype(np.int8)
    start[stuck != 0] = stuck[stuck != 0]
    key = np.uint64(987654321)
    r0dt = np.random.default_rng(5).uniform(0.02, 0.2, lat.n) if kinetic else None

    def run(threads: int | None, n_chunks: int = 0) -> tuple[np.ndarray, np.ndarray]:
        spins, out = start.copy(), np.empty((7, lat.n), np.int8)
        if n_chunks:  # the threaded kernel with a given cut, run by however many threads
            layout, coef = lat.spins_in(spins), lat.coefficients(h, T_EFF, stuck, r0dt)
            lattice_kernels.sweeps_threaded(
                layout, coef, lat.stride, lat.rows, lat.cells, 7, 3, key, 0, out, kinetic,
                threads, n_chunks, np.zeros(16, np.int64))
            return lat.spins_out(layout), out
        lat.sweeps(spins, h, T_EFF, stuck, 7, 3, key, out, threads=threads, r0dt=r0dt)
        return spins, out

    serial = run(1)
    for other in (run(2), run(1, n_chunks=5), run(2, n_chunks=13)):
        assert np.array_equal(serial[0], other[0]) and np.array_equal(serial[1], other[1])
    assert np.array_equal(serial[1][-1], serial[0])
    assert np.all(serial[1][:, stuck != 0] == stuck[stuck != 0])
    assert 0.2 < (serial[0] > 0).mean() < 0.8


def test_odd_grid_with_a_stuck_cell_matches_exact_enumeration() -> None:
    rows, cols, n = 3, 4, 11
    pairs, h, j, graph = grid_graph(rows, cols, n, seed=5)
    stuck = np.zeros(n, np.int8)
    stuck[6] = -1
    cells = CellEnsemble(np.full(n, 1e9), np.full(n, 0.25), stuck, np.random.default_rng(5))
    samples = cells.gibbs(40_000, h, T_EFF, graph, sweeps_per_sample=3)
    assert np.all(samples[:, 6] == -1)
    p = ising.boltzmann(h, pairs, j, T_EFF)
    p = np.where(ising.all_states(n)[:, 6] < 0, p, 0.0)
    p /= p.sum()
    counts = np.bincount(ising.state_index(samples), minlength=len(p)).astype(float)
    keep = p * len(samples) >= 10
    obs = np.append(counts[keep], counts[~keep].sum())
    exp = np.append(p[keep], p[~keep].sum()) * len(samples)
    assert stats.chisquare(obs, exp).pvalue > ALPHA
    colder = ising.boltzmann(h, pairs, j, 0.8 * T_EFF)  # power: a wrong law is rejected
    colder = np.where(ising.all_states(n)[:, 6] < 0, colder, 0.0)
    colder /= colder.sum()
    exp_cold = np.append(colder[keep], colder[~keep].sum()) * len(samples)
    assert stats.chisquare(obs, exp_cold).pvalue < 1e-6


@pytest.mark.parametrize("r0dt", [None, 0.3])
def test_every_update_follows_its_exact_law(r0dt: float | None) -> None:
    """16x16 grid: each cell's new state against its exact conditional probability.

    Consecutive samples one sweep apart fix what every update saw: class 0 (updated
    first) the previous sample's class 1, class 1 the new sample's class 0. So each
    of the 5e6 updates has a known probability of ending up (float64, from the
    sparse matrix): ``sigmoid(2 h_loc / T)`` for the heat bath, and for a kinetic
    step ``p + (s - p) exp(-r0 dt 2 cosh(h_loc / T))``. Binned by that probability,
    the ups must match its sum; a temperature 1 % off (3 % for steps) or rates 5 %
    off must fail.
    """
    side, n_samples = 16, 20_000
    _, h, _, graph = grid_graph(side, side, seed=6)
    n = side * side
    cells = CellEnsemble(np.full(n, 1e9), np.full(n, 0.25), np.zeros(n, np.int8),
                         np.random.default_rng(6))
    x = np.empty((n_samples, n))
    x[0] = cells.spins
    key = np.uint64(44)
    lat = graph.lattice()
    rates = None if r0dt is None else np.full(n, r0dt) * np.random.default_rng(7).uniform(0.2, 1, n)
    out = np.empty((n_samples - 1, n), np.int8)
    lat.sweeps(cells.spins, h, T_EFF, cells.stuck, n_samples - 1, 1, key, out, r0dt=rates)
    x[1:] = out
    first = (np.arange(n) // side + np.arange(n) % side) % 2 == 0
    # a class-1 cell is seen by class 0 before it moves, a class-0 cell by class 1 after
    seen = np.where(first, x[1:], x[:-1])
    h_loc = h + seen @ graph.matrix.T.toarray()
    up = (x[1:] > 0).ravel()

    def bin_z(t_eff: float, rate_factor: float = 1.0) -> np.ndarray:
        p = 1.0 / (1.0 + np.exp(-2.0 * h_loc / t_eff))
        if rates is not None:
            stay = np.exp(-rate_factor * rates * 2.0 * np.cosh(h_loc / t_eff))
            p = p + ((x[:-1] > 0) - p) * stay
        p = p.ravel()
        bins = np.minimum((p * 20).astype(int), 19)
        ups = np.bincount(bins, weights=up, minlength=20)
        mean = np.bincount(bins, weights=p, minlength=20)
        var = np.bincount(bins, weights=p * (1 - p), minlength=20)
        keep = var > 25
        return (ups[keep] - mean[keep]) / np.sqrt(var[keep])

    z = bin_z(T_EFF)
    assert len(z) >= 15 and np.max(np.abs(z)) < 4.5, z
    assert stats.chi2.sf(np.sum(z**2), len(z)) > ALPHA
    wrong = [bin_z(1.01 * T_EFF)] if rates is None else [bin_z(1.03 * T_EFF), bin_z(T_EFF, 1.05)]
    for z_off in wrong:
        assert stats.chi2.sf(np.sum(z_off**2), len(z_off)) < 1e-6


def test_random_words_are_the_splitmix64_stream() -> None:
    """The block fill (stepping the state) gives the words of the counter-based stream."""
    from labstack.sim.kernels import splitmix64

    @njit
    def both(key, counter, count):
        words = np.empty(count, np.uint64)
        lattice_kernels._fill_words(words, count, key, counter)
        ref = np.empty(count, np.uint64)
        for j in range(count):
            ref[j] = splitmix64(key, counter + np.uint64(j))
        return words, ref

    for key, counter in [(0, 0), (2**64 - 1, 2**64 - 700), (0x1234_5678_9ABC_DEF0, 12345)]:
        words, ref = both(np.uint64(key), np.uint64(counter), 517)
        np.testing.assert_array_equal(words, ref)
    assert len(set(words.tolist())) == 517  # and they are not all the same word


def test_kinetic_fast_path_on_a_small_grid_matches_exact_enumeration(monkeypatch) -> None:
    """The lab's path for finite steps of a grid: the lattice kernel, through CellEnsemble.

    A 3x4 grid with a stuck cell and a spread of attempt rates (slow cells take short
    steps), sampled every 8 zero-field correlation times of its slowest cell: the
    state frequencies must follow the exact (conditional) Boltzmann law and reject a
    temperature 20 % off.
    """
    from labstack.sim.lattice import Lattice

    rows, cols, n = 3, 4, 12
    pairs, h, j, graph = grid_graph(rows, cols, n, seed=8)
    rng = np.random.default_rng(8)
    gamma0, barrier = 1e9 * np.exp(rng.normal(0.0, 0.1, n)), rng.normal(0.25, 0.01, n)
    stuck = np.zeros(n, np.int8)
    stuck[5] = 1
    monkeypatch.setattr(CellEnsemble, "KINETIC_LATTICE_FROM", 0)  # the lattice for 12 cells too
    cells = CellEnsemble(gamma0, barrier, stuck, np.random.default_rng(9))
    r0 = cells.attempt_rates(T_EFF)[stuck == 0]
    period = 8.0 / (2.0 * r0.min())
    _, dt = cells._plan(period, T_EFF, graph)
    assert np.isfinite(dt) and r0.max() / r0.min() > 1.5
    kinetic_calls = []
    real = Lattice.sweeps

    def spy(self, *args, **kwargs):
        kinetic_calls.append(kwargs.get("r0dt") is not None or args[-1] is not None)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Lattice, "sweeps", spy)
    samples = cells.sample(10_000, period, h, T_EFF, graph)
    assert kinetic_calls == [True]  # one call, finite steps, on the lattice kernel
    assert np.all(samples[:, 5] == 1)

    def expected(t_eff: float) -> np.ndarray:
        p = ising.boltzmann(h, pairs, j, t_eff)
        p = np.where(ising.all_states(n)[:, 5] > 0, p, 0.0)
        return p / p.sum()

    counts = np.bincount(ising.state_index(samples), minlength=2**n).astype(float)
    p = expected(T_EFF)
    keep = p * len(samples) >= 10
    obs = np.append(counts[keep], counts[~keep].sum())
    assert stats.chisquare(obs, np.append(p[keep], p[~keep].sum()) * len(samples)).pvalue > ALPHA
    cold = expected(0.8 * T_EFF)
    assert stats.chisquare(obs, np.append(cold[keep], cold[~keep].sum()) * len(samples)).pvalue < 1e-6


@pytest.mark.parametrize(("n_samples", "per_sample"), [(12, 2), (2, 20), (1, 37)])
@pytest.mark.parametrize("kinetic", [False, True])
def test_probing_serial_against_threads_does_not_change_a_bit(n_samples, per_sample, kinetic):
    """A long threaded run times a few sweeps each way and finishes the faster way: same bits.

    (12, 2) probes on whole samples, (2, 20) and (1, 37) on the first sample's sweeps.
    """
    import numba

    from labstack.sim import lattice

    if numba.get_num_threads() < 2:
        pytest.skip("needs two threads")
    rows, cols = 19, 23
    _, h, _, graph = grid_graph(rows, cols, seed=11)
    lat = graph.lattice()
    stuck = np.zeros(lat.n, np.int8)
    stuck[[7, 100]] = [1, -1]
    start = np.where(np.random.default_rng(12).random(lat.n) < 0.5, 1, -1).astype(np.int8)
    start[stuck != 0] = stuck[stuck != 0]
    r0dt = np.random.default_rng(13).uniform(0.02, 0.2, lat.n) if kinetic else None
    probes = []
    real = lattice_kernels.sweeps_threaded

    def counting(*args):
        probes.append(args[8])  # the start sweep of each threaded piece
        return real(*args)

    def run(threads: int) -> tuple[np.ndarray, np.ndarray]:
        spins, out = start.copy(), np.empty((n_samples, lat.n), np.int8)
        lat.sweeps(spins, h, T_EFF, stuck, n_samples, per_sample, np.uint64(5), out,
                   threads=threads, r0dt=r0dt)
        return spins, out

    serial = run(1)
    lattice_kernels.sweeps_threaded = counting
    try:
        threaded = run(2)
    finally:
        lattice_kernels.sweeps_threaded = real
    assert np.array_equal(serial[0], threaded[0]) and np.array_equal(serial[1], threaded[1])
    assert lattice.PROBE_SWEEPS in probes or 2 * lattice.PROBE_SWEEPS in probes  # it did probe
    assert np.array_equal(serial[1][-1], serial[0])
