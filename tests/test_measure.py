"""Sequences: description, validation, running into zarr on the station clock."""

from __future__ import annotations

import json

import numpy as np
import pytest
from qcodes import Parameter, Station
from qcodes.instrument_drivers.mock_instruments import (
    DummyChannelInstrument,
    DummyInstrument,
)
from qcodes.validators import Arrays, Numbers

from labstack.clock import VirtualClock
from labstack.data import list_runs, load_run
from labstack.measure import (
    Read,
    Sequence,
    SequenceError,
    Set,
    Sweep,
    Trace,
    Wait,
    param_name,
    run_sequence,
    step_from_dict,
    step_from_json,
    validate,
)
from labstack.station import LabStation, UnknownParameterError, find_parameter


@pytest.fixture
def station():
    """dac (two gates), dmm (two gates), a channel instrument and a clock-driven sampler."""
    clock = VirtualClock()
    dac = DummyInstrument("dac", gates=["ch1", "ch2", "ch3"])
    dmm = DummyInstrument("dmm", gates=["v1", "v2"])
    chans = DummyChannelInstrument("chans")
    # dmm.v1 follows 2*ch1 + ch2: a read that depends on the swept values.
    dmm.v1.get = lambda: 2 * dac.ch1.cache.get() + dac.ch2.cache.get()
    rng = np.random.default_rng(1)

    def samples():
        base = dac.ch1.cache.get()
        return base + np.arange(4)[:, None] * 10 + rng.integers(0, 2, (4, 6))

    sampler = Parameter(
        "samples", get_cmd=samples, vals=Arrays(shape=(4, 6)), unit="V", label="Sampler"
    )
    now = Parameter("now", get_cmd=clock.now, unit="s")
    st = LabStation.of(Station(dac, dmm, chans, sampler, now), clock=clock)
    yield st
    for inst in (dac, dmm, chans):
        inst.close()


def test_sequence_round_trips_through_json(station):
    seq = Sequence(
        (
            Set(station.dac.ch3, 0.5),
            Wait(2.0),
            Sweep(
                "v",
                {"dac.ch1": np.linspace(0, 1, 3), station.dac.ch2: [3, 4, 5]},
                [Read("dmm.v1"), Trace("t", 4, 0.1, [Read("samples", dims=("c", "s"))])],
                settle=0.01,
                coord=[10, 20, 30],
            ),
        )
    )
    text = json.dumps(seq.to_dict())
    back = step_from_json(text)
    assert back == seq
    assert back.to_dict() == json.loads(text)
    assert back.steps[2].setpoints["dac.ch2"].tolist() == [3, 4, 5]
    assert step_from_dict(Read("dmm.v1").to_dict()) == Read("dmm.v1")
    assert Sweep.over("v", "dac.ch1", [1, 2]) != Sweep.over("v", "dac.ch1", [1, 3])
    # composition
    both = Read("dmm.v1") + Wait(1) + Sequence((Read("dmm.v2"),))
    assert [type(s).__name__ for s in both.steps] == ["Read", "Wait", "Read"]


def test_parameter_objects_serialise_to_names_that_resolve(station):
    chan_param = station.chans.A.temperature  # channel key "A", channel name "ChanA"
    assert param_name(chan_param) == "chans.A.temperature"
    assert find_parameter(station, "chans.A.temperature") is chan_param
    assert find_parameter(station, param_name(station.dac.ch1)) is station.dac.ch1
    assert find_parameter(station, "now") is station.components["now"]


def test_unknown_names_say_what_exists(station):
    with pytest.raises(UnknownParameterError, match=r"'dmm' has no parameter.*v9.*v1"):
        find_parameter(station, "dmm.v9")
    with pytest.raises(UnknownParameterError, match="no component 'qdac'"):
        find_parameter(station, "qdac.ch01.dc_constant_V")
    with pytest.raises(SequenceError, match="Read 'dmm.nope'"):
        validate(Read("dmm.nope"), station)


