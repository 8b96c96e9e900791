"""Sweeps of a checkerboard lattice (chains and grids), vectorised and threaded.

Layout (built by :class:`labstack.sim.lattice.Lattice`): each colour class of an
``R x C`` grid is one flat float32 array of ``R + 2`` rows of ``S = ceil(C/2) + 2``
slots (a halo all round); spins are 0.0 / 1.0. The cell at row ``r``, column ``c``
(class ``q = (r + c) & 1``) sits at slot ``m = (r + 1) S + c // 2 + 1``. Its four
neighbours, all of the other class, sit at ``m - S``, ``m + S`` and, as ``c`` is
even or odd, at ``m - 1, m`` or ``m, m + 1``. That parity is folded into the
coefficients: every slot has its constant and one weight for each of the other
class's slots ``m - S, m + S, m - 1, m, m + 1`` (one of the last three is zero),
so a class update is a single loop over contiguous memory at constant offsets,
which LLVM turns into 8-lane AVX2 code. Halo and padding slots have all-zero
coefficients: they are updated (at random) but nothing reads them with a weight.

Update: ``y = c0 + sum_k c_k s_k`` equals ``-2 log2(e) h_loc / T_eff``, so the
heat-bath probability is ``P(up) = 1 / (1 + 2**y)``; a kinetic step over ``dt``
flips a cell with the exact two-state probability (see :func:`_update`), as the
tabulated kernel does. A decision compares 31 random bits with the rarer
outcome's odds (:func:`_happens`, :func:`_heat_bath_up`): probabilities near 0
and near 1 both keep a resolution of 2**-31, those near 1/2 about 2**-24, with no
division. ``2**y`` is a degree-5 minimax polynomial (relative error < 2.5e-7 in
float32) times ``2**n`` built from its exponent bits; ``y`` is clipped to +-126,
which only changes probabilities below 1e-37. Stuck cells have ``c0 = -+1e30``, no couplings and ``r0 dt = 0``, so they
keep their state exactly. Arithmetic is float32 with fused multiply-adds: a
probability is good to a few 1e-7 of itself; the same machine gives the same
bits, and so do the serial and the threaded kernel (tested).

Random words: SplitMix64, as in :mod:`labstack.sim.kernels`. Class ``q`` at sweep
``k`` uses counters ``(2k + q) * half + (m - S) // 2``; one 64-bit output feeds two
neighbouring slots. A result therefore depends on the key and the layout only,
not on how the work is cut or how many threads do it.

Threads: a run is a list of phases (class 0, class 1, ..., record sample j), each
cut in chunks. Threads claim chunks in order from one atomic counter and, before
starting a chunk of phase ``t``, wait until every chunk of phase ``t - 1`` is done
(a second counter). Every chunk waited for has been claimed by a running thread,
so the scheme cannot deadlock however many threads the runtime really starts (a
single thread does all the work in order), and one parallel region covers the
whole run instead of one region per class (numba's costs ~100 us to start).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange, uint64

from labstack.sim.intrinsics import (
    atomic_add,
    atomic_load,
    cpu_relax,
    int32_as_float32,
    thread_nap,
)
from labstack.sim.kernels import GOLDEN_GAMMA, mix64, splitmix_state

CHUNK = 1024
"""Slots per block of random words: the block (4 kB) stays in L1 between its fill and its use."""

SPINS_BEFORE_YIELD = 2000
"""Pauses (~30 ns each) a waiting thread spends before it starts to nap between polls."""
NAP_US = 20
"""Microseconds a thread that has waited long sleeps between polls of the phase counter."""

N_COEF = 8
"""Per slot: the constant, five neighbour weights, ``r0 dt`` for kinetic steps and the
bounded Kramers law's ``s = r0 / Gamma0`` (0: unbounded; :mod:`labstack.sim.dynamics`)."""
_FM = {"contract"}  # fused multiply-add only: no reassociation, so the bits stay defined
_F = np.float32
_YMIN, _YMAX, _HALF, _ONE_F, _ZERO_F = _F(-126.0), _F(126.0), _F(0.5), _F(1.0), _F(0.0)
_TWO_M31, _TWO_M32 = _F(2.0**-31), _F(2.0**-32)
_LOG2E_F = _F(1.0 / np.log(2.0))
# 2**f ~ 1 + P0 f + P1 f^2 + ... + P4 f^5 on |f| <= 1/2: a degree-5 minimax fit of the relative
# error (9e-8 in exact arithmetic, 2.3e-7 in float32 with Estrin's scheme below)
_P0, _P1, _P2 = _F(0.69314698), _F(0.24022242), _F(0.05550734)
_P3, _P4 = _F(0.00967151), _F(0.00132647)
_I127, _I23 = np.int32(127), np.int32(23)


