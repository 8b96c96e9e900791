"""Exact enumeration on a target's cells: model distributions, moments, ML fits, scores.

Targets have at most 16 cells, so every quantity is a sum over all ``2**n`` states
(:func:`labstack.fit.ising.all_states` order). Parameters are dimensionless: fields
``theta`` (one per cell) and couplings ``beta`` (one per edge), ``P(s) ∝ exp(theta·s +
Σ_e beta_e s_a s_b)``. ``edges`` are pairs of *positions* in the target's cell list.
"""

from __future__ import annotations

import numpy as np

from labstack.fit import ising


def features(spins: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Sufficient statistics ``(s_i, s_a s_b)`` of each row of ±1 ``spins``: (rows, n + edges)."""
    s = np.asarray(spins, dtype=np.float64)
    e = np.asarray(edges, dtype=int).reshape(-1, 2)
    return np.concatenate([s, s[:, e[:, 0]] * s[:, e[:, 1]]], axis=1)


def distribution(params: np.ndarray, n: int, edges: np.ndarray) -> np.ndarray:
    """Probabilities of all ``2**n`` states for ``params = (theta, beta)``."""
    f = features(ising.all_states(n), edges)
    logw = f @ np.asarray(params, dtype=float)
    w = np.exp(logw - logw.max())
    return w / w.sum()


def moments(p: np.ndarray, n: int, edges: np.ndarray) -> np.ndarray:
    """Means and edge correlations under ``p``."""
    return p @ features(ising.all_states(n), edges)


def fit_ml(target_moments: np.ndarray, n: int, edges: np.ndarray, *, ridge: float = 1e-8,
           tol: float = 1e-12, max_iter: int = 200) -> np.ndarray:
    """Maximum-likelihood parameters whose moments equal ``target_moments`` (damped Newton).

    The log-likelihood of an exponential family is concave, so Newton with a backtracking
    line search on it converges from zero; ``ridge`` keeps the Hessian invertible when a
    data set sits near the boundary of the moments' polytope.
    """
    f = features(ising.all_states(n), edges)
    mu = np.asarray(target_moments, dtype=float)
    x = np.zeros(f.shape[1])

    def objective(x: np.ndarray) -> float:
        z = f @ x
        return float(x @ mu - (z.max() + np.log(np.exp(z - z.max()).sum())) - 0.5 * ridge * x @ x)

    value = objective(x)
    for _ in range(max_iter):
        p = distribution(x, n, edges)
        m = p @ f
        grad = mu - m - ridge * x
        cov = (f * p[:, None]).T @ f - np.outer(m, m) + ridge * np.eye(f.shape[1])
        step = np.linalg.solve(cov, grad)
        t = 1.0
        while t > 1e-6:
            new = objective(x + t * step)
            if new >= value - 1e-15:
                break
            t *= 0.5
        x, value = x + t * step, new
        if float(np.max(np.abs(grad))) < tol:
            break
    return x


def kl(p: np.ndarray, q: np.ndarray) -> float:
    """``KL(p || q)`` in nats (0 log 0 = 0)."""
    return ising.kl_divergence(p, q)


def log_likelihood(p: np.ndarray, samples: np.ndarray, floor: float = 1e-300) -> float:
    """Mean log-probability per sample of ±1 rows ``samples`` under ``p`` (nats)."""
    index = ising.state_index(samples)
    return float(np.mean(np.log(np.maximum(p[index], floor))))
