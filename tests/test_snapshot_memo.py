"""A station's snapshot, with each parameter's remembered, is QCoDeS's own, key for key."""

from __future__ import annotations

import json

from qcodes.validators import Numbers

from labstack.station.snapshot_memo import remember_snapshots, station_parameters


def _comparable(snapshot: dict) -> str:
    """The snapshot as text, without the timestamps of the instruments' ``timeout``.

    QCoDeS's VisaInstrument snapshot reads ``timeout`` after its parameters are
    snapshotted, which stamps that parameter's cache anew: two successive snapshots,
    remembered or not, show different ``ts`` for it whenever a wall-clock second
    ticks between them.
    """
    for instrument in snapshot.get("instruments", {}).values():
        timeout = instrument.get("parameters", {}).get("timeout")
        if timeout is not None:
            timeout.pop("ts", None)
    return json.dumps(snapshot, sort_keys=True, default=str)


def _fresh(station) -> str:
    """The snapshot QCoDeS builds with nothing remembered (the wrappers set aside)."""
    saved = {}
    for p in station_parameters(station.components.values()):
        if "snapshot_base" in vars(p):
            saved[p] = vars(p).pop("snapshot_base")
    try:
        return _comparable(station.snapshot())
    finally:
        for p, wrapper in saved.items():
            p.snapshot_base = wrapper


def _remembered(station) -> str:
    return _comparable(station.snapshot())


def test_remembered_snapshot_follows_sets_gets_and_settings(virtual_station):
    station, _ = virtual_station(seed=5, cells=4)
    line = station.parameter("qdac1.ch01.dc_constant_V")
    assert "snapshot_base" in vars(line)  # the station file's loader wrapped it
    assert _remembered(station) == _fresh(station)
    line.set(0.05)  # a set: new value and timestamp
    station.parameter("ls372.ch06.temperature").get()  # a get
    assert '"value": 0.05' in _remembered(station)
    assert _remembered(station) == _fresh(station)
    line.vals = Numbers(-1.0, 1.0)  # a setting the snapshot shows
    line.label = "bias of cell 0"
    assert "bias of cell 0" in _remembered(station)
    assert _remembered(station) == _fresh(station)
    assert not remember_snapshots(line)  # wrapped once only


def test_updating_snapshots_still_ask_the_instrument(virtual_station):
    station, lab = virtual_station(seed=5, cells=4)
    thermometer = station.parameter("ls372.ch06.temperature")
    station.snapshot()
    before = thermometer.cache.timestamp
    station.clock.sleep(60.0)
    station.snapshot(update=True)  # QCoDeS gets every gettable parameter
    assert thermometer.cache.timestamp != before
    assert _remembered(station) == _fresh(station)
