"""Dynamics against independent answers: telegraph theory, Arrhenius, the exact master equation."""

from __future__ import annotations

import time

import numpy as np
import pytest

from labstack.fit import ising
from labstack.sim.dynamics import CellEnsemble, CouplingGraph, correlation_time
from labstack.sim.truth import GroundTruth

GAMMA0 = 1.0e9
BARRIER = 0.25


def transition_tau(samples: np.ndarray, period: float) -> np.ndarray:
    """tau per column from transition counting: exp(-period/tau) = 1 - P(flip|down) - P(flip|up)."""
    up = samples > 0
    a, b = up[:-1], up[1:]
    p_down_up = (~a & b).sum(0) / np.maximum((~a).sum(0), 1)
    p_up_down = (a & ~b).sum(0) / np.maximum(a.sum(0), 1)
    return -period / np.log(1.0 - p_down_up - p_up_down)


def zero_coupling_graph(n: int) -> CouplingGraph:
    """A chain whose couplings are all exactly zero: the step-by-step path on independent cells."""
    pairs = np.stack([np.arange(n - 1), np.arange(1, n)], axis=1)
    return CouplingGraph.build(n, pairs, np.zeros(n - 1))


@pytest.mark.parametrize("path", ["telegraph", "steps"])
def test_isolated_correlation_time_matches_kramers(path: str) -> None:
    """Each cell's measured tau equals 1/(r_up + r_down) across fields; longest at h = 0."""
    t_eff = 0.04
    fields = np.array([-0.04, -0.02, 0.0, 0.01, 0.03])
    per_field = 60
    h = np.repeat(fields, per_field)
    n = len(h)
    cells = CellEnsemble(np.full(n, GAMMA0), np.full(n, BARRIER), np.zeros(n, np.int8),
                         np.random.default_rng(2))
    tau = correlation_time(h, t_eff, cells.gamma0, cells.barrier)
    period = 0.5 * tau.max()
    graph = None if path == "telegraph" else zero_coupling_graph(n)
    samples = cells.sample(3000, period, h, t_eff, graph)
    measured = transition_tau(samples, period).reshape(len(fields), per_field)
    est, err = measured.mean(1), measured.std(1, ddof=1) / np.sqrt(per_field)
    theory = tau.reshape(len(fields), per_field)[:, 0]
    assert np.all(np.abs(est - theory) < 4 * err + 0.01 * theory), (est / theory, err / theory)
    assert np.all(np.abs(est / theory - 1) < 0.03)
    assert est[fields == 0.0][0] > est[fields != 0.0].max()  # longest at p = 0.5


def test_correlation_time_is_arrhenius() -> None:
    """ln tau(h=0) against 1/T has slope dU and intercept -ln(2 G0)."""
    temps = np.array([0.03, 0.035, 0.04, 0.05, 0.06])
    n = 200
    taus = []
    for k, t_eff in enumerate(temps):
        cells = CellEnsemble(np.full(n, GAMMA0), np.full(n, BARRIER), np.zeros(n, np.int8),
                             np.random.default_rng(10 + k))
        tau = 1.0 / (2 * GAMMA0 * np.exp(-BARRIER / t_eff))
        samples = cells.sample(2000, 0.5 * tau, np.zeros(n), t_eff)
        taus.append(transition_tau(samples, 0.5 * tau).mean())
    slope, intercept = np.polyfit(1.0 / temps, np.log(taus), 1)
    assert slope == pytest.approx(BARRIER, rel=0.02)
    assert intercept == pytest.approx(-np.log(2 * GAMMA0), abs=0.05)
    assert taus[0] / taus[-1] > 50  # exp(dU (1/0.03 - 1/0.06)) = 65 over this range


def disjoint_copies(pairs: np.ndarray, n: int, copies: int) -> np.ndarray:
    return np.concatenate([pairs + c * n for c in range(copies)])


