"""What is happening in a data directory now, from the files alone, polled cheaply.

The runner already says everything a live view needs: a run's ``run.json`` is
``status: running`` until it closes and gets ``points_flushed`` on every flush
(:mod:`labstack.measure.runner`), its ``.zattrs`` hold the sequence (so the number
of points it will take), a calibration is a run of its own named ``calibration``
(:mod:`labstack.session.record`), and the state's ``current`` pointer names the
newest version. So the dashboard needs no channel of its own: it works for a
calibration in another process, a ``labstack calibrate`` in a shell or a service.

:class:`Watcher` polls every ``interval`` seconds (a directory listing, one
``stat`` per running run, the state pointer) and re-reads only what changed: a
finished run's ``run.json`` is read once. Each change bumps :attr:`Watcher.seq`;
the page's event stream sends a new :meth:`Watcher.snapshot` when it moves.

When the newest calibration ran on a served lab (``labstack serve``: its runs record
``lab_service`` with the service file), the watcher also stats that file, which a
running service rewrites every second with its lab clock: each rewrite is a change
(``lab_clock`` in the snapshot), so the page re-judges node status as the served
clock runs on, between passes as well.
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from labstack.calibrate import STATE_DIRNAME, CalibrationState
from labstack.data.runs import RUN_INDEX, STORE_NAME
from labstack.safety.control import CONTROL_FILE
from labstack.service.status import lab_service_of

SESSION_NAME = "calibration"


def leaf_points(step: dict[str, Any]) -> int:
    """Points a stored sequence takes, counted as the runner counts them (innermost loops)."""
    kind = step.get("type")
    if kind == "sequence":
        return sum(leaf_points(s) for s in step.get("steps", []))
    if kind not in ("sweep", "trace"):
        return 0
    if kind == "sweep":
        pairs = step.get("setpoints") or []
        reps = len(pairs[0][1]) if pairs else 0
    else:
        reps = int(step.get("n", 0))
    body = step.get("body") or []
    inner = sum(leaf_points(s) for s in body)
    return reps * inner if inner else reps


@dataclass
class RunEntry:
    """A run as the watcher knows it: its ``run.json`` and when that was last read."""

    id: str
    info: dict[str, Any]
    mtime_ns: int
    points_total: int | None = None

    @property
    def status(self) -> str:
        return str(self.info.get("status", ""))

    @property
    def metadata(self) -> dict[str, Any]:
        return dict(self.info.get("metadata") or {})

    def as_json(self) -> dict[str, Any]:
        done = self.info.get("points_flushed")
        total = self.points_total
        return {
            "id": self.id,
            "name": self.info.get("name", ""),
            "node": self.metadata.get("calibration"),
            "mode": self.metadata.get("mode"),
            "status": self.status,
            "created_utc": self.info.get("created_utc"),
            "points_done": done,
            "points_total": total,
            "fraction": (done / total) if total and done is not None else None,
            "derived_from": self.metadata.get("derived_from"),
            "error": self.info.get("error"),
        }


@dataclass
class Watcher:
    """Polls ``data_dir`` in a thread; ``seq`` moves whenever anything shown changed."""

    data_dir: Path
    interval: float = 0.1
    seq: int = 0
    runs: dict[str, RunEntry] = field(default_factory=dict)
    state_version: int = 0
    _snapshot: dict[str, Any] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _control_mtime: int | None = None
    #: the served lab's service file (None: the newest calibration is not on a served lab)
    _lab_service: dict[str, Any] | None = None
    _service_file: Path | None = None
    _service_mtime: int | None = None
    _lab_clock: dict[str, Any] | None = None

    def start(self) -> None:
        self.poll()
        self._thread = threading.Thread(target=self._loop, name="labstack-dashboard-watch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.poll()
            except Exception:  # a half-written file read mid-rename: next poll sees it whole
                continue

    # ------------------------------------------------------------- polling
    def poll(self) -> bool:
        """Look once; True (and ``seq`` bumped) if anything changed."""
        changed = self._poll_runs()
        version = CalibrationState.current_version(self.data_dir / STATE_DIRNAME)
        if version != self.state_version:
            self.state_version, changed = version, True
        control = self._mtime(self.data_dir / CONTROL_FILE)
        if control != self._control_mtime:
            self._control_mtime, changed = control, True
        if changed or not self._snapshot:
            self._lab_service = self._served_lab()
        if self._poll_service():
            changed = True
        if changed or not self._snapshot:
            snapshot = self._build()
            with self._lock:
                self.seq += 1
                snapshot["seq"] = self.seq
                self._snapshot = snapshot
        return changed

    def _served_lab(self) -> dict[str, Any] | None:
        """The newest calibration's served lab (its ``lab_service`` record), or None."""
        runs = self.ordered_runs()
        starts = [i for i, r in enumerate(runs) if _is_session(r)]
        lab = lab_service_of([r.metadata for r in runs[starts[-1]:]]) if starts else None
        path = (lab or {}).get("service_file")
        self._service_file = Path(path) if path else None
        return lab

    def _poll_service(self) -> bool:
        """Whether the served lab's service file changed (its clock moved, it stopped)."""
        if self._service_file is None:
            changed, self._lab_clock, self._service_mtime = self._lab_clock is not None, None, None
            return changed
        mtime = self._mtime(self._service_file)
        if mtime == self._service_mtime:
            return False
        self._service_mtime = mtime
        try:
            info = json.loads(self._service_file.read_text())
        except (OSError, ValueError):
            info = {}
        keys = ("status", "lab", "speed", "lab_utc", "updated_utc", "lag_s")
        self._lab_clock = {k: info.get(k) for k in keys} if isinstance(info, dict) and info else None
        return True

    @staticmethod
    def _mtime(path: Path) -> int | None:
        try:
            return path.stat().st_mtime_ns
        except OSError:
            return None

    def _poll_runs(self) -> bool:
        changed = False
        try:
            entries = list(os.scandir(self.data_dir))
        except OSError:
            return False
        for entry in entries:
            if not entry.is_dir() or entry.name.startswith("."):
                continue
            known = self.runs.get(entry.name)
            if known is not None and known.status != "running":
                continue
            index = Path(entry.path) / RUN_INDEX
            mtime = self._mtime(index)
            if mtime is None or (known is not None and known.mtime_ns == mtime):
                continue
            try:
                info = json.loads(index.read_text())
            except (OSError, ValueError):
                continue
            run = RunEntry(entry.name, info, mtime, known.points_total if known else None)
            if run.status == "running" and run.points_total is None:
                run.points_total = self._points_total(Path(entry.path))
            self.runs[entry.name] = run
            changed = True
        return changed

    @staticmethod
    def _points_total(path: Path) -> int | None:
        try:
            attrs = json.loads((path / STORE_NAME / ".zattrs").read_text())
            return leaf_points(json.loads(attrs["sequence"])) or None
        except (OSError, ValueError, KeyError, TypeError):
            return None

    # ------------------------------------------------------------- the snapshot
    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return dict(self._snapshot)

    def ordered_runs(self) -> list[RunEntry]:
        """Runs oldest first (by creation time; ids made in one second differ in their random part)."""
        return sorted(self.runs.values(), key=lambda r: (str(r.info.get("created_utc", "")), r.id))

    def _build(self) -> dict[str, Any]:
        runs = self.ordered_runs()
        sessions = [r for r in runs if _is_session(r)]
        session = sessions[-1] if sessions else None
        running = None
        node_runs: list[RunEntry] = []
        if session is not None:
            start = str(session.info.get("created_utc", ""))
            node_runs = [r for r in runs if str(r.info.get("created_utc", "")) >= start and r.metadata.get("calibration")]
        active = [r for r in runs if r.status == "running" and r.metadata.get("calibration")]
        if active:
            current = active[-1]
            running = {**current.as_json(), "phase": "acquiring"}
        elif session is not None and session.status == "running" and node_runs:
            current = node_runs[-1]
            running = {**current.as_json(), "phase": "fitting or waiting (between acquisitions)"}
        if running is not None:
            running["acquisition"] = sum(1 for r in node_runs if r.metadata.get("calibration") == running["node"])
        return {
            "state_version": self.state_version,
            "wall_utc": datetime.now(UTC).isoformat(),
            "session": None if session is None else {
                "id": session.id, "status": session.status, "created_utc": session.info.get("created_utc"),
                "state_start_version": session.metadata.get("state_start_version"),
                "nodes_touched": sorted({r.metadata["calibration"] for r in node_runs}),
            },
            "running": running,
            "runs_digest": f"{len(runs)}:{runs[-1].id if runs else ''}:{','.join(r.id for r in runs if r.status == 'running')}",
            "control": self._control_word(),
            "lab_service": self._lab_service,
            "lab_clock": self._lab_clock,
            "time": time.time(),
        }

    def _control_word(self) -> str | None:
        try:
            return (self.data_dir / CONTROL_FILE).read_text().strip() or None
        except OSError:
            return None


def _is_session(run: RunEntry) -> bool:
    """A calibration's own record (``labstack calibrate``, a watch pass), not a node's run."""
    return run.info.get("name") == SESSION_NAME and run.metadata.get("kind") == "calibration"
