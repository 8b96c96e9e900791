"""Stochastic dynamics of the cells: Kramers escape over a tilted double-well barrier.

Each cell is a two-state system ``s in {-1, +1}`` with local field ``h_loc`` (kelvin,
couplings included). Its escape rates are ``r_up = G0 exp(-(dU - h)/T)`` and
``r_down = G0 exp(-(dU + h)/T)``, so ``P(+1) = r_up / (r_up + r_down) = sigmoid(2h/T)``
(Boltzmann) and the correlation time is ``tau_c = 1 / (r_up + r_down)``: longest at
``h = 0`` and Arrhenius in ``1/T``.

Bounded tilt (realistic chips, ``bounded=True``). The law above lets the total rate
``k = r_up + r_down = 2 G0 exp(-dU/T) cosh(h/T)`` grow without limit once ``|h|``
nears the barrier, faster than the attempt rate ``G0`` itself. A real cell cannot:
once the barrier is tilted away, escape is limited by the relaxation within the
well it leaves, which happens at the attempt rate. Escape is then two steps in
series, reaching the barrier (rate ``G0``) and crossing it (rate ``k``), whose
times add: ``1 / k_b = 1 / k + 1 / G0``, i.e. ::

    k_b = k / (1 + k / G0),   r_up = k_b sigmoid(2h/T),   r_down = k_b sigmoid(-2h/T).

``k_b`` equals ``k`` to ``k / G0`` (below 1e-3 where the cells are read, ``|h| ~
T``), rises monotonically in ``|h|`` and saturates at ``G0``, never above it. The
split between up and down is kept: ``r_up / r_down = exp(2h/T)`` exactly, so
``P(+1) = sigmoid(2h/T)`` and detailed balance with respect to the Boltzmann
distribution hold for any field, and equilibrium statistics (heat-bath sweeps,
enumeration) do not depend on the law at all. Only times change. The ideal chip
keeps the unbounded law (``bounded=False``), so its recorded runs replay the same.
In the compiled kernels the bound enters as ``z -> z / (1 + s 2cosh(h/T))`` with
``z = r0 dt 2cosh(h/T)`` and ``s = exp(-dU/T) = r0 / G0`` per cell (``s = 0``:
the unbounded law, bit for bit).

For a cell whose field is constant over a step ``dt`` the two-state master
equation is solved exactly: ``P(up at t+dt) = p + (s_t - p) exp(-dt / tau_c)`` with
``s_t in {0, 1}``. Isolated cells take that step once per call, whatever its length.

Coupled cells are updated colour class by colour class (a proper colouring of the
coupling graph, so no two neighbours move together): each class takes the exact
step with its neighbours frozen. Every class update leaves the joint Boltzmann
distribution invariant, so equilibrium statistics are exact for any ``dt``. The
dynamics are exact as ``dt -> 0``; the error comes from neighbours that would
have flipped during ``dt``. A cell's mean flip rate in equilibrium is
``2 r_up r_down / (r_up + r_down) <= r0 = G0 exp(-dU/T)`` whatever its field, so
``dt = step_fraction / max(r0)`` bounds the chance that any neighbour flips within
a step by ``step_fraction`` (0.05). ``tests/test_sim_dynamics.py`` checks that
halving it changes no correlation time and that the result matches the exact
master equation of a small coupled chip (:mod:`labstack.fit.ising`).

Long waits: simulating a fridge wait of seconds step by step would cost ~1e8
sweeps and tell nothing, since the chip forgets its state after a few relaxation
times. A stretch longer than ``window_attempts / min(r0)`` (20 attempt times of
the slowest cell, >= 40 of its correlation times, so its memory is below e^-40)
is replaced by heat-bath sweeps (``dt = inf``), as many as Dobrushin's bound asks
and at most ``long_wait_sweeps``, which keep the Boltzmann
distribution exactly and decorrelate at least as fast per sweep as that window.
This assumes the coupled chip relaxes within the window; a ferromagnet with
``J >> T_eff`` (slow domain walls) may not, and then a long wait leaves it more
correlated with its past than a real chip would be.

Stiff chips: attempt rates spread over decades (a chip of the family has cells from
0.05 to 500 us), so resolving the fastest cell costs a sample taken every millisecond
~10^5 steps, though that cell forgets its state ~10^4 times between two samples. On a
weakly coupled chip (idle couplers: Dobrushin constant ``<= WEAK_COUPLING``), the step
resolves only the cells that remember their state across the stretch; the others take
the same exact step, longer than their own time scale, which draws them from their
conditional equilibrium given their neighbours (every update still keeps the
Boltzmann distribution exactly). A slower neighbour then sees a fast one's state
resampled every step instead of its time average, which is unbiased to first order in
``r0 dt`` and to second order in ``tanh(J / T_eff)``. And what a step's frozen
neighbours cost is weighted by the coupling: a neighbour's flip moves a cell's exact
step by at most ``tanh(|J| / T_eff)``, so the chance of one within a step is bounded by
``step_fraction / c`` (``c`` the Dobrushin constant) instead of ``step_fraction``.
``tests/test_sim_dynamics.py`` checks this against the exact master equation of a
stiff chain.

The inner loops are compiled and draw their uniforms from a counter-based stream
keyed by one 64-bit draw of the ensemble's Generator per call, so results are
reproducible bit for bit and independent of threads. Sweeps of chains and grids,
heat-bath and finite steps alike, run on :mod:`labstack.sim.lattice_kernels`
(float32 vectors; probabilities good to a few 1e-7 of themselves, resolved to
2**-31 near 0 and 1); other graphs, finite steps of chips under 64 cells (where the
table is faster) and finite steps so short that a cell's flip probability would
come near that resolution, on :mod:`labstack.sim.kernels` (53-bit thresholds), 2-5
times slower on large chips (see ``CellEnsemble.KINETIC_ON_LATTICE``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numba
import numpy as np
import scipy.sparse as sp
from scipy.special import expit

from labstack.sim import kernels
from labstack.sim.lattice import Lattice


def _log_two_cosh(x: np.ndarray) -> np.ndarray:
    """``ln(2 cosh x)`` without overflow for any ``x``."""
    ax = np.abs(x)
    return ax + np.log1p(np.exp(-2.0 * ax))


def kramers_rates(
    h_loc: np.ndarray,
    t_eff: float,
    gamma0: np.ndarray,
    barrier: np.ndarray,
    bounded: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Escape rates (up, down) in 1/s for local fields ``h_loc`` (K) at ``t_eff`` (K).

    ``bounded``: the total rate saturates at ``gamma0`` (module docstring), the ratio
    ``r_up / r_down = exp(2 h / T)`` stays that of the unbounded law.
    """
    h_loc = np.asarray(h_loc, dtype=float)
    gamma0 = np.asarray(gamma0, dtype=float)
    barrier = np.asarray(barrier, dtype=float)
    if not bounded:
        r_up = gamma0 * np.exp(-(barrier - h_loc) / t_eff)
        r_down = gamma0 * np.exp(-(barrier + h_loc) / t_eff)
        return r_up, r_down
    total = bounded_total_rate(h_loc, t_eff, gamma0, barrier)
    x = 2.0 * h_loc / t_eff
    return total * expit(x), total * expit(-x)