def matches_master_equation(samples: np.ndarray, h, pairs, j, t_eff: float, gamma0, barrier,  # noqa: ANN001
                            period: float, cell: int) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Assert that cell ``cell``'s and the magnetization's normalised autocorrelations at
    1, 2, 4, 8 samples, estimated over independent copies (``samples``: (samples, copies,
    cells)), match the exact master equation's within 4 standard errors; (estimate, exact,
    stderr) of each."""
    q = ising.rate_matrix(h, pairs, j, t_eff, gamma0, barrier)
    p = ising.boltzmann(h, pairs, j, t_eff)
    states = ising.all_states(len(h)).astype(float)
    lags = np.array([1, 2, 4, 8])
    out = {}
    for name, series, observable in [
        (f"s{cell}", samples[:, :, cell], states[:, cell]),
        ("M", samples.sum(axis=2), states.sum(axis=1)),
    ]:
        exact = ising.autocorrelation(q, p, observable, lags * period)
        mean, var = p @ observable, p @ (observable - p @ observable) ** 2
        x = (series - mean) / np.sqrt(var)
        per_copy = np.array([np.mean(x[:-k] * x[k:], axis=0) for k in lags])  # (lags, copies)
        est, err = per_copy.mean(axis=1), per_copy.std(axis=1, ddof=1) / np.sqrt(series.shape[1])
        assert np.all(np.abs(est - exact) < 4 * err), (name, est, exact, err)
        out[name] = (est, exact, err)
    return out


@pytest.mark.parametrize("step_fraction", [0.05, 0.0125])
def test_coupled_autocorrelation_matches_master_equation(step_fraction: float) -> None:
    """A coupled 3-cell chain: autocorrelation of s_0 and of the magnetization, exact vs simulated.

    200 disjoint copies of the chain give independent replicas, so the error bars are
    plain standard errors. The answer must not depend on the step (two step sizes),
    and must differ from what uncoupled cells would give.
    """
    n, copies, t_eff = 3, 200, 0.035
    truth = GroundTruth.from_seed(21, n, "chain")
    gamma0, barrier = truth.cells.gamma0_Hz, truth.cells.barrier_K
    h = np.array([0.005, -0.01, 0.0])
    j = np.array([0.025, 0.02])
    pairs = truth.couplers.pairs
    graph = CouplingGraph.build(n * copies, disjoint_copies(pairs, n, copies), np.tile(j, copies))
    cells = CellEnsemble(np.tile(gamma0, copies), np.tile(barrier, copies),
                         np.zeros(n * copies, np.int8), np.random.default_rng(3),
                         step_fraction=step_fraction)
    h_all = np.tile(h, copies)
    tau0 = correlation_time(np.zeros(n), t_eff, gamma0, barrier).max()
    period = 0.25 * tau0
    cells.evolve(50 * tau0, h_all, t_eff, graph)
    samples = cells.sample(2000, period, h_all, t_eff, graph).astype(float)
    samples = samples.reshape(len(samples), copies, n)

    matches_master_equation(samples, h, pairs, j, t_eff, gamma0, barrier, period, cell=0)
    q = ising.rate_matrix(h, pairs, j, t_eff, gamma0, barrier)
    p = ising.boltzmann(h, pairs, j, t_eff)
    states = ising.all_states(n).astype(float)
    # power: uncoupled cells would decorrelate measurably differently
    iso_tau = correlation_time(h, t_eff, gamma0, barrier)[0]
    assert np.abs(np.exp(-8 * period / iso_tau) - ising.autocorrelation(
        q, p, states[:, 0], [8 * period])[0]) > 0.05


def test_same_seed_same_bits_and_threads_do_not_matter() -> None:
    truth = GroundTruth.from_seed(5, 64, "grid")
    j = np.full(truth.couplers.n, 0.02)

    def run(seed: int, threshold: int) -> np.ndarray:
        graph = CouplingGraph.build(64, truth.couplers.pairs, j)
        cells = CellEnsemble(truth.cells.gamma0_Hz, truth.cells.barrier_K, truth.cells.stuck,
                             np.random.default_rng(seed), parallel_threshold=threshold)
        h = np.linspace(-0.02, 0.02, 64)
        a = cells.sample(50, 1e-6, h, 0.035, graph)
        cells.evolve(2.0, h, 0.035, graph)
        b = cells.sample(50, 1e-6, h, 0.035, None)
        cells.sweeps(10, h, 0.035, graph)
        return np.concatenate([a, b, cells.spins[None]])

    first = run(1, 10**9)
    assert np.array_equal(first, run(1, 10**9))
    assert np.array_equal(first, run(1, 1))  # threaded sweeps: identical bits
    assert not np.array_equal(first, run(2, 10**9))


def test_stiff_weakly_coupled_chain_steps_past_its_fast_cells_and_matches_the_master_equation() -> None:
    """Rates over three decades, idle-strength couplings, sampled where the fast cells forget
    their state between samples: a handful of steps per sample instead of ~10^4, and still
    the exact master equation's autocorrelations and the exact Boltzmann distribution."""
    n, copies, t_eff = 3, 400, 0.035
    gamma0 = np.full(n, 1.0e9)
    barrier = np.array([0.15, 0.15 + t_eff * np.log(1000.0), 0.25])  # r0: 1.4e7, 1.4e4, 7.9e5 /s
    pairs = np.array([[0, 1], [1, 2]])
    j = np.array([0.0045, -0.004])  # Dobrushin constant 0.24: weak, as idle couplers are
    h = np.array([0.003, -0.002, 0.004])
    graph = CouplingGraph.build(n * copies, disjoint_copies(pairs, n, copies), np.tile(j, copies))
    cells = CellEnsemble(np.tile(gamma0, copies), np.tile(barrier, copies),
                         np.zeros(n * copies, np.int8), np.random.default_rng(5))
    r0 = cells.attempt_rates(t_eff)[:n]
    period = 0.25 / r0[1]
    assert graph.dobrushin(t_eff) <= CellEnsemble.WEAK_COUPLING
    steps, _ = cells._plan(period, t_eff, graph)
    assert steps <= 10 and period * r0.max() / cells.step_fraction > 1000  # stepped past cells 0, 2
    h_all = np.tile(h, copies)
    cells.evolve(50 / r0[1], h_all, t_eff, graph)
    samples = cells.sample(3000, period, h_all, t_eff, graph).astype(float).reshape(-1, copies, n)

    s1_est, s1_exact, s1_err = matches_master_equation(samples, h, pairs, j, t_eff, gamma0, barrier, period,
                                                       cell=1)["s1"]
    p = ising.boltzmann(h, pairs, j, t_eff)
    states = ising.all_states(n).astype(float)
    lags = np.array([1, 2, 4, 8])
    # the joint distribution of the chain is the exact enumeration's (chi-square over 8 states,
    # samples thinned to one in 8 so successive counts are nearly independent)
    codes = ((samples[::8] > 0) * np.array([4, 2, 1])).sum(axis=2).ravel()
    counts = np.bincount(codes.astype(int), minlength=8)
    order = [int("".join("1" if s > 0 else "0" for s in st), 2) for st in states]
    expected = p * counts.sum()
    chi2 = float(np.sum((counts[order] - expected) ** 2 / expected))
    assert chi2 < 24.3, chi2  # 7 dof, p = 0.001
    # power: the same chain uncoupled decorrelates its slow cell measurably differently, and
    # the simulation sides with the coupled master equation
    q0, p0 = ising.rate_matrix(h, pairs, 0 * j, t_eff, gamma0, barrier), ising.boltzmann(h, pairs, 0 * j, t_eff)
    uncoupled = ising.autocorrelation(q0, p0, states[:, 1], lags * period)
    assert abs(s1_est[0] - s1_exact[0]) < abs(s1_est[0] - uncoupled[0])
    assert abs(s1_exact[0] - uncoupled[0]) > 3 * s1_err[0]


