"""Pause, resume and abort runs; suspend them while a watched signal is out of band.

A :class:`RunControl` belongs to a station (``LabStation.control``); the runner
calls :meth:`RunControl.checkpoint` before the first point and after every
point, so commands take effect between points, never in the middle of one.

Three ways in:

* **Jupyter / Python**: ``control.pause()``, ``control.resume()``,
  ``control.abort("reason")`` from another thread (e.g. the notebook while a
  calibration runs in a :class:`threading.Thread`).
* **CLI / other processes**: ``labstack control pause|resume|abort`` writes the
  word into ``<data_dir>/labstack.control``; the runner polls the file's
  modification time (a ``stat`` per poll) and acts on changes made after the run
  started.
* **Suspenders** (station file ``labstack.suspenders``): while a signal (e.g. the
  mixing-chamber temperature) is outside its band the run waits, polling every
  ``poll_s`` on the *station clock*; it resumes once the signal has been back in
  band for ``settle_s`` and aborts if suspended longer than ``timeout_s``. Watched
  signals are read at every checkpoint (one query each per point). A
  manual pause waits in wall time (it waits for a person), a suspender in station
  time (it waits for physics).

An interlock trip (mixing chamber above ``interlocks.max_temperature_K``) aborts.
Every abort first puts the station in its safe state: ramped DACs go to
``safe_state.dac_V`` within their ramps, the heater range goes to off. Then
:class:`~labstack.safety.errors.RunAborted` propagates; the runner marks the run
failed and keeps the data flushed so far. Pauses, suspensions and aborts are
recorded in the run's ``run.json`` (``control_events``).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from labstack.clock import Clock, WallClock
from labstack.safety.config import SuspenderSpec
from labstack.safety.errors import RunAborted

CONTROL_FILE = "labstack.control"
COMMANDS = ("pause", "resume", "abort")


@dataclass
class ControlEvent:
    kind: str  # pause, resume, suspend, unsuspend, abort, trip
    t: float  # station-clock time
    reason: str = ""


def write_command(data_dir: str | Path, command: str, reason: str = "") -> Path:
    """Ask the run in ``data_dir`` to pause, resume or abort (what ``labstack control`` does)."""
    if command not in COMMANDS:
        raise ValueError(f"unknown control command {command!r}; use {COMMANDS}")
    path = Path(data_dir) / CONTROL_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(f"{command} {reason}".strip() + "\n")
    tmp.replace(path)
    return path


class RunControl:
    """Pause / resume / abort and suspenders for the runs of one station.

    ``read(name)`` reads a watched signal (a dotted parameter name) and
    ``safe_state()`` puts the station in its safe state, returning what failed;
    the station supplies both, so run control needs nothing else of it.
    """

    def __init__(
        self,
        suspenders: list[SuspenderSpec] | None = None,
        *,
        max_temperature_K: float | None = None,
        thermometer: str | None = None,
        read: Callable[[str], float] | None = None,
        safe_state: Callable[[], list[str]] | None = None,
        wall_poll_s: float = 0.1,
    ) -> None:
        self.suspenders = list(suspenders or [])
        self.read = read
        self.safe_state = safe_state
        self.max_temperature_K = max_temperature_K
        self.thermometer = thermometer
        self.wall_poll_s = wall_poll_s
        self.events: list[ControlEvent] = []
        self._paused = threading.Event()
        self._wakeup = threading.Event()  # set on resume / abort so a paused run reacts at once
        self._abort_reason: str | None = None
        self._file: Path | None = None
        self._file_mtime: float | None = None
        self._clock: Clock = WallClock()
        self._writer: Any = None
        self._next_file_poll = -math.inf

    # ------------------------------------------------------------- commands
    def pause(self, reason: str = "") -> None:
        self._paused.set()
        self._event("pause", reason)

    def resume(self) -> None:
        # recorded before the run is released: a run that then finishes at once closes its
        # run.json after this write, not before it (a late write would say "running" again)
        self._event("resume")
        self._paused.clear()
        self._wakeup.set()

    def abort(self, reason: str = "aborted by user") -> None:
        self._abort_reason = reason or "aborted by user"
        self._paused.clear()
        self._wakeup.set()

    @property
    def paused(self) -> bool:
        return self._paused.is_set()

    # ------------------------------------------------------------- runner side
    def start(self, clock: Clock, data_dir: str | Path | None = None, writer: Any = None) -> None:
        """Bind to a starting run: its clock, the control file in its data dir, its writer."""
        self._clock = clock
        self._writer = writer
        self._abort_reason = None
        self._paused.clear()
        self.events = []
        if data_dir is not None:
            self._file = Path(data_dir) / CONTROL_FILE
            self._file_mtime = self._mtime()

    def checkpoint(self) -> None:
        """Between points: act on commands, suspenders and interlocks. Cheap when idle."""
        self._poll_file()
        if self._abort_reason is None and (self.suspenders or self.max_temperature_K is not None):
            self._watch()
        while self._paused.is_set() and self._abort_reason is None:
            self._wakeup.wait(self.wall_poll_s)
            self._wakeup.clear()
            self._poll_file(force=True)
        if self._abort_reason is not None:
            self._do_abort(self._abort_reason)

    # ------------------------------------------------------------- internals
    def _event(self, kind: str, reason: str = "") -> None:
        t = self._clock.now() if self._clock is not None else math.nan
        self.events.append(ControlEvent(kind, t, reason))
        if self._writer is not None:
            try:
                self._writer.update_info(control_events=[asdict(e) for e in self.events])
            except Exception:  # bookkeeping must never stop a run
                pass

    def _mtime(self) -> float | None:
        try:
            return self._file.stat().st_mtime_ns if self._file is not None else None
        except OSError:
            return None

    def _poll_file(self, force: bool = False) -> None:
        if self._file is None:
            return
        wall = time.perf_counter()
        if not force and wall < self._next_file_poll:
            return
        self._next_file_poll = wall + self.wall_poll_s
        mtime = self._mtime()
        if mtime is None or mtime == self._file_mtime:
            return
        self._file_mtime = mtime
        try:
            text = self._file.read_text().strip()
        except OSError:
            return
        word, _, reason = text.partition(" ")
        if word == "pause" and not self.paused:
            self.pause(reason or "control file")
        elif word == "resume" and self.paused:
            self.resume()
        elif word == "abort":
            self.abort(reason or "abort via control file")

    def _read(self, name: str) -> float:
        if self.read is None:
            raise RuntimeError(f"run control cannot read {name!r}: its station gave it no reader")
        return float(self.read(name))

    def _watch(self) -> None:
        """Check interlocks and suspenders (every point); while one is out of band, wait."""
        self._trip()
        out = [s for s in self.suspenders if not s.low <= self._read(s.signal) <= s.high]
        if not out:
            return
        start = now = self._clock.now()
        reason = ", ".join(f"{s.signal} outside [{s.low:g}, {s.high:g}]" for s in out)
        self._event("suspend", reason)
        in_band_since: float | None = None
        poll = min(s.poll_s for s in self.suspenders)
        settle = max(s.settle_s for s in self.suspenders)
        timeout = min(s.timeout_s for s in self.suspenders)
        while True:
            self._poll_file(force=True)
            if self._abort_reason is not None:
                return
            self._clock.sleep(poll)
            now = self._clock.now()
            self._trip()
            ok = all(s.low <= self._read(s.signal) <= s.high for s in self.suspenders)
            if not ok:
                in_band_since = None
            elif in_band_since is None:
                in_band_since = now
            if in_band_since is not None and now - in_band_since >= settle:
                self._event("unsuspend", f"in band for {now - in_band_since:g} s")
                return
            if now - start > timeout:
                self.abort(f"suspended longer than {timeout:g} s: {reason}")
                return

    def _trip(self) -> None:
        if self.max_temperature_K is None or self.thermometer is None or self._abort_reason:
            return
        t = self._read(self.thermometer)
        if t > self.max_temperature_K:
            self._event("trip", f"{self.thermometer} = {t:g} K above max_temperature_K {self.max_temperature_K:g} K")
            self._abort_reason = f"interlock: {self.thermometer} = {t:g} K > {self.max_temperature_K:g} K"

    def _do_abort(self, reason: str) -> None:
        problems = self.safe_state() if self.safe_state is not None else []
        self._event("abort", reason + (f"; safe state incomplete: {problems}" if problems else ""))
        self._abort_reason = None
        raise RunAborted(reason + (f" (safe state incomplete: {'; '.join(problems)})" if problems else ""))
