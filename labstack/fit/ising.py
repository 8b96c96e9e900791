"""Exact answers for small Ising chips, by enumeration: the reference the sampler is tested against.

A neutral place (not the simulator): the validation node computes its target
distribution here, and the simulator's tests check the sampler against it.

Written independently of :mod:`labstack.sim.dynamics` (no shared code path): it
enumerates all ``2**n`` states, so it is for ``n <= ~12``. It gives

* the Boltzmann distribution ``P(s) ∝ exp((Σ h_i s_i + Σ J_ij s_i s_j) / T)``,
* the continuous-time master equation of single-cell Kramers flips (the chip's
  physical dynamics, with rate ``G0 exp(-(dU - s'_i h_loc) / T)`` into the state
  where cell ``i`` has turned to ``s'_i``), and from it exact autocorrelation
  functions at any lag.

State ``k`` has cell ``i`` up iff bit ``i`` of ``k`` is set.
"""

from __future__ import annotations

import numpy as np
from scipy.linalg import expm


def all_states(n: int) -> np.ndarray:
    """Every state as int8 spins, shape ``(2**n, n)``; row ``k`` is state ``k``."""
    k = np.arange(2**n)[:, None]
    bits = (k >> np.arange(n)[None, :]) & 1
    return (2 * bits - 1).astype(np.int8)


def state_index(spins: np.ndarray) -> np.ndarray:
    """Index of each state (rows of ``spins``, values +-1) in :func:`all_states` order."""
    bits = (np.asarray(spins) > 0).astype(np.int64)
    return bits @ (1 << np.arange(bits.shape[-1], dtype=np.int64))


def energies(h: np.ndarray, pairs: np.ndarray, j: np.ndarray) -> np.ndarray:
    """``E(s) = -Σ h_i s_i - Σ_(i,j) J_ij s_i s_j`` (kelvin) for every state."""
    s = all_states(len(h)).astype(float)
    pairs = np.asarray(pairs, dtype=int).reshape(-1, 2)
    e = -s @ np.asarray(h, dtype=float)
    if len(pairs):
        e -= (s[:, pairs[:, 0]] * s[:, pairs[:, 1]]) @ np.asarray(j, dtype=float)
    return e


def boltzmann(h: np.ndarray, pairs: np.ndarray, j: np.ndarray, t_eff: float) -> np.ndarray:
    """Exact probabilities of every state at temperature ``t_eff`` (kelvin)."""
    e = energies(h, pairs, j)
    w = np.exp(-(e - e.min()) / t_eff)
    return w / w.sum()


def marginals_and_correlations(
    p: np.ndarray, n: int, pairs: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``<s_i>`` and ``<s_i s_j>`` over ``pairs`` under distribution ``p``."""
    s = all_states(n).astype(float)
    pairs = np.asarray(pairs, dtype=int).reshape(-1, 2)
    return p @ s, p @ (s[:, pairs[:, 0]] * s[:, pairs[:, 1]])


def rate_matrix(
    h: np.ndarray,
    pairs: np.ndarray,
    j: np.ndarray,
    t_eff: float,
    gamma0: np.ndarray,
    barrier: np.ndarray,
    bounded: bool = False,
) -> np.ndarray:
    """Generator ``Q`` (rows: from, columns: to; rows sum to 0) of single-cell Kramers flips.

    ``bounded``: each cell's total rate ``k = r_up + r_down`` at its local field is
    ``k / (1 + k / G0)`` (the bounded tilt of :mod:`labstack.sim.dynamics`), split in
    the same ratio ``exp(2 h / T)``.
    """
    n = len(h)
    s = all_states(n).astype(float)
    coupling = np.zeros((n, n))
    for (a, b), value in zip(np.asarray(pairs, dtype=int).reshape(-1, 2), j, strict=True):
        coupling[a, b] += value
        coupling[b, a] += value
    h_loc = np.asarray(h, dtype=float)[None, :] + s @ coupling  # (states, cells)
    q = np.zeros((2**n, 2**n))
    rows = np.arange(2**n)
    for i in range(n):
        target = rows ^ (1 << i)
        new_spin = -s[:, i]
        rate = gamma0[i] * np.exp(-(barrier[i] - new_spin * h_loc[:, i]) / t_eff)
        if bounded:
            total = 2.0 * gamma0[i] * np.exp(-barrier[i] / t_eff) * np.cosh(h_loc[:, i] / t_eff)
            rate = rate / (1.0 + total / gamma0[i])
        q[rows, target] = rate
    q[rows, rows] = -q.sum(axis=1)
    return q


def autocorrelation(
    q: np.ndarray, p: np.ndarray, observable: np.ndarray, lags: np.ndarray
) -> np.ndarray:
    """Normalized stationary autocorrelation ``ρ(t)`` of ``observable`` (one value per state)."""
    f = np.asarray(observable, dtype=float)
    mean = p @ f
    var = p @ (f - mean) ** 2
    out = []
    for t in np.atleast_1d(lags):
        propagator = expm(q * float(t))
        out.append(((p * (f - mean)) @ propagator @ (f - mean)) / var)
    return np.array(out)


def kl_divergence(p_empirical: np.ndarray, p_exact: np.ndarray) -> float:
    """``KL(empirical || exact)`` in nats (terms with empirical zero contribute 0)."""
    mask = p_empirical > 0
    return float(np.sum(p_empirical[mask] * np.log(p_empirical[mask] / p_exact[mask])))