def test_lab_sized_acquisition_is_fast_and_long_waits_are_cheap() -> None:
    """5000 samples of a coupled 16-cell chain at the sampler's default rate; a 5 s wait."""
    truth = GroundTruth.from_seed(1234, 16, "chain")
    graph = CouplingGraph.build(16, truth.couplers.pairs, np.full(15, 0.02))
    cells = CellEnsemble(truth.cells.gamma0_Hz, truth.cells.barrier_K, truth.cells.stuck,
                         np.random.default_rng(0))
    h, t_eff = np.zeros(16), truth.noise.t_eff(0.010)
    cells.sample(10, 20e-6, h, t_eff, graph)  # compile
    start = time.perf_counter()
    samples = cells.sample(5000, 20e-6, h, t_eff, graph)
    cells.evolve(5.0, h, t_eff, graph)
    elapsed = time.perf_counter() - start
    assert samples.shape == (5000, 16) and samples.dtype == np.int8
    assert elapsed < 3.0, elapsed  # was ~19 s with Python-level sub-steps


def test_tabulated_sweeps_equal_the_direct_rule_bit_for_bit() -> None:
    """The 32-bit table with its tie fallback makes exactly the decisions of the 53-bit rule."""
    from labstack.sim import kernels

    side, t_eff, dt = 6, 0.03, 2e-7
    truth = GroundTruth.from_seed(8, side * side, "grid")
    rng = np.random.default_rng(8)
    graph = CouplingGraph.build(side * side, truth.couplers.pairs,
                                rng.normal(0.0, 0.03, truth.couplers.n))
    lay = graph.layout()
    g0 = rng.normal(0.0, 0.02, side * side) / t_eff
    jt = lay.j / t_eff
    frozen = np.zeros(side * side, bool)
    frozen[[3, 17]] = True
    start = (rng.random(side * side) < 0.5).astype(np.uint8)
    key = np.uint64(12345)
    # heat bath; finite steps with the unbounded law (sat = 0) and the bounded one
    for heat_bath, bound in ((True, 0.0), (False, 0.0), (False, 1e-3)):
        r0dt = np.zeros(side * side) if heat_bath else 1e6 * rng.uniform(0.5, 2, side * side) * dt
        sat = np.full(side * side, bound)
        pin = np.where(frozen, start, -1).astype(np.int8)
        tab = kernels.table(side * side, heat_bath)
        kernels.fill_table(tab, g0, jt, r0dt, sat, pin, heat_bath)
        a, b = start.copy(), start.copy()
        kernels.sweeps_table(a, tab, lay.nbr, lay.bounds, 300, key, 0, g0, jt, r0dt, sat, pin, heat_bath)
        kernels.sweeps_general(b, g0, jt, r0dt, sat, lay.nbr, lay.bounds, frozen, heat_bath, 300, key, 0)
        assert np.array_equal(a, b)
        assert 0 < a.mean() < 1 and np.array_equal(a[[3, 17]], start[[3, 17]])


