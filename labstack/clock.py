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

import time
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

