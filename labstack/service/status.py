"""Read-only views of a lab service for dashboards: everything comes from files, nothing is measured.

What a dashboard shows and where it comes from (all plain JSON-able values):

=====================  ==============================================================
:func:`service_info`   the served lab (``<service dir>/service.json``): lab clock and
                       calendar, speed, addresses, traffic; ``status`` running/stopped
:func:`watch_status`   the watch loop now (``<data_dir>/watch/status.json``): ``state``
                       (idle, maintaining, paused, suspended, reconnecting, stopped),
                       the ``node`` now acquiring and its ``mode``, the ``progress`` of
                       its run (``points_done`` / ``points_total``), ``last_pass``
:func:`watch_passes`   every maintain pass (``<data_dir>/watch/passes.jsonl``): trigger,
                       checked, recalibrated, failed, versions, lab and wall time
:func:`state_history`  every calibration-state version: utc, lab time, node, message
:func:`state_timeline` every entry at every version, ``recalibrated`` marking where a
                       version set it: per-cell parameter history plots
:func:`node_table`     each node: status, last calibration, verified, validity
:func:`run_registry`   the runs (``run.json`` of each), newest first
:func:`overview`       all of the above at once
=====================  ==============================================================

Files are replaced atomically by their writers (passes are appended whole lines),
so a reader polling them never sees half a file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from labstack.calibrate import STATE_DIRNAME, CalibrationState, Context
from labstack.data import list_runs, resolve_data_dir
from labstack.service.livestatus import STATUS_FILE, WATCH_DIRNAME
from labstack.service.process import read_service_info
from labstack.service.watch import PASSES_FILE
from labstack.session.status import FrozenClock

__all__ = [
    "node_table",
    "overview",
    "run_registry",
    "service_info",
    "state_history",
    "state_timeline",
    "watch_passes",
    "watch_status",
]

PathLike = str | os.PathLike[str]


def service_info(service_dir: PathLike) -> dict[str, Any] | None:
    """The served lab's ``service.json`` (None if there is no service there)."""
    return read_service_info(service_dir)


def watch_status(data_dir: PathLike | None = None) -> dict[str, Any] | None:
    """What ``labstack watch`` on ``data_dir`` is doing now (None if it never ran there)."""
    path = resolve_data_dir(data_dir) / WATCH_DIRNAME / STATUS_FILE
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def watch_passes(data_dir: PathLike | None = None, last: int | None = None) -> list[dict[str, Any]]:
    """The maintain passes recorded in ``data_dir``, oldest first (``last``: only the newest n)."""
    path = resolve_data_dir(data_dir) / WATCH_DIRNAME / PASSES_FILE
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return []
    passes = []
    for line in lines[-last:] if last else lines:
        try:
            passes.append(json.loads(line))
        except ValueError:
            continue  # a line being appended right now
    return passes


def _state(data_dir: PathLike | None) -> CalibrationState:
    return CalibrationState.load(resolve_data_dir(data_dir) / STATE_DIRNAME)


def state_history(data_dir: PathLike | None = None) -> list[dict[str, Any]]:
    """Every version of the calibration state, oldest first."""
    return [
        {
            "version": v.version,
            "parent": v.parent,
            "utc": v.utc,
            "time_s": v.time_s,
            "node": v.node,
            "message": v.message,
            "run_id": v.run_id,
        }
        for v in _state(data_dir).history()
    ]


def state_timeline(data_dir: PathLike | None = None, prefix: str = "") -> list[dict[str, Any]]:
    """Every entry under ``prefix`` (e.g. ``"cells.3"``) at every version (:meth:`CalibrationState.timeline`)."""
    return _state(data_dir).timeline(prefix)


def node_table(data_dir: PathLike | None = None, names: list[str] | None = None) -> list[dict[str, Any]]:
    """Each installed node: status as of the state's last update, calibration and verification times.

    "As of the last update" measures nothing; for status by a live served clock use
    :func:`labstack.session.calibration_status` with the served station file.
    """
    from datetime import UTC, datetime

    from labstack.session.run import build_graph

    root = resolve_data_dir(data_dir)
    state = _state(root)
    history = state.history()
    at = datetime.fromisoformat(history[-1].utc) if history and history[-1].utc else datetime.now(UTC)
    clock = FrozenClock(at if at.tzinfo else at.replace(tzinfo=UTC))
    graph = build_graph(Context(station=None, clock=clock, data_dir=root, state=state), names)
    status, reasons = graph.status(), graph.explain()
    rows = []
    for name in graph.order():
        record = state.node_record(name)
        rows.append(
            {
                "node": name,
                "depends_on": list(graph.dependencies(name)),
                "status": str(status[name]),
                "reason": reasons.get(name, ""),
                "timeout_s": graph[name].timeout_s,
                "calibrated_utc": record.calibrated_utc if record else None,
                "verified_utc": record.verified_utc if record else None,
                "failed": record.failed if record else None,
                "run_id": record.run_id if record else None,
            }
        )
    return rows


def run_registry(data_dir: PathLike | None = None, limit: int | None = 50) -> list[dict[str, Any]]:
    """The runs' ``run.json`` (status corrected for dead writers), newest first."""
    runs = list_runs(data_dir)
    runs.reverse()
    out = []
    for run in runs[:limit] if limit else runs:
        try:
            out.append(run.info)
        except (OSError, ValueError):
            continue
    return out


def overview(data_dir: PathLike | None = None, service_dir: PathLike | None = None) -> dict[str, Any]:
    """Everything a dashboard page shows, in one call."""
    root = resolve_data_dir(data_dir)
    return {
        "data_dir": str(Path(root)),
        "service": service_info(service_dir) if service_dir is not None else None,
        "watch": watch_status(root),
        "passes": watch_passes(root, last=50),
        "nodes": node_table(root),
        "history": state_history(root),
        "runs": run_registry(root),
    }
