"""Calibrate a station's chip with the graph of every installed routine.

Routines are found through the ``labstack.calibrations`` entry-point group, so
this module never imports ``labstack.calibrations`` itself and a lab can add its
own routines from its own package.

Every :func:`calibrate_station` is itself recorded as a run (name ``calibration``,
metadata ``kind: calibration``, no data variables) whose attributes hold what a
replay needs: the station file, the lab description and seed, the routines and
parameters, the calibration state it started from (the whole version file), the
runs it made, and the values it fitted (see :mod:`labstack.session.replay`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType
from typing import Any

from labstack.calibrate import CalibrationGraph, CalibrationState, Context, Status
from labstack.clock import Elapsed, format_duration
from labstack.data import load_run, resolve_data_dir
from labstack.session.record import SessionRecorder
from labstack.station import LabStation

ROUTINES_GROUP = "labstack.calibrations"


class UnknownRoutineError(KeyError):
    """A calibration routine name (or a parameter of one) that is not installed."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def routines() -> dict[str, ModuleType]:
    """Installed calibration routines by name (entry-point group ``labstack.calibrations``)."""
    return {ep.name: ep.load() for ep in entry_points(group=ROUTINES_GROUP)}


def dependencies(module: ModuleType, kind: str | None) -> tuple[str, ...]:
    """What a routine depends on with this readout kind: its ``DEPENDS_ON_BY_READOUT[kind]``
    if it names one (a lock-in path may not need what single shots do), else ``DEPENDS_ON``."""
    by_kind = getattr(module, "DEPENDS_ON_BY_READOUT", {})
    if kind is not None and kind in by_kind:
        return tuple(by_kind[kind])
    return tuple(getattr(module, "DEPENDS_ON", ()))


def readout_kind(station: Any) -> str | None:
    """The station's readout kind, or None for a station without a chip layout."""
    layout = station.layout if getattr(station, "has_layout", False) else None
    return None if layout is None else layout.readout_role.kind


def unavailable_routines(station: Any, available: Mapping[str, ModuleType]) -> dict[str, str]:
    """Routines this station's roles cannot serve, each with why (a routine's ``READOUT_KINDS``).

    A routine that needs single shots cannot run on lock-in readout; one that depends
    on such a routine cannot either.
    """
    layout = station.layout if getattr(station, "has_layout", False) else None
    if layout is None:
        return {}
    kind = layout.readout_role.kind
    out: dict[str, str] = {}
    for name, module in available.items():
        kinds = tuple(getattr(module, "READOUT_KINDS", (kind,)))
        if kind not in kinds:
            out[name] = f"needs {' or '.join(kinds)} readout; this station's readout role is {kind}"
    changed = True
    while changed:  # what depends on an unavailable routine is unavailable too
        changed = False
        for name, module in available.items():
            blocked = [d for d in dependencies(module, kind) if d in out]
            if name not in out and blocked:
                out[name] = f"depends on {', '.join(blocked)}, which cannot run here"
                changed = True
    return out


