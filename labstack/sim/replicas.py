"""Many independent heat-bath chains (replicas) of one chip, sampled together.

Why: independent equilibrium samples of a chip (truth tables, cross-checks, the
benchmark against thrml's vmapped chains) come cheapest from many chains run side by
side. On one core of this machine (AVX-512) a replica update costs ~0.26 ns up to
256x256 and ~0.39 ns at 512x512 (memory-bound), and blocks of replicas run on separate
cores (0.18 ns per update on two, 64x64, when both are free), against ~0.85 ns for one
threaded chain (:mod:`labstack.sim.lattice`), because the cell's 16 possible heat-bath probabilities are tabulated once per
(h, J, T_eff) and each table row serves 32 replicas
(:mod:`labstack.sim.replica_kernels`).

This is a new API next to :class:`labstack.sim.dynamics.CellEnsemble`, not a path
inside it: the virtual lab's chip is one physical chain in time (its samples are a
time series with Kramers kinetics), which replicas are not, and the ensemble's own
heat-bath and kinetic paths keep their laws and their bits. Replicas sample the same
Boltzmann law ``P(s) ∝ exp((Σ h s + Σ J s s) / T_eff)`` by heat-bath (Gibbs) sweeps,
for chips whose couplings form a chain or grid (:meth:`CouplingGraph.lattice`) or
have none.
"""

from __future__ import annotations

import numba
import numpy as np
from scipy.special import expit

from labstack.sim import replica_kernels
from labstack.sim.dynamics import CellEnsemble, CouplingGraph
from labstack.sim.lattice import Lattice
from labstack.sim.replica_kernels import ONE_THRESHOLD, REPLICAS, TABLE


def thresholds(
    lattice: Lattice, h: np.ndarray, t_eff: float, stuck: np.ndarray | None = None
) -> np.ndarray:
    """``(2, L 16)`` uint32: per cell, ``round(P(up | neighbours) 2**31)`` for each of 16 configurations.

    Configuration bits: 1 = up, 2 = down, 4 = left, 8 = right neighbour is up;
    ``h_loc = h + Σ_k J_k (2 b_k - 1)`` and ``P(up) = sigmoid(2 h_loc / T_eff)``, in
    float64. Stuck cells (``stuck`` = +-1) get ``2**31`` (always up) or 0 (never);
    slots that are not cells stay 0, and nothing is coupled to them.
    """
    bits = (np.arange(TABLE)[:, None] >> np.arange(4)[None, :]) & 1  # (16, 4): up, down, left, right
    h_loc = np.asarray(h, dtype=float)[:, None] + lattice.j_dir @ (2.0 * bits.T - 1.0)
    up = np.rint(expit(2.0 * h_loc / t_eff) * ONE_THRESHOLD)
    if stuck is not None:
        stuck = np.asarray(stuck)
        up[stuck > 0], up[stuck < 0] = ONE_THRESHOLD, 0
    table = np.zeros((2 * lattice.length, TABLE), dtype=np.uint32)
    table[lattice.cells] = up.astype(np.uint32)
    return table.reshape(2, lattice.length * TABLE)


def _lattice_of(n: int, graph: CouplingGraph | None) -> Lattice:
    """The chip's chain or grid; a chip without couplings is a chain with zero couplings."""
    if graph is None or not graph.coupled:
        none = np.zeros(0, dtype=np.int64)
        return Lattice._build(n, 1, n, none, none, np.zeros(0), np.zeros(0, dtype=bool))
    lattice = graph.lattice()
    if lattice is None:
        raise ValueError("replicas need a chip whose couplings form a chain or a grid")
    return lattice


