"""Which calibrations are fresh, stale or failed: the state and the graph, no measurement.

Only the station's clock is opened (no DAC, no thermometer, no sampler), because
freshness depends on nothing else. An in-process virtual lab's clock restarts at
its epoch in every process, so for such a station the status is evaluated as of
the state's last update (and says so); a served lab's clock (``labstack serve``)
lives on between processes, so its status is evaluated now by that clock, as on
hardware by wall time.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from labstack.calibrate import STATE_DIRNAME, CalibrationState, Context, Status
from labstack.clock import Clock, WallClock, format_duration
from labstack.data import resolve_data_dir
from labstack.session.run import build_graph
from labstack.station import read_station_file
from labstack.station.lab_station import close_instruments

_aliases = itertools.count()


class FrozenClock:
    """A clock stopped at one instant: status "as of" a given time."""

    is_virtual = True

    def __init__(self, utc: datetime) -> None:
        self._utc = utc

    def now(self) -> float:
        return 0.0

    def sleep(self, seconds: float) -> None:
        raise RuntimeError("a frozen clock cannot wait; status runs nothing")

    def utcnow(self) -> datetime:
        return self._utc


@dataclass
class NodeStatus:
    name: str
    status: Status
    depends_on: tuple[str, ...]
    reason: str
    calibrated_utc: str | None
    run_id: str | None
    #: fridge (lab-clock) seconds its last calibrate took; None if never measured
    lab_s: float | None = None


@dataclass
class StatusReport:
    nodes: list[NodeStatus]
    state_version: int
    as_of: str
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def all_fresh(self) -> bool:
        return all(n.status is Status.FRESH for n in self.nodes)

    def next_calibrate(self) -> tuple[float, list[str], list[str]]:
        """Fridge time the next ``calibrate`` would need, from each node's last calibrate.

        Returns (lab seconds at most, nodes to redo, nodes whose cost is unknown because
        they never calibrated here). An upper bound: a stale node whose check finds it
        in spec costs only its check.
        """
        redo = [n for n in self.nodes if n.status is not Status.FRESH]
        known = [n.lab_s for n in redo if n.lab_s is not None]
        return float(sum(known)), [n.name for n in redo], [n.name for n in redo if n.lab_s is None]

    def next_calibrate_line(self) -> str:
        lab_s, redo, unknown = self.next_calibrate()
        if not redo:
            return "next calibrate: nothing to redo (no fridge time)"
        line = (f"next calibrate: up to {format_duration(lab_s)} of fridge time for "
                f"{len(redo)} node{'s' if len(redo) != 1 else ''} (from their last calibrations)")
        if unknown:
            line += f"; never calibrated here, cost unknown: {', '.join(unknown)}"
        return line

    def render(self) -> str:
        lines = [f"calibration state v{self.state_version}, status as of {self.as_of}"]
        if self.note:
            lines.append(self.note)
        width = max([len(n.name) for n in self.nodes] + [4])
        lines.append(f"{'node':<{width}}  {'status':<7}  {'depends on':<20}  {'calibrated (UTC)':<19}  "
                     f"{'lab time':>9}  why")
        for n in self.nodes:
            lines.append(
                f"{n.name:<{width}}  {n.status.value:<7}  {', '.join(n.depends_on) or '-':<20}  "
                f"{(n.calibrated_utc or '-')[:19]:<19}  {_took(n.lab_s):>9}  {n.reason}"
            )
        lines.append(self.next_calibrate_line())
        return "\n".join(lines)


def _took(lab_s: float | None) -> str:
    return "-" if lab_s is None else format_duration(lab_s)


def station_clock(station_file: str | Path, lab: str | None = None) -> tuple[Clock, Any]:
    """The clock a station file names, opening only that instrument; (clock, station or None)."""
    clock, station, _served = _station_clock(station_file, lab)
    return clock, station


def _station_clock(station_file: str | Path, lab: str | None) -> tuple[Clock, Any, bool]:
    from qcodes.station import Station

    spec = read_station_file(station_file, lab=lab)
    name = spec.layout.clock
    if not name:
        return WallClock(), None, False
    # a name of its own: the station itself may be open in this process (a notebook), and
    # QCoDeS names instruments process-wide
    alias = f"{name}_status_{os.getpid()}_{next(_aliases)}"
    station = Station()
    station.load_config(yaml.safe_dump({"instruments": {alias: spec.instruments[name]}}))
    return station.load_instrument(alias), station, spec.service() is not None


def calibration_status(
    station_file: str | Path = "virtual",
    data_dir: str | Path | None = None,
    *,
    lab: str | None = None,
    names: list[str] | None = None,
    clock: Clock | None = None,
    note: str = "",
) -> StatusReport:
    """Each installed routine's status against the state in ``data_dir``.

    ``clock`` (with its ``note``): judge by this clock instead of the station's (which is
    then not opened), e.g. a served lab's read from its service file.
    """
    root = resolve_data_dir(data_dir)
    state = CalibrationState.load(root / STATE_DIRNAME)
    if clock is not None:
        station, served = None, True
    else:
        clock, station, served = _station_clock(station_file, lab)
        note = "(served lab: as of its clock now)" if served else ""
    try:
        if clock.is_virtual and not served:
            last = state.history()[-1].utc if state.version else None
            at = datetime.fromisoformat(last) if last else clock.utcnow()
            clock = FrozenClock(at if at.tzinfo else at.replace(tzinfo=UTC))
            note = "(virtual lab: its clock restarts with every process, so this is as of the last state update)"
        ctx = Context(station=None, clock=clock, data_dir=root, state=state)
        graph = build_graph(ctx, names)
        status = graph.status()
        reasons = graph.explain()
        as_of = clock.utcnow().isoformat()  # before the clock instrument is closed
    finally:
        if station is not None:
            close_instruments(station)
    nodes = []
    for name in graph.order():
        rec = state.node_record(name)
        nodes.append(
            NodeStatus(
                name,
                status[name],
                graph.dependencies(name),
                reasons.get(name, "") if status[name] is not Status.FRESH else "",
                rec.calibrated_utc if rec else None,
                rec.run_id if rec else None,
                rec.lab_s if rec else None,
            )
        )
    return StatusReport(nodes, state.version, as_of, note)
