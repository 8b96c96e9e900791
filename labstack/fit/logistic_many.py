"""Many S-curves at once: the binomial logistic fit of :mod:`labstack.fit.logistic`,
vectorized over cells.

A chip with 10^5-10^6 cells cannot afford a Python call (let alone a scipy
optimiser) per cell: :func:`fit_logistic_many` fits every row of a
``(cells, points)`` count array with whole-array numpy operations, so the cost
per cell is a few hundred floating-point operations per point.

Same model and estimator as :func:`labstack.fit.fit_logistic`: maximum likelihood
on the binomial counts, ``logit P = a + b u`` on the centred, scaled voltage ``u``,
``V0`` and ``w`` and their errors by the delta method from the Fisher information.
Start values come in closed form from a weighted least-squares line through the
empirical logits ``log((k + 1/2) / (n - k + 1/2))`` (weights ``n p (1 - p)``, the
inverse variance of an empirical logit), which is already close to the maximum;
a few Newton steps with per-cell step halving finish the job. The 2x2 normal
equations are solved in closed form, cell by cell in parallel.

Each cell gets a flag instead of an exception, as in the scalar fit:
``OK``; ``NO_TRANSITION`` (always -1 or always +1: stuck, dead, or V0 far out);
``UNDETERMINED`` (the transition is narrower than the voltage step, or Newton did
not converge); ``OUTSIDE`` (V0 outside the scanned range).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy.special import expit

OK, NO_TRANSITION, UNDETERMINED, OUTSIDE = 0, 1, 2, 3
FLAG_NAMES = {
    OK: "ok",
    NO_TRANSITION: "no_transition",
    UNDETERMINED: "undetermined",
    OUTSIDE: "outside_range",
}
#: |b| beyond this (in units of the half-span) means a step narrower than ~1e-3 of the span
MAX_SLOPE = 1e3


class LogisticFits(NamedTuple):
    """Per-cell results, each an array over the leading (cell) dimensions."""

    V0: np.ndarray
    w: np.ndarray
    V0_err: np.ndarray
    w_err: np.ndarray
    chi2_reduced: np.ndarray
    flag: np.ndarray  # int8, see FLAG_NAMES
    iterations: np.ndarray  # int16: Newton steps taken


def _loglik(k: np.ndarray, n: np.ndarray, eta: np.ndarray) -> np.ndarray:
    return np.sum(k * eta - n * np.logaddexp(0.0, eta), axis=-1)


def _information(u: np.ndarray, n: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, ...]:
    W = n * p * (1.0 - p)
    Wu = W * u
    return W.sum(axis=-1), Wu.sum(axis=-1), (Wu * u).sum(axis=-1)


def _start(u: np.ndarray, k: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Closed-form weighted least squares on the empirical logits."""
    z = np.log((k + 0.5) / (n - k + 0.5))
    wt = (k + 0.5) * (n - k + 0.5) / (n + 1.0)
    s0, s1, s2 = wt.sum(-1), (wt * u).sum(-1), (wt * u * u).sum(-1)
    t0, t1 = (wt * z).sum(-1), (wt * u * z).sum(-1)
    det = s0 * s2 - s1 * s1
    with np.errstate(divide="ignore", invalid="ignore"):
        b = np.where(det > 0, (s0 * t1 - s1 * t0) / det, 0.0)
        a = np.where(s0 > 0, (t0 - b * s1) / s0, 0.0)
    return a, b


