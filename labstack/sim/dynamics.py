"""Stochastic dynamics of the cells: Kramers escape over a tilted double-well barrier.

Each cell is a two-state system ``s in {-1, +1}`` with local field ``h_loc`` (kelvin,
couplings included). Its escape rates are ``r_up = G0 exp(-(dU - h)/T)`` and
``r_down = G0 exp(-(dU + h)/T)``, so ``P(+1) = r_up / (r_up + r_down) = sigmoid(2h/T)``
(Boltzmann) and the correlation time is ``tau_c = 1 / (r_up + r_down)``: longest at
``h = 0`` and Arrhenius in ``1/T``.

For a cell whose field is constant over a step ``dt`` the two-state master
equation is solved exactly: ``P(up at t+dt) = p + (s_t - p) exp(-dt / tau_c)`` with
``s_t in {0, 1}``. Coupled cells are updated colour class by colour class (a
proper colouring of the coupling graph, so no two neighbours move together): each
class takes the exact step with its neighbours frozen. Every class update leaves
the joint Boltzmann distribution invariant, so equilibrium statistics are exact
for any ``dt``; the dynamics (correlation times) converge as ``dt / tau_c -> 0``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp


def kramers_rates(
    h_loc: np.ndarray, t_eff: float, gamma0: np.ndarray, barrier: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Escape rates (up, down) in 1/s for local fields ``h_loc`` (K) at ``t_eff`` (K)."""
    r_up = gamma0 * np.exp(-(barrier - h_loc) / t_eff)
    r_down = gamma0 * np.exp(-(barrier + h_loc) / t_eff)
    return r_up, r_down


def correlation_time(
    h_loc: np.ndarray, t_eff: float, gamma0: np.ndarray, barrier: np.ndarray
) -> np.ndarray:
    """tau_c = 1 / (r_up + r_down) in seconds."""
    r_up, r_down = kramers_rates(h_loc, t_eff, gamma0, barrier)
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


@dataclass
class CouplingGraph:
    """Symmetric couplings as a sparse matrix plus a colouring for parallel updates."""

    matrix: sp.csr_matrix  # J_ij in kelvin, symmetric, zero diagonal
    colors: list[np.ndarray]  # cell indices of each colour class

    @classmethod
    def build(cls, n: int, pairs: np.ndarray, j_values: np.ndarray) -> CouplingGraph:
        pairs = np.asarray(pairs, dtype=int).reshape(-1, 2)
        j_values = np.asarray(j_values, dtype=float)
        rows = np.concatenate([pairs[:, 0], pairs[:, 1]])
        cols = np.concatenate([pairs[:, 1], pairs[:, 0]])
        data = np.concatenate([j_values, j_values])
        matrix = sp.csr_matrix((data, (rows, cols)), shape=(n, n))
        return cls(matrix=matrix, colors=greedy_coloring(n, pairs))

    def local_fields(self, h: np.ndarray, spins: np.ndarray) -> np.ndarray:
        return h + self.matrix @ spins


def greedy_coloring(n: int, pairs: np.ndarray) -> list[np.ndarray]:
    """A proper colouring (2 colours for chains and grids) by greedy assignment."""
    neighbours: list[list[int]] = [[] for _ in range(n)]
    for i, j in np.asarray(pairs, dtype=int).reshape(-1, 2):
        neighbours[i].append(j)
        neighbours[j].append(i)
    color = np.full(n, -1, dtype=int)
    for i in range(n):
        used = {color[j] for j in neighbours[i] if color[j] >= 0}
        c = 0
        while c in used:
            c += 1
        color[i] = c
    return [np.flatnonzero(color == c) for c in range(color.max() + 1)] if n else []


class CellEnsemble:
    """The cells' state and its evolution; pure physics, no instruments.

    ``spins`` is an int8 array of +-1. ``stuck`` cells never move. Fields and the
    effective temperature are supplied by the caller at each call, because they
    change whenever a DAC moves or the fridge warms.
    """

    def __init__(
        self,
        gamma0: np.ndarray,
        barrier: np.ndarray,
        stuck: np.ndarray,
        rng: np.random.Generator,
        spins: np.ndarray | None = None,
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

    @property
    def n(self) -> int:
        return len(self.spins)

    def _step(self, h: np.ndarray, t_eff: float, graph: CouplingGraph | None, dt: float) -> None:
        if graph is None or graph.matrix.nnz == 0:
            classes = [np.arange(self.n)]
        else:
            classes = graph.colors
        for members in classes:
            h_loc = h[members] if graph is None else graph.local_fields(h, self.spins)[members]
            r_up, r_down = kramers_rates(h_loc, t_eff, self.gamma0[members], self.barrier[members])
            up = self.spins[members] > 0
            new_up = telegraph_step(up, r_up, r_down, dt, self.rng.random(len(members)))
            self.spins[members] = np.where(new_up, 1, -1).astype(np.int8)
        self.spins[self._frozen] = self.stuck[self._frozen]

    def max_substep(self, h: np.ndarray, t_eff: float, graph: CouplingGraph | None) -> float:
        """Largest step for coupled cells that keeps the dynamics step-independent."""
        if graph is None or graph.matrix.nnz == 0:
            return np.inf
        h_loc = graph.local_fields(h, self.spins)
        tau = correlation_time(h_loc, t_eff, self.gamma0, self.barrier)
        return 0.1 * float(tau.min())

    def evolve(
        self, duration: float, h: np.ndarray, t_eff: float, graph: CouplingGraph | None = None
    ) -> None:
        """Let ``duration`` seconds pass at constant fields.

        Isolated cells take one exact step. Coupled cells take small steps; once the
        duration exceeds many correlation times the chain has forgotten its start,
        so the step count is capped and the last steps are full heat-bath sweeps,
        which leave the Boltzmann distribution exact.
        """
        if duration <= 0:
            return
        substep = self.max_substep(h, t_eff, graph)
        if not np.isfinite(substep):
            self._step(h, t_eff, graph, duration)
            return
        n_steps = int(np.ceil(duration / substep))
        if n_steps > 200:
            for _ in range(50):
                self._step(h, t_eff, graph, np.inf)
            return
        dt = duration / n_steps
        for _ in range(n_steps):
            self._step(h, t_eff, graph, dt)

    def sample(
        self,
        n_samples: int,
        period: float,
        h: np.ndarray,
        t_eff: float,
        graph: CouplingGraph | None = None,
    ) -> np.ndarray:
        """States (n_samples, n_cells) taken every ``period`` seconds, evolving in between."""
        out = np.empty((n_samples, self.n), dtype=np.int8)
        for k in range(n_samples):
            self.evolve(period, h, t_eff, graph)
            out[k] = self.spins
        return out
