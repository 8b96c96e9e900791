"""Exact continuous-time evolution of coupled cells, one flip at a time (kinetic Monte Carlo).

The stepped kinetic kernels (:mod:`labstack.sim.kernels`, :mod:`labstack.sim.lattice_kernels`)
advance every cell by ``dt = step_fraction / max(r0)``: the fastest cell sets the step
of all. On a chip whose attempt rates spread over two decades, sampling a few
correlation times of the *slowest* cell apart (tens of microseconds) then costs
thousands of sweeps per sample, while the cells flip only a handful of times: a
64-cell S-curve point of 3000 samples 50 us apart took ~2.6 s of wall time.

Here the same Markov chain is run event by event (Gillespie's direct method with a
sum tree over the cells' flip rates, the "n-fold way" of Bortz, Kalos and Lebowitz):
the waiting time to the next flip is exponential with the total rate, the cell that
flips is drawn in proportion to its rate, and only it and its neighbours get new
rates. Its cost is proportional to the flips that happen, not to the fastest cell's
rate. The rates are the ones the stepped kernels integrate over a step
(:func:`labstack.sim.kernels._transition`), at reduced local field
``g = h_loc / T_eff``:

    down -> up: ``r0 e^(+g) / (1 + s 2 cosh g)``,   up -> down: ``r0 e^(-g) / (1 + s 2 cosh g)``

(``s = exp(-dU / T_eff)`` with the bounded law, 0 without), so ``P(up) = sigmoid(2g)``
in equilibrium and the total rate is ``r0 2 cosh g / (1 + s 2 cosh g)``. Unlike a
step, the continuous-time chain has no step error: neighbours that flip are seen at
once. Between samples nothing is carried over but the spins (the exponential waiting
time is memoryless, so the wait is drawn afresh at each sample time).

Random numbers: SplitMix64 words of the call's ``key`` (:func:`labstack.sim.kernels.uniform`),
two per flip, so a result depends on the key and the cells' order only.
"""

from __future__ import annotations

import numpy as np
from numba import njit, uint64

from labstack.sim.kernels import uniform

#: reduced fields are clipped here (as in :func:`labstack.sim.kernels._transition`): rates
#: of e^300 r0 are instant and e^-300 r0 never, either way
_G_MAX = 300.0
#: flips between recomputations of every cell's tilt from its fields (rounding of the
#: running products stays ~1e-13)
REFRESH = 1 << 16
_E_MIN, _E_MAX = float(np.exp(-_G_MAX)), float(np.exp(_G_MAX))


@njit(inline="always", cache=True)
def _field(i, up, g0, jt, nbr):
    """Reduced local field ``g = h_loc / T_eff`` of cell ``i`` from its neighbours' states."""
    g = g0[i]
    for k in range(nbr.shape[1]):
        g += jt[i, k] * (2.0 * up[nbr[i, k]] - 1.0)
    return min(max(g, -_G_MAX), _G_MAX)


@njit(inline="always", cache=True)
def _rate(i, up, e, r0, sat, frozen):
    """Flip rate (1/s) of cell ``i`` in its state, ``e[i] = exp(g_i)`` (its tilt)."""
    if frozen[i]:
        return 0.0
    rate = r0[i] / e[i] if up[i] else r0[i] * e[i]
    if sat[i] > 0.0:
        rate = rate / (1.0 + sat[i] * (e[i] + 1.0 / e[i]))
    return rate


@njit(inline="always", cache=True)
def _set_leaf(tree, size, i, value):
    """Set leaf ``i`` of the sum tree and recompute its ancestors from their children (no drift)."""
    k = size + i
    tree[k] = value
    k //= 2
    while k >= 1:
        tree[k] = tree[2 * k] + tree[2 * k + 1]
        k //= 2


@njit(cache=True)
def evolve_events(
    up: np.ndarray,
    g0: np.ndarray,
    jt: np.ndarray,
    r0: np.ndarray,
    sat: np.ndarray,
    nbr: np.ndarray,
    frozen: np.ndarray,
    period: float,
    n_samples: int,
    key: np.uint64,
    out: np.ndarray,
) -> int:
    """Evolve ``up`` (0/1, in place) for ``n_samples`` periods; row ``j`` of ``out`` (if it
    has rows) gets the states at the end of period ``j``. Returns the number of flips.

    ``g0 = h / T_eff`` and ``jt = J / T_eff`` per cell and neighbour slot (``nbr`` holds
    neighbour indices, padding with coupling 0), ``r0`` the attempt rates (1/s).
    """
    n = up.shape[0]
    size = 1
    while size < n:
        size *= 2
    # e[i] = exp(g_i): a neighbour's flip multiplies it by exp(+-2 J / T) (``step``), so a
    # flip costs a few multiplications instead of an exponential per cell it touches;
    # recomputed from the fields every ``REFRESH`` flips against rounding drift
    e = np.empty(n)
    for i in range(n):
        e[i] = np.exp(_field(i, up, g0, jt, nbr))
    step = np.exp(2.0 * np.minimum(np.maximum(jt, -_G_MAX / 4), _G_MAX / 4))
    tree = np.zeros(2 * size)
    for i in range(n):
        tree[size + i] = _rate(i, up, e, r0, sat, frozen)
    for k in range(size - 1, 0, -1):
        tree[k] = tree[2 * k] + tree[2 * k + 1]
    counter = uint64(0)
    flips = 0
    since = 0
    for j in range(n_samples):
        left = period
        while True:
            total = tree[1]
            if not total > 0.0:
                break
            u = uniform(key, counter)
            counter += uint64(1)
            wait = -np.log1p(-u) / total
            if wait >= left:
                break
            left -= wait
            v = uniform(key, counter) * total
            counter += uint64(1)
            k = 1
            while k < size:
                if v < tree[2 * k] or tree[2 * k + 1] <= 0.0:
                    k = 2 * k
                else:
                    v -= tree[2 * k]
                    k = 2 * k + 1
            i = k - size
            if i >= n or tree[k] <= 0.0:
                continue  # rounding picked an empty leaf: draw again (no time has passed)
            up[i] = 1 - up[i]
            flips += 1
            since += 1
            _set_leaf(tree, size, i, _rate(i, up, e, r0, sat, frozen))
            for m in range(nbr.shape[1]):
                other = nbr[i, m]
                if other != i and jt[i, m] != 0.0:
                    # s_i went from -1 to +1 (up) or back: g_other moves by +-2 J / T
                    e[other] = e[other] * step[i, m] if up[i] else e[other] / step[i, m]
                    e[other] = min(max(e[other], _E_MIN), _E_MAX)  # the fields' clip, as in _field
                    _set_leaf(tree, size, other, _rate(other, up, e, r0, sat, frozen))
            if since >= REFRESH:
                since = 0
                for c in range(n):
                    e[c] = np.exp(_field(c, up, g0, jt, nbr))
                    tree[size + c] = _rate(c, up, e, r0, sat, frozen)
                for c in range(size - 1, 0, -1):
                    tree[c] = tree[2 * c] + tree[2 * c + 1]
        if out.shape[0] > 0:
            for i in range(n):
                out[j, i] = up[i]
    return flips