def fit_logistic_many(
    V: np.ndarray,
    n_plus: np.ndarray,
    n_shots: np.ndarray | float,
    *,
    max_iter: int = 30,
    max_halvings: int = 20,
) -> LogisticFits:
    """Fit ``P(+1) = 1 / (1 + exp(-(V - V0) / w))`` to every row of ``n_plus``.

    ``V`` has shape ``(points,)``; ``n_plus`` has shape ``(..., points)`` and
    ``n_shots`` broadcasts to it. Returns arrays of shape ``n_plus.shape[:-1]``.
    """
    V = np.asarray(V, dtype=float)
    k_in = np.asarray(n_plus)
    lead = k_in.shape[:-1]
    if k_in.shape[-1:] != V.shape:
        raise ValueError(f"last axis of n_plus {k_in.shape} must match V {V.shape}")
    k = k_in.reshape(-1, V.size).astype(float)
    n = np.broadcast_to(np.asarray(n_shots, dtype=float), k_in.shape).reshape(k.shape)
    if np.any(n <= 0) or np.any(k < 0) or np.any(k > n):
        raise ValueError("counts must satisfy 0 <= n_plus <= n_shots, n_shots > 0")
    cells = k.shape[0]
    centre, scale = float(np.mean(V)), float(np.ptp(V)) / 2 or 1.0
    u = (V - centre) / scale

    flag = np.zeros(cells, dtype=np.int8)
    flag[np.all(k == 0, axis=-1) | np.all(k == n, axis=-1)] = NO_TRANSITION
    a, b = _start(u, k, n)
    iterations = np.zeros(cells, dtype=np.int16)
    active = np.flatnonzero(flag == OK)
    converged = np.zeros(cells, dtype=bool)
    # the likelihood at the accepted point is carried over, so each Newton step costs
    # one expit and (without halving) one logaddexp over the active cells
    eta_all = a[active, None] + b[active, None] * u
    ll_all = _loglik(k[active], n[active], eta_all)
    for _ in range(max_iter):
        if active.size == 0:
            break
        ka, na, aa, ba = k[active], n[active], a[active], b[active]
        p = expit(eta_all)
        r = ka - na * p
        ga, gb = r.sum(-1), (r * u).sum(-1)
        iaa, iab, ibb = _information(u, na, p)
        det = iaa * ibb - iab * iab
        singular = ~(det > 0)
        det = np.where(singular, 1.0, det)
        da = np.where(singular, 0.0, (ibb * ga - iab * gb) / det)
        db = np.where(singular, 0.0, (iaa * gb - iab * ga) / det)
        eta_new = (aa + da)[:, None] + (ba + db)[:, None] * u
        ll_new = _loglik(ka, na, eta_new)
        # step halving, only for the cells whose likelihood went down
        t = np.ones(active.size)
        todo = np.flatnonzero(ll_new < ll_all - 1e-12)
        for _h in range(max_halvings):
            if todo.size == 0:
                break
            t[todo] /= 2
            a_try, b_try = aa[todo] + t[todo] * da[todo], ba[todo] + t[todo] * db[todo]
            trial = a_try[:, None] + b_try[:, None] * u
            ll_trial = _loglik(ka[todo], na[todo], trial)
            better = ll_trial >= ll_all[todo] - 1e-12
            eta_new[todo[better]] = trial[better]
            ll_new[todo[better]] = ll_trial[better]
            todo = todo[~better]
        if todo.size:  # no ascent found: stay put
            eta_new[todo] = eta_all[todo]
            ll_new[todo] = ll_all[todo]
            t[todo] = 0.0
        a[active] = aa + t * da
        b[active] = ba + t * db
        iterations[active] += 1
        size = np.maximum(np.abs(t * da), np.abs(t * db))
        done = (size < 1e-10 * (1 + np.maximum(np.abs(a[active]), np.abs(b[active])))) | singular
        converged[active[done & ~singular]] = True
        runaway = np.abs(b[active]) > 1e4
        flag[active[singular | runaway]] = UNDETERMINED
        keep = ~(done | runaway)
        active, eta_all, ll_all = active[keep], eta_new[keep], ll_new[keep]
    flag[(flag == OK) & (~converged | (np.abs(b) > MAX_SLOPE))] = UNDETERMINED

    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        eta = a[:, None] + b[:, None] * u
        p = expit(eta)
        iaa, iab, ibb = _information(u, n, p)
        det = iaa * ibb - iab * iab
        caa, cab, cbb = ibb / det, -iab / det, iaa / det
        V0 = centre - scale * a / b
        w = scale / b
        j00, j01, j11 = -scale / b, scale * a / b**2, -scale / b**2
        V0_err = np.sqrt(j00**2 * caa + 2 * j00 * j01 * cab + j01**2 * cbb)
        w_err = np.sqrt(j11**2 * cbb)
        pearson = (k - n * p) / np.sqrt(n * p * (1 - p))
        dof = V.size - 2
        chi2 = np.sum(pearson**2, axis=-1) / dof if dof > 0 else np.full(cells, np.nan)
    flag[(flag == OK) & ~((V.min() <= V0) & (V0 <= V.max()))] = OUTSIDE
    bad = flag != OK
    for arr in (V0_err, w_err, chi2):
        arr[bad] = np.nan
    undetermined = (flag == NO_TRANSITION) | (flag == UNDETERMINED)
    V0[undetermined] = np.nan
    w[undetermined] = np.nan

    def shaped(x: np.ndarray) -> np.ndarray:
        return x.reshape(lead)

    return LogisticFits(*(shaped(x) for x in (V0, w, V0_err, w_err, chi2, flag, iterations)))
