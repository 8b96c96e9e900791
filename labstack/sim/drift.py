"""A chip that drifts: offsets diffuse, gains wander, two-level defects jump, on the lab clock.

* **Offsets** ``V0_i`` random-walk with per-cell diffusion ``D_i`` (V/sqrt(s)): over
  ``dt`` each moves by ``N(0, D_i^2 dt)``, the flux-noise-like wander of a
  superconducting loop's trapped flux.
* **Gains** ``alpha_i`` random-walk multiplicatively, ``alpha -> alpha (1 + N(0, g_i^2 dt))``,
  far more slowly.
* **Jumps.** Two-level defects switch as a Poisson process of rate ``lambda`` per
  chip: at each event one cell, drawn uniformly, has its offset jump by ``+-A`` with
  ``A`` log-uniform between ``jump_min_V`` and ``jump_max_V``. A test can schedule
  a jump of its own (:meth:`ChipDrift.schedule_jump`).

The chip is brought up to date lazily, whenever the lab needs its fields (before a
DAC moves, each stretch of a wait, each acquisition), but at most once a second of
lab time (``MIN_STEP_S``; an offset moves by well under a millivolt a minute): the
random walks are exact for any step, and a jump that fell inside a step is applied
at its end. Between two
updates the chip is what the last update made it, so the **trajectory** (every
update's time, offsets and gains) is exactly the truth the simulator used at any
lab time: :meth:`ChipDrift.at` answers it.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

import numpy as np

from labstack.sim.truth import DriftTruth

MIN_STEP_S = 1.0
"""Lab time between two updates of a drifting chip, at least."""


@dataclass(frozen=True)
class Jump:
    time: float
    cell: int
    volts: float
    scheduled: bool = False


class ChipDrift:
    """Offsets and gains of every cell as they move, and their trajectory."""

    def __init__(
        self,
        v0: np.ndarray,
        alpha: np.ndarray,
        truth: DriftTruth,
        rng: np.random.Generator,
        *,
        enabled: bool = True,
    ) -> None:
        self.v0 = np.asarray(v0, dtype=float).copy()
        self.alpha = np.asarray(alpha, dtype=float).copy()
        self.truth = truth
        self.rng = rng
        self.enabled = enabled and truth.active
        self.time = 0.0
        self.jumps: list[Jump] = []  # applied, in order
        self._scheduled: list[Jump] = []
        self._next_random = self._draw_next(0.0)
        self._times = [0.0]
        self._v0 = [self.v0.copy()]
        self._alpha = [self.alpha.copy()]

    def _draw_next(self, after: float) -> float:
        rate = self.truth.jump_rate_per_s if self.enabled else 0.0
        return after + float(self.rng.exponential(1.0 / rate)) if rate > 0 else np.inf

    def schedule_jump(self, cell: int, volts: float, at: float) -> None:
        """Make ``cell``'s offset jump by ``volts`` at lab time ``at`` (not before the present)."""
        if at < self.time:
            raise ValueError(f"cannot schedule a jump at {at} s: the chip is already at {self.time} s")
        if not 0 <= cell < self.v0.size:
            raise ValueError(f"no cell {cell} on a {self.v0.size}-cell chip")
        self._scheduled.append(Jump(float(at), int(cell), float(volts), scheduled=True))
        self._scheduled.sort(key=lambda j: j.time)

    def update(self, now: float) -> bool:
        """Bring the chip to ``now`` (if a second or more has passed); whether anything moved."""
        dt = now - self.time
        if dt < MIN_STEP_S and not (self._scheduled and self._scheduled[0].time <= now):
            return False
        moved = False
        if self.enabled:
            d = self.truth
            if np.any(d.v0_walk_V_per_sqrt_s):
                self.v0 += self.rng.normal(0.0, 1.0, self.v0.size) * d.v0_walk_V_per_sqrt_s * np.sqrt(dt)
                moved = True
            if np.any(d.alpha_walk_per_sqrt_s):
                self.alpha *= 1.0 + self.rng.normal(0.0, 1.0, self.alpha.size) * d.alpha_walk_per_sqrt_s * np.sqrt(dt)
                moved = True
            while self._next_random <= now:
                cell = int(self.rng.integers(self.v0.size))
                size = float(np.exp(self.rng.uniform(np.log(d.jump_min_V), np.log(d.jump_max_V))))
                volts = size if self.rng.random() < 0.5 else -size
                self._apply(Jump(self._next_random, cell, volts))
                self._next_random = self._draw_next(self._next_random)
                moved = True
        while self._scheduled and self._scheduled[0].time <= now:
            self._apply(self._scheduled.pop(0))
            moved = True
        self.time = now
        if moved:
            self._times.append(now)
            self._v0.append(self.v0.copy())
            self._alpha.append(self.alpha.copy())
        return moved

    def _apply(self, jump: Jump) -> None:
        self.v0[jump.cell] += jump.volts
        self.jumps.append(jump)

    def at(self, t: float) -> tuple[np.ndarray, np.ndarray]:
        """(offsets, gains) the simulator used at lab time ``t`` (copies): those of the last
        update at or before ``t``, which hold until the next one."""
        k = bisect.bisect_right(self._times, t) - 1
        return self._v0[max(k, 0)].copy(), self._alpha[max(k, 0)].copy()
