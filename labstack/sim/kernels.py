"""Compiled inner loops of the cell dynamics (numba), with a counter-based random stream.

Random numbers: the uniform used by cell ``i`` at sweep ``k`` of a call is
``splitmix64(key + (k * n + i + 1) * golden)``, a pure function of the call's key and
of (k, i). The result therefore does not depend on thread count or scheduling, and a
call draws exactly one 64-bit key from the ensemble's ``numpy.random.Generator``, so
"same seed, same commands" gives the same data bit for bit. SplitMix64 (Steele, Lea
& Flood 2014) passes BigCrush; here each counter position is one element of the
stream started at ``key``.

Layout: cells are stored colour class by colour class (each class contiguous), and
neighbours in a padded table ``nbr (n, d)`` (padding: the cell's own position with
coupling 0). A class update reads only the other classes, so its cells are
independent and the loop over them can be split between threads. Spins are kept as
``up`` bits (uint8 0/1) inside the loops.

Update rule: over a step ``dt`` with its neighbours frozen, a cell follows the exact
two-state solution ``P(up) = p + (s - p) exp(-dt (r_up + r_down))`` with
``p = sigmoid(2 g)``, ``g = h_loc / T_eff``, ``r_up + r_down = 2 r0 cosh(g)`` and
``r0 = Gamma0 exp(-dU / T_eff)``; ``dt = inf`` is the heat-bath (Gibbs) update.
Fields and temperature are fixed during a call, so ``P(up)`` depends only on the
cell, its own bit and its neighbours' bits. For degree <= 4 (chains, grids) it is
tabulated once per call as 53-bit integer thresholds ``tab[i, s << 4 | config]``
and an update is a table look-up and one integer compare: no ``exp`` in the loop,
and still exact to the 53 bits of the uniform. Stuck cells get thresholds that
keep their bit. Higher degrees use :func:`sweeps_general`, which computes the field.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange, uint64

TABLE_DEGREE = 4
"""Neighbour slots of the tabulated kernel; graphs of higher degree use the general one."""

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30 = np.uint64(30)
_S27 = np.uint64(27)
_S31 = np.uint64(31)
_S11 = np.uint64(11)
_ONE = np.uint64(1)
_TWO53 = 9007199254740992.0


@njit(inline="always", cache=True)
def bits53(key: np.uint64, counter: np.uint64) -> np.uint64:
    """53 random bits at position ``counter`` of the SplitMix64 stream ``key``."""
    z = key + (counter + _ONE) * _GOLDEN
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    z = z ^ (z >> _S31)
    return z >> _S11


@njit(inline="always", cache=True)
def uniform(key: np.uint64, counter: np.uint64) -> float:
    """Uniform in [0, 1) at position ``counter`` of the stream ``key``."""
    return float(bits53(key, counter)) / _TWO53


@njit(inline="always", cache=True)
def _threshold(probability: float) -> np.uint64:
    if probability >= 1.0:
        return uint64(9007199254740992)
    if probability <= 0.0:
        return uint64(0)
    return uint64(probability * _TWO53)


@njit(cache=True)
def _transition(g: float, r0dt: float, heat_bath: bool) -> tuple[float, float]:
    """(P(up next | down), P(up next | up)) for a cell at reduced field ``g`` over a step."""
    g = min(max(g, -300.0), 300.0)
    p = 1.0 / (1.0 + np.exp(-2.0 * g))  # P(up) in equilibrium
    q = 1.0 / (1.0 + np.exp(2.0 * g))  # 1 - p without cancellation
    if heat_bath:
        return p, p
    stay = np.exp(-r0dt * (np.exp(g) + np.exp(-g)))  # exp(-dt / tau_c)
    return p * (1.0 - stay), 1.0 - q * (1.0 - stay)


@njit(cache=True)
def build_table(
    g0: np.ndarray,
    jt: np.ndarray,
    r0dt: np.ndarray,
    frozen: np.ndarray,
    heat_bath: bool,
) -> np.ndarray:
    """Thresholds ``tab (n, 32)`` of ``P(up next)`` for every own bit and neighbour pattern.

    ``g0 = h / T`` and ``jt = J / T`` (``(n, 4)``, padded with zeros); ``r0dt = r0 dt``.
    """
    n = g0.shape[0]
    d = TABLE_DEGREE
    tab = np.empty((n, 2 << d), dtype=np.uint64)
    for i in range(n):
        for config in range(1 << d):
            g = g0[i]
            for k in range(d):
                g += jt[i, k] if (config >> k) & 1 else -jt[i, k]
            from_down, from_up = _transition(g, r0dt[i], heat_bath)
            if frozen[i]:
                from_down, from_up = 0.0, 1.0
            tab[i, config] = _threshold(from_down)
            tab[i, config | (1 << d)] = _threshold(from_up)
    return tab


@njit(inline="always", cache=True)
def _tab_update(i: int, up: np.ndarray, tab: np.ndarray, nbr: np.ndarray, key, counter) -> None:
    idx = (
        (up[i] << 4)
        | up[nbr[i, 0]]
        | (up[nbr[i, 1]] << 1)
        | (up[nbr[i, 2]] << 2)
        | (up[nbr[i, 3]] << 3)
    )
    up[i] = bits53(key, counter) < tab[i, idx]


@njit(cache=True)
def sweeps_table(
    up: np.ndarray,
    tab: np.ndarray,
    nbr: np.ndarray,
    bounds: np.ndarray,
    n_sweeps: int,
    key: np.uint64,
    start: int,
) -> None:
    """``n_sweeps`` colour-class sweeps in place; sweep ``k`` uses counters of sweep ``start + k``."""
    n = up.shape[0]
    for sweep in range(n_sweeps):
        base = uint64(start + sweep) * uint64(n)
        for c in range(bounds.shape[0] - 1):
            for i in range(bounds[c], bounds[c + 1]):
                _tab_update(i, up, tab, nbr, key, base + uint64(i))


@njit(cache=True, parallel=True)
def sweeps_table_parallel(
    up: np.ndarray,
    tab: np.ndarray,
    nbr: np.ndarray,
    bounds: np.ndarray,
    n_sweeps: int,
    key: np.uint64,
    start: int,
) -> None:
    """Same result as :func:`sweeps_table`, each colour class split between threads.

    A parallel region costs tens of microseconds to start on this class of machine,
    so this pays only for classes of many thousand cells.
    """
    n = up.shape[0]
    for sweep in range(n_sweeps):
        base = uint64(start + sweep) * uint64(n)
        for c in range(bounds.shape[0] - 1):
            lo = bounds[c]
            for i in prange(lo, bounds[c + 1]):
                _tab_update(i, up, tab, nbr, key, base + uint64(i))


@njit(cache=True)
def sample_table(
    up: np.ndarray,
    tab: np.ndarray,
    nbr: np.ndarray,
    bounds: np.ndarray,
    n_samples: int,
    sweeps_per_sample: int,
    key: np.uint64,
    out: np.ndarray,
) -> None:
    """Record ``up`` into ``out[k]`` after every ``sweeps_per_sample`` sweeps."""
    for k in range(n_samples):
        sweeps_table(up, tab, nbr, bounds, sweeps_per_sample, key, k * sweeps_per_sample)
        out[k, :] = up


@njit(cache=True)
def sweeps_general(
    up: np.ndarray,
    g0: np.ndarray,
    jt: np.ndarray,
    r0dt: np.ndarray,
    nbr: np.ndarray,
    bounds: np.ndarray,
    frozen: np.ndarray,
    heat_bath: bool,
    n_sweeps: int,
    key: np.uint64,
    start: int,
) -> None:
    """Sweeps for any degree: the field is summed and the transition computed per update."""
    n = up.shape[0]
    for sweep in range(n_sweeps):
        base = uint64(start + sweep) * uint64(n)
        for c in range(bounds.shape[0] - 1):
            for i in range(bounds[c], bounds[c + 1]):
                if frozen[i]:
                    continue
                g = g0[i]
                for k in range(nbr.shape[1]):
                    g += jt[i, k] * (2.0 * up[nbr[i, k]] - 1.0)
                from_down, from_up = _transition(g, r0dt[i], heat_bath)
                p = from_up if up[i] else from_down
                up[i] = bits53(key, base + uint64(i)) < _threshold(p)


@njit(cache=True)
def telegraph_samples(
    up: np.ndarray,
    p_up: np.ndarray,
    stay: np.ndarray,
    frozen: np.ndarray,
    n_samples: int,
    key: np.uint64,
    out: np.ndarray,
) -> None:
    """Exact telegraph chain of isolated cells, one step per sample (``stay = exp(-period/tau)``)."""
    n = up.shape[0]
    for k in range(n_samples):
        base = uint64(k) * uint64(n)
        for i in range(n):
            if not frozen[i]:
                p = p_up[i] + (up[i] - p_up[i]) * stay[i]
                up[i] = bits53(key, base + uint64(i)) < _threshold(p)
            out[k, i] = up[i]


@njit(cache=True)
def greedy_colors(indptr: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """Colour of each node, greedy in index order (2 colours for chains and grids)."""
    n = indptr.shape[0] - 1
    color = np.full(n, -1, dtype=np.int64)
    max_deg = 0
    for i in range(n):
        max_deg = max(max_deg, indptr[i + 1] - indptr[i])
    used = np.zeros(max_deg + 2, dtype=np.bool_)
    for i in range(n):
        for k in range(indptr[i], indptr[i + 1]):
            c = color[indices[k]]
            if c >= 0 and c < used.shape[0]:
                used[c] = True
        c = 0
        while used[c]:
            c += 1
        color[i] = c
        for k in range(indptr[i], indptr[i + 1]):
            c = color[indices[k]]
            if c >= 0 and c < used.shape[0]:
                used[c] = False
    return color
