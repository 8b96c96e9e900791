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
:func:`node_table`     each node: status, last calibration, verified, validity, judged
                       by :func:`status_clock` (a served lab's clock now, read from
                       its service file, when the data directory's lab is served)
:func:`status_clock`   which clock that is, what it reads now, and a sentence saying so
:func:`run_registry`   the runs (``run.json`` of each), newest first
:func:`overview`       all of the above at once
=====================  ==============================================================

Files are replaced atomically by their writers (passes are appended whole lines),
so a reader polling them never sees half a file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from labstack.calibrate import STATE_DIRNAME, CalibrationState, Context
from labstack.data import list_runs, resolve_data_dir
from labstack.service.livestatus import STATUS_FILE, WATCH_DIRNAME
from labstack.service.process import INFO_EVERY_S, read_service_info
from labstack.service.watch import PASSES_FILE
from labstack.session.record import SESSION_KIND, SESSION_NAME
from labstack.session.status import FrozenClock

__all__ = [
    "node_table",
    "overview",
    "run_registry",
    "StatusClock",
    "served_lab",
    "service_info",
    "state_history",
    "status_clock",
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
    """Each installed node: status by :func:`status_clock`, calibration and verification times.

    Measures nothing: a served lab's clock is read from its service file, and an
    in-process virtual lab's status is as of the state's last update.
    """
    from labstack.session.run import build_graph

    root = resolve_data_dir(data_dir)
    state = _state(root)
    clock = status_clock(root, state=state)
    graph = build_graph(Context(station=None, clock=clock.frozen(), data_dir=root, state=state), names)
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
                "as_of": clock.utc.isoformat(),
                "clock": clock.kind,
            }
        )
    return rows


# ---------------------------------------------------------------------- which clock
#: a running service rewrites its service file every INFO_EVERY_S; silent for longer
#: than this, it is taken as gone, its clock standing where it was last heard
SERVICE_SILENT_S = 5 * INFO_EVERY_S


@dataclass(frozen=True)
class StatusClock:
    """The clock a data directory's node status is judged by, read once (``utc`` is "now").

    ``kind`` is ``served`` (a lab service's calendar, read from its service file),
    ``virtual`` (an in-process virtual lab: its clock lived and died with the
    calibrating process, so "now" is the state's last update) or ``wall`` (hardware:
    real time). ``note`` says which in words, for a page or a terminal; ``service``
    is the served lab's record (``lab``, ``speed``, ``service_file``), if any.
    """

    kind: str
    utc: datetime
    note: str
    service: Mapping[str, Any] | None = None

    def frozen(self) -> FrozenClock:
        """A clock standing at :attr:`utc`, so every node is judged at the same instant."""
        return FrozenClock(self.utc)


#: a service further behind its speed than this many wall seconds' worth is lagging: its
#: clock is extrapolated at the pace it really ran at, not at its speed
LAGGING_S = 1.0
#: the furthest each running service's clock was judged at in this process (see status_clock)
_judged_high_water: dict[tuple[str, str], datetime] = {}


def served_lab_now(info: Mapping[str, Any], wall_now: datetime | None = None) -> tuple[datetime, str]:
    """A served lab's calendar now, from its service file ``info``, and a sentence saying how.

    While the service runs its file is at most a second old: its ``lab_utc`` moved on by
    ``speed`` lab seconds per wall second since ``updated_utc``, or by its measured
    ``pace`` when it lags (a machine that cannot keep up, :mod:`labstack.service.timebase`).
    A stopped service's clock stands where it stopped (served again on its directory, the lab continues from there);
    one silent for more than :data:`SERVICE_SILENT_S` is taken as stopped.
    """
    lab_utc = _aware(datetime.fromisoformat(str(info["lab_utc"])))
    speed = float(info.get("speed") or 0.0)
    silent = _silent_s(info, wall_now)
    name = f"served lab '{info.get('lab', '')}'"
    if info.get("status") == "running" and silent <= SERVICE_SILENT_S:
        lagging = float(info.get("lag_s") or 0.0) > LAGGING_S * speed
        rate = min(speed, float(info.get("pace", speed))) if lagging else speed
        pace = f"{speed:g} lab s per wall s" if speed else "moving only when asked (speed 0)"
        return lab_utc + timedelta(seconds=rate * max(0.0, silent)), f"{name}: status as of its clock now ({pace})"
    if info.get("status") == "running":
        return lab_utc, (f"{name}: its service has said nothing for {silent:.0f} s; "
                         "status as of its clock when last heard")
    return lab_utc, f"{name} is stopped: status as of its clock where it stopped (served again, it continues from there)"


