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
With the bounded Kramers law (:mod:`labstack.sim.dynamics`) the total rate is
``k / (1 + s k / r0)``, ``s = r0 / Gamma0`` per cell (``sat``; 0 for the unbounded law).
Fields and temperature are fixed during a call, so ``P(up)`` depends only on the
cell, its own bit and its neighbours' bits. For degree <= 4 (chains, grids) it is
tabulated once per call, ``tab[i, s << 4 | config]``, and an update is a table
look-up and one integer compare: no ``exp`` in the loop. The table keeps the upper
32 bits of each 53-bit threshold (a cache line per cell, so large chips stream
through memory); when the uniform's upper 32 bits tie with it (probability 2**-32)
the exact threshold is recomputed, so every decision is exact to 53 bits. Stuck
cells get thresholds that give their stuck bit. Higher degrees use
:func:`sweeps_general`, which computes the field at each update.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange, uint64

TABLE_DEGREE = 4
"""Neighbour slots of the tabulated kernel; graphs of higher degree use the general one."""

GOLDEN_GAMMA = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30 = np.uint64(30)
_S27 = np.uint64(27)
_S31 = np.uint64(31)
_S11 = np.uint64(11)
_S21 = np.uint64(21)
_MAX32 = np.uint64(0xFFFFFFFF)
_ONE = np.uint64(1)
_TWO53 = 9007199254740992.0


@njit(inline="always", cache=True)
def mix64(z: np.uint64) -> np.uint64:
    """SplitMix64's output function: the word whose stream state is ``z``."""
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


@njit(inline="always", cache=True)
def splitmix_state(key: np.uint64, counter: np.uint64) -> np.uint64:
    """The SplitMix64 state behind position ``counter`` of stream ``key`` (steps by the gamma)."""
    return key + (counter + _ONE) * GOLDEN_GAMMA


@njit(inline="always", cache=True)
def splitmix64(key: np.uint64, counter: np.uint64) -> np.uint64:
    """The 64-bit word at position ``counter`` of the SplitMix64 stream ``key``."""
    return mix64(splitmix_state(key, counter))


@njit(inline="always", cache=True)
def bits53(key: np.uint64, counter: np.uint64) -> np.uint64:
    """53 random bits at position ``counter`` of the SplitMix64 stream ``key``."""
    return splitmix64(key, counter) >> _S11


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


@njit(inline="always", cache=True)
def _transition(g: float, r0dt: float, sat: float, heat_bath: bool) -> tuple[float, float]:
    """(P(up next | down), P(up next | up)) for a cell at reduced field ``g`` over a step.

    ``sat = exp(-dU / T)`` bounds the total rate at the attempt rate (0: unbounded).
    """
    g = min(max(g, -300.0), 300.0)
    x = np.exp(-2.0 * g)
    p = 1.0 / (1.0 + x)  # P(up) in equilibrium, sigmoid(2g)
    q = x * p  # 1 - p without cancellation
    if heat_bath:
        return p, p
    exponent = -r0dt * (1.0 + x) / np.sqrt(x)  # -dt (r_up + r_down), 2cosh(g) = (1+x)/sqrt(x)
    if sat > 0.0:  # bounded law; the unbounded one keeps its exact bits
        exponent = exponent / (1.0 + sat * (1.0 + x) / np.sqrt(x))
    stay = np.exp(exponent)
    return p * (1.0 - stay), 1.0 - q * (1.0 - stay)


@njit(cache=True)  # not inlined: keeps the hot loop small, it is called on ties only
def _cell_threshold(i, own, config, g0, jt, r0dt, sat, pin, heat_bath) -> np.uint64:
    """Exact 53-bit threshold of ``P(up next)`` for cell ``i`` with own bit and neighbour bits."""
    if pin[i] >= 0:
        return _threshold(float(pin[i]))
    g = g0[i]
    for k in range(TABLE_DEGREE):
        g += jt[i, k] if (config >> k) & 1 else -jt[i, k]
    from_down, from_up = _transition(g, r0dt[i], sat[i], heat_bath)
    return _threshold(from_up if own else from_down)


@njit(inline="always", cache=True)
def _fill_row(i, tab, g0, jt, r0dt, sat, pin, heat_bath) -> None:
    width = tab.shape[1]
    for idx in range(width):
        t = _cell_threshold(i, idx >> TABLE_DEGREE, idx & 15, g0, jt, r0dt, sat, pin, heat_bath)
        tab[i, idx] = min(t >> _S21, _MAX32)