def test_bias_sweep_at_microsecond_sampling_follows_the_swept_width(monkeypatch) -> None:
    """All bias lines stepped together on a chip with DAC crosstalk, sampled every 5 us.

    This is what the calibration graph's bias S-curve sees, run here on the kinetic
    fast path (finite steps on the lattice kernel), with the chip's own spread of
    attempt rates (slow cells take steps of ``r0 dt`` ~ 1e-3). Per cell, P(+1) must be
    ``sigmoid((V - V0') / w')`` with the swept width ``w' = T / (2 (alpha + X))`` of the
    ground truth: the widths pooled over the cells agree with ``w'`` to their error and
    are measurably narrower than the single-line ``T / (2 alpha)``, so a narrowing of
    that size is crosstalk, not the sampler.
    """
    from scipy import optimize, special

    from labstack.sim.lab import VirtualLab

    monkeypatch.setattr(CellEnsemble, "KINETIC_LATTICE_FROM", 0)  # the lattice at 16 cells too
    # every cell resolved, as on a strongly coupled chip: short kinetic steps (uncoupled, the
    # plan would take one exact step per sample, see the stiff-chain test)
    monkeypatch.setattr(CellEnsemble, "WEAK_COUPLING", -1.0)
    lab = VirtualLab.from_description("seed=7,cells=16,crosstalk=0.05")
    truth, cells = lab.truth, lab.cells
    lab.coupler_V[:] = truth.couplers.vc0_V  # couplers at their true zero: J = 0
    lab._graph_dirty = True
    graph = lab.coupling_graph()
    assert graph is not None and graph.lattice() is not None
    t_eff = lab.t_eff()
    swept, single = truth.swept_scurve_width_V(lab.cryostat.t_chip), truth.scurve_width_V(lab.cryostat.t_chip)
    assert np.all(swept < 0.97 * single)  # every cell has a crosstalking neighbour line
    period, n_samples = 5e-6, 1500
    n_steps, dt = cells._plan(period, t_eff, graph)
    assert np.isfinite(dt) and cells._resolved(t_eff, dt)  # the kinetic fast path
    assert cells.attempt_rates(t_eff).min() * dt < 5e-3  # and slow cells take short steps
    v0 = truth.cells.v0_V * truth.cells.alpha_K_per_V / (truth.cells.alpha_K_per_V
                                                          + truth.crosstalk_K_per_V.sum(1))
    volts = np.linspace(-4.0, 4.0, 21)  # in units of three typical widths around the centre
    p = np.empty((16, len(volts)))
    n_eff = np.empty_like(p)
    centre, scale = np.median(v0), np.median(swept)
    grid = centre + volts * scale * 3.0
    for k, v in enumerate(grid):
        lab.bias_V[:] = v
        h = lab.fields()
        cells.evolve(2e-4, h, t_eff, graph)
        up = (cells.sample(n_samples, period, h, t_eff, graph) > 0).astype(float)
        x = up - up.mean(0)
        with np.errstate(invalid="ignore", divide="ignore"):
            rho = np.clip(np.nan_to_num((x[1:] * x[:-1]).mean(0) / (x * x).mean(0)), 0.0, 0.99)
        n_eff[:, k] = n_samples * (1 - rho) / (1 + rho)
        p[:, k] = up.mean(0)
    widths, sigmas = [], []
    for i in range(16):  # binomial errors from the model, not the data (that would bias w down)
        def model(v, c, w):
            return special.expit((v - c) / w)

        popt = (v0[i], swept[i])
        for _ in range(3):
            q = model(grid, *popt).clip(1e-6, 1 - 1e-6)
            popt, pcov = optimize.curve_fit(model, grid, p[i], p0=popt, absolute_sigma=True,
                                            sigma=np.sqrt(q * (1 - q) / n_eff[i]))
        widths.append(popt[1])
        sigmas.append(np.sqrt(pcov[1, 1]))
    widths, sigmas = np.array(widths), np.array(sigmas)
    pulls = (widths - swept) / sigmas
    assert np.all(np.abs(pulls) < 4.5), np.round(pulls, 1)
    ratio = widths / swept
    mean, sem = ratio.mean(), ratio.std(ddof=1) / np.sqrt(16)
    assert abs(mean - 1) < 4 * sem, (mean, sem)
    off = np.mean(widths / single)  # against the single-line width: clearly narrower
    assert off < 1 - 10 * sem, (off, sem)