def bounded_total_rate(
    h_loc: np.ndarray, t_eff: float, gamma0: np.ndarray, barrier: np.ndarray
) -> np.ndarray:
    """``k_b = k / (1 + k / G0)`` with ``k = 2 G0 exp(-dU/T) cosh(h/T)``, in 1/s, for any field.

    Written as ``G0 / (1 + G0 / k)`` with ``ln(k / G0)`` computed in logs, so that a
    field of many barriers neither overflows nor loses the saturation.
    """
    ln_ratio = -np.asarray(barrier, dtype=float) / t_eff + _log_two_cosh(np.asarray(h_loc, dtype=float) / t_eff)
    with np.errstate(over="ignore"):
        return np.asarray(gamma0, dtype=float) / (1.0 + np.exp(-ln_ratio))


def correlation_time(
    h_loc: np.ndarray,
    t_eff: float,
    gamma0: np.ndarray,
    barrier: np.ndarray,
    bounded: bool = False,
) -> np.ndarray:
    """tau_c = 1 / (r_up + r_down) in seconds (``bounded``: ``1/k + 1/G0``)."""
    r_up, r_down = kramers_rates(h_loc, t_eff, gamma0, barrier, bounded)
    return 1.0 / (r_up + r_down)


def telegraph_step(
    up: np.ndarray,
    r_up: np.ndarray,
    r_down: np.ndarray,
    dt: float,
    uniform: np.ndarray,
) -> np.ndarray:
    """Exact two-state update over ``dt`` given uniforms in [0, 1); returns the new ``up`` mask."""
    total = r_up + r_down
    p = r_up / total
    decay = np.exp(-dt * total)
    p_next = p + (up.astype(float) - p) * decay
    return uniform < p_next



