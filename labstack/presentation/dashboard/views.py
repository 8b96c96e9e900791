"""What the dashboard shows, as JSON-ready data built from the data directory.

* :func:`nodes_view`: each node of the graph, its status, last calibration and
  how long it stays valid, judged by the engine's own ``check_state`` logic with
  no instrument (as ``labstack status`` does), by the clock :func:`page_clock`
  picks: a served lab's clock now, read from its service file;
* :func:`state_view`: every entry of the current state, with the text the page
  prints (value and error to the digits the error supports);
* :func:`cells_view`: the per-cell table the page shows (the numbers a test
  compares with the state).
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from labstack.calibrate import CalibrationState, Context, Status
from labstack.data.runs import STORE_NAME
from labstack.fit.precision import format_value
from labstack.presentation.graph import graph_svg
from labstack.presentation.tables import MAX_ROWS
from labstack.service.status import StatusClock, status_clock
from labstack.session import build_graph

#: the columns of the per-cell table: (state key suffix, heading)
CELL_COLUMNS = (
    ("health", "health"),
    ("bias_offset_V", "V0"),
    ("scurve_width_V", "width"),
    ("alpha_K_per_V", "gain α"),
    ("tau_c_s", "τ_c"),
    ("readout_fidelity", "readout fidelity"),
)


def entry_json(key: str, e: Any) -> dict[str, Any]:
    return {
        "key": key, "value": e.value, "stderr": e.stderr, "unit": e.unit, "valid": e.valid,
        "node": e.node, "version": e.version, "utc": e.utc, "run_id": e.run_id, "note": e.note,
        "text": format_value(e.value, e.stderr, e.unit) if e.valid else "flagged",
    }


def state_view(state: CalibrationState) -> dict[str, Any]:
    return {"version": state.version, "entries": {k: entry_json(k, e) for k, e in state.entries.items()}}


def n_cells(state: CalibrationState) -> int:
    ids = [int(k.split(".")[1]) for k in state.keys("cells") if k.split(".")[1].isdigit()]
    return max(ids) + 1 if ids else 0


def _needs_a_look(state: CalibrationState, i: int) -> bool:
    """A cell whose readout verdict is not ``ok`` or that has a flagged value."""
    health = f"cells.{i}.health"
    if health in state and state.get(health).value not in ("ok", None, ""):
        return True
    return any(f"cells.{i}.{s}" in state and not state.get(f"cells.{i}.{s}").valid for s, _ in CELL_COLUMNS)


def cells_view(state: CalibrationState) -> dict[str, Any]:
    """Rows of the per-cell table: each shown value with its key, so it can be checked.

    Past :data:`~labstack.presentation.tables.MAX_ROWS` cells the table lists only the
    cells that need a look (not ``ok``, or with a flagged value), at most that many, and
    says so in ``note``: the chip map and the history's band show the rest.
    """
    n = n_cells(state)
    shown = range(n)
    note = ""
    if n > MAX_ROWS:
        look = [i for i in range(n) if _needs_a_look(state, i)]
        shown = look[:MAX_ROWS]
        note = (f"{n} cells: listing the {len(shown)} of {len(look)} that need a look (not ok, or a flagged "
                f"value); the chip map colours every cell.")
    rows = []
    for i in shown:
        row = []
        for suffix, _ in CELL_COLUMNS:
            key = f"cells.{i}.{suffix}"
            if key in state:
                e = state.get(key)
                row.append({"key": key, "text": format_value(e.value, e.stderr, e.unit) if e.valid else "flagged",
                            "valid": e.valid, "note": e.note})
            else:
                row.append({"key": key, "text": "", "valid": True, "note": ""})
        rows.append({"cell": i, "values": row})
    return {"columns": [h for _, h in CELL_COLUMNS], "rows": rows, "n_cells": n, "note": note}


def session_clock(data_dir: Path, session_id: str | None) -> str:
    """``virtual`` or ``wall``: the clock of the newest calibration (from its stored attrs)."""
    if not session_id:
        return "wall"
    try:
        attrs = json.loads((data_dir / session_id / STORE_NAME / ".zattrs").read_text())
        return str(attrs.get("clock", "wall"))
    except (OSError, ValueError):
        return "wall"


def page_clock(data_dir: Path, state: CalibrationState, session_kind: str, lab_service: Any) -> StatusClock:
    """The clock the page judges node status by, read now.

    A served lab (``lab_service``, the newest calibration's record): its clock now, from
    its service file, so nodes go stale between passes as its clock runs on. An
    in-process virtual lab's clock lived in the calibrating process: as of the state's
    last update. Hardware: now.
    """
    return status_clock(data_dir, state=state, lab_service=lab_service or None,
                        kind="wall" if session_kind == "wall" else "virtual")


def nodes_view(data_dir: Path, state: CalibrationState, clock_at: StatusClock) -> dict[str, Any]:
    """Each node's status, why, when it was last calibrated and until when it holds (as of ``clock_at``)."""
    clock = clock_at.frozen()
    ctx = Context(station=None, clock=clock, data_dir=data_dir, state=state)
    graph = build_graph(ctx)
    status = graph.status()
    reasons = graph.explain()
    order = graph.order()
    flagged: dict[str, int] = {}
    for e in state.entries.values():
        if not e.valid and e.node:
            flagged[e.node] = flagged.get(e.node, 0) + 1
    nodes = []
    for name in order:
        rec = state.node_record(name)
        timeout = graph[name].timeout_s
        until = None
        if rec is not None and rec.verified_utc and timeout != float("inf"):
            verified = datetime.fromisoformat(rec.verified_utc)
            until = (verified + timedelta(seconds=timeout)).isoformat()
        nodes.append({
            "name": name,
            "status": status[name].value,
            "depends_on": list(graph.dependencies(name)),
            "calibrated_utc": rec.calibrated_utc if rec else None,
            "verified_utc": rec.verified_utc if rec else None,
            "valid_until_utc": until,
            "timeout_s": timeout,
            "reason": reasons.get(name, "") if status[name] is not Status.FRESH else "",
            "run_id": rec.run_id if rec else None,
            "flagged": flagged.get(name, 0),
            "last_outcome": rec.last_outcome if rec else "",
        })
    deps = {n: graph.dependencies(n) for n in order}
    svg = graph_svg(order, deps, {n: status[n].value for n in order})
    return {"as_of": clock_at.utc.isoformat(), "clock": clock_at.kind, "note": clock_at.note,
            "nodes": nodes, "svg": svg}