def build_graph(
    ctx: Context,
    names: list[str] | None = None,
    params: Mapping[str, Mapping[str, Any]] | None = None,
    timeouts: Mapping[str, float] | None = None,
) -> CalibrationGraph:
    """A graph of the named routines and everything they depend on (default: all installed).

    ``params`` overrides fields of a routine's ``Parameters``, by routine name
    (``{"bias_scurve": {"n_points": 21}}``): a small chip in a test needs fewer points.
    ``timeouts`` overrides a routine's ``TIMEOUT_S`` (lab seconds after which its last
    check is stale), by routine name: a lab that maintains hourly and wants the drifting
    offsets looked at on every pass gives ``{"bias_scurve": 2700}``.
    Routines the station's roles cannot serve (:func:`unavailable_routines`) are left
    out of the default; naming one is an error that says which role it needs.
    """
    available = routines()
    unavailable = unavailable_routines(ctx.station, available)
    wanted = list(names or sorted(n for n in available if n not in unavailable))
    missing = [n for n in wanted if n not in available]
    if missing:
        raise UnknownRoutineError(f"no calibration routine(s) {missing}; installed: {sorted(available)}")
    refused = [f"{n}: {unavailable[n]}" for n in wanted if n in unavailable]
    if refused:
        raise UnknownRoutineError("cannot calibrate on this station: " + "; ".join(refused))
    kind = readout_kind(ctx.station)
    for name in wanted:  # grows while it is walked: dependencies of dependencies
        for dep in dependencies(available[name], kind):
            if dep in available and dep not in wanted:
                wanted.append(dep)
    graph = CalibrationGraph(ctx)
    params = dict(params or {})
    unknown = sorted(set(params) - set(wanted))
    if unknown:
        raise UnknownRoutineError(f"parameters given for routine(s) {unknown} that are not calibrated")
    timeouts = _checked_timeouts(timeouts or {}, wanted)
    for name in wanted:
        module = available[name]
        overrides = params.get(name)
        extra = {"timeout_s": timeouts[name]} if name in timeouts else {}
        graph.add_module(
            module, module.Parameters(**overrides) if overrides else None, depends_on=dependencies(module, kind), **extra
        )
    graph.validate()
    return graph


def _checked_timeouts(timeouts: Mapping[str, float], wanted: list[str]) -> dict[str, float]:
    """``timeouts`` as floats, refused with the routine named if unknown or not > 0."""
    unknown = sorted(set(timeouts) - set(wanted))
    if unknown:
        raise UnknownRoutineError(f"timeouts given for routine(s) {unknown} that are not calibrated")
    out = {}
    for name, value in timeouts.items():
        seconds = float(value)
        if not seconds > 0:  # NaN included
            raise ValueError(f"timeout for {name}: {value!r} s; a timeout is lab seconds > 0")
        out[name] = seconds
    return out


@dataclass
class NodeResult:
    """One node's fit results with the data they came from (the routine's table and plot)."""

    name: str
    results: Any
    dataset: Any = None
    module: Any = None
    run_id: str | None = None

    def table(self) -> str:
        if self.module is not None and hasattr(self.module, "table"):
            return str(self.module.table(self.results))
        return repr(self.results)

    def figure(self) -> Any:
        """The routine's own plot of these results (None if it has none)."""
        if self.module is None or self.dataset is None or not hasattr(self.module, "plot"):
            return None
        return self.module.plot(self.results, self.dataset)


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
    #: the run recording this calibration (replay it with ``labstack replay <id>``)
    run_id: str = ""
    #: the graph that ran (its fit results feed :meth:`result`)
    graph: CalibrationGraph | None = field(default=None, repr=False)
    #: routines the station's roles cannot serve, each with why (not run, not failed)
    unavailable: dict[str, str] = field(default_factory=dict)
    #: each fixed-point group this walk iterated: its last pass's summary
    convergence: dict[str, str] = field(default_factory=dict)
    #: what each node's experiments cost in this walk (lab = fridge time, and wall time)
    costs: dict[str, Elapsed] = field(default_factory=dict)
    #: what the whole walk cost
    cost: Elapsed | None = None

    @property
    def all_ok(self) -> bool:
        return all(s is Status.FRESH for s in self.status.values()) and not any(self.flagged.values())

    def render(self) -> str:
        lines: list[str] = []
        for name, table in self.tables.items():
            lines += [f"== {name}", table, ""]
        for name, status in self.status.items():
            did = "calibrated" if name in self.calibrated else "kept (still valid)"
            spent = self.costs.get(name)
            took = f"  {spent}" if spent is not None else ""
            lines.append(f"{name:<22} {status.value:<7} {did:<18}{took}")
        for name, why in self.unavailable.items():
            lines.append(f"{name:<20} not run  {why}")
        lines += list(self.convergence.values())
        for name, keys in self.flagged.items():
            if keys:
                lines.append(f"{name}: {len(keys)} flagged: {', '.join(keys)}")
        if self.cost is not None:
            lines.append(f"fridge time: {format_duration(self.cost.lab_s)} of lab clock "
                         f"(wall {format_duration(self.cost.wall_s)})")
        lines.append(f"calibration state v{self.state_version}: {self.state_path}")
        lines.append(f"data: {self.data_dir}")
        if self.run_id:
            lines.append(f"recorded as run {self.run_id} (labstack replay {self.run_id})")
        return "\n".join(lines)

    def result(self, name: str) -> NodeResult:
        """Node ``name``'s fit results, with the stored data they came from (for display)."""
        graph = self.graph
        if graph is None or name not in graph.results:
            raise KeyError(f"node {name!r} produced no result in this calibration")
        record = CalibrationState.load(Path(self.state_path)).node_record(name)
        run_id = record.run_id if record else None
        dataset = load_run(run_id, self.data_dir).dataset() if run_id else None
        return NodeResult(name, graph.results[name], dataset, routines().get(name), run_id)


