"""The event-by-event kinetic kernel runs the same chain as the stepped kernels.

Long stretches between samples (``CellEnsemble.EVENTS_FROM_SWEEPS`` steps or more) run
event by event (labstack/sim/event_kernels.py). Its states, lag-one autocorrelations
and neighbour correlations must agree with the stepped kernel's within their
statistical errors on a coupled chain with fields, and its bounded law and stuck cells
must behave as theirs.
"""

from __future__ import annotations

import numpy as np

from labstack.sim.dynamics import CellEnsemble, CouplingGraph

T = 0.03
N = 8


def _chip(seed: int = 1):
    rng = np.random.default_rng(seed)
    gamma0 = 10 ** rng.uniform(8, 9, N)
    barrier = rng.uniform(0.1, 0.2, N)
    pairs = np.array([(i, i + 1) for i in range(N - 1)])
    graph = CouplingGraph.build(N, pairs, rng.uniform(-0.02, 0.02, N - 1))
    h = rng.uniform(-0.03, 0.03, N)
    stuck = np.zeros(N, np.int8)
    stuck[5] = 1
    return gamma0, barrier, stuck, graph, h


def _statistics(events: bool, seeds, bounded: bool):
    gamma0, barrier, stuck, graph, h = _chip()
    rows = []
    for seed in seeds:
        cells = CellEnsemble(gamma0, barrier, stuck, np.random.default_rng(seed), bounded=bounded)
        cells.EVENTS_FROM_SWEEPS = 1 if events else 10**12
        period = 0.5 / float(cells.attempt_rates(T).min())  # ~tau_c of the slowest cell
        assert cells._plan(period, T, graph)[0] > 50  # many steps per sample: a stepped stretch
        cells.sample(100, period, h, T, graph)
        s = cells.sample(1000, period, h, T, graph).astype(float)
        m = s.mean(0)
        with np.errstate(invalid="ignore", divide="ignore"):
            rho = ((s[1:] - m) * (s[:-1] - m)).mean(0) / s.var(0)
        rows.append(np.concatenate([m, np.nan_to_num(rho), (s[:, :-1] * s[:, 1:]).mean(0)]))
        assert np.all(s[:, 5] == 1)  # a stuck cell never moves
    return np.array(rows)


def test_events_and_steps_agree_on_a_coupled_chain():
    for bounded in (False, True):
        a = _statistics(False, range(10, 18), bounded)
        b = _statistics(True, range(40, 48), bounded)
        err = np.sqrt(a.var(0, ddof=1) / len(a) + b.var(0, ddof=1) / len(b))
        ok = err > 0
        z = (a.mean(0) - b.mean(0))[ok] / err[ok]
        assert np.sqrt(np.mean(z**2)) < 1.6, z
        assert np.abs(z).max() < 4.0, z