def test_validate_names_parameter_and_value_and_sets_nothing(station):
    station.dac.ch1.set(0.25)
    station.dac.ch1.add_validator(Numbers(-1, 1))
    bad = Sweep.over("v", "dac.ch1", [0.0, 0.5, 1.5, 2.0], Read("dmm.v1"))
    with pytest.raises(SequenceError, match=r"value 1\.5 .*'dac\.ch1'"):
        validate(bad, station)
    with pytest.raises(SequenceError, match=r"1\.5"):
        run_sequence(bad, station, name="bad", progress=False, data_dir="unused-dir")
    assert station.dac.ch1.get() == 0.25
    with pytest.raises(SequenceError, match=r"Set: value 7"):
        validate(Set("dac.ch1", 7), station)
    with pytest.raises(SequenceError, match="not settable"):
        validate(Sweep.over("x", "now", [1]), station)
    with pytest.raises(SequenceError, match="already used by an enclosing loop"):
        validate(Sweep.over("v", "dac.ch1", [0], Sweep.over("v", "dac.ch2", [0])), station)
    with pytest.raises(SequenceError, match="distinct name"):
        validate(Sweep.over("v", "dac.ch1", [0], Read("dmm.v1"), Read("dmm.v1")), station)
    validate(Sweep.over("v", "dac.ch1", [0], Read("dmm.v1"), Read("dmm.v1", name="again")), station)


def test_1d_sweep_values_units_and_settle_on_virtual_clock(station, tmp_path):
    values = np.linspace(-0.5, 0.5, 11)
    seq = Sweep.over("v", "dac.ch1", values, Read("dmm.v1"), Read("now"), settle=0.5)
    run = run_sequence(seq, station, name="iv", data_dir=tmp_path, progress=False)
    ds = run.dataset()
    assert run.status == "completed" and ds.attrs["status"] == "completed"
    np.testing.assert_allclose(ds["v"], values)
    np.testing.assert_allclose(ds["dmm_v1"], 2 * values)
    assert ds["v"].attrs["units"] == "V" and ds["v"].attrs["long_name"] == "Gate ch1"
    assert ds["dmm_v1"].dims == ("v",) and ds["dmm_v1"].attrs["units"] == "V"
    # settle happens on the station clock, before the reads of each point
    np.testing.assert_allclose(ds["now"], 0.5 * np.arange(1, 12))
    np.testing.assert_allclose(ds["v_clock"], 0.5 * np.arange(1, 12))
    assert station.clock.now() == pytest.approx(5.5)
    assert ds.attrs["clock"] == "virtual"
    assert ds.attrs["start_utc"] == "2026-01-01T00:00:00+00:00"
    assert ds.attrs["end_utc"].startswith("2026-01-01T00:00:05.5")
    # what the run cost the fridge (lab clock) and the computer (wall), in its attrs and run.json
    assert ds.attrs["lab_s"] == pytest.approx(5.5) and run.info["lab_s"] == pytest.approx(5.5)
    assert 0 < ds.attrs["wall_s"] == run.info["wall_s"]


def test_zipped_sweep_drives_several_parameters_along_one_dim(station, tmp_path):
    a, b = np.linspace(0, 1, 5), np.linspace(10, 6, 5)
    seq = Sweep("step", {"dac.ch1": a, "dac.ch2": b}, [Read("dmm.v1")])
    ds = run_sequence(seq, station, name="zip", data_dir=tmp_path, progress=False).dataset()
    assert ds.sizes == {"step": 5}
    np.testing.assert_array_equal(ds["step"], np.arange(5))
    np.testing.assert_allclose(ds["dac_ch1"], a)
    np.testing.assert_allclose(ds["dac_ch2"], b)
    assert "dac_ch2" in ds.coords and ds["dac_ch2"].dims == ("step",)
    np.testing.assert_allclose(ds["dmm_v1"], 2 * a + b)


def test_nested_sweep_lands_in_the_right_cells(station, tmp_path):
    outer, inner = np.array([0.0, 1.0, 2.0]), np.array([0.1, 0.2, 0.3, 0.4])
    seq = Sweep.over(
        "x", "dac.ch1", outer, Sweep.over("y", "dac.ch2", inner, Read("dmm.v1")), Read("now")
    )
    # flush_every=5 makes chunks and buffers straddle rows of the inner sweep
    run = run_sequence(seq, station, name="2d", data_dir=tmp_path, progress=False, flush_every=5)
    ds = run.dataset()
    assert ds["dmm_v1"].dims == ("x", "y")
    np.testing.assert_allclose(ds["dmm_v1"], 2 * outer[:, None] + inner[None, :])
    assert ds["now"].dims == ("x",)
    assert run.info["points_flushed"] == 12