def _silent_s(info: Mapping[str, Any], wall_now: datetime | None) -> float:
    """Wall seconds since the service last wrote its file."""
    updated = _aware(datetime.fromisoformat(str(info["updated_utc"])))
    return ((wall_now or datetime.now(UTC)) - updated).total_seconds()


def _is_live(info: Mapping[str, Any], wall_now: datetime | None) -> bool:
    """Whether the service runs and was heard from lately: its clock is extrapolated."""
    return info.get("status") == "running" and _silent_s(info, wall_now) <= SERVICE_SILENT_S


def served_lab(data_dir: PathLike | None = None) -> dict[str, Any] | None:
    """The served lab the newest calibration in ``data_dir`` ran on (its ``lab_service`` record), or None."""
    runs = list_runs(data_dir)
    runs.sort(key=lambda r: (r.created_utc, r.id))
    sessions = [i for i, r in enumerate(runs) if r.name == SESSION_NAME and r.metadata.get("kind") == SESSION_KIND]
    if not sessions:
        return None
    start = sessions[-1]
    return lab_service_of([r.metadata for r in runs[start:]])


def lab_service_of(metadata: list[Mapping[str, Any]]) -> dict[str, Any] | None:
    """The ``lab_service`` record of a calibration: its session's (first in ``metadata``), else
    that of the newest node run made after it (sessions recorded before sessions carried it)."""
    if not metadata:
        return None
    if "lab_service" in metadata[0]:
        return dict(metadata[0]["lab_service"]) if metadata[0]["lab_service"] else None
    for meta in reversed(metadata[1:]):
        if meta.get("lab_service"):
            return dict(meta["lab_service"])
    return None


def status_clock(
    data_dir: PathLike | None = None,
    *,
    state: CalibrationState | None = None,
    lab_service: Mapping[str, Any] | None | bool = True,
    kind: str = "virtual",
    wall_now: datetime | None = None,
) -> StatusClock:
    """The clock to judge ``data_dir``'s node status by, now.

    ``lab_service``: the served lab's record (``True``: find it, :func:`served_lab`;
    None: not served). A served lab with a readable service file gives its clock
    (:func:`served_lab_now`); otherwise ``kind`` decides: ``virtual`` is as of the
    state's last update, ``wall`` is now.
    """
    root = resolve_data_dir(data_dir)
    service = served_lab(root) if lab_service is True else (dict(lab_service) if lab_service else None)
    problem = ""
    if service is not None:
        service_file = service.get("service_file")
        info = _read_json(Path(service_file)) if service_file else None
        if info is not None:
            try:
                at, note = served_lab_now(info, wall_now)
                # the lab has reached every time it has recorded: an extrapolation a little
                # behind (a lagging clock, a wait inside the last second) must not make a
                # node's verification look like it lies in the future ("clock reset?")
                at = max(at, _latest_recorded(state if state is not None else _state(root), at))
                if _is_live(info, wall_now):
                    # a running lab's clock never goes back: a file written after a slower
                    # second than the one before would otherwise move "now" back, and a
                    # node judged stale a moment ago would show fresh again
                    key = (str(service_file), str(info.get("started_utc", "")))
                    at = max(at, _judged_high_water.get(key, at))
                    _judged_high_water[key] = at
                return StatusClock("served", at, note, service)
            except (KeyError, TypeError, ValueError):
                problem = f"its service file {service_file} is malformed"
        else:
            problem = f"its service file {service_file} cannot be read" if service_file else "it names no service file"
        kind = "virtual"
    if kind == "wall":
        return StatusClock("wall", wall_now or datetime.now(UTC), "hardware: status as of now (wall clock)")
    state = state if state is not None else _state(root)
    history = state.history()
    last = history[-1].utc if history and history[-1].utc else None
    at = _aware(datetime.fromisoformat(last)) if last else (wall_now or datetime.now(UTC))
    if service is not None:
        note = f"served lab '{service.get('lab', '')}', but {problem}: status as of the last state update"
    else:
        note = "virtual lab: status as of the last state update (its clock runs in the calibrating process)"
    return StatusClock("virtual", at, note, service)


def _latest_recorded(state: CalibrationState, default: datetime) -> datetime:
    """The latest lab time ``state`` records: its newest version, its nodes' verifications."""
    times = [default]
    history = state.history()
    if history and history[-1].utc:
        times.append(_aware(datetime.fromisoformat(history[-1].utc)))
    for record in state.node_records.values():
        if record.verified_utc:
            times.append(_aware(datetime.fromisoformat(record.verified_utc)))
    return max(times)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def _aware(when: datetime) -> datetime:
    return when if when.tzinfo else when.replace(tzinfo=UTC)


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