@njit(inline="always", fastmath=_FM)
def _exp2_in_range(y):
    """``2**y`` for float32 ``y`` in ``[-126, 126]``: ``2**f`` by polynomial, ``2**n`` from bits."""
    n = np.rint(y)
    f = y - n
    f2 = f * f
    poly = (_P0 * f + _ONE_F) + (_P2 * f + _P1) * f2 + (_P4 * f + _P3) * (f2 * f2)
    return poly * int32_as_float32(np.int32((np.int32(n) + _I127) << _I23))


@njit(inline="always", fastmath=_FM)
def exp2(y):
    """``2**y`` for float32 ``y``, clipped to ``[2**-126, 2**126]``; vectorises (no libm call)."""
    return _exp2_in_range(min(max(y, _YMIN), _YMAX))


@njit(inline="always")
def _fill_words(words, count, key, counter):
    """``words[j]`` = the SplitMix64 word at ``counter + j`` for ``j < count``.

    Written with the stream's state, which steps by the golden gamma, so that the loop
    carries an addition instead of a 64-bit multiply per word (AVX2 has none): ~14 %
    faster, the same words.
    """
    first = splitmix_state(key, counter)
    for j in range(count):
        words[j] = mix64(first + uint64(j) * GOLDEN_GAMMA)


@njit(inline="always", fastmath=_FM)
def _uniform(b):
    """``u = (b31 + 1/2) 2**-31`` from the upper 31 bits ``b31`` of a random 32-bit word ``b``.

    31 bits, not 32, because AVX2 converts only signed integers to floats (an unsigned
    conversion costs six more instructions per vector).
    """
    return _F(np.int32(b >> np.uint32(1))) * _TWO_M31 + _TWO_M32


@njit(inline="always", fastmath=_FM)
def _happens(b, odds_for, odds_against):
    """Whether an event of probability ``odds_for / (odds_for + odds_against)`` happens.

    ``b`` is a random 32-bit word. The rarer of the two outcomes is the one tested,
    ``u (for + against) < rarer`` (:func:`_uniform`), so a probability near 0 or near
    1 keeps 31 bits of resolution (4.7e-10) at either end.
    """
    u = _uniform(b)
    rarer = min(odds_for, odds_against)
    hit = u * (odds_for + odds_against) < rarer
    return hit != (odds_for > odds_against)


@njit(inline="always", fastmath=_FM)
def _heat_bath_up(b, y):
    """Heat-bath decision: up with ``P = 1 / (1 + 2**y)``, from the random 32-bit word ``b``.

    :func:`_happens` for the heat bath, cheaper: with ``t = 2**-|y|`` (<= 1) the rarer
    outcome (up if ``y > 0``, down if not) has probability ``t / (1 + t)``, and it
    happens when ``u (1 + t) < t``. One-sided clipping, no division, no ``min``.
    """
    t = _exp2_in_range(max(-abs(y), _YMIN))
    u = _uniform(b)
    return (u * t + u < t) != (y < _ZERO_F)


@njit(inline="always", fastmath=_FM)
def _field(c0, cu, cd, cl, cc, cr, su, sd, sl, sc, sr, k):
    """``y = -2 log2(e) h_loc / T_eff`` of slot ``k`` (a sum of products, as a tree)."""
    return (c0[k] + cu[k] * su[k] + cd[k] * sd[k]) + ((cl[k] * sl[k] + cc[k] * sc[k]) + cr[k] * sr[k])


@njit(inline="always", fastmath=_FM)
def _flip_and_stay(z):
    """``(1 - exp(-z), exp(-z))`` in float32 without cancellation, with one ``exp2``.

    Below ``z = 1/4`` the flip probability is a Taylor series (``1 - exp(-z)`` would
    cancel) and the stay probability its complement; above, the stay probability is
    ``exp(-z)`` and the flip probability its complement.
    """
    series = z * (_ONE_F - z * _F(1 / 2) * (_ONE_F - z * _F(1 / 3) * (_ONE_F - z * _F(1 / 4) * (
        _ONE_F - z * _F(1 / 5) * (_ONE_F - z * _F(1 / 6))))))
    decay = exp2(-z * _LOG2E_F)
    if z < _F(0.25):
        return series, _ONE_F - series
    return _ONE_F - decay, decay