def table(n: int, heat_bath: bool) -> np.ndarray:
    """An uninitialised ``(n, width)`` uint32 table whose rows start on 64-byte cache lines.

    Heat-bath thresholds do not depend on the cell's own bit: 16 entries, one cache
    line per cell. Finite steps need both halves: 32 entries, of which an update
    touches the one line of its current bit.
    """
    width = 1 << TABLE_DEGREE if heat_bath else 2 << TABLE_DEGREE
    raw = np.empty(n * width + 16, dtype=np.uint32)
    skip = (-raw.ctypes.data % 64) // 4
    return raw[skip : skip + n * width].reshape(n, width)


@njit(cache=True)
def fill_table(tab, g0, jt, r0dt, sat, pin, heat_bath) -> None:
    """Upper 32 bits of each 53-bit threshold (``g0 = h/T``, ``jt = J/T`` padded, ``r0dt = r0 dt``,
    ``sat = r0 / Gamma0`` or 0).

    ``pin[i]`` is -1 for a free cell, 0 or 1 for a stuck one (its bit).
    """
    for i in range(tab.shape[0]):
        _fill_row(i, tab, g0, jt, r0dt, sat, pin, heat_bath)


@njit(cache=True, parallel=True)
def fill_table_parallel(tab, g0, jt, r0dt, sat, pin, heat_bath) -> None:
    """:func:`fill_table` with the cells split between threads (same result)."""
    for i in prange(tab.shape[0]):
        _fill_row(i, tab, g0, jt, r0dt, sat, pin, heat_bath)


@njit(cache=True)
def sweeps_table(up, tab, nbr, bounds, n_sweeps, key, start, g0, jt, r0dt, sat, pin, heat_bath):
    """``n_sweeps`` colour-class sweeps in place; sweep ``k`` uses counters of sweep ``start + k``.

    ``g0, jt, r0dt, sat, pin, heat_bath`` are the table's inputs, read only on a tie. The
    update is written out in each loop rather than called: a call per update that
    passes arrays costs reference counting and made the loop ~5x slower.
    """
    n = up.shape[0]
    for sweep in range(n_sweeps):
        base = uint64(start + sweep) * uint64(n)
        for c in range(bounds.shape[0] - 1):
            for i in range(bounds[c], bounds[c + 1]):
                own = up[i]
                config = (
                    up[nbr[i, 0]] | (up[nbr[i, 1]] << 1) | (up[nbr[i, 2]] << 2) | (up[nbr[i, 3]] << 3)
                )
                idx = ((own << TABLE_DEGREE) | config) & (tab.shape[1] - 1)
                bits = bits53(key, base + uint64(i))
                hi = bits >> _S21
                t = uint64(tab[i, idx])
                if hi != t:
                    up[i] = hi < t
                else:  # upper 32 bits tie (p = 2**-32): decide on all 53 bits
                    up[i] = bits < _cell_threshold(i, own, config, g0, jt, r0dt, sat, pin, heat_bath)


@njit(cache=True, parallel=True)
def sweeps_table_parallel(
    up, tab, nbr, bounds, n_sweeps, key, start, g0, jt, r0dt, sat, pin, heat_bath
):
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
                own = up[i]
                config = (
                    up[nbr[i, 0]] | (up[nbr[i, 1]] << 1) | (up[nbr[i, 2]] << 2) | (up[nbr[i, 3]] << 3)
                )
                idx = ((own << TABLE_DEGREE) | config) & (tab.shape[1] - 1)
                bits = bits53(key, base + uint64(i))
                hi = bits >> _S21
                t = uint64(tab[i, idx])
                if hi != t:
                    up[i] = hi < t
                else:  # upper 32 bits tie (p = 2**-32): decide on all 53 bits
                    up[i] = bits < _cell_threshold(i, own, config, g0, jt, r0dt, sat, pin, heat_bath)


@njit(cache=True)
def sample_table(
    up, tab, nbr, bounds, n_samples, sweeps_per_sample, key, out, g0, jt, r0dt, sat, pin, heat_bath
):
    """Record ``up`` into ``out[k]`` after every ``sweeps_per_sample`` sweeps."""
    for k in range(n_samples):
        sweeps_table(
            up, tab, nbr, bounds, sweeps_per_sample, key, k * sweeps_per_sample,
            g0, jt, r0dt, sat, pin, heat_bath,
        )
        out[k, :] = up


@njit(cache=True)
def sweeps_general(
    up: np.ndarray,
    g0: np.ndarray,
    jt: np.ndarray,
    r0dt: np.ndarray,
    sat: np.ndarray,
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
                from_down, from_up = _transition(g, r0dt[i], sat[i], heat_bath)
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
