"""Lab time for a served lab: exact for every operation, free-running at ``speed`` while idle.

In one Python process the virtual lab's clock only moves when someone waits or
acquires, so nothing ever goes stale between two calls. A served lab lives on:
with ``speed = s`` its clock also runs at ``s`` times wall time while no message is
being handled (3600: an hour of lab time per wall second), so drift and staleness
happen between calls while a person watches. Operations keep today's semantics:
the time spent handling a message (an acquisition's physics, say) is not idle
time, so a wait or an acquisition still advances the clock by exactly its lab
duration, and ``speed = 0`` (the default) is the in-process clock exactly, which
is what makes a served lab replay bit for bit.

Catching up is physics (the fridge integrates, cells thermalize, offsets drift) and
costs CPU time in proportion to the lab time covered, so it is paced: the server's
idle ticks cover up to :data:`MAX_STEP_WALL_S` of wall time's worth each, and the
catch-up before a message only :data:`MESSAGE_STEP_WALL_S` worth, so a message is
never held up by much physics; what is left is carried to the next call. Catching
up may also take at most :data:`MAX_DUTY` of the wall time, over any stretch longer
than a tick (a token bucket of computing time): on a machine too slow, or too loaded,
to simulate ``speed`` lab seconds per second, it would otherwise run back to back,
before every message and on every tick, and the clients would starve (their messages
are read between catch-ups, and with the server in a client's own process their
Python waits for the same interpreter lock). A readout calibration that takes 2 s
on a quiet machine did not finish in 280 s with the cores shared four ways. The clock
then lags instead (``lag_s``), and the service says so. A long
pause (a suspended laptop) therefore never blocks the service: its clock lags
(``lag_s``) until it has caught up. Idle time is integrated in
:data:`IDLE_CHUNK_S` steps (the fridge and cells at one temperature per step),
twelve times coarser than an explicit wait, which keeps 10^4 lab seconds per wall
second affordable.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from labstack.sim.lab import VirtualLab

#: fastest supported clock: ~10^5 lab seconds per wall second already costs a core
MAX_SPEED = 1e5
#: wall seconds' worth of lab time an idle tick covers at most (the rest is carried)
MAX_STEP_WALL_S = 0.5
#: wall seconds' worth of lab time the catch-up before a message covers at most
MESSAGE_STEP_WALL_S = 0.005
#: lab seconds at one temperature while idle (an explicit wait uses the lab's finer chunk)
IDLE_CHUNK_S = 60.0
#: the largest share of wall time catching up may take (the rest is the clients')
MAX_DUTY = 0.4
#: computing time catching up may save up while it has nothing to do (wall seconds)
MAX_CREDIT_S = 0.05


class LabTime:
    """The served lab's clock policy: exact during exchanges, ``speed`` x wall time when idle."""

    def __init__(self, lab: VirtualLab, speed: float = 0.0, wall: Callable[[], float] = time.monotonic) -> None:
        if not 0.0 <= speed <= MAX_SPEED:
            raise ValueError(f"speed {speed!r}: lab seconds per wall second, 0 .. {MAX_SPEED:g}")
        self.lab = lab
        self.speed = float(speed)
        self._wall = wall
        self._mark = wall()
        self._debt_s = 0.0  # lab seconds owed but not yet simulated
        #: idle lab seconds simulated so far: its rate is the pace the clock really runs at
        self.idle_total_s = 0.0
        self._credit_s = MAX_CREDIT_S  # computing time catching up may still spend
        self._credit_mark = wall()

    @property
    def lag_s(self) -> float:
        """Lab seconds the clock is behind ``speed`` x wall time (0 when it keeps up)."""
        return self._debt_s

    def catch_up(self, max_wall_s: float = MAX_STEP_WALL_S) -> float:
        """Let the idle time since the last call pass on the lab clock; returns lab seconds added.

        Covers at most ``max_wall_s`` of wall time's worth now, within the computing
        time :data:`MAX_DUTY` allows (checked every :data:`IDLE_CHUNK_S` of lab time);
        the rest is carried. Call with the lab to oneself (the server's loop), before
        handling a message and on every idle tick.
        """
        if self.speed <= 0:
            return 0.0
        now = self._wall()
        self._debt_s += max(0.0, now - self._mark) * self.speed
        self._mark = now
        step = min(self._debt_s, self.speed * max_wall_s)
        self._credit_s = min(MAX_CREDIT_S, self._credit_s + (now - self._credit_mark) * MAX_DUTY)
        self._credit_mark = now
        if step <= 0 or self._credit_s <= 0:
            return 0.0
        done = 0.0
        while done < step and self._wall() - now < self._credit_s:
            piece = min(IDLE_CHUNK_S, step - done)
            self.lab.sleep(piece, chunk_s=IDLE_CHUNK_S)
            done += piece
        self._credit_s -= self._wall() - now
        self._debt_s -= done
        self.idle_total_s += done
        return done

    def exchange_done(self) -> None:
        """A message was handled: the time it took was work, not idleness."""
        self._mark = self._wall()


def warm_up() -> None:
    """Load (or, on a fresh install, compile) the simulator's kernels on a throwaway chip.

    The first idle chunk a process simulates loads its compiled kernels from numba's
    cache, 0.5 s, or compiles them, 6 s on a fresh install and several times that on a
    loaded machine. A service that announces its sockets first makes its first client
    wait that long inside the catch-up before its first answer (a 5 s client timeout
    was seen to expire on ``*IDN?``), so ``labstack serve`` warms up before it listens.
    """
    spare = VirtualLab.from_description("seed=0,cells=4")
    spare.sleep(2 * IDLE_CHUNK_S, chunk_s=IDLE_CHUNK_S)
    spare.acquire(16, 1e-3)

