"""Run a calibration routine end to end: acquire, fit, update the state, report.

Routines are found through the ``labstack.calibrations`` entry-point group, so
this core module never imports ``labstack.calibrations`` itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib.metadata import entry_points
from types import ModuleType
from typing import Any

from labstack.data import resolve_data_dir


def routines() -> dict[str, ModuleType]:
    """Installed calibration routines by name."""
    return {ep.name: ep.load() for ep in entry_points(group="labstack.calibrations")}


def routine(name: str) -> ModuleType:
    found = routines()
    if name not in found:
        raise KeyError(f"no calibration routine {name!r}; installed: {sorted(found)}")
    return found[name]


@dataclass
class CalibrationOutcome:
    name: str
    run_id: str
    results: list[Any]
    table: str
    state_path: str
    state_version: int
    failed: list[int] = field(default_factory=list)

    @property
    def all_ok(self) -> bool:
        return not self.failed

    def report(self) -> str:
        lines = [f"{self.name}: run {self.run_id}", self.table, ""]
        if self.failed:
            lines.append(f"{len(self.failed)} cell(s) flagged: {self.failed}")
        lines.append(f"calibration state v{self.state_version}: {self.state_path}")
        return "\n".join(lines)


def calibrate_bias(station: Any, *, data_dir: Any = None, progress: bool = True, params: Any = None) -> CalibrationOutcome:
    """The S-curve calibration of every cell, with its data and state recorded."""
    from labstack.calibrate.state import CalibrationState
    from labstack.clock import clock_of

    node = routine("bias_scurve")
    params = params or node.Parameters()
    root = resolve_data_dir(data_dir)
    run = node.acquire(station, params, data_dir=root, progress=progress)
    results = node.fit(run.dataset())
    entries = node.update(results)
    state = CalibrationState.load(root / "calibration_state")
    version = state.apply(entries, clock=clock_of(station), run_id=run.id, message=f"{node.NAME} run {run.id}")
    failed = [r.cell for r in results if not r.ok]
    return CalibrationOutcome(node.NAME, run.id, results, node.table(results), str(state.path), version, failed)
