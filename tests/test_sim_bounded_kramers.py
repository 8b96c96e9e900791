"""Bounded Kramers tilt: the total switching rate saturates at the attempt rate, the ratio stays exact.

The model (:mod:`labstack.sim.dynamics`): ``k = 2 G0 exp(-dU/T) cosh(h/T)``,
``k_b = k / (1 + k / G0)``, ``r_up = k_b sigmoid(2h/T)``, ``r_down = k_b sigmoid(-2h/T)``.
Each simulated path (exact telegraph, tabulated kernel, lattice kernel) is checked
against ``k_b`` at a field beyond the barrier, where the unbounded law is three
times faster and the same test rejects it.
"""

from __future__ import annotations

import inspect

import numpy as np
import pytest

from labstack.fit import ising
from labstack.sim import lattice as lattice_module
from labstack.sim.dynamics import CellEnsemble, CouplingGraph, correlation_time, kramers_rates
from labstack.sim.truth import GroundTruth

G0, BARRIER, T = 1.0e6, 0.045, 0.03  # dU / T = 1.5: a tilted cell still visits its other state


def closed_form_total(h: np.ndarray) -> np.ndarray:
    k = 2.0 * G0 * np.exp(-BARRIER / T) * np.cosh(h / T)
    return k / (1.0 + k / G0)


def test_total_rate_saturates_at_the_attempt_rate_and_the_ratio_is_exact() -> None:
    h = np.linspace(0.0, 20 * BARRIER, 401)  # 0 to 20 barriers (h / T up to 30)
    up, down = kramers_rates(h, T, np.full(h.size, G0), np.full(h.size, BARRIER), bounded=True)
    total = up + down
    assert np.allclose(total, closed_form_total(h), rtol=1e-12)
    assert np.all(total <= G0) and np.all(np.diff(total) > 0)  # never above G0, rising in |h|
    assert total[-1] == pytest.approx(G0, rel=1e-6)
    assert np.allclose(np.log(up / down), 2.0 * h / T, rtol=1e-12, atol=1e-12)
    # symmetric in h, and far beyond any float's reach of cosh it is still G0, not inf or nan
    up_n, down_n = kramers_rates(-h, T, np.full(h.size, G0), np.full(h.size, BARRIER), bounded=True)
    assert np.allclose(up_n + down_n, total, rtol=1e-12)
    huge_up, huge_down = kramers_rates(np.array([1e3, -1e3]), T, np.full(2, G0), np.full(2, BARRIER), True)
    assert np.allclose(huge_up + huge_down, G0) and huge_down[0] == 0.0 and huge_up[1] == 0.0
    # the unbounded law passes G0 near the barrier: the bound is not a small correction there
    u_up, u_down = kramers_rates(h, T, np.full(h.size, G0), np.full(h.size, BARRIER))
    assert (u_up + u_down)[-1] > 1e6 * G0
    # at the fields where the cells are read (|h| ~ T) the two agree to k / G0
    small = h <= T
    assert np.allclose(total[small], (u_up + u_down)[small], rtol=3 * np.exp(-BARRIER / T) * np.cosh(1))


def test_bounded_master_equation_keeps_detailed_balance() -> None:
    """The exact generator with the bounded law has the Boltzmann distribution as its null vector."""
    truth = GroundTruth.from_seed(4, 3, "chain")
    h, j = np.array([0.06, -0.05, 0.04]), np.array([0.02, -0.015])
    pairs = truth.couplers.pairs
    q = ising.rate_matrix(h, pairs, j, T, truth.cells.gamma0_Hz, np.full(3, BARRIER), bounded=True)
    p = ising.boltzmann(h, pairs, j, T)
    flux = p[:, None] * q
    np.fill_diagonal(flux, 0.0)
    assert np.allclose(flux, flux.T, rtol=1e-10, atol=0.0)  # p_a Q_ab = p_b Q_ba
    assert np.allclose(p @ q, 0.0, atol=1e-9 * np.abs(q).max())


def telegraph_tau(samples: np.ndarray, period: float) -> tuple[float, float]:
    """Pooled tau and its standard error from transition counts of independent cells."""
    up = samples > 0
    a, b = up[:-1], up[1:]
    n0, n1 = (~a).sum(), a.sum()
    p01, p10 = (~a & b).sum() / n0, (a & ~b).sum() / n1
    lam = 1.0 - p01 - p10
    lam_err = np.sqrt(p01 * (1 - p01) / n0 + p10 * (1 - p10) / n1)
    tau = -period / np.log(lam)
    return float(tau), float(period / (lam * np.log(lam) ** 2) * lam_err)


@pytest.mark.parametrize(("path", "n"), [("telegraph", 64), ("table", 16), ("lattice", 128)])
def test_telegraph_beyond_the_barrier_switches_at_the_bounded_rate(monkeypatch, path: str, n: int) -> None:
    """At ``h = 1.5 dU`` the measured correlation time is ``1 / k_b``; ``1 / k`` is rejected.

    ``table`` and ``lattice`` run the coupled path's finite steps (a chain whose couplings
    are all zero, so the answer is still the isolated cell's) on each compiled kernel.
    """
    h_value = 1.5 * BARRIER
    lattice_calls = []
    if path != "telegraph":
        original = lattice_module.Lattice.sweeps

        def spy(self, *args, **kwargs):
            bound = inspect.signature(original).bind(self, *args, **kwargs)
            lattice_calls.append(bound.arguments.get("sat"))
            return original(self, *args, **kwargs)

        monkeypatch.setattr(lattice_module.Lattice, "sweeps", spy)
    pairs = np.stack([np.arange(n - 1), np.arange(1, n)], axis=1)
    graph = None if path == "telegraph" else CouplingGraph.build(n, pairs, np.zeros(n - 1))
    h = np.full(n, h_value)
    cells = CellEnsemble(np.full(n, G0), np.full(n, BARRIER), np.zeros(n, np.int8),
                         np.random.default_rng(11), bounded=True)
    tau_b = float(correlation_time(h, T, cells.gamma0, cells.barrier, bounded=True)[0])
    tau_u = float(correlation_time(h, T, cells.gamma0, cells.barrier)[0])
    assert tau_b / tau_u == pytest.approx(1.0 + 1.0 / (G0 * tau_u))
    assert tau_b / tau_u > 3.0
    period = 0.3 * tau_b
    samples = cells.sample(int(4e6 // n), period, h, T, graph)
    tau, err = telegraph_tau(samples, period)
    assert abs(tau - tau_b) < 4 * err, (tau / tau_b, err / tau_b)
    assert abs(tau - tau_u) > 50 * err  # the unbounded law fails the same test
    assert samples.mean() == pytest.approx(np.tanh(h_value / T), abs=0.01)  # Boltzmann P(+1)
    if path == "lattice":
        assert lattice_calls and np.all(lattice_calls[0] > 0)  # the kinetic lattice kernel, bounded
    elif path == "table":
        assert not lattice_calls
