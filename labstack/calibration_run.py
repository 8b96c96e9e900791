"""Calibrate a station's chip with the graph of every installed routine.

Routines are found through the ``labstack.calibrations`` entry-point group, so
this core module never imports ``labstack.calibrations`` itself (imports flow
calibrations -> core) and a lab can add its own routines from its own package.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType
from typing import Any

from labstack.calibrate import CalibrationGraph, CalibrationState, Context, Status
from labstack.data import resolve_data_dir


def routines() -> dict[str, ModuleType]:
    """Installed calibration routines by name."""
    return {ep.name: ep.load() for ep in entry_points(group="labstack.calibrations")}


def build_graph(ctx: Context, names: list[str] | None = None) -> CalibrationGraph:
    """A graph of the named routines and everything they depend on (default: all installed)."""
    available = routines()
    wanted = list(names or sorted(available))
    missing = [n for n in wanted if n not in available]
    if missing:
        raise KeyError(f"no calibration routine(s) {missing}; installed: {sorted(available)}")
    for name in wanted:  # grows while it is walked: dependencies of dependencies
        for dep in getattr(available[name], "DEPENDS_ON", ()):
            if dep in available and dep not in wanted:
                wanted.append(dep)
    graph = CalibrationGraph(ctx)
    for name in wanted:
        graph.add_module(available[name])
    graph.validate()
    return graph


@dataclass
class CalibrationReport:
    """What a ``labstack calibrate`` did: per-node status, tables and flagged items."""

    status: dict[str, Status]
    calibrated: list[str]
    tables: dict[str, str]
    flagged: dict[str, list[str]] = field(default_factory=dict)
    state_path: str = ""
    state_version: int = 0
    data_dir: str = ""

    @property
    def all_ok(self) -> bool:
        return all(s is Status.FRESH for s in self.status.values()) and not any(self.flagged.values())

    def render(self) -> str:
        lines: list[str] = []
        for name, table in self.tables.items():
            lines += [f"== {name}", table, ""]
        for name, status in self.status.items():
            did = "calibrated" if name in self.calibrated else "kept (still valid)"
            lines.append(f"{name:<20} {status.value:<7} {did}")
        for name, keys in self.flagged.items():
            if keys:
                lines.append(f"{name}: {len(keys)} flagged: {', '.join(keys)}")
        lines.append(f"calibration state v{self.state_version}: {self.state_path}")
        lines.append(f"data: {self.data_dir}")
        return "\n".join(lines)


def calibrate_station(
    station: Any,
    *,
    data_dir: str | Path | None = None,
    progress: bool = True,
    names: list[str] | None = None,
    force: bool = False,
    params: Mapping[str, Mapping[str, Any]] | None = None,
    state_dir: str | Path | None = None,
) -> CalibrationReport:
    """Bring the station's chip to a calibrated state; redo only what is stale unless ``force``.

    ``params`` overrides routine parameters by routine name
    (``{"bias_scurve": {"n_samples": 500}}``); ``state_dir`` puts the calibration
    state elsewhere than ``<data_dir>/calibration_state`` (one per chip in a batch).
    """
    root = resolve_data_dir(data_dir)
    state = CalibrationState.load(Path(state_dir)) if state_dir is not None else None
    ctx = Context.create(root, station, progress=progress, state=state)
    graph = build_graph(ctx, names)
    for name, overrides in (params or {}).items():
        node = graph[name]
        node.params = replace(node.params, **overrides)
    status = graph.calibrate_all(force=force)
    modules = routines()
    calibrated = sorted(set(graph.calls("calibrate")))
    tables: dict[str, str] = {}
    flagged: dict[str, list[str]] = {}
    for name, results in graph.results.items():
        module = modules.get(name)
        if module is not None and hasattr(module, "table"):
            tables[name] = module.table(results)
    state = ctx.state
    for key in state.keys():
        entry = state.get(key)
        if not entry.valid and entry.node:
            flagged.setdefault(entry.node, []).append(key)
    return CalibrationReport(
        status=status,
        calibrated=calibrated,
        tables=tables,
        flagged=flagged,
        state_path=str(state.path),
        state_version=state.version,
        data_dir=str(root),
    )