def test_array_reads_keep_dims_and_coords(station, tmp_path):
    seq = Sweep.over(
        "v",
        "dac.ch1",
        [0.0, 100.0, 200.0],
        Read("samples", dims=("cell", "sample"), coords={"cell": [3, 4, 5, 6]}),
        Read("chans.A.dummy_parameter_with_setpoints"),
    )
    station.chans.A.dummy_n_points(7)
    ds = run_sequence(seq, station, name="blocks", data_dir=tmp_path, progress=False).dataset()
    samples = ds["samples"]
    assert samples.dims == ("v", "cell", "sample") and samples.shape == (3, 4, 6)
    np.testing.assert_array_equal(ds["cell"], [3, 4, 5, 6])
    base = np.array([0, 100, 200])[:, None, None] + np.arange(4)[None, :, None] * 10
    assert np.all((samples.values - base >= 0) & (samples.values - base <= 1))
    pws = ds["chans_ChanA_dummy_parameter_with_setpoints"]
    assert pws.dims == ("v", "chans_ChanA_dummy_sp_axis")
    expected_axis = np.linspace(station.chans.A.dummy_start(), station.chans.A.dummy_stop(), 7)
    np.testing.assert_allclose(ds["chans_ChanA_dummy_sp_axis"], expected_axis)


def test_trace_reads_on_the_clock_with_a_time_axis(station, tmp_path):
    seq = [Set("dac.ch1", 1.0), Wait(10.0), Trace("time", 6, 0.25, [Read("now"), Read("dmm.v1")])]
    ds = run_sequence(seq, station, name="trace", data_dir=tmp_path, progress=False).dataset()
    np.testing.assert_allclose(ds["time"], 0.25 * np.arange(6))
    assert ds["time"].attrs["units"] == "s"
    np.testing.assert_allclose(ds["now"], 10 + 0.25 * np.arange(6))
    np.testing.assert_allclose(ds["time_clock"], 10 + 0.25 * np.arange(6))
    np.testing.assert_allclose(ds["dmm_v1"], 2.0)


def test_run_attrs_carry_provenance_and_metadata(station, tmp_path):
    seq = Sweep.over("v", "dac.ch1", [0, 1], Read("dmm.v1"))
    run = run_sequence(
        seq,
        station,
        name="prov",
        data_dir=tmp_path,
        progress=False,
        metadata={"seed": 1234, "calibration": "bias_transfer", "cells": [0, 3]},
    )
    attrs = run.dataset().attrs
    assert attrs["run_id"] == run.id and attrs["name"] == "prov"
    assert attrs["seed"] == 1234 and attrs["calibration"] == "bias_transfer"
    assert json.loads(attrs["cells"]) == [0, 3]
    assert "dac" in json.loads(attrs["snapshot"])["instruments"]
    assert step_from_json(attrs["sequence"]) == Sequence((seq,))
    for pkg in ("labstack", "qcodes", "numpy", "xarray", "zarr", "pyvisa"):
        assert attrs[f"version_{pkg}"]
    assert run.attrs["seed"] == 1234
    with pytest.raises(ValueError, match="reserved"):
        run_sequence(seq, station, name="x", data_dir=tmp_path, metadata={"snapshot": 1})


def test_stored_sequence_replays_to_the_same_data(station, tmp_path):
    seq = Sweep.over("v", "dac.ch1", np.linspace(0, 1, 4), Read("dmm.v1"), settle=0.1)
    first = run_sequence(seq, station, name="a", data_dir=tmp_path, progress=False)
    replay = step_from_json(first.attrs["sequence"])
    second = run_sequence(replay, station, name="b", data_dir=tmp_path, progress=False)
    np.testing.assert_array_equal(first.dataset()["dmm_v1"], second.dataset()["dmm_v1"])
    assert [r.id for r in list_runs(tmp_path)] == sorted([first.id, second.id])


@pytest.mark.parametrize("exc", [KeyboardInterrupt, RuntimeError])
def test_exception_marks_run_failed_keeps_data_and_reraises(station, tmp_path, exc):
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) == 5:
            raise exc("instrument gone")
        return float(len(calls))

    station.qcodes.add_component(Parameter("flaky", get_cmd=flaky), update_snapshot=False)
    seq = Sweep.over("v", "dac.ch1", np.arange(10.0), Read("flaky"))
    with pytest.raises(exc) as info:
        run_sequence(seq, station, name="dies", data_dir=tmp_path, progress=False)
    assert "marked failed" in "".join(getattr(info.value, "__notes__", []))
    (run,) = list_runs(tmp_path)
    assert run.status == "failed" and "instrument gone" in run.info["error"]
    ds = run.dataset()
    np.testing.assert_array_equal(ds["flaky"].values[:4], [1, 2, 3, 4])
    assert np.isnan(ds["flaky"].values[4:]).all()
    assert ds.attrs["status"] == "failed"