@dataclass(frozen=True)
class Layout:
    """Cells reordered colour class by colour class, with padded neighbour tables.

    ``order[k]`` is the cell stored at position ``k`` and ``position[i]`` where cell
    ``i`` is stored; class ``c`` occupies ``bounds[c]:bounds[c + 1]``. ``nbr`` holds
    neighbour positions (padding: the cell's own position, coupling 0) and ``j``
    the couplings in kelvin.
    """

    order: np.ndarray
    position: np.ndarray
    bounds: np.ndarray
    nbr: np.ndarray
    j: np.ndarray

    @classmethod
    def isolated(cls, n: int) -> Layout:
        idx = np.arange(n)
        nbr = np.repeat(idx[:, None], kernels.TABLE_DEGREE, axis=1).astype(np.int32)
        return cls(idx, idx, np.array([0, n]), nbr, np.zeros(nbr.shape))


@dataclass
class CouplingGraph:
    """Symmetric couplings as a sparse matrix plus a colouring for parallel updates."""

    matrix: sp.csr_matrix  # J_ij in kelvin, symmetric, zero diagonal
    colors: list[np.ndarray]  # cell indices of each colour class
    _layout: Layout | None = field(default=None, init=False, repr=False, compare=False)
    _lattice: Lattice | bool | None = field(default=None, init=False, repr=False, compare=False)
    _rows_abs: tuple[np.ndarray, np.ndarray] | None = field(default=None, init=False, repr=False, compare=False)

    @classmethod
    def build(cls, n: int, pairs: np.ndarray, j_values: np.ndarray) -> CouplingGraph:
        pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
        j_values = np.asarray(j_values, dtype=float)
        rows = np.concatenate([pairs[:, 0], pairs[:, 1]])
        cols = np.concatenate([pairs[:, 1], pairs[:, 0]])
        data = np.concatenate([j_values, j_values])
        matrix = sp.csr_matrix((data, (rows, cols)), shape=(n, n))
        matrix.sum_duplicates()
        matrix.sort_indices()
        color = kernels.greedy_colors(matrix.indptr.astype(np.int64), matrix.indices.astype(np.int64))
        n_colors = int(color.max()) + 1 if n else 0
        return cls(matrix=matrix, colors=[np.flatnonzero(color == c) for c in range(n_colors)])

    def local_fields(self, h: np.ndarray, spins: np.ndarray) -> np.ndarray:
        return h + self.matrix @ spins

    @property
    def coupled(self) -> bool:
        return self.matrix.nnz > 0

    def dobrushin(self, t_eff: float) -> float:
        """``max_i sum_j tanh(|J_ij| / T_eff)``: below 1, each heat-bath sweep contracts.

        From the couplings' rows and magnitudes kept once per graph (plain numpy on a few
        dozen numbers): through scipy.sparse it cost 0.3 ms per wait, a tenth of a lock-in
        calibration's wall time spent on this one number.
        """
        rows, magnitudes = self._rows_and_magnitudes()
        if magnitudes.size == 0:
            return 0.0
        return float(np.bincount(rows, np.tanh(magnitudes / t_eff), minlength=self.matrix.shape[0]).max())

    def _rows_and_magnitudes(self) -> tuple[np.ndarray, np.ndarray]:
        if self._rows_abs is None:
            m = self.matrix
            rows = np.repeat(np.arange(m.shape[0]), np.diff(m.indptr))
            self._rows_abs = (rows, np.abs(m.data))
        return self._rows_abs

    def max_abs_coupling(self) -> np.ndarray:
        """Per cell, the sum of |J_ij| over its neighbours (K): bounds how far couplings move h_loc."""
        return np.asarray(abs(self.matrix).sum(axis=1)).ravel()

    def lattice(self) -> Lattice | None:
        """The chain or grid that holds every coupling, if there is one (found once per graph)."""
        if self._lattice is None:
            self._lattice = Lattice.detect(self.matrix) or False
        return self._lattice or None

    def layout(self) -> Layout:
        """The colour-sorted layout the compiled sweeps use (built once per graph)."""
        if self._layout is None:
            n = self.matrix.shape[0]
            order = np.concatenate(self.colors) if self.colors else np.arange(n)
            position = np.empty(n, dtype=np.int64)
            position[order] = np.arange(n)
            bounds = np.concatenate([[0], np.cumsum([len(c) for c in self.colors])]).astype(np.int64)
            m = self.matrix
            degree = np.diff(m.indptr)
            d = int(degree.max()) if n else 0
            d = kernels.TABLE_DEGREE if d <= kernels.TABLE_DEGREE else d  # pad to the table kernel
            nbr = np.repeat(position[:, None], d, axis=1)
            j = np.zeros((n, d))
            row = np.repeat(np.arange(n), degree)
            slot = np.arange(m.nnz) - np.repeat(m.indptr[:-1], degree)
            nbr[position[row], slot] = position[m.indices]
            j[position[row], slot] = m.data
            self._layout = Layout(order, position, bounds, np.ascontiguousarray(nbr, np.int32), j)
        return self._layout