class Replicas:
    """``n_replicas`` independent heat-bath chains of one chip at fixed fields and temperature.

    ``spins`` (property) is ``(n_replicas, n)`` int8 +-1. Replicas start from
    ``spins`` (one state for all, or one per replica) or, by default, each from its
    own uniformly random state. Every call draws one 64-bit key from ``rng``, so the
    same seed and calls give the same bits, whatever the thread count.
    """

    def __init__(
        self,
        graph: CouplingGraph | None,
        h: np.ndarray,
        t_eff: float,
        n_replicas: int,
        rng: np.random.Generator,
        *,
        stuck: np.ndarray | None = None,
        spins: np.ndarray | None = None,
    ) -> None:
        n = len(np.asarray(h))
        self.lattice = _lattice_of(n, graph)
        self.n, self.n_replicas, self.rng = n, int(n_replicas), rng
        self.stuck = np.zeros(n, np.int8) if stuck is None else np.asarray(stuck, np.int8)
        n_blocks = max(1, -(-self.n_replicas // REPLICAS))
        lat = self.lattice
        self._per_row = np.array([(lat.cols + 1) // 2, lat.cols // 2], dtype=np.int64)
        self._cell_class, slot = np.divmod(lat.cells, lat.length)
        self._cell_at = slot * REPLICAS
        self._layout = np.zeros((n_blocks, 2, lat.length * REPLICAS), dtype=np.uint8)
        self.set_fields(h, t_eff)
        if spins is None:
            start = rng.choice(np.array([-1, 1], np.int8), size=(n_blocks * REPLICAS, n))
        else:
            start = np.broadcast_to(np.asarray(spins, np.int8), (n_blocks * REPLICAS, n))
        self._store(start)

    @classmethod
    def of(
        cls, cells: CellEnsemble, graph: CouplingGraph | None, h: np.ndarray, t_eff: float,
        n_replicas: int,
    ) -> Replicas:
        """Replicas of an ensemble's chip (its stuck cells), all starting from its state."""
        rng = np.random.default_rng(cells.rng.integers(0, 2**63))
        return cls(graph, h, t_eff, n_replicas, rng, stuck=cells.stuck, spins=cells.spins)

    def set_fields(self, h: np.ndarray, t_eff: float) -> None:
        """New fields or temperature (a DAC write, a fridge drift): the table is rebuilt."""
        self._table = thresholds(self.lattice, h, t_eff, self.stuck)

    def _store(self, spins: np.ndarray) -> None:
        """Write ``(n_blocks R, n)`` +-1 spins into the layout (stuck cells at their value)."""
        spins = np.where(self.stuck != 0, self.stuck, spins)
        n_blocks = self._layout.shape[0]
        lanes = (spins > 0).astype(np.uint8).reshape(n_blocks, REPLICAS, self.n)
        flat = self._layout.reshape(n_blocks, 2 * self.lattice.length, REPLICAS)
        flat[:, self.lattice.cells, :] = lanes.transpose(0, 2, 1)

    @property
    def spins(self) -> np.ndarray:
        """``(n_replicas, n)`` int8 +-1, each replica's current state."""
        n_blocks = self._layout.shape[0]
        flat = self._layout.reshape(n_blocks, 2 * self.lattice.length, REPLICAS)
        lanes = flat[:, self.lattice.cells, :].transpose(0, 2, 1).reshape(-1, self.n)
        return (2 * lanes[: self.n_replicas].astype(np.int8) - 1).astype(np.int8)

    def _run(self, n_samples: int, sweeps_per_sample: int, out: np.ndarray, threads: int | None) -> None:
        n_blocks = self._layout.shape[0]
        threads = numba.get_num_threads() if threads is None else int(threads)
        threads = max(1, min(threads, n_blocks, numba.get_num_threads()))
        key = np.uint64(self.rng.integers(0, 2**64 - 1, dtype=np.uint64, endpoint=True))
        lat = self.lattice
        replica_kernels.sweeps(
            self._layout, self._table, lat.rows, lat.stride, self._per_row, self._cell_class, self._cell_at,
            n_samples, sweeps_per_sample, key, 0, out, threads, np.zeros(8, np.int64),
        )

    def sweeps(self, n_sweeps: int, threads: int | None = None) -> None:
        """``n_sweeps`` heat-bath sweeps of every replica (blocks of 32 shared between threads)."""
        if n_sweeps > 0:
            self._run(1, int(n_sweeps), np.empty((0, 0, 0), np.int8), threads)

    def sample(
        self, n_samples: int, sweeps_per_sample: int = 1, threads: int | None = None
    ) -> np.ndarray:
        """``(n_samples, n_replicas, n)`` int8: every replica's state after each ``sweeps_per_sample`` sweeps.

        A view of an array with replicas innermost in memory (as the kernel keeps them,
        so recording is a contiguous copy); ``np.ascontiguousarray`` makes rows contiguous.
        """
        n_blocks = self._layout.shape[0]
        out = np.empty((n_samples, self.n, n_blocks * REPLICAS), dtype=np.int8)
        if n_samples > 0:
            self._run(int(n_samples), int(sweeps_per_sample), out, threads)
        return out.transpose(0, 2, 1)[:, : self.n_replicas]
