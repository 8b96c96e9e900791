"""pytest plugin (entry point ``pytest11: labstack``): replay recorded runs in a lab's CI.

Installed with labstack, so a lab's own test suite needs only a few lines to replay
its golden runs on the virtual lab and fail on any change in what they measure::

    from labstack.pytest_plugin import golden_runs

    GOLDEN = "tests/golden/runs"

    @pytest.mark.parametrize("run_id", golden_runs(GOLDEN))
    def test_golden_run_replays(run_id, labstack_replay):
        report = labstack_replay(run_id, GOLDEN)
        assert report.passed, report.text()

Fixtures:

``labstack_station``
    factory ``labstack_station(seed=7, cells=4)`` -> ``(station, lab)``: a virtual
    station on a lab of its own, closed after the test.
``labstack_replay``
    ``labstack_replay(run_id, data_dir, **options)`` -> :class:`labstack.session.ReplayReport`;
    the replay's runs and report go to the test's ``tmp_path``, never next to the golden runs.
``labstack_playback``
    factory ``labstack_playback(transcript, station_file="virtual")`` -> a station whose
    drivers are answered from an SCPI transcript; verified (every recorded exchange
    sent, nothing else) when the test ends.

This module imports nothing heavy at import time: pytest loads it in every session.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

_instances = itertools.count()


def golden_runs(data_dir: str | Path) -> list[str]:
    """Ids of the replayable runs in ``data_dir``: calibrations and stand-alone measurements.

    Acquisitions a calibration made are replayed as part of it, not on their own.
    Reads only ``run.json`` files, so it is cheap at collection time.
    """
    root = Path(data_dir)
    infos = {}
    for index in sorted(root.glob("*/run.json")):
        infos[index.parent.name] = json.loads(index.read_text())
    children = {rid for info in infos.values() for rid in info.get("metadata", {}).get("runs", [])}
    return [rid for rid, info in infos.items() if info.get("status") == "completed" and rid not in children]


@pytest.fixture
def labstack_station() -> Iterator[Callable[..., tuple[Any, Any]]]:
    """Factory: ``labstack_station(station_file="virtual", seed=7, cells=4)`` -> (station, lab)."""
    import pyvisa
    from qcodes.instrument import Instrument

    from labstack.visa import open_station

    stations = []

    def make(station_file: str = "virtual", **options: Any) -> tuple[Any, Any]:
        options.setdefault("instance", f"pytest-{next(_instances)}")
        description = ",".join(f"{k}={v}" for k, v in options.items())
        station = open_station(station_file, lab=description)
        stations.append(station)
        return station, pyvisa.ResourceManager(f"{description}@labstack").visalib.lab

    yield make
    for station in stations:
        station.close()
    Instrument.close_all()


@pytest.fixture
def labstack_replay(tmp_path: Path) -> Callable[..., Any]:
    """``labstack_replay(run_id, data_dir, **options)``: replay into the test's tmp_path."""
    from labstack.session import replay_run

    count = itertools.count()

    def replay(run_id: str, data_dir: str | Path, **options: Any) -> Any:
        options.setdefault("out_dir", tmp_path / f"replay-{next(count)}-{run_id}")
        return replay_run(run_id, data_dir, **options)

    return replay


@pytest.fixture
def labstack_playback() -> Iterator[Callable[..., Any]]:
    """Factory: ``labstack_playback(transcript, station_file="virtual")`` -> station."""
    from qcodes.instrument import Instrument

    from labstack.visa import playback_station, verify_playback

    stations = []

    def make(transcript: str | Path, station_file: str | Path = "virtual") -> Any:
        station = playback_station(station_file, transcript)
        stations.append(station)
        return station

    yield make
    try:
        for station in stations:
            verify_playback(station)
    finally:
        for station in stations:
            station.close()
        Instrument.close_all()