def greedy_coloring(n: int, pairs: np.ndarray) -> list[np.ndarray]:
    """A proper colouring (2 colours for chains and grids) by greedy assignment."""
    return CouplingGraph.build(n, pairs, np.ones(len(np.reshape(pairs, (-1, 2))))).colors


class CellEnsemble:
    """The cells' state and its evolution; pure physics, no instruments.

    ``spins`` is an int8 array of +-1 in cell order. ``stuck`` cells never move
    (their state still acts on their neighbours). Fields and the effective
    temperature are supplied by the caller at each call, because they change
    whenever a DAC moves or the fridge warms.

    Keyword options (see the module docstring for why): ``step_fraction`` bounds the
    chance a neighbour flips within one step, ``window_attempts`` sets the longest
    stretch simulated step by step (in attempt times ``1/r0`` of the slowest cell),
    ``long_wait_sweeps`` the heat-bath sweeps that replace a longer stretch,
    ``bounded`` the escape law (the bounded Kramers tilt of the module docstring), and
    ``parallel_threshold`` the cell count from which sweeps use all threads (the
    result is the same either way). By default (None) heat-bath sweeps of chains and
    grids (:mod:`labstack.sim.lattice`) use threads from ``LATTICE_THREADS_FROM``
    cells when a call has at least ``THREADED_WORK`` cell updates, since they start
    one parallel region per call; below 128x128 a colour class is a few microseconds
    of work, so the threads would wait at every phase more than they gain, and on a
    shared machine a thread that loses its core stalls each phase (64x64: 1.4e9
    updates/s serial, 0.07-2e9 threaded); the tabulated kernel starts one per colour class
    and sweep, which on a shared 2-core machine made it 2-50x slower than serial up
    to 10^6 cells (bench/bench_sim_vs_thrml.py), so it stays serial below 2M cells.
    """

    KINETIC_ON_LATTICE = True
    """Kinetic (finite) steps of chains and grids on the lattice kernel too.

    It was off because the calibration graph's bias S-curves came out ~13 % narrower
    than the chip's widths for some cells. That is not the kernel: those S-curves are
    sampled at <= 100 Hz, which runs heat-bath sweeps whatever this flag says (the
    widths are the same to 0.1 % with it off), and a bias sweep moves every line at
    once, so DAC crosstalk narrows them to ``T_eff / (2 (alpha_i + X_i))``
    (:meth:`GroundTruth.swept_scurve_width_V <labstack.sim.truth.GroundTruth.swept_scurve_width_V>`),
    10-14 % below the single-line width for a cell with two neighbouring lines."""
    KINETIC_LATTICE_FROM = 64
    """Cells from which finite steps take the lattice kernel. Below, the tabulated kernel is
    faster: the lattice pays ~0.8 us per sweep whatever the size (a 16-cell chain: 52 ns
    per update against 24; 36-cell grid 32 against 19; 64-cell chain 13 against 20;
    12x12 grid 7 against 20, lab sampling at 200 kHz)."""
    KINETIC_MIN_R0DT = 2.0**-20
    """Shortest step the lattice takes, as ``r0 dt`` of the slowest cell: its decisions
    resolve probabilities to 2**-31, so a zero-field flip probability ``r0 dt`` below
    this would be rounded by more than 2**-11 of itself; shorter steps (a catch-up of a
    few picoseconds) go to the tabulated kernel (53 bits)."""
    MEMORYLESS_ATTEMPTS = 10.0
    """A cell whose ``r0 duration`` reaches this forgets its state within the stretch
    (its correlation time is at most ``1 / (2 r0)``, so its memory is below e^-20, the
    heat-bath sweeps' 1e-9): on a weakly coupled chip the step need not resolve it."""
    WEAK_COUPLING = 0.3
    """Dobrushin constant up to which memoryless cells are stepped past; above it (couplers
    set to couple, training) every cell is resolved, as a strongly coupled pair can
    relax far more slowly than either cell."""
    LATTICE_THREADS_FROM = 16384
    THREADED_WORK = 2_000_000
    TABLE_THREADS_FROM = 1 << 21

    def __init__(
        self,
        gamma0: np.ndarray,
        barrier: np.ndarray,
        stuck: np.ndarray,
        rng: np.random.Generator,
        spins: np.ndarray | None = None,
        *,
        step_fraction: float = 0.05,
        window_attempts: float = 20.0,
        long_wait_sweeps: int = 400,
        parallel_threshold: int | None = None,
        bounded: bool = False,
    ) -> None:
        self.gamma0 = np.asarray(gamma0, dtype=float)
        self.barrier = np.asarray(barrier, dtype=float)
        self.stuck = np.asarray(stuck, dtype=np.int8)
        self.rng = rng
        n = len(self.gamma0)
        self.spins = (
            np.asarray(spins, dtype=np.int8).copy()
            if spins is not None
            else rng.choice(np.array([-1, 1], dtype=np.int8), size=n)
        )
        self._frozen = self.stuck != 0
        self.spins[self._frozen] = self.stuck[self._frozen]
        self.step_fraction = float(step_fraction)
        self.window_attempts = float(window_attempts)
        self.long_wait_sweeps = int(long_wait_sweeps)
        self.parallel_threshold = parallel_threshold
        self.bounded = bool(bounded)

    @property
    def n(self) -> int:
        return len(self.spins)

    # ------------------------------------------------------------------ rates
    def attempt_rates(self, t_eff: float) -> np.ndarray:
        """``r0 = G0 exp(-dU / T_eff)`` per cell (1/s): the rate scale at zero field."""
        return self.gamma0 * np.exp(-self.barrier / t_eff)

    def saturation(self, t_eff: float) -> np.ndarray:
        """``s = r0 / G0 = exp(-dU / T_eff)`` per cell with the bounded law, zeros without.

        The kernels divide the unbounded ``z = r0 dt 2cosh(h/T)`` by ``1 + s 2cosh(h/T)``
        (``1 + k / G0``); ``s = 0`` leaves it as it was, bit for bit.
        """
        if not self.bounded:
            return np.zeros(self.n)
        return np.exp(-self.barrier / t_eff)

    def _longest_zero_field_time(self, t_eff: float) -> float:
        """``2 tau_c(h = 0)`` of the slowest free cell: ``1 / r0``, plus ``2 / G0`` when bounded."""
        free = ~self._frozen
        r0 = self.attempt_rates(t_eff)[free]
        if not self.bounded:
            return 1.0 / float(r0.min())
        return float(np.max(1.0 / r0 + 2.0 / self.gamma0[free]))

    def max_substep(self, h: np.ndarray, t_eff: float, graph: CouplingGraph | None) -> float:
        """Largest step for coupled cells that keeps the dynamics step-independent."""
        if not _coupled(graph):
            return np.inf
        r0 = self.attempt_rates(t_eff)[~self._frozen]
        return self.step_fraction / float(r0.max()) if r0.size else np.inf

    def _plan(
        self, duration: float, t_eff: float, graph: CouplingGraph | None = None
    ) -> tuple[int, float]:
        """(sweeps, dt) that cover ``duration`` for coupled cells.

        The step resolves the fastest cell that still remembers its state across
        ``duration``; on a weakly coupled chip, cells that forget it (``r0 duration >=
        MEMORYLESS_ATTEMPTS``) are stepped past (see the module docstring, "Stiff chips").
        """
        r0 = self.attempt_rates(t_eff)[~self._frozen]
        if r0.size == 0:
            return 0, np.inf
        window = self.window_attempts * self._longest_zero_field_time(t_eff)
        if duration > window:
            return self._long_wait_sweeps(t_eff, graph), np.inf
        resolved, weight = r0, 1.0
        c = graph.dobrushin(t_eff) if graph is not None else 0.0
        if c <= self.WEAK_COUPLING:
            resolved = r0[r0 * duration < self.MEMORYLESS_ATTEMPTS]
            if resolved.size == 0 or c <= 0.0:
                return 1, duration
            weight = c  # a neighbour's flip moves a cell's step by at most tanh(|J| / T_eff)
        max_dt = self.step_fraction / (weight * float(resolved.max()))
        n_sweeps = max(1, int(np.ceil(duration / max_dt)))
        return n_sweeps, duration / n_sweeps

    def _long_wait_sweeps(self, t_eff: float, graph: CouplingGraph | None) -> int:
        """Heat-bath sweeps that forget the start to 1e-9, capped at ``long_wait_sweeps``.

        Dobrushin's condition: if ``c = max_i sum_j tanh(|J_ij| / T_eff) < 1``, each
        heat-bath sweep contracts the distance to the Boltzmann distribution by at
        least ``c``, so ``log(1e-9) / log(c)`` sweeps suffice. Weakly coupled chips
        (idle couplers) need a handful of sweeps; strongly coupled ones get the cap.
        """
        if graph is None:
            return self.long_wait_sweeps
        c = graph.dobrushin(t_eff)
        if c >= 1.0:
            return self.long_wait_sweeps
        if c <= 0.0:
            return 1
        return int(min(self.long_wait_sweeps, max(1, np.ceil(np.log(1e-9) / np.log(c)))))

    def _key(self) -> np.uint64:
        return np.uint64(self.rng.integers(0, 2**64 - 1, dtype=np.uint64, endpoint=True))

    # ------------------------------------------------------------- evolution
    def evolve(
        self, duration: float, h: np.ndarray, t_eff: float, graph: CouplingGraph | None = None
    ) -> None:
        """Let ``duration`` seconds pass at constant fields."""
        if duration <= 0:
            return
        self.sample(1, duration, h, t_eff, graph)

    def sample(
        self,
        n_samples: int,
        period: float,
        h: np.ndarray,
        t_eff: float,
        graph: CouplingGraph | None = None,
    ) -> np.ndarray:
        """States (n_samples, n_cells) int8 taken every ``period`` seconds, evolving in between."""
        h = np.asarray(h, dtype=float)
        out = np.empty((n_samples, self.n), dtype=np.int8)
        if n_samples == 0:
            return out
        key = self._key()
        if not _coupled(graph):
            r0 = self.attempt_rates(t_eff)
            x = h / t_eff
            with np.errstate(over="ignore", divide="ignore"):
                if self.bounded:  # k / (1 + k / G0), written to stay G0 when k overflows
                    total = r0 * 2.0 * np.cosh(x)
                    stay = np.exp(-period * (self.gamma0 / (1.0 + self.gamma0 / total)))
                else:  # the unbounded law, its bits as they always were
                    stay = np.exp(-period * r0 * 2.0 * np.cosh(x))
            p_up = 0.5 * (1.0 + np.tanh(x))
            up = (self.spins > 0).astype(np.uint8)
            buf = np.empty((n_samples, self.n), dtype=np.uint8)
            kernels.telegraph_samples(up, p_up, stay, self._frozen, n_samples, key, buf)
            self.spins[:] = 2 * up.astype(np.int8) - 1
            return _to_spins(buf, out)
        assert graph is not None
        n_sweeps, dt = self._plan(period, t_eff, graph)
        self._run(graph, h, t_eff, n_samples, n_sweeps, dt, key, out)
        return out

    def gibbs(
        self,
        n_samples: int,
        h: np.ndarray,
        t_eff: float,
        graph: CouplingGraph | None = None,
        sweeps_per_sample: int = 1,
    ) -> np.ndarray:
        """Samples (n_samples, n_cells) int8 of heat-bath (Gibbs) sweeps, no time bookkeeping.

        The same block-Gibbs chain as thrml's, for cross-checks and benchmarks.
        """
        out = np.empty((n_samples, self.n), dtype=np.int8)
        if n_samples:
            graph = graph if _coupled(graph) else None
            h = np.asarray(h, dtype=float)
            self._run(graph, h, t_eff, n_samples, sweeps_per_sample, np.inf, self._key(), out)
        return out

    def sweeps(
        self,
        n_sweeps: int,
        h: np.ndarray,
        t_eff: float,
        graph: CouplingGraph | None = None,
        dt: float = np.inf,
    ) -> None:
        """``n_sweeps`` colour-class sweeps at step ``dt`` (``inf``: heat-bath / Gibbs sweeps).

        The raw update, with no time bookkeeping: for samplers and benchmarks.
        """
        if n_sweeps <= 0:
            return
        graph = graph if _coupled(graph) else None
        self._run(graph, np.asarray(h, dtype=float), t_eff, 1, n_sweeps, dt, self._key(), None)

    def _resolved(self, t_eff: float, dt: float) -> bool:
        """Whether every free cell's zero-field flip probability per step is >= KINETIC_MIN_R0DT."""
        r0 = self.attempt_rates(t_eff)[~self._frozen]
        return r0.size == 0 or float(r0.min()) * float(dt) >= self.KINETIC_MIN_R0DT

    def _run(
        self,
        graph: CouplingGraph | None,
        h: np.ndarray,
        t_eff: float,
        n_samples: int,
        n_sweeps: int,
        dt: float,
        key: np.uint64,
        out: np.ndarray | None,
    ) -> None:
        heat_bath = not np.isfinite(dt)
        on_lattice = heat_bath or (self.KINETIC_ON_LATTICE and self.n >= self.KINETIC_LATTICE_FROM
                                   and self._resolved(t_eff, dt))
        lattice = graph.lattice() if graph is not None and on_lattice else None
        if lattice is not None:
            explicit = self.parallel_threshold
            many = self.n >= (self.LATTICE_THREADS_FROM if explicit is None else explicit)
            big = n_samples * n_sweeps * self.n >= (self.THREADED_WORK if explicit is None else 0)
            threads = numba.get_num_threads() if many and big else 1
            r0dt = None if heat_bath else self.attempt_rates(t_eff) * float(dt)
            sat = None if heat_bath else self.saturation(t_eff)
            lattice.sweeps(self.spins, h, t_eff, self.stuck, n_samples, n_sweeps, key, out,
                           threads, r0dt, sat)
            return
        lay = graph.layout() if graph is not None else Layout.isolated(self.n)
        order = lay.order
        up = np.ascontiguousarray(self.spins[order] > 0, dtype=np.uint8)
        g0 = np.ascontiguousarray(h[order] / t_eff)
        jt = lay.j / t_eff
        r0dt = np.zeros(self.n) if heat_bath else self.attempt_rates(t_eff)[order] * float(dt)
        sat = np.zeros(self.n) if heat_bath else np.ascontiguousarray(self.saturation(t_eff)[order])
        frozen = np.ascontiguousarray(self._frozen[order])
        threshold = self.parallel_threshold
        parallel = self.n >= (self.TABLE_THREADS_FROM if threshold is None else threshold)
        buf = np.empty((n_samples, self.n), dtype=np.uint8) if out is not None else None
        if lay.nbr.shape[1] == kernels.TABLE_DEGREE:
            tab = kernels.table(self.n, heat_bath)
            fill = kernels.fill_table_parallel if parallel else kernels.fill_table
            pin = np.where(frozen, up, -1).astype(np.int8)
            fill(tab, g0, jt, r0dt, sat, pin, heat_bath)
            exact = (g0, jt, r0dt, sat, pin, heat_bath)
            if buf is not None and not parallel:
                kernels.sample_table(up, tab, lay.nbr, lay.bounds, n_samples, n_sweeps, key, buf, *exact)
            else:
                sweep = kernels.sweeps_table_parallel if parallel else kernels.sweeps_table
                for k in range(n_samples):
                    sweep(up, tab, lay.nbr, lay.bounds, n_sweeps, key, k * n_sweeps, *exact)
                    if buf is not None:
                        buf[k] = up
        else:
            for k in range(n_samples):
                kernels.sweeps_general(
                    up, g0, jt, r0dt, sat, lay.nbr, lay.bounds, frozen, heat_bath, n_sweeps, key,
                    k * n_sweeps,
                )
                if buf is not None:
                    buf[k] = up
        self.spins[order] = 2 * up.astype(np.int8) - 1
        if out is not None and buf is not None:
            _to_spins(buf[:, lay.position], out)


def _to_spins(up: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Write up bits (0/1) into ``out`` as spins (-1/+1, int8)."""
    np.multiply(up, 2, out=out, casting="unsafe")
    out -= 1
    return out


def _coupled(graph: CouplingGraph | None) -> bool:
    return graph is not None and graph.coupled
