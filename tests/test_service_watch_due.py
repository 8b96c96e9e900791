"""When ``labstack watch`` runs a pass: schedule, staleness, suspenders, failures, pause (no lab needed)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from labstack.calibrate import Status
from labstack.safety.config import SuspenderSpec
from labstack.safety.control import write_command
from labstack.service.watch import WatchConfig, Watcher


class _Clock:
    def __init__(self) -> None:
        self.t = datetime(2026, 1, 1, tzinfo=UTC)

    def utcnow(self) -> datetime:
        return self.t

    def now(self) -> float:
        return 0.0


@dataclass
class _Control:
    suspenders: list[SuspenderSpec] = field(default_factory=list)
    max_temperature_K: float | None = 1.0
    thermometer: str | None = "ls372.ch06.temperature"


class _Station:
    def __init__(self) -> None:
        self.clock = _Clock()
        self.control = _Control([SuspenderSpec("ls372.ch06.temperature", 0.0, 0.05)])
        self.values = {"ls372.ch06.temperature": 0.01}

    def read(self, name: str) -> float:
        return self.values[name]


class _Graph:
    def __init__(self) -> None:
        self.statuses = {"readout": Status.FRESH, "bias_scurve": Status.FRESH}

    def status(self) -> dict[str, Status]:
        return dict(self.statuses)

    def explain(self) -> dict[str, str]:
        return {n: "timed out" for n, s in self.statuses.items() if s is not Status.FRESH}


def _watcher(tmp_path) -> tuple[Watcher, _Station, _Graph]:
    watcher = Watcher(WatchConfig("unused.yaml", data_dir=tmp_path, every_s=3600, retry_s=600), say=lambda _: None)
    station, graph = _Station(), _Graph()
    watcher.station, watcher.graph = station, graph  # type: ignore[assignment]
    return watcher, station, graph


def test_a_pass_is_due_on_schedule_and_when_a_node_goes_stale(tmp_path):
    watcher, station, graph = _watcher(tmp_path)
    assert watcher._due() is None  # all fresh, nothing scheduled yet
    watcher._next_due = station.clock.t + timedelta(seconds=3600)
    station.clock.t += timedelta(seconds=3599)
    assert watcher._due() is None
    station.clock.t += timedelta(seconds=2)
    assert watcher._due() == "schedule"
    watcher._next_due = station.clock.t + timedelta(seconds=3600)
    graph.statuses["readout"] = Status.STALE
    assert watcher._due() == "stale: readout (timed out)"


def test_a_node_a_pass_could_not_fix_waits_for_the_retry_not_every_poll(tmp_path):
    watcher, station, graph = _watcher(tmp_path)
    graph.statuses["bias_scurve"] = Status.STALE
    watcher._unresolved = {"bias_scurve"}  # the last pass left it so (e.g. blocked)
    watcher._retry_at = station.clock.t + timedelta(seconds=600)
    assert watcher._due() is None
    station.clock.t += timedelta(seconds=601)
    assert watcher._due() == "retry: bias_scurve"


def test_no_pass_while_a_suspender_is_out_of_band_and_one_when_it_is_back(tmp_path):
    watcher, station, _graph = _watcher(tmp_path)
    station.values["ls372.ch06.temperature"] = 0.08  # an excursion
    assert watcher._due() is None
    assert watcher._excursion and "outside [0, 0.05]" in watcher._excursion
    assert watcher._due() is None  # still out
    station.values["ls372.ch06.temperature"] = 0.012
    trigger = watcher._due()
    assert trigger is not None and trigger.startswith("suspender: back in band after ls372.ch06.temperature")
    assert watcher._due() is None  # once


def test_pause_and_resume_through_the_control_file(tmp_path):
    watcher, station, graph = _watcher(tmp_path)
    graph.statuses["readout"] = Status.STALE
    write_command(tmp_path, "pause", "cooling down the fridge")
    assert watcher._due() is None and watcher.paused
    time.sleep(0.02)  # file times are coarse: a person never resumes within a few milliseconds
    write_command(tmp_path, "resume")
    assert watcher._due() == "stale: readout (timed out)" and not watcher.paused