@njit(inline="always", fastmath=_FM)
def _update(own, other, coef, words32, lo, hi, stride, kinetic):
    """Update slots ``lo:hi`` of one class, given the other class's spins (:func:`_update_views`)."""
    _update_views(_views(own, other, coef, lo, hi, stride), words32, kinetic)


@njit(inline="always")
def _views(own, other, coef, lo, hi, stride):
    """The slices of slots ``lo:hi`` one class update reads and writes, all indexed from 0."""
    return (own[lo:hi], coef[0, lo:hi], coef[1, lo:hi], coef[2, lo:hi], coef[3, lo:hi],
            coef[4, lo:hi], coef[5, lo:hi], coef[6, lo:hi], coef[7, lo:hi], other[lo - stride : hi - stride],
            other[lo + stride : hi + stride], other[lo - 1 : hi - 1], other[lo:hi],
            other[lo + 1 : hi + 1])


@njit(inline="always", fastmath=_FM)
def _update_views(views, words32, kinetic):
    """Update the slots of one class, ``views`` as made by :func:`_views`.

    Heat bath: up with ``P = 1 / (1 + 2**y)`` (:func:`_heat_bath_up`). Kinetic (a step ``dt``):
    flip with ``F w / (1 + x)``, ``F = 1 - exp(-z)``, ``z = r0 dt (a + 1/a)``,
    ``a = 2**(y/2)`` (so ``a + 1/a = 2 cosh(h_loc / T)``) and ``w = x`` when up, 1
    when down; the odds against are ``1 + x e^-z`` or ``x + e^-z``, both free of
    cancellation. ``r0dt`` holds ``r0 dt`` per slot (``coef[6]``); the bounded law divides
    ``z`` by ``1 + s (a + 1/a)`` with ``s = r0 / Gamma0`` (``coef[7]``, 0: unchanged).
    """
    out, c0, cu, cd, cl, cc, cr, r0dt, sat, su, sd, sl, sc, sr = views
    if not kinetic:
        for k in range(out.shape[0]):  # indices from 0: no negative-index checks, so LLVM vectorises
            y = _field(c0, cu, cd, cl, cc, cr, su, sd, sl, sc, sr, k)
            out[k] = _ONE_F if _heat_bath_up(words32[k], y) else _ZERO_F
        return
    for k in range(out.shape[0]):
        half_y = _HALF * _field(c0, cu, cd, cl, cc, cr, su, sd, sl, sc, sr, k)
        a = _exp2_in_range(min(max(half_y, _F(-63.0)), _F(63.0)))  # within exp2's range
        x = a * a
        two_cosh = a + _ONE_F / a
        z = r0dt[k] * two_cosh / (_ONE_F + sat[k] * two_cosh)
        flip, stay = _flip_and_stay(z)
        is_up = out[k] > _HALF
        odds_for = flip * x if is_up else flip
        odds_against = _ONE_F + x * stay if is_up else x + stay
        flips = _happens(words32[k], odds_for, odds_against)
        out[k] = _ONE_F if is_up != flips else _ZERO_F