def test_steps_below_the_lattice_resolution_take_the_exact_kernel(monkeypatch) -> None:
    """A finite step whose zero-field flip probability the lattice would round goes to the table."""
    from labstack.sim.lattice import Lattice

    truth = GroundTruth.from_seed(3, 16, "chain")
    graph = CouplingGraph.build(16, truth.couplers.pairs, np.full(15, 0.01))
    t_eff, h = 0.035, np.linspace(-0.03, 0.03, 16)
    monkeypatch.setattr(CellEnsemble, "KINETIC_LATTICE_FROM", 0)
    lattice_calls = []
    real = Lattice.sweeps
    monkeypatch.setattr(Lattice, "sweeps", lambda self, *a, **k: (lattice_calls.append(a[-1] if a else
                                                                                       k.get("r0dt")),
                                                                   real(self, *a, **k))[1])

    def run(period: float, fast: bool) -> np.ndarray:
        monkeypatch.setattr(CellEnsemble, "KINETIC_ON_LATTICE", fast)
        cells = CellEnsemble(truth.cells.gamma0_Hz, truth.cells.barrier_K, truth.cells.stuck,
                             np.random.default_rng(4))
        return cells.sample(200, period, h, t_eff, graph)

    r0 = CellEnsemble(truth.cells.gamma0_Hz, truth.cells.barrier_K, truth.cells.stuck,
                      np.random.default_rng(0)).attempt_rates(t_eff)
    tiny = 0.5 * CellEnsemble.KINETIC_MIN_R0DT / r0.min()  # one step per sample, below resolution
    assert np.array_equal(run(tiny, True), run(tiny, False))
    assert lattice_calls == []
    normal = 2.0 / r0.max()
    fast = run(normal, True)
    assert len(lattice_calls) == 1  # resolved steps do take the lattice
    assert not np.array_equal(fast, run(normal, False))


def test_finite_steps_take_the_lattice_from_64_cells(monkeypatch) -> None:
    """Small chips' finite steps stay on the table (faster there), larger ones take the lattice."""
    from labstack.sim.lattice import Lattice

    calls = []
    real = Lattice.sweeps
    monkeypatch.setattr(Lattice, "sweeps", lambda self, *a, **k: (calls.append(self.n),
                                                                   real(self, *a, **k))[1])
    for n in (16, 63, 64, 100):
        truth = GroundTruth.from_seed(2, n, "chain")
        graph = CouplingGraph.build(n, truth.couplers.pairs, np.full(n - 1, 0.01))
        cells = CellEnsemble(truth.cells.gamma0_Hz, truth.cells.barrier_K, truth.cells.stuck,
                             np.random.default_rng(1))
        cells.sample(5, 1e-6, np.zeros(n), 0.035, graph)
    assert calls == [64, 100]