def calibrate_station(
    station: LabStation,
    *,
    data_dir: str | Path | None = None,
    progress: bool = True,
    names: list[str] | None = None,
    force: bool = False,
    params: Mapping[str, Mapping[str, Any]] | None = None,
    state_dir: str | Path | None = None,
    lock_wait: float | None = None,
    timeouts: Mapping[str, float] | None = None,
) -> CalibrationReport:
    """Bring the station's chip to a calibrated state; redo only what is stale unless ``force``.

    ``params`` overrides routine parameters by routine name
    (``{"bias_scurve": {"n_samples": 500}}``) and ``timeouts`` their ``TIMEOUT_S``
    (:func:`build_graph`); ``state_dir`` puts the calibration
    state elsewhere than ``<data_dir>/calibration_state`` (one per chip in a batch).
    The calibration is recorded as a run of its own (``report.run_id``), failed if
    the walk raised.

    The whole walk holds the calibration state's writer lock
    (:meth:`CalibrationState.writer`): another process calibrating the same state
    is waited for (``lock_wait`` seconds, None: as long as it takes, 0: not at all,
    then :class:`~labstack.calibrate.StateLockedError`), and this walk then starts
    from its result.
    """
    root = resolve_data_dir(data_dir)
    state = CalibrationState.load(Path(state_dir)) if state_dir is not None else None
    ctx = Context.create(root, station, progress=progress, state=state)
    graph = build_graph(ctx, names, params, timeouts)
    with ctx.state.writer(wait=lock_wait, on_wait=_tell_waiting):
        recorder = SessionRecorder(ctx, names=names, force=force, params=params)
        try:
            status = graph.calibrate_all(force=force)
        except BaseException as err:
            recorder.close(graph, {}, error=err)
            raise
        return _report(ctx, graph, recorder, status, root)


def _tell_waiting(message: str) -> None:
    logging.getLogger("labstack.session").warning("%s", message)


def _report(
    ctx: Context,
    graph: CalibrationGraph,
    recorder: SessionRecorder,
    status: dict[str, Status],
    root: Path,
) -> CalibrationReport:
    """Tables, flagged entries and the recording run of a finished walk."""
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
    run = recorder.close(graph, status)
    return CalibrationReport(
        status=status,
        calibrated=calibrated,
        tables=tables,
        flagged=flagged,
        state_path=str(state.path),
        state_version=state.version,
        data_dir=str(root),
        run_id=run.id,
        graph=graph,
        unavailable={n: w for n, w in unavailable_routines(ctx.station, modules).items() if n not in graph},
        convergence={g: r.last.summary() for g, r in graph.convergence.items() if r.last is not None},
        costs=node_costs(graph),
        cost=graph.walk_cost,
    )


def node_costs(graph: CalibrationGraph) -> dict[str, Elapsed]:
    """Each node's lab and wall time in the graph's walks, all functions together."""
    out: dict[str, Elapsed] = {}
    for name, by_function in graph.costs.items():
        total = Elapsed()
        for spent in by_function.values():
            total = total + spent
        out[name] = total
    return out