# error_model="numpy": the kinetic step divides by ``a`` (never zero); numba's default
# zero-division check is a branch that keeps LLVM from vectorising the loop (27 ns per
# update instead of a few)
@njit(cache=True, fastmath=_FM, error_model="numpy")
def _class_chunk(spins, coef, q, lo, hi, stride, key, base, words, kinetic):
    """Update slots ``lo:hi`` (``lo - stride`` even) of class ``q`` with counters from ``base``."""
    words32 = words.view(np.uint32)
    own, other, cq = spins[q], spins[1 - q], coef[q]
    for a in range(lo, hi, CHUNK):
        b = min(a + CHUNK, hi)
        _fill_words(words, (b - a + 1) // 2, key, base + uint64((a - stride) // 2))
        _update(own, other, cq, words32, a, b, stride, kinetic)


@njit(inline="always")
def _record(flat, cells, lo, hi, row):
    """``row[i] = +-1`` from the spin of cell ``i`` (``cells[i]`` is its index in ``flat``)."""
    for i in range(lo, hi):
        row[i] = np.int8(2) * np.int8(flat[cells[i]]) - np.int8(1)


@njit(cache=True, fastmath=_FM, error_model="numpy")
def sweeps(spins, coef, stride, rows, cells, n_samples, sweeps_per_sample, key, start, out, kinetic):
    """``n_samples`` x ``sweeps_per_sample`` sweeps in place, serially.

    ``spins (2, L)`` and ``coef (2, 8, L)`` float32 in the lattice layout; sweep ``k``
    of the run uses the counters of sweep ``start + k``. If ``out`` has rows, row
    ``j`` gets the +-1 spins (cell order) after sample ``j``'s sweeps.

    A class that fits one block of random words (small chips: the lab's chains and
    grids) is updated through views made once per call, not once per sweep: making
    the thirteen slices of a class update cost ~0.3 us, so a sweep of a 16-cell chain
    took ~1.2 us (77 ns per update; now ~0.6 us).
    """
    total = rows * stride
    half = uint64((total + 1) // 2)
    words = np.empty(CHUNK // 2, np.uint64)
    flat = spins.reshape(-1)
    if total <= CHUNK:
        words32 = words.view(np.uint32)
        lo, hi, n_words = stride, stride + total, (total + 1) // 2
        v0 = _views(spins[0], spins[1], coef[0], lo, hi, stride)
        v1 = _views(spins[1], spins[0], coef[1], lo, hi, stride)
        for j in range(n_samples):
            for s in range(sweeps_per_sample):
                sweep = uint64(start + j * sweeps_per_sample + s)
                _fill_words(words, n_words, key, (uint64(2) * sweep) * half)
                _update_views(v0, words32, kinetic)
                _fill_words(words, n_words, key, (uint64(2) * sweep + uint64(1)) * half)
                _update_views(v1, words32, kinetic)
            if out.shape[0] > 0:
                _record(flat, cells, 0, cells.shape[0], out[j])
        return
    for j in range(n_samples):
        for s in range(sweeps_per_sample):
            sweep = uint64(start + j * sweeps_per_sample + s)
            for q in range(2):
                base = (uint64(2) * sweep + uint64(q)) * half
                _class_chunk(spins, coef, q, stride, stride + total, stride, key, base, words, kinetic)
        if out.shape[0] > 0:
            _record(flat, cells, 0, cells.shape[0], out[j])


@njit(cache=True, parallel=True, fastmath=_FM)
def sweeps_threaded(
    spins, coef, stride, rows, cells, n_samples, sweeps_per_sample, key, start, out, kinetic,
    n_threads, n_chunks, sync,
):
    """:func:`sweeps` shared between ``n_threads`` threads: the same bits.

    ``sync`` is a zeroed int64 array of 16 (two counters on separate cache lines).
    """
    total = rows * stride
    half = uint64((total + 1) // 2)
    n = cells.shape[0]
    record = 1 if out.shape[0] > 0 else 0
    per_sample = 2 * sweeps_per_sample + record
    n_work = n_samples * per_sample * n_chunks
    class_size = ((total + n_chunks - 1) // n_chunks + 1) // 2 * 2  # even: whole random words
    record_size = (n + n_chunks - 1) // n_chunks
    flat = spins.reshape(-1)
    for _ in prange(n_threads):
        words = np.empty(CHUNK // 2, np.uint64)
        while True:
            g = atomic_add(sync, 0, 1)
            if g >= n_work:
                break
            phase = g // n_chunks
            c = g - phase * n_chunks
            waited = 0
            while atomic_load(sync, 8) < phase * n_chunks:  # phase - 1 not finished yet
                waited += 1
                if waited < SPINS_BEFORE_YIELD:
                    cpu_relax()
                else:  # the chunk's owner may have lost its core: free this one for it
                    thread_nap(NAP_US)
            j = phase // per_sample
            p = phase - j * per_sample
            if p < 2 * sweeps_per_sample:
                q = p & 1
                sweep = uint64(start + j * sweeps_per_sample + p // 2)
                lo = stride + c * class_size
                hi = min(lo + class_size, stride + total)
                if lo < hi:
                    base = (uint64(2) * sweep + uint64(q)) * half
                    _class_chunk(spins, coef, q, lo, hi, stride, key, base, words, kinetic)
            else:
                lo = c * record_size
                hi = min(lo + record_size, n)
                if lo < hi:
                    _record(flat, cells, lo, hi, out[j])
            atomic_add(sync, 8, 1)

