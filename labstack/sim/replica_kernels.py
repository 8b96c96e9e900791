"""Heat-bath sweeps of many independent replicas of one chain or grid, by table look-up.

Why a table: with fields, couplings and temperature fixed (they change only when the
lab writes a DAC or the fridge drifts, and a replica run holds them fixed), a cell's
heat-bath probability ``P(up) = sigmoid(2 h_loc / T_eff)`` depends only on its four
neighbours' bits, so it takes at most 16 values. :mod:`labstack.sim.replicas` computes
them once per (h, J, T) in float64 as 31-bit thresholds (one 64-byte row of 16 uint32
per cell); an update is then: neighbour bits -> 4-bit index -> threshold -> compare
with 31 random bits. No ``exp2`` in the loop; each decision's probability is the exact
one rounded to a multiple of ``2**-31`` (so within ``2**-32``).

Why replicas: the ``R = REPLICAS`` replicas of a block are the innermost dimension of
the spin array (uint8 0/1, ``spins[block, class, slot * R + lane]``), so one cell's
update is a 16-lane vector operation that loads the cell's table row once for 16
replicas: on x86 with AVX-512 the look-up is one in-register permute (``vpermd``) of
that row (:func:`update16`); elsewhere it is 16 scalar loads (same bits, ~2x slower).
Each lane has its own random words, so each replica is an exact, independent
heat-bath chain; nothing is shared between replicas but the table.

Layout: the colour classes and slots of :class:`labstack.sim.lattice.Lattice` (cell
``(r, c)`` of class ``q = (r + c) & 1`` at slot ``m = (r + 1) S + c // 2 + 1``; its
neighbours, of the other class, at ``m - S``, ``m + S`` and ``m - 1 + p``, ``m + p``
with ``p`` the row's column parity), times ``R`` lanes. A class update is a loop over
each row's slots. Index bits: 1 = up, 2 = down, 4 = left, 8 = right neighbour.
Halo, padding and missing cells have all-zero thresholds (never up) and no coupling
to anything, so their bits never matter.

Random words: SplitMix64 (:mod:`labstack.sim.kernels`). Lane ``l`` of slot ``m`` of
class ``q`` in block ``b`` at sweep ``k`` uses the 32-bit half ``l & 1`` of the word at
counter ``((k B + b) 2 + q) (L R / 2) + (m R + l) // 2`` (``B`` blocks, ``L`` slots
per class); the decision uses its upper 31 bits. Results depend on the key and the
layout only, not on threads.

Threads: blocks of replicas are independent, so a thread claims a whole block (an
atomic counter) and runs all of its sweeps: one parallel region per call and no
barrier between colour phases (a thread that loses its core delays only its block).
"""

from __future__ import annotations

import llvmlite.binding as llvm
import numpy as np
from llvmlite import ir
from numba import njit, prange, types, uint64
from numba.core import cgutils
from numba.extending import intrinsic

from labstack.sim.intrinsics import atomic_add
from labstack.sim.kernels import GOLDEN_GAMMA, mix64, splitmix_state

LANES = 16
"""Replicas per vector operation: a table row of 16 uint32 is one 512-bit register."""
REPLICAS = 32
"""Replicas per block (two vectors per cell): the table row, loaded once per cell,
serves 32 replicas, which halves the table's memory traffic against 16 (512x512: 0.39
against 0.52 ns per update on one core); 64 gained less than the spread."""
TABLE = 16
"""Thresholds per cell: one per configuration of its four neighbours."""
ONE_THRESHOLD = 1 << 31
"""The threshold of a certain "up": every 31-bit random number is below it."""

_PERMUTE = bool(llvm.get_host_cpu_features().get("avx512f", False))


def _item(context, builder, array_type, array, index):
    """Pointer to ``array[index]`` (no wraparound: indices here are never negative)."""
    ary = context.make_array(array_type)(context, builder, array)
    return cgutils.get_item_pointer(context, builder, array_type, ary, [index], wraparound=False)


