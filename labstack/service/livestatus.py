"""``<data_dir>/watch/status.json``: what ``labstack watch`` is doing, for anyone to read.

One JSON object, replaced atomically (a reader never sees half of it), at most every
:data:`STATUS_EVERY_S` unless the loop's state changes: ``state`` (starting, idle,
maintaining, paused, suspended, reconnecting, stopped), the ``node`` now acquiring and
its ``mode``, the ``progress`` of the run that node is writing, the ``last_pass``.
The progress comes from that run's own ``run.json`` (``points_flushed`` of
``points_total``), refreshed by a helper thread, so the loop never waits for it.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from labstack.data.runs import RUN_INDEX, write_json_atomic

log = logging.getLogger("labstack.watch")

WATCH_DIRNAME = "watch"
STATUS_FILE = "status.json"
#: wall seconds between status.json rewrites at most (and progress refreshes while a run goes)
STATUS_EVERY_S = 0.25


class LiveStatus:
    """``<data_dir>/watch/status.json``: what the loop is doing, rewritten atomically.

    While a node acquires, a helper thread refreshes the progress of the run it is
    writing (``points_flushed`` / ``points_total`` of that run's ``run.json``).
    """

    def __init__(self, directory: Path, data_dir: Path) -> None:
        self.path = directory / STATUS_FILE
        self.data_dir = data_dir
        self._lock = threading.Lock()
        self._fields: dict[str, Any] = {"pid": os.getpid(), "started_utc": _utc_now()}
        self._last_write = 0.0
        self._runs_before: set[str] | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._refresh, name="labstack-watch-status", daemon=True)
        self._thread.start()

    def update(self, force: bool = False, **fields: Any) -> None:
        with self._lock:
            self._fields.update(fields)
            self._write(force)

    def acquiring(self, node: str | None, mode: str | None = None) -> None:
        """A node starts (or, with None, ends) acquiring: track the run it writes."""
        with self._lock:
            self._runs_before = set(os.listdir(self.data_dir)) if node is not None else None
            self._fields.update(node=node, mode=mode, progress=None)
            self._write(True)

    def _write(self, force: bool) -> None:
        now = time.monotonic()
        if not force and now - self._last_write < STATUS_EVERY_S:
            return
        self._last_write = now
        self._fields["updated_utc"] = _utc_now()
        try:
            write_json_atomic(self.path, self._fields)
        except OSError as exc:  # a full disk must not stop maintenance
            log.warning("cannot write %s: %s", self.path, exc)

    def _refresh(self) -> None:
        while not self._stop.wait(STATUS_EVERY_S):
            with self._lock:
                before = self._runs_before
            if before is None:
                continue
            progress = self._progress(before)
            if progress is not None:
                self.update(progress=progress)

    def _progress(self, before: set[str]) -> dict[str, Any] | None:
        try:
            new = sorted(set(os.listdir(self.data_dir)) - before)
        except OSError:
            return None
        for name in reversed(new):
            try:
                info = json.loads((self.data_dir / name / RUN_INDEX).read_text())
            except (OSError, ValueError):
                continue
            return {
                "run_id": info.get("id"),
                "name": info.get("name"),
                "status": info.get("status"),
                "points_done": info.get("points_flushed", 0),
                "points_total": info.get("points_total"),
            }
        return None

    def close(self, **fields: Any) -> None:
        self._stop.set()
        self._thread.join(2)
        self.update(force=True, **fields)


def _utc_now() -> str:
    return datetime.now(UTC).isoformat()
