"""``labstack watch``: keep a chip calibrated, unattended, and say what it is doing.

The loop opens the station, then, until stopped, looks every ``poll_s`` of wall
time at the station clock, the calibration state and the station's suspenders
(no experiment: one clock query and one read per watched signal) and runs a
*pass*, Optimus ``maintain`` over the graph, when one is due:

``startup``     once, at the start (and after reconnecting to a lab that went away)
``schedule``    every ``every_s`` seconds on the station clock's calendar: lab time on a
                served lab (fast at high ``--speed``), real time on hardware
``stale``       a node's calibration timed out, or a dependency moved (``check_state``)
``suspender``   a watched signal (e.g. the mixing chamber) came back in band after an
                excursion: the chip may have moved (no pass runs while it is out)
``retry``       ``retry_s`` after a pass that left a node failed or out of spec

Each pass holds the calibration state's writer lock (another writer is waited for),
is recorded as a calibration run (replayable, tagged ``watch_pass``), writes every
change as a new state version (the history), and appends a line to
``<data_dir>/watch/passes.jsonl``: trigger, what was checked and with what outcome,
what was recalibrated, what failed, state versions before and after, lab and wall
time taken. ``<data_dir>/watch/status.json`` says live what the loop is doing: the
node now running and the progress of its run (see :mod:`labstack.service.status`).

Stopping (Ctrl-C, SIGTERM, :meth:`Watcher.stop`): a running pass is aborted at its
next point (the runner marks its run failed with everything measured so far
flushed) or before its next node, the station is put in its safe state (DACs
ramped to the safe value, heater off), the status says ``stopped`` and the station
is closed. A second signal stops at once (the safe state is still attempted).
``labstack control pause|resume|abort`` steers it too: pause holds passes (and the
running run) until resume; abort stops the running run and pauses the loop.

If the lab goes away (a served lab restarted, a network cut), the pass or poll
that noticed is recorded, the station is closed and reopened every ``reconnect_s``
from its station file (ports may have changed) until it answers again, and the
loop carries on with a ``startup`` pass.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from labstack.calibrate import CalibrationGraph, Context, StateLockedError, Status
from labstack.data import resolve_data_dir
from labstack.safety import RunAborted
from labstack.safety.control import CONTROL_FILE
from labstack.service.livestatus import WATCH_DIRNAME, LiveStatus
from labstack.session.record import SessionRecorder
from labstack.session.run import build_graph
from labstack.station import LabStation
from labstack.visa import open_station

log = logging.getLogger("labstack.watch")

PASSES_FILE = "passes.jsonl"


class WatchStopped(Exception):
    """Raised inside a pass when the watch is asked to stop (between nodes)."""


class NotSelfRunning(ValueError):
    """The station's clock does not run by itself, so a schedule on it would never come due."""


class LabUnreachable(ConnectionError):
    """The station could not be reopened within ``reconnect_timeout_s``."""


@dataclass
class WatchConfig:
    """What ``labstack watch`` is asked to do."""

    station: str | Path
    data_dir: str | Path | None = None
    lab: str | None = None
    every_s: float = 3600.0  # station-clock seconds between scheduled passes
    retry_s: float = 600.0  # station-clock seconds before a pass that left failures is retried
    poll_s: float = 0.2  # wall seconds between looks at the clock, state and suspenders
    reconnect_s: float = 1.0  # wall seconds between attempts to reopen a lost station
    reconnect_timeout_s: float | None = None  # wall seconds to keep trying (None: forever)
    names: list[str] | None = None
    params: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    max_passes: int | None = None  # stop after this many passes (notebooks, tests)


