"""The station clock: the only way labstack code waits or reads the time.

A calibration never calls :func:`time.sleep`. It asks the station's clock, so the
same code waits 20 minutes for a fridge to settle in 20 real minutes on hardware
and in no wall time at all on the virtual lab, where waiting advances simulated
time.

Every clock answers two questions with the same units: ``now()`` in seconds since
the clock's own epoch (monotonic, for durations and staleness) and ``utcnow()``
for timestamps a person reads. ``sleep(seconds)`` is the only way to let time pass.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol, runtime_checkable


@runtime_checkable
class Clock(Protocol):
    """What every station clock provides."""

    def now(self) -> float:
        """Seconds since the clock's epoch; monotonic."""
        ...

    def sleep(self, seconds: float) -> None:
        """Let ``seconds`` of (real or simulated) time pass."""
        ...

    def utcnow(self) -> datetime:
        """The current time as an aware UTC datetime."""
        ...

    @property
    def is_virtual(self) -> bool:
        """True when time is simulated (no wall time passes on sleep)."""
        ...


class WallClock:
    """Real time, for real hardware."""

    is_virtual = False

    def __init__(self) -> None:
        self._epoch = time.monotonic()

    def now(self) -> float:
        return time.monotonic() - self._epoch

    def sleep(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError(f"cannot sleep a negative time ({seconds} s)")
        if seconds > 0:
            time.sleep(seconds)

    def utcnow(self) -> datetime:
        return datetime.now(UTC)


class VirtualClock:
    """Simulated time that passes only when someone sleeps.

    ``start_utc`` pins the calendar time of ``now() == 0`` so that timestamps of
    simulated runs are reproducible. Listeners are called with the new time after
    every advance; the virtual lab uses that to evolve its physics.
    """

    is_virtual = True

    def __init__(self, start_utc: datetime | None = None, start: float = 0.0) -> None:
        self._t = float(start)
        self._start_utc = start_utc or datetime(2026, 1, 1, tzinfo=UTC)

    def now(self) -> float:
        return self._t

    def sleep(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError(f"cannot sleep a negative time ({seconds} s)")
        self._t += float(seconds)

    def advance_to(self, t: float) -> None:
        """Jump to time ``t`` (never backwards)."""
        if t < self._t:
            raise ValueError(f"virtual clock cannot go back from {self._t} s to {t} s")
        self._t = float(t)

    def utcnow(self) -> datetime:
        return self._start_utc + timedelta(seconds=self._t)



def reached(clock: Clock) -> float:
    """A time ``clock`` has certainly reached, known without asking it (``-inf``: unknown).

    A clock behind a wire (the virtual lab's, over SCPI) keeps its last reading plus
    every wait since as ``reached``: time never goes back, so a deadline at or before it
    has passed, and a ramp that only needs to know that saves a round trip. A local
    clock is cheap to read and says nothing.
    """
    return float(getattr(clock, "reached", -math.inf))


@dataclass(frozen=True)
class Elapsed:
    """How long something took: on the lab clock (what it costs the fridge) and on the wall.

    On hardware the two are the same time; on the virtual lab waits and acquisitions
    cost lab time and almost no wall time, while fits cost wall time only. Fridge time
    is the scarce resource of a real lab, so every node, walk and run reports both.
    """

    lab_s: float = 0.0
    wall_s: float = 0.0

    def __add__(self, other: Elapsed) -> Elapsed:
        return Elapsed(self.lab_s + other.lab_s, self.wall_s + other.wall_s)

    def __str__(self) -> str:
        return f"lab {format_duration(self.lab_s)}, wall {format_duration(self.wall_s)}"


class Stopwatch:
    """Lab and wall time since it was started (``elapsed()`` may be read many times)."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._lab0 = clock.now()
        self._wall0 = time.perf_counter()

    def elapsed(self) -> Elapsed:
        return Elapsed(max(0.0, self.clock.now() - self._lab0), time.perf_counter() - self._wall0)


def format_duration(seconds: float | None) -> str:
    """``0.42 s``, ``12.3 s``, ``14 min``, ``1 h 05 min``: as a person reads a fridge log."""
    if seconds is None:
        return "unknown"
    s = float(seconds)
    if s < 10:
        return f"{s:.2f} s"
    if s < 120:
        return f"{s:.1f} s"
    if s < 3600:
        return f"{s / 60:.0f} min"
    hours, minutes = divmod(round(s / 60), 60)
    return f"{hours} h {minutes:02d} min"