@intrinsic
def update16(typingctx, own, other, table, words, at, up, down, left, right, row, word):
    """Heat-bath update of 16 lanes: ``own[at + l]`` for ``l < 16``, in one vector step.

    ``idx_l = other[at+up+l] | other[at+down+l] << 1 | other[at+left+l] << 2 |
    other[at+right+l] << 3`` (uint8 arrays, 0/1), ``t_l = table[row + idx_l]`` (uint32),
    ``own[at + l] = (words[word + l] >> 1) < t_l``. Numba's vectoriser declines the
    16-way table gather on this machine (its cost model prices gathers high on AMD
    cores) and runs it scalar at ~1.2 ns per update, hence the explicit vector code.
    """
    sig = types.void(own, other, table, words, at, up, down, left, right, row, word)

    def codegen(context, builder, signature, args):
        own_t, other_t, table_t, words_t = signature.args[:4]
        own_a, other_a, table_a, words_a, at_v, up_v, down_v, left_v, right_v, row_v, word_v = args
        i32 = ir.IntType(32)
        v8 = ir.VectorType(ir.IntType(8), LANES)
        v32 = ir.VectorType(i32, LANES)

        def splat(x: int) -> ir.Constant:
            return ir.Constant(v32, [x] * LANES)

        def load(array_t, array, index, vec, align):
            ptr = _item(context, builder, array_t, array, index)
            return builder.load(builder.bitcast(ptr, vec.as_pointer()), align=align)

        def neighbour(offset, shift):
            bits = builder.zext(load(other_t, other_a, builder.add(at_v, offset), v8, 1), v32)
            return builder.shl(bits, splat(shift)) if shift else bits

        idx = builder.or_(builder.or_(neighbour(up_v, 0), neighbour(down_v, 1)),
                          builder.or_(neighbour(left_v, 2), neighbour(right_v, 3)))
        if _PERMUTE:
            fnty = ir.FunctionType(v32, [v32, v32])
            permute = cgutils.get_or_insert_function(
                builder.module, fnty, "llvm.x86.avx512.permvar.si.512")
            threshold = builder.call(permute, [load(table_t, table_a, row_v, v32, 4), idx])
        else:
            base = _item(context, builder, table_t, table_a, row_v)
            threshold = ir.Constant(v32, None)
            for lane in range(LANES):
                k = builder.extract_element(idx, ir.Constant(i32, lane))
                value = builder.load(builder.gep(base, [k]))
                threshold = builder.insert_element(threshold, value, ir.Constant(i32, lane))
        u31 = builder.lshr(load(words_t, words_a, word_v, v32, 4), splat(1))
        up_bits = builder.zext(builder.icmp_unsigned("<", u31, threshold), v8)
        target = _item(context, builder, own_t, own_a, at_v)
        builder.store(up_bits, builder.bitcast(target, v8.as_pointer()), align=1)
        return context.get_dummy_value()

    return sig, codegen


@njit(inline="always")
def _fill_words(words, count, key, counter):
    """``words[j]`` = the SplitMix64 word at ``counter + j`` for ``j < count`` (vectorises)."""
    first = splitmix_state(key, counter)
    for j in range(count):
        words[j] = mix64(first + uint64(j) * GOLDEN_GAMMA)


@njit(inline="always")
def _sweep(spins, table, words, b, n_blocks, rows, stride, per_row, sweep, key):
    """One sweep (class 0, then class 1) of block ``b``; ``sweep`` numbers its random words."""
    length = spins.shape[2] // REPLICAS
    half_class = uint64(length * REPLICAS // 2)
    words32 = words.view(np.uint32)
    vertical = stride * REPLICAS
    for q in range(2):
        own, other, tq = spins[b, q], spins[b, 1 - q], table[q]
        counter0 = ((uint64(sweep) * uint64(n_blocks) + uint64(b)) * uint64(2) + uint64(q)) * half_class
        for r in range(rows):
            parity = (q + r) & 1  # column parity of class q's cells in row r
            n_here = per_row[parity]
            m0 = (r + 1) * stride + 1
            _fill_words(words, n_here * REPLICAS // 2, key, counter0 + uint64(m0 * REPLICAS // 2))
            left = (parity - 1) * REPLICAS
            for i in range(n_here):
                m = m0 + i
                for g in range(0, REPLICAS, LANES):
                    update16(own, other, tq, words32, m * REPLICAS + g, -vertical, vertical, left,
                             left + REPLICAS, m * TABLE, i * REPLICAS + g)


@njit(inline="always")
def _record(spins, b, cell_class, cell_at, out_j):
    """``out_j[i, b R + l] = +-1`` from lane ``l`` of cell ``i`` (class ``cell_class[i]``,
    lanes from ``cell_at[i] = m R``).

    Replicas innermost, as in the layout: a cell's 32 lanes are one contiguous copy
    (~10x faster than writing each replica's row, which scatters every byte).
    """
    for i in range(cell_at.shape[0]):
        at = cell_at[i]
        src, dst = spins[b, cell_class[i], at:at + REPLICAS], out_j[i, b * REPLICAS:(b + 1) * REPLICAS]
        for lane in range(REPLICAS):
            dst[lane] = np.int8(2) * np.int8(src[lane]) - np.int8(1)


@njit(cache=True, parallel=True)
def sweeps(spins, table, rows, stride, per_row, cell_class, cell_at, n_samples, sweeps_per_sample, key, start,
           out, n_threads, claim):
    """``n_samples`` x ``sweeps_per_sample`` heat-bath sweeps of every block, in place.

    ``spins (B, 2, L R)`` uint8 and ``table (2, L 16)`` uint32 in the layout above;
    ``per_row[p]`` is the number of slots of a row whose cells have column parity
    ``p``; cell ``i`` is at slot ``cell_at[i] / R`` of class ``cell_class[i]``. Sweep ``k`` of the run uses the random words of sweep ``start + k``. If
    ``out (n_samples, n, B R)`` int8 has rows, ``out[j, i]`` gets cell ``i``'s +-1 spin
    in every replica after sample ``j``. ``claim`` is a zeroed int64 array (the
    counter threads take blocks from).
    """
    n_blocks = spins.shape[0]
    for _ in prange(n_threads):
        words = np.empty(stride * REPLICAS // 2 + LANES, np.uint64)
        while True:
            b = atomic_add(claim, 0, 1)
            if b >= n_blocks:
                break
            for j in range(n_samples):
                for s in range(sweeps_per_sample):
                    sweep = start + j * sweeps_per_sample + s
                    _sweep(spins, table, words, b, n_blocks, rows, stride, per_row, sweep, key)
                if out.shape[0] > 0:
                    _record(spins, b, cell_class, cell_at, out[j])
