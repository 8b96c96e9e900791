"""Chains and grids recognised from their couplings, and their fast sweeps.

The virtual chips are chains and 2-D grids with cells numbered row by row. When a
coupling graph fits such a grid (every coupled pair is ``(i, i + 1)`` in one row or
``(i, i + C)``), its sweeps (heat-bath and kinetic steps) run on
:mod:`labstack.sim.lattice_kernels`, which addresses neighbours at constant offsets
instead of through a table and so vectorises: 0.7-0.8 ns per heat-bath update and
1.5-2 ns per kinetic step on one core (AVX-512, 64x64 to 512x512, plus ~0.6 us per
sweep, which is why chips under 64 cells take their finite steps on the table), against
7-20 ns for the tabulated kernel of :mod:`labstack.sim.kernels`, which stays for other
graphs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numba
import numpy as np
import scipy.sparse as sp

from labstack.sim import lattice_kernels

UP, DOWN, LEFT, RIGHT = range(4)
_LOG2E = 1.0 / np.log(2.0)
PROBE_SWEEPS = 4
"""Sweeps of a probe piece of a threaded run (see :meth:`Lattice._adaptive`)."""
PIECE_S = 0.02
"""Seconds of work in a piece of a threaded run once both ways have been timed."""
EXPLORE_EVERY = 8
"""Every this many pieces, one is run the other way, so that a change of load is noticed."""
_STUCK = 1e30
"""|c0| of a stuck cell: ``2**y`` saturates, so its state never changes."""


@dataclass(frozen=True)
class Lattice:
    """A ``rows x cols`` grid layout of ``n`` cells (``n <= rows * cols``) and its couplings.

    ``cells[i]`` is cell ``i``'s index in the flattened ``(2, length)`` spin array;
    ``coef_index[i]`` the flat indices of its constant, its up, down, left and right
    couplings, its ``r0 dt`` and its ``r0 / Gamma0`` in the ``(2, 8, length)`` coefficient array; ``j_dir[i]`` the
    couplings (kelvin) to those four neighbours, 0 where there is none.
    """

    n: int
    rows: int
    cols: int
    stride: int
    cells: np.ndarray
    coef_index: np.ndarray
    j_dir: np.ndarray

    @property
    def length(self) -> int:
        """Slots per colour class: ``rows + 2`` rows of ``stride``, plus one either side."""
        return (self.rows + 2) * self.stride + 2

    @classmethod
    def detect(cls, matrix: sp.csr_matrix) -> Lattice | None:
        """The grid that holds every coupling of ``matrix``, or None if there is none."""
        n = matrix.shape[0]
        upper = sp.triu(matrix, k=1).tocoo()
        a, b = upper.row.astype(np.int64), upper.col.astype(np.int64)
        if a.size == 0:
            return None
        steps = np.unique(b - a)
        long_steps = steps[steps > 1]
        if long_steps.size > 1:
            return None
        cols = int(long_steps[0]) if long_steps.size else n
        horizontal = b - a == 1
        if np.any(a[horizontal] // cols != b[horizontal] // cols):
            return None  # a pair that wraps from one row's end to the next row's start
        rows = -(-n // cols)
        return cls._build(n, rows, cols, a, b, upper.data.astype(float), horizontal)

    @classmethod
    def _build(cls, n, rows, cols, a, b, j, horizontal) -> Lattice:
        stride = (cols + 1) // 2 + 2
        length = (rows + 2) * stride + 2
        cell = np.arange(n)
        r, c = cell // cols, cell % cols
        q = (r + c) & 1
        slot = (r + 1) * stride + c // 2 + 1
        parity = c & 1  # horizontal neighbours at slots m - 1 + parity and m + parity
        coef_slot = np.stack([np.zeros(n, np.int64), np.full(n, 1), np.full(n, 2),
                              3 + parity, 4 + parity, np.full(n, 6), np.full(n, 7)], axis=1)
        coef_index = ((q[:, None] * lattice_kernels.N_COEF + coef_slot) * length + slot[:, None])
        j_dir = np.zeros((n, 4))
        vertical = ~horizontal
        np.add.at(j_dir, (a[horizontal], RIGHT), j[horizontal])
        np.add.at(j_dir, (b[horizontal], LEFT), j[horizontal])
        np.add.at(j_dir, (a[vertical], DOWN), j[vertical])
        np.add.at(j_dir, (b[vertical], UP), j[vertical])
        return cls(n, rows, cols, stride, q * length + slot, coef_index, j_dir)

    def coefficients(
        self,
        h: np.ndarray,
        t_eff: float,
        stuck: np.ndarray,
        r0dt: np.ndarray | None = None,
        sat: np.ndarray | None = None,
    ) -> np.ndarray:
        """``(2, 8, length)`` float32: ``y = c0 + sum c_k s_k = -2 log2(e) h_loc / T_eff`` per slot.

        With spins ``s`` in {0, 1}, ``h_loc = h + sum_k J_k (2 s_k - 1)``; the last two
        rows are ``r0 dt`` for kinetic steps (zero for the heat bath) and the bounded
        Kramers law's ``r0 / Gamma0`` (``sat``; zero: the unbounded law). Stuck cells
        (``stuck`` = +-1) get ``c0 = -+1e30``, no couplings and ``r0 dt = 0``.
        """
        scale = -2.0 * _LOG2E / t_eff
        c0 = scale * (np.asarray(h, dtype=float) - self.j_dir.sum(axis=1))
        c_dir = 2.0 * scale * self.j_dir
        frozen = stuck != 0
        if frozen.any():
            c0 = np.where(frozen, -_STUCK * np.sign(stuck), c0)
            c_dir = np.where(frozen[:, None], 0.0, c_dir)
        coef = np.zeros(2 * lattice_kernels.N_COEF * self.length, dtype=np.float32)
        coef[self.coef_index[:, 0]] = c0
        coef[self.coef_index[:, 1:5]] = c_dir
        if r0dt is not None:
            coef[self.coef_index[:, 5]] = np.where(frozen, 0.0, r0dt)
        if sat is not None:
            coef[self.coef_index[:, 6]] = sat
        return coef.reshape(2, lattice_kernels.N_COEF, self.length)

    def spins_in(self, spins: np.ndarray) -> np.ndarray:
        """``(2, length)`` float32 layout of +-1 cell spins (halo and padding down)."""
        layout = np.zeros(2 * self.length, dtype=np.float32)
        layout[self.cells] = spins > 0
        return layout.reshape(2, self.length)

    @staticmethod
    def _adaptive(run, n_samples: int, per_sample: int, record: np.ndarray) -> None:
        """Run the sweeps in timed pieces, each the faster way lately (``run(..., parallel)``).

        Pieces are whole samples when samples are short, else stretches of one sample's
        sweeps (the sample is recorded after its last stretch). The first two pieces
        (``PROBE_SWEEPS`` sweeps) time each way; later pieces hold ~``PIECE_S`` seconds
        of work at the better rate, and every ``EXPLORE_EVERY``-th piece is run the
        other way (a probe's worth of sweeps) to notice that the machine has changed.
        """
        seconds = {False: np.inf, True: np.inf}  # per sweep, latest piece each way
        tried = {False: False, True: False}
        pieces = 0

        def next_piece(limit: int) -> tuple[int, bool]:
            nonlocal pieces
            pieces += 1
            if not tried[False] or not tried[True]:
                return min(limit, PROBE_SWEEPS), tried[False]
            best = seconds[True] < seconds[False]
            if pieces % EXPLORE_EVERY == 0:
                return min(limit, PROBE_SWEEPS), not best
            return min(limit, max(PROBE_SWEEPS, int(PIECE_S / seconds[best]))), best

        def timed(samples: int, sweeps: int, start: int, rows: np.ndarray, parallel: bool) -> None:
            elapsed = run(samples, sweeps, start, rows, parallel)
            seconds[parallel] = elapsed / (samples * sweeps)
            tried[parallel] = True

        if per_sample < 4 * PROBE_SWEEPS:  # pieces of whole samples
            j = 0
            while j < n_samples:
                sweeps, parallel = next_piece((n_samples - j) * per_sample)
                m = max(1, sweeps // per_sample)
                timed(m, per_sample, j * per_sample, record[j:j + m], parallel)
                j += m
            return
        for j in range(n_samples):  # stretches of each long sample
            done = 0
            while done < per_sample:
                sweeps, parallel = next_piece(per_sample - done)
                last = done + sweeps == per_sample
                rows = record[j:j + 1] if last else record[:0]
                timed(1, sweeps, j * per_sample + done, rows, parallel)
                done += sweeps

    def spins_out(self, layout: np.ndarray) -> np.ndarray:
        """+-1 int8 cell spins from the layout."""
        return (2 * layout.reshape(-1)[self.cells] - 1).astype(np.int8)

    def sweeps(
        self,
        spins: np.ndarray,
        h: np.ndarray,
        t_eff: float,
        stuck: np.ndarray,
        n_samples: int,
        sweeps_per_sample: int,
        key: np.uint64,
        out: np.ndarray | None,
        threads: int = 1,
        r0dt: np.ndarray | None = None,
        sat: np.ndarray | None = None,
    ) -> None:
        """Run the sweeps, updating ``spins`` (+-1 int8, cell order) and filling ``out``.

        Heat-bath sweeps, or kinetic steps when ``r0dt`` (``r0 dt`` per cell) is given,
        with the bounded Kramers law when ``sat`` (``r0 / Gamma0`` per cell) is.
        ``threads > 1`` shares the work between that many threads; the bits do not change.
        A threaded run of at least 4 probes (``PROBE_SWEEPS`` sweeps) is cut in pieces,
        each timed, run threaded or serially, whichever was faster lately
        (:meth:`_adaptive`): on a shared machine, where another process holds a core
        now and then, a threaded sweep waits at every colour phase for a thread that
        has lost its core and can be several times slower than one thread. The pieces
        use the run's own random counters (``start``), so the result is the same bits
        whichever way each piece ran.
        """
        layout = self.spins_in(spins)
        coef = self.coefficients(h, t_eff, stuck, r0dt, sat)
        record = out if out is not None else np.empty((0, self.n), dtype=np.int8)
        kinetic = r0dt is not None
        threads = min(int(threads), numba.get_num_threads())
        n_chunks = int(np.clip(self.rows * self.stride // 2048, threads, 4 * threads))

        def run(samples: int, per_sample: int, start: int, rows: np.ndarray, parallel: bool) -> float:
            """Sweeps ``start .. start + samples * per_sample`` (counters of the whole run); seconds."""
            args = (layout, coef, self.stride, self.rows, self.cells, samples, per_sample,
                    np.uint64(key), start, rows, kinetic)
            t = time.perf_counter()
            if parallel:
                lattice_kernels.sweeps_threaded(*args, threads, n_chunks, np.zeros(16, np.int64))
            else:
                lattice_kernels.sweeps(*args)
            return time.perf_counter() - t

        if threads <= 1 or n_samples * sweeps_per_sample < 4 * PROBE_SWEEPS:
            run(n_samples, sweeps_per_sample, 0, record, threads > 1)
        else:
            self._adaptive(run, n_samples, sweeps_per_sample, record)
        spins[:] = self.spins_out(layout)