def test_a_run_being_written_opens_with_what_is_flushed(station, tmp_path):
    seen = {}

    def peek():
        n = len(seen)
        if n == 6:
            (run,) = list_runs(tmp_path)
            ds = run.dataset()
            seen["status"] = run.status
            seen["values"] = ds["dmm_v1"].values.copy()
        seen[n] = True
        return 0.0

    station.qcodes.add_component(Parameter("peek", get_cmd=peek), update_snapshot=False)
    seq = Sweep.over("v", "dac.ch1", np.arange(10.0), Read("dmm.v1"), Read("peek"))
    # flush_interval=0: every point is flushed, so a reader sees all earlier points
    run_sequence(seq, station, name="live", data_dir=tmp_path, progress=False, flush_interval=0)
    assert seen["status"] == "running"
    np.testing.assert_allclose(seen["values"][:6], 2 * np.arange(6.0))
    assert np.isnan(seen["values"][7:]).all()
    assert load_run(list_runs(tmp_path)[0].id[:17], tmp_path).status == "completed"


def test_a_filled_chunk_is_on_disk_at_the_next_point(station, tmp_path):
    """No time-based flush: the store appears when the first chunk fills, at the point
    after it (a sequence's store is staged until its first flush of points)."""
    placed, values = [], []

    def peek():
        (run,) = list_runs(tmp_path)
        placed.append(run.store_path.exists())
        if len(placed) == 5:  # points 0-3 filled the first chunk of four
            values.extend(run.dataset()["dmm_v1"].values)
        return 0.0

    station.qcodes.add_component(Parameter("peek", get_cmd=peek), update_snapshot=False)
    seq = Sweep.over("v", "dac.ch1", np.arange(10.0), Read("dmm.v1"), Read("peek"))
    run = run_sequence(seq, station, name="chunked", data_dir=tmp_path, progress=False,
                       flush_every=4, flush_interval=600)
    assert placed == [False] * 4 + [True] * 6
    np.testing.assert_allclose(values[:4], 2 * np.arange(4.0))
    assert np.isnan(values[4:]).all()
    np.testing.assert_allclose(run.dataset()["dmm_v1"].values, 2 * np.arange(10.0))
    assert sorted(p.name for p in run.path.iterdir()) == ["data.zarr", "run.json"]


def test_a_chunk_filled_at_the_last_point_is_placed_when_steps_follow(station, tmp_path):
    """Only a run whose last point is the last thing it does leaves its store to close;
    a step after the sweep (a wait, a read) finds every point of the sweep on disk."""
    values = []

    def peek():
        (run,) = list_runs(tmp_path)
        values.extend(run.dataset()["dmm_v1"].values)
        return 0.0

    station.qcodes.add_component(Parameter("peek", get_cmd=peek), update_snapshot=False)
    seq = Sequence((Sweep.over("v", "dac.ch1", np.arange(5.0), Read("dmm.v1")), Read("peek")))
    run_sequence(seq, station, name="then", data_dir=tmp_path, progress=False,
                 flush_interval=600)
    np.testing.assert_allclose(values, 2 * np.arange(5.0))


def test_progress_bar_is_switchable(station, tmp_path, capsys, monkeypatch):
    import labstack.measure.runner as runner

    monkeypatch.setattr(runner, "PROGRESS_DELAY_S", 0.0)
    seq = Sweep.over("v", "dac.ch1", np.arange(20.0), Read("dmm.v1"))
    run_sequence(seq, station, name="bar", data_dir=tmp_path, progress=False)
    assert "20/20" not in capsys.readouterr().err
    run_sequence(seq, station, name="bar", data_dir=tmp_path, progress=True)
    assert "20/20" in capsys.readouterr().err


def test_parameter_objects_and_plain_parameters_without_station(tmp_path):
    x = Parameter("x", set_cmd=None, initial_value=0.0, unit="mV")
    y = Parameter("y", get_cmd=lambda: x.cache.get() ** 2)
    run = run_sequence(
        Sweep.over("x", x, [1.0, 2.0, 3.0], Read(y)),
        None,
        name="bare",
        data_dir=tmp_path,
        progress=False,
    )
    ds = run.dataset()
    np.testing.assert_allclose(ds["y"], [1, 4, 9])
    assert ds["x"].attrs["units"] == "mV" and ds.attrs["clock"] == "wall"