# ---------------------------------------------------------------------- the loop
class Watcher:
    """The maintenance loop of ``labstack watch`` (see the module docstring)."""

    def __init__(self, config: WatchConfig, *, say: Callable[[str], None] = print) -> None:
        if not config.every_s > 0 or not config.retry_s > 0 or not config.poll_s > 0:
            raise ValueError("every_s, retry_s and poll_s must be > 0")
        self.config = config
        self.say = say
        self.data_dir = resolve_data_dir(config.data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.directory = self.data_dir / WATCH_DIRNAME
        self.directory.mkdir(exist_ok=True)
        self.passes_file = self.directory / PASSES_FILE
        self.station: LabStation | None = None
        self.graph: CalibrationGraph | None = None
        self.passes = 0
        self.paused = False
        self._stop = threading.Event()
        self._stop_reason = ""
        self._in_pass = False
        self._next_due: datetime | None = None
        self._retry_at: datetime | None = None
        self._unresolved: set[str] = set()
        self._excursion: str | None = None
        self._control_mtime: int | None = None
        self.status: LiveStatus | None = None

    # ------------------------------------------------------------------ stopping
    def stop(self, reason: str = "asked to stop") -> None:
        """Stop soon: abort a running pass at its next point or node; safe state; close."""
        first = not self._stop.is_set()
        self._stop_reason = self._stop_reason or reason
        self._stop.set()
        station = self.station
        if self._in_pass and station is not None:
            station.control.abort(f"labstack watch stopping: {reason}")
        if not first:
            raise KeyboardInterrupt(f"labstack watch: stopping at once ({reason})")

    @contextlib.contextmanager
    def signals(self) -> Iterator[None]:
        """SIGTERM and SIGINT stop the loop cleanly (main thread only)."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def handler(signum: int, _frame: Any) -> None:
            self.stop(signal.Signals(signum).name)

        previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            yield
        finally:
            for s, h in previous.items():
                signal.signal(s, h)

    # ------------------------------------------------------------------ running
    def run(self) -> int:
        """Run until stopped (or ``max_passes``); returns the number of passes made."""
        self.status = LiveStatus(self.directory, self.data_dir)
        self.status.update(force=True, state="starting", station=str(self.config.station), passes=0)
        self._control_mtime = self._mtime()
        trigger: str | None = "startup"
        try:
            while not self._stop.is_set():
                if self.station is None:
                    if not self._connect():
                        break
                    trigger = trigger or "reconnected"
                try:
                    trigger = trigger or self._due()
                    if trigger is None:
                        self._stop.wait(self.config.poll_s)
                        continue
                    self._pass(trigger)
                    trigger = None
                    if self.config.max_passes is not None and self.passes >= self.config.max_passes:
                        break
                except WatchStopped:
                    break
                except Exception as exc:  # noqa: BLE001 - classified: lost lab, or a pass's failure
                    if self._stop.is_set():
                        break
                    if self._lab_lost(exc):
                        trigger = "reconnected"
                    else:
                        trigger = None
        finally:
            self._finish()
        return self.passes

    def _finish(self) -> None:
        problems: list[str] = []
        if self.station is not None:
            try:
                problems = self.station.safe_state()
            except Exception as exc:  # noqa: BLE001 - reported, then the station is closed anyway
                problems = [f"{type(exc).__name__}: {exc}"]
            self._close_station()
        if self.status is not None:
            self.status.close(
                state="stopped",
                node=None,
                mode=None,
                stop_reason=self._stop_reason or "done",
                safe_state="ok" if not problems else f"incomplete: {'; '.join(problems)}",
            )
        self.say(
            f"labstack watch stopped after {self.passes} pass(es)"
            + (f" ({self._stop_reason})" if self._stop_reason else "")
            + ("; safe state incomplete: " + "; ".join(problems) if problems else "; station left in its safe state")
        )

    # ------------------------------------------------------------------ the station
    def _connect(self) -> bool:
        """Open the station (again), retrying every ``reconnect_s``; False if stopped first."""
        started = time.monotonic()
        attempt = 0
        while not self._stop.is_set():
            attempt += 1
            try:
                station = open_station(self.config.station, lab=self.config.lab)
            except Exception as exc:  # noqa: BLE001 - anything that stops it opening: try again
                waited = time.monotonic() - started
                timeout = self.config.reconnect_timeout_s
                self._set(state="reconnecting", error=f"{type(exc).__name__}: {exc}", attempts=attempt)
                if attempt == 1:
                    self.say(f"labstack watch: cannot open {self.config.station} ({type(exc).__name__}: {exc}); retrying")
                if timeout is not None and waited >= timeout:
                    raise LabUnreachable(
                        f"{self.config.station}: no answer for {waited:.0f} s ({type(exc).__name__}: {exc})"
                    ) from exc
                self._stop.wait(self.config.reconnect_s)
                continue
            if station.clock.is_virtual and station.provenance.service is None:
                station.close()
                raise NotSelfRunning(
                    f"{self.config.station}: an in-process virtual lab's clock stands still between "
                    "calls, so nothing would ever come due; serve the lab (labstack serve --speed S) "
                    "and watch its station file"
                )
            self.station = station
            ctx = Context.create(self.data_dir, station, progress=False)
            self.graph = build_graph(ctx, self.config.names, self.config.params)
            self._wrap_nodes(self.graph)
            service = station.provenance.service or {}
            self._set(state="idle", error=None, attempts=0, lab=station.provenance.lab, speed=service.get("speed"))
            if attempt > 1:
                self.say(f"labstack watch: reconnected to {self.config.station} after {attempt} attempts")
            return True
        return False

    def _close_station(self) -> None:
        station, self.station, self.graph = self.station, None, None
        if station is None:
            return
        for component in list(station.components.values()):
            with contextlib.suppress(Exception):  # a dead socket may refuse a polite close
                component.close()

    def _lab_lost(self, exc: BaseException) -> bool:
        """After an error: is the lab still there? If not, close the station (reconnect next)."""
        station = self.station
        try:
            if station is None:
                return True
            station.clock.now()
            return False
        except Exception:  # noqa: BLE001 - any failure to reach the clock means the lab is gone
            self.say(f"labstack watch: lost the lab ({type(exc).__name__}: {exc}); reconnecting")
            self._set(state="reconnecting", error=f"{type(exc).__name__}: {exc}")
            self._close_station()
            return True

    # ------------------------------------------------------------------ what is due
    def _due(self) -> str | None:
        """The trigger of the next pass if one is due now, else None (measures nothing)."""
        self._poll_control()
        station, graph = self.station, self.graph
        assert station is not None and graph is not None
        now = _aware(station.clock.utcnow())
        self._set(state="paused" if self.paused else ("suspended" if self._excursion else "idle"), lab_utc=now.isoformat())
        if self.paused:
            return None
        excursion = self._out_of_band(station)
        if excursion is not None:
            if self._excursion is None:
                self.say(f"labstack watch: {excursion}; no pass until it is back in band")
            self._excursion = excursion
            self._set(state="suspended", suspended=excursion)
            return None
        if self._excursion is not None:
            self._set(suspended=None)
            was, self._excursion = self._excursion, None
            return f"suspender: back in band after {was}"
        if self._next_due is not None and now >= self._next_due:
            return "schedule"
        retrying = self._retry_at is not None and now >= self._retry_at
        status = graph.status()
        if retrying and any(s is not Status.FRESH for s in status.values()):
            return "retry: " + ", ".join(sorted(n for n, s in status.items() if s is not Status.FRESH))
        stale = sorted(n for n, s in status.items() if s is Status.STALE and n not in self._unresolved)
        if stale:
            reasons = graph.explain()
            return "stale: " + "; ".join(f"{n} ({reasons.get(n, '')})" for n in stale)
        return None

    def _out_of_band(self, station: LabStation) -> str | None:
        """A watched signal outside its band (suspenders, the interlock temperature), or None."""
        control = station.control
        checks = [(s.signal, s.low, s.high) for s in control.suspenders]
        if control.max_temperature_K is not None and control.thermometer is not None:
            checks.append((control.thermometer, float("-inf"), control.max_temperature_K))
        for name, low, high in checks:
            value = station.read(name)
            if not low <= value <= high:
                return f"{name} = {value:.4g} outside [{low:g}, {high:g}]"
        return None

    def _poll_control(self) -> None:
        """``labstack control pause|resume|abort`` between passes."""
        mtime = self._mtime()
        if mtime is None or mtime == self._control_mtime:
            return
        self._control_mtime = mtime
        try:
            word = (self.data_dir / CONTROL_FILE).read_text().split(maxsplit=1)[0]
        except (OSError, IndexError):
            return
        if word in ("pause", "abort") and not self.paused:
            self.paused = True
            self.say(f"labstack watch: paused ({word}); 'labstack control resume' to go on")
        elif word == "resume" and self.paused:
            self.paused = False
            self.say("labstack watch: resumed")

    def _mtime(self) -> int | None:
        try:
            return (self.data_dir / CONTROL_FILE).stat().st_mtime_ns
        except OSError:
            return None

    # ------------------------------------------------------------------ one pass
    def _pass(self, trigger: str) -> None:
        station, graph = self.station, self.graph
        assert station is not None and graph is not None and self.status is not None
        number = self.passes + 1
        state = graph.context.state
        self._set(state="waiting for the calibration state", trigger=trigger, passes=self.passes)
        with self._writer(state):
            wall0, lab0, utc0 = time.monotonic(), station.clock.now(), _aware(station.clock.utcnow())
            self._set(state="maintaining", trigger=trigger, pass_number=number, pass_started_utc=utc0.isoformat())
            self.say(f"labstack watch: pass {number} ({trigger})")
            version0 = state.version
            graph.clear_log()
            station.run_metadata["watch_pass"] = number
            recorder = SessionRecorder(graph.context, names=self.config.names, force=False, params=self.config.params)
            recorder.writer.info["metadata"].update(watch_pass=number, trigger=trigger)
            self._in_pass = True
            outcome, error, status = "ok", None, {}
            try:
                status = graph.calibrate_all()
            except (RunAborted, WatchStopped) as exc:
                outcome, error = "aborted", f"{type(exc).__name__}: {exc}"
            except Exception as exc:  # noqa: BLE001 - recorded, then classified by run()
                outcome, error = "error", f"{type(exc).__name__}: {exc}"
                self._record(number, trigger, graph, recorder, status, outcome, error, version0, wall0, lab0, utc0)
                raise
            finally:
                self._in_pass = False
                station.run_metadata.pop("watch_pass", None)
                self.status.acquiring(None)
            self._record(number, trigger, graph, recorder, status, outcome, error, version0, wall0, lab0, utc0)
        if outcome == "aborted":
            if self._stop.is_set():
                raise WatchStopped(error)
            self.paused = True  # a person aborted the run: wait for them
            self._control_mtime = self._mtime()
            self.say("labstack watch: pass aborted; paused until 'labstack control resume'")

    @contextlib.contextmanager
    def _writer(self, state: Any) -> Iterator[None]:
        """The state's writer lock for the pass, waiting for another writer while not stopped."""
        told = False
        with contextlib.ExitStack() as stack:
            while True:
                try:
                    stack.enter_context(state.writer(wait=self.config.poll_s, who=f"labstack watch (pid {os.getpid()})"))
                    break
                except StateLockedError as exc:
                    if self._stop.is_set():
                        raise WatchStopped("stopped while waiting for the calibration state") from None
                    if not told:
                        self.say(f"labstack watch: {exc}; waiting")
                        told = True
            yield

    def _record(
        self,
        number: int,
        trigger: str,
        graph: CalibrationGraph,
        recorder: SessionRecorder,
        status: Mapping[str, Status],
        outcome: str,
        error: str | None,
        version0: int,
        wall0: float,
        lab0: float,
        utc0: datetime,
    ) -> None:
        """Close the pass's calibration run and append its line to passes.jsonl."""
        station = self.station
        state = graph.context.state
        try:
            run = recorder.close(graph, status, error=RuntimeError(error) if error else None)
            run_id: str | None = run.id
        except Exception as exc:  # noqa: BLE001 - the pass line is written even so
            log.warning("could not close the pass's run: %s", exc)
            run_id = None
        try:
            lab1, utc1 = station.clock.now(), _aware(station.clock.utcnow())  # type: ignore[union-attr]
        except Exception:  # noqa: BLE001 - the lab may be gone: the line is written without it
            lab1, utc1 = None, None
        checked = [
            {"function": e.function, "node": e.node, "outcome": e.outcome, "detail": e.detail}
            for e in graph.log
            if e.function in ("check_state", "check_data")
        ]
        calibrations = [e for e in graph.log if e.function == "calibrate"]
        recalibrated = sorted({e.node for e in calibrations if e.outcome == "ok"})
        failed = sorted(
            {e.node for e in graph.log if e.outcome in ("failed", "blocked", "error")}
            | {n for n, s in status.items() if s is Status.FAILED}
        )
        record = {
            "pass": number,
            "trigger": trigger,
            "outcome": outcome,
            "error": error,
            "started_utc": utc0.isoformat(),
            "ended_utc": utc1.isoformat() if utc1 else None,
            "lab_s": (lab1 - lab0) if lab1 is not None else None,
            "wall_s": time.monotonic() - wall0,
            "state_version_before": version0,
            "state_version_after": state.version,
            "versions": list(range(version0 + 1, state.version + 1)),
            "checked": checked,
            "recalibrated": recalibrated,
            "failed": failed,
            "status": {k: str(v) for k, v in status.items()},
            "run_id": run_id,
        }
        with open(self.passes_file, "a", encoding="utf-8") as f:
            f.write(json.dumps(record, default=str) + "\n")
            f.flush()
            os.fsync(f.fileno())
        self.passes = number
        if utc1 is not None:
            self._next_due = utc0 + timedelta(seconds=self.config.every_s)
            # a node this pass found fresh, verified or calibrated that is stale again by now (its timeout
            # ran out during the pass on a fast served clock) is due for a stale pass, with its
            # reason, not a retry: only what the pass could not bring fresh is unresolved
            settled = {e.node for e in graph.log
                       if (e.function, e.outcome) in (("calibrate", "ok"), ("check_data", "in_spec"), ("check_state", "pass"))}
            unresolved = {n for n, s in status.items() if s is not Status.FRESH and n not in settled} | set(failed)
            self._unresolved = unresolved
            self._retry_at = utc1 + timedelta(seconds=self.config.retry_s) if unresolved or outcome != "ok" else None
        self._set(
            state="idle",
            trigger=None,
            passes=number,
            last_pass=record,
            next_pass_utc=self._next_due.isoformat() if self._next_due else None,
        )
        summary = f"recalibrated {', '.join(recalibrated)}" if recalibrated else "nothing to recalibrate"
        self.say(
            f"labstack watch: pass {number} {outcome}: {summary}"
            + (f"; failed: {', '.join(failed)}" if failed else "")
            + f"; state v{state.version}; {record['wall_s']:.1f} s wall"
            + (f", {record['lab_s']:.0f} s lab" if record["lab_s"] is not None else "")
        )

    def _wrap_nodes(self, graph: CalibrationGraph) -> None:
        """Tell the live status which node acquires; stop between nodes when asked."""
        for name in graph.names:
            node = graph[name]
            acquire = node.acquire

            def tracked(ctx: Any, params: Any, mode: Any, _acquire: Any = acquire, _name: str = name) -> Any:
                if self._stop.is_set():
                    raise WatchStopped(f"stopped before {_name} ({self._stop_reason})")
                assert self.status is not None
                self.status.acquiring(_name, str(getattr(mode, "value", mode)))
                try:
                    return _acquire(ctx, params, mode)
                finally:
                    self.status.acquiring(None)

            node.acquire = tracked

    def _set(self, **fields: Any) -> None:
        if self.status is not None:
            self.status.update(force="state" in fields, **fields)


def _aware(when: datetime) -> datetime:
    return when if when.tzinfo else when.replace(tzinfo=UTC)
