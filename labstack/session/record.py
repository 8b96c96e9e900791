"""A calibration recorded as a run, so that it can be listed, reported and replayed.

:class:`SessionRecorder` opens a run named ``calibration`` (no data variables) when
a calibration starts and closes it when the walk ends, completed or failed. Its
attributes are everything :mod:`labstack.session.replay` needs to run the same calibration
again on the virtual lab and compare: the station file, lab description and seed,
the routines, their parameter overrides and ``force``, the calibration state it
started from (the whole version file, so a replay elsewhere starts from the same
state), the runs the walk made, each node's status and the values it fitted.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from labstack.calibrate import Context, Status
from labstack.data.provenance import git_revision, package_versions
from labstack.data.runs import Run, list_runs
from labstack.data.store import RunWriter

SESSION_NAME = "calibration"
SESSION_KIND = "calibration"


class SessionRecorder:
    """The run that records one :func:`labstack.session.calibrate_station`."""

    def __init__(
        self,
        ctx: Context,
        *,
        names: list[str] | None,
        force: bool,
        params: Mapping[str, Mapping[str, Any]] | None,
    ) -> None:
        self.ctx = ctx
        self.start_version = ctx.state.version
        self.before = {r.id for r in list_runs(ctx.data_dir)}
        self.config = {
            "names": list(names) if names else None,
            "force": bool(force),
            "params": {k: dict(v) for k, v in (params or {}).items()},
        }
        assert ctx.station is not None, "a calibration session needs a station"
        origin, seed = ctx.station.provenance, ctx.station.seed
        clock = ctx.clock
        attrs: dict[str, Any] = {
            "name": SESSION_NAME,
            "kind": SESSION_KIND,
            "start_utc": clock.utcnow().isoformat(),
            "clock": "virtual" if clock.is_virtual else "wall",
            "clock_start": float(clock.now()),
            "station_file": origin.station_text,
            "station_source": origin.source,
            "lab_description": origin.lab,
            "lab_seed": seed,
            "seed": seed,
            "calibration_state_version": self.start_version,
            "calibration_state_start": ctx.state.version_text(),
            "calibration_config": json.dumps(self.config),
        }
        for pkg, ver in package_versions().items():
            attrs[f"version_{pkg}"] = ver
        rev = git_revision()
        if rev:
            attrs["git_revision"] = rev
        self.writer = RunWriter(
            SESSION_NAME,
            data_dir=ctx.data_dir,
            attrs=attrs,
            metadata={
                "kind": SESSION_KIND,
                "state_start_version": self.start_version,
                # a served lab's record (its clock judges this directory's staleness)
                **{k: v for k, v in ctx.station.run_metadata.items() if k == "lab_service"},
            },
        )

    def close(
        self, graph: Any, status: Mapping[str, Status], error: BaseException | None = None
    ) -> Run:
        """Finish the record: runs made, node status, fitted values, end state version."""
        state = self.ctx.state
        made = [
            r for r in list_runs(self.ctx.data_dir)
            if r.id not in self.before and r.id != self.writer.id
        ]
        # creation order, not id order: ids made within one second sort by their random part
        runs = [r.id for r in sorted(made, key=lambda r: r.created_utc)]
        results = {
            key: {
                "value": e.value,
                "stderr": e.stderr,
                "unit": e.unit,
                "valid": e.valid,
                "node": e.node,
                "note": e.note,
            }
            for key, e in state.entries.items()
            if e.version > self.start_version
        }
        walk = getattr(graph, "walk_cost", None)
        costs = {
            name: {fn: {"lab_s": round(e.lab_s, 3), "wall_s": round(e.wall_s, 3)} for fn, e in by_fn.items()}
            for name, by_fn in getattr(graph, "costs", {}).items()
        }
        session = {
            **self.config,
            "lab_s": round(walk.lab_s, 3) if walk is not None else None,
            "wall_s": round(walk.wall_s, 3) if walk is not None else None,
            "costs": costs,
            "nodes": list(getattr(graph, "names", [])),
            "calibrated": sorted(set(graph.calls("calibrate"))) if graph is not None else [],
            "status": {k: str(v) for k, v in status.items()},
            "runs": runs,
            "state_end_version": state.version,
            "results": results,
        }
        final = {
            "end_utc": self.ctx.clock.utcnow().isoformat(),
            "lab_s": session["lab_s"],
            "wall_s": session["wall_s"],
            "calibration_session": json.dumps(session, default=str),
        }
        self.writer.update_info(
            metadata={
                **self.writer.info["metadata"],
                "nodes": session["nodes"],
                "runs": runs,
                "state_end_version": state.version,
                "lab_s": session["lab_s"],
                "wall_s": session["wall_s"],
            }
        )
        if error is not None:
            return self.writer.close("failed", final, error=f"{type(error).__name__}: {error}")
        return self.writer.close("completed", final)


def session_of(run: Run) -> dict[str, Any] | None:
    """The recorded calibration session of ``run`` (None if it is not a calibration)."""
    attrs = run.attrs
    if attrs.get("kind") != SESSION_KIND:
        return None
    session = json.loads(attrs.get("calibration_session") or "{}")
    session.setdefault("runs", [])
    session.setdefault("results", {})
    config = json.loads(attrs.get("calibration_config") or "{}")
    for key, value in config.items():
        session.setdefault(key, value)
    return session
