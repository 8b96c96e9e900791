"""Run store, registry and interop."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st
from qcodes import Parameter, Station
from qcodes.instrument_drivers.mock_instruments import DummyInstrument

from labstack.clock import VirtualClock
from labstack.data import (
    RunWriter,
    export_netcdf,
    import_qcodes_dataset,
    list_runs,
    load_run,
    new_run_id,
    resolve_data_dir,
)
from labstack.data.layout import box_shape, flat_boxes, sweep_chunks
from labstack.data.store import STAGING_SUFFIX, consolidated_metadata
from labstack.measure import Read, Sweep, run_sequence
from labstack.station import LabStation


@settings(max_examples=200, deadline=None)
@given(
    shape=st.lists(st.integers(1, 5), min_size=0, max_size=4).map(tuple),
    data=st.data(),
)
def test_flat_boxes_tile_a_flat_range_in_order(shape, data):
    total = math.prod(shape)
    start = data.draw(st.integers(0, total))
    stop = data.draw(st.integers(start, total))
    flat = np.arange(total).reshape(shape)
    got = []
    for box in flat_boxes(start, stop, shape):
        assert flat[box].shape == box_shape(box)
        got.extend(flat[box].ravel().tolist())
    assert got == list(range(start, stop))
    assert len(flat_boxes(start, stop, shape)) <= max(1, 2 * len(shape) - 1)


@pytest.mark.parametrize(
    ("shape", "points", "expected"),
    [
        ((100,), 10, (10,)),
        ((10, 100), 250, (2, 100)),
        ((10, 100), 50, (1, 50)),
        ((3, 4, 5), 1000, (3, 4, 5)),
        ((3, 4, 5), 7, (1, 1, 5)),
        ((), 10, ()),
    ],
)
def test_sweep_chunks_are_contiguous_flat_ranges(shape, points, expected):
    assert sweep_chunks(shape, points) == expected


def test_run_ids_sort_by_time_and_are_unique():
    t = datetime(2026, 11, 23, 18, 45, 1, tzinfo=UTC)
    ids = [new_run_id(t + timedelta(seconds=s)) for s in (0, 0, 1, 60)]
    assert ids[0].startswith("20261123-184501-") and len(ids[0]) == 22
    assert len(set(ids)) == 4
    assert sorted(ids[1:]) == ids[1:]


def test_data_dir_argument_beats_env_beats_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LABSTACK_DATA_DIR", raising=False)
    assert resolve_data_dir() == tmp_path / "labstack_data"
    monkeypatch.setenv("LABSTACK_DATA_DIR", str(tmp_path / "env"))
    assert resolve_data_dir() == tmp_path / "env"
    assert resolve_data_dir(tmp_path / "arg") == tmp_path / "arg"
    w = RunWriter("envrun")
    w.close("completed")
    assert w.path.parent == tmp_path / "env"
    assert [r.id for r in list_runs()] == [w.id]


def test_writer_streams_scalars_and_arrays_in_chunks(tmp_path):
    w = RunWriter("direct", data_dir=tmp_path, flush_every=4)
    w.add_coord("x", ("x",), np.arange(3))
    w.add_coord("y", ("y",), np.arange(5))
    a = w.add_variable("a", (("x", 3), ("y", 5)), attrs={"units": "V"})
    b = w.add_variable("b", (("x", 3),), ("k",))
    for i in range(3):
        for j in range(5):
            a.append(10 * i + j)
        b.append(np.full(2, i, dtype=np.int8))
    with pytest.raises(ValueError, match="dimension 'k' has length 2 in 'b' but 3 in 'c'"):
        w.add_variable("c", (("x", 3),), ("k",)).append(np.zeros(3))
    d = w.add_variable("d", (("x", 3),), ("q",))
    d.append(np.zeros(2))
    with pytest.raises(ValueError, match=r"point 1 has shape \(3,\), earlier points had \(2,\)"):
        d.append(np.zeros(3))
    run = w.close("completed")
    ds = run.dataset()
    np.testing.assert_array_equal(ds["a"], 10 * np.arange(3)[:, None] + np.arange(5))
    assert ds["a"].attrs["units"] == "V" and ds["b"].dtype == np.int8
    np.testing.assert_array_equal(ds["b"], np.repeat(np.arange(3), 2).reshape(3, 2))
    assert (run.store_path / ".zmetadata").exists()
    with pytest.raises(ValueError, match="already"):
        w.add_coord("x", ("x",), np.arange(3))
    other = RunWriter("bad", data_dir=tmp_path)
    other.add_variable("z", (("x", 3),))
    with pytest.raises(ValueError, match="dimension 'x' has length 3"):
        other.add_coord("x", ("x",), np.arange(4))


@pytest.fixture
def station():
    dac = DummyInstrument("dac", gates=["ch1"])
    dmm = DummyInstrument("dmm", gates=["v1"])
    dmm.v1.get = lambda: dac.ch1.cache.get() ** 2
    st_ = LabStation.of(Station(dac, dmm), clock=VirtualClock())
    yield st_
    dac.close()
    dmm.close()


def test_list_runs_filters_and_load_run_finds(station, tmp_path):
    seq = Sweep.over("v", "dac.ch1", [0.0, 1.0], Read("dmm.v1"))
    kw = dict(data_dir=tmp_path, progress=False)
    a = run_sequence(seq, station, name="s_curve", metadata={"calibration": "bias"}, **kw)
    b = run_sequence(seq, station, name="s_curve", metadata={"calibration": "readout"}, **kw)
    c = run_sequence(seq, station, name="other", **kw)
    ids = [r.id for r in list_runs(tmp_path)]
    assert ids == sorted([a.id, b.id, c.id])
    assert [r.id for r in list_runs(tmp_path, name="s_curve")] == sorted([a.id, b.id])
    assert [r.id for r in list_runs(tmp_path, calibration="readout")] == [b.id]
    assert list_runs(tmp_path, status="failed") == []
    now = datetime.now(UTC)
    assert len(list_runs(tmp_path, since=now - timedelta(minutes=5))) == 3
    assert list_runs(tmp_path, since=now + timedelta(minutes=5)) == []
    assert list_runs(tmp_path, until=(now - timedelta(minutes=5)).isoformat()) == []
    assert load_run(b.id, tmp_path).metadata == {"calibration": "readout"}
    with pytest.raises(KeyError, match="no run"):
        load_run("19990101-000000-000000", tmp_path)
    assert list_runs(tmp_path / "nowhere") == []


def test_export_netcdf_round_trips(station, tmp_path):
    # a sweep with a coordinate of its own: the line's setpoints are a second, non-index
    # coordinate, which netCDF keeps as one through the CF "coordinates" attribute
    volts = np.linspace(0, 2, 5)
    seq = Sweep("v", {"dac.ch1": volts}, body=[Read("dmm.v1")], coord=np.arange(5))
    run = run_sequence(
        seq, station, name="nc", data_dir=tmp_path, progress=False, metadata={"flag": True}
    )
    path = export_netcdf(run, tmp_path / "nc.nc")
    with xr.open_dataset(path, engine="h5netcdf") as nc:
        np.testing.assert_allclose(nc["dmm_v1"], volts**2)
        assert nc["dac_ch1"].attrs["units"] == "V"
        assert nc.attrs["run_id"] == run.id and nc.attrs["flag"] == 1
        assert nc.attrs["status"] == "completed"
        assert "dac_ch1" in nc.coords and "dac_ch1" not in nc.indexes


def test_a_one_parameter_sweep_stores_its_setpoints_once(station, tmp_path):
    """The dim's coordinate holds the parameter's values and names it: no copy under the
    parameter's name (three files more per run)."""
    seq = Sweep.over("v", "dac.ch1", np.linspace(0, 2, 5), Read("dmm.v1"))
    ds = run_sequence(seq, station, name="once", data_dir=tmp_path, progress=False).dataset()
    assert list(ds.coords) == ["v"]
    assert ds["v"].attrs["parameter"] == "dac.ch1" and ds["v"].attrs["units"] == "V"
    np.testing.assert_allclose(ds["v"], np.linspace(0, 2, 5))


def test_import_qcodes_dataset(tmp_path):
    from qcodes.dataset import (
        Measurement,
        initialise_or_create_database_at,
        load_or_create_experiment,
    )

    db = tmp_path / "q.db"
    initialise_or_create_database_at(db)
    exp = load_or_create_experiment("exp", sample_name="chip7")
    x = Parameter("x", set_cmd=None, initial_value=0.0, unit="V", label="Bias")
    y = Parameter("y", set_cmd=None, initial_value=0.0, unit="Hz")
    z = Parameter("z", get_cmd=lambda: x.cache.get() * 10 + y.cache.get(), unit="A")
    meas = Measurement(exp=exp, name="grid")
    meas.register_parameter(x)
    meas.register_parameter(y)
    meas.register_parameter(z, setpoints=(x, y))
    with meas.run() as saver:
        for xv in (0.0, 0.5, 1.0):
            for yv in (1.0, 2.0):
                x(xv)
                y(yv)
                saver.add_result((x, xv), (y, yv), (z, z()))
    qrun_id = saver.run_id

    run = import_qcodes_dataset(db, qrun_id, tmp_path)
    assert run.status == "completed" and run.name == "grid"
    assert run.metadata["qcodes_run_id"] == qrun_id and run.metadata["source"] == "qcodes"
    ds = run.dataset()
    assert ds["z"].dims == ("x", "y")
    np.testing.assert_allclose(ds["z"], np.array([0, 5, 10])[:, None] + np.array([1, 2]))
    assert ds["z"].attrs["units"] == "A" and ds["x"].attrs["long_name"] == "Bias"
    assert ds.attrs["qcodes_exp_name"] == "exp" and ds.attrs["run_id"] == run.id
    assert ds.attrs["start_utc"][:4].isdigit()
    assert [r.id for r in list_runs(tmp_path)] == [run.id]


def test_arrays_appear_in_the_store_whole(tmp_path):
    """A kill while a variable is being created leaves at most a staging leftover
    outside the store; every array inside has its dimension names."""
    w = RunWriter("half", data_dir=tmp_path)
    w.add_coord("x", ("x",), np.arange(3))
    a = w.add_variable("a", (("x", 3),))
    for i in range(3):
        a.append(float(i))
    w.flush()
    store = w.path / "data.zarr"
    for entry in store.iterdir():
        if entry.is_dir():
            assert "_ARRAY_DIMENSIONS" in json.loads((entry / ".zattrs").read_text())
    # as if SIGKILL struck between writing .zarray and .zattrs of a new variable
    (w.path / f".b{STAGING_SUFFIX}").mkdir()
    (w.path / f".b{STAGING_SUFFIX}" / ".zarray").write_text((store / "a" / ".zarray").read_text())
    ds = load_run(w.id, tmp_path).dataset()
    assert "b" not in ds and list(ds["a"].values) == [0.0, 1.0, 2.0]
    w.close("completed")
    assert not [p for p in w.path.iterdir() if p.name.endswith(STAGING_SUFFIX)]
    assert sorted(p.name for p in w.path.iterdir()) == ["data.zarr", "run.json"]



@pytest.mark.parametrize("status_at_start", [False, True])
def test_closing_metadata_matches_the_files(tmp_path, status_at_start):
    """The closing .zattrs and .zmetadata are spliced from the text written at creation;
    they must say exactly what the files say, also when a closing key was already there
    (then the attributes are encoded afresh)."""
    attrs = {"snapshot": json.dumps({"a": [1, 2, "\\ \" é"]}), "nan": math.nan, "n": 3}
    if status_at_start:
        attrs["status"] = "planned"
    w = RunWriter("meta", data_dir=tmp_path, attrs=attrs, info={"points_total": 2})
    assert w.run.info["points_total"] == 2
    w.add_coord("x", ("x",), np.arange(2.0), {"units": "V"})
    v = w.add_variable("v", (("x", 2),))
    v.append(1.0)
    run = w.close("completed", {"end_utc": "2026-01-01T00:00:00+00:00"}, points_flushed=1)
    store = run.store_path
    zattrs = json.loads((store / ".zattrs").read_text())
    assert zattrs["status"] == "completed" and zattrs["end_utc"].startswith("2026")
    assert zattrs["snapshot"] == attrs["snapshot"] and math.isnan(zattrs["nan"])
    assert list(zattrs) == list(w.attrs)  # same keys, same order as the writer's attributes
    written = json.loads((store / ".zmetadata").read_text())
    from_files = consolidated_metadata(store)
    assert written.keys() == from_files.keys()
    assert json.dumps(written["metadata"], sort_keys=True) == json.dumps(
        from_files["metadata"], sort_keys=True
    )
    assert sorted(p.name for p in run.path.iterdir()) == ["data.zarr", "run.json"]
    assert run.dataset()["v"].values[0] == 1.0 and run.info["points_total"] == 2

def test_store_is_the_zarr_v2_store_zarr_python_writes(tmp_path):
    """The writer's own files: zarr-python opens them with or without consolidated metadata,
    their metadata is what zarr-python writes for the same arrays, and a half-filled
    chunk reads back with its fill value (NaN for floats, 0 for ints)."""
    import zarr

    w = RunWriter("v2", data_dir=tmp_path, attrs={"note": "x", "nan": math.nan}, flush_every=4)
    w.add_coord("x", ("x",), np.arange(3.0))
    w.add_coord("t", (), np.array(2.5))
    a = w.add_variable("a", (("x", 3), ("y", 7)))
    n = w.add_variable("n", (("x", 3),), ("k",))
    for i in range(2):  # the third row is never measured
        for j in range(7):
            a.append(10.0 * i + j)
        n.append(np.array([i, -i], np.int16))
    w.flush()
    crashed = zarr.open_group(w.path / "data.zarr", mode="r", zarr_format=2, use_consolidated=False)
    assert crashed.attrs["note"] == "x" and math.isnan(crashed.attrs["nan"])
    expected = np.full((3, 7), np.nan)
    expected[:2] = 10.0 * np.arange(2)[:, None] + np.arange(7)
    np.testing.assert_array_equal(crashed["a"][...], expected)
    np.testing.assert_array_equal(crashed["n"][...], [[0, 0], [1, -1], [0, 0]])
    assert float(crashed["t"][...]) == 2.5
    run = w.close("completed")
    ref = zarr.open_group(tmp_path / "ref.zarr", mode="w", zarr_format=2)
    for name in ("x", "t", "a", "n"):
        ours = json.loads((run.store_path / name / ".zarray").read_text())
        theirs_array = ref.create_array(name, shape=tuple(ours["shape"]), chunks=tuple(ours["chunks"]),
                                        dtype=ours["dtype"], fill_value=crashed[name].fill_value)
        theirs = json.loads((tmp_path / "ref.zarr" / name / ".zarray").read_text())
        assert ours == theirs, (name, ours, theirs)
        assert theirs_array.shape == crashed[name].shape
    consolidated = zarr.open_group(run.store_path, mode="r", zarr_format=2, use_consolidated=True)
    assert consolidated.attrs["status"] == "completed"
    assert sorted(consolidated.array_keys()) == ["a", "n", "t", "x"]
    np.testing.assert_array_equal(run.dataset()["a"].values, expected)


def _files(store) -> dict[str, bytes]:
    return {p.relative_to(store).as_posix(): p.read_bytes() for p in sorted(store.rglob("*"))
            if p.is_file()}


def test_deferred_store_appears_whole_at_the_first_flush_of_points(tmp_path):
    """A deferred writer stages its whole store until points are flushed: no store before,
    the whole store with every flushed point after (its owner's placing, a flush, or close)."""
    w = RunWriter("deferred", data_dir=tmp_path, attrs={"note": "x"}, deferred=True, flush_every=4)
    w.add_coord("x", ("x",), np.arange(10.0))
    a = w.add_variable("a", (("x", 10),))
    for i in range(3):
        a.append(float(i))
    run = load_run(w.id, tmp_path)
    assert run.status == "running" and run.info["points_flushed"] == 0
    assert not run.store_path.exists()
    with pytest.raises(FileNotFoundError, match=r"no data\.zarr yet.*first flush"):
        run.dataset()
    a.append(3.0)  # fills the first chunk: written into the staged store, for its owner to place
    assert w.unplaced and not run.store_path.exists()
    w.place()
    assert not w.unplaced
    ds = run.dataset()
    assert ds.attrs["note"] == "x" and list(ds["x"].values) == list(np.arange(10.0))
    np.testing.assert_array_equal(ds["a"].values[:4], [0.0, 1.0, 2.0, 3.0])
    assert np.isnan(ds["a"].values[4:]).all()
    a.append(4.0)
    w.flush(points_flushed=5)  # and later points by the writer's own flush, as before
    assert run.dataset()["a"].values[4] == 4.0
    done = w.close("completed")
    assert sorted(p.name for p in done.path.iterdir()) == ["data.zarr", "run.json"]
    assert done.dataset().attrs["status"] == "completed"

    w = RunWriter("flushed", data_dir=tmp_path, deferred=True)
    w.add_coord("x", ("x",), np.arange(3.0))
    b = w.add_variable("b", (("x", 3),))
    b.append(7.0)
    assert not (w.path / "data.zarr").exists()
    w.flush(points_flushed=1)  # a flush places the store even before any chunk fills
    assert load_run(w.id, tmp_path).dataset()["b"].values[0] == 7.0
    w.close("completed")


def test_a_deferred_store_closed_before_any_flush_is_the_same_store(tmp_path):
    """Nothing flushed until close: the store is placed in one go and is file for file the
    store an undeferred writer makes (its attributes differ only in the run id)."""
    runs = []
    for deferred in (False, True):
        w = RunWriter("same", data_dir=tmp_path / str(deferred), attrs={"snapshot": "{}"},
                      deferred=deferred)
        w.add_coord("x", ("x",), np.arange(4.0), {"units": "V"})
        a = w.add_variable("a", (("x", 4),), attrs={"units": "A"})
        n = w.add_variable("n", (("x", 4),), ("k",))
        for i in range(4):
            a.append(i / 2)
            n.append(np.array([i, -i], np.int16))
        runs.append(w.close("completed", {"end_utc": "2026-01-01T00:00:00+00:00"}))
    plain, deferred_run = (_files(r.store_path) for r in runs)
    assert sorted(plain) == sorted(deferred_run)
    assert {".zgroup", ".zattrs", ".zmetadata", "a/0", "n/0.0", "x/0"} <= set(plain)
    for key, content in plain.items():
        assert deferred_run[key] == content.replace(runs[0].id.encode(), runs[1].id.encode()), key
    assert sorted(p.name for p in runs[1].path.iterdir()) == ["data.zarr", "run.json"]
    np.testing.assert_array_equal(runs[1].dataset()["a"].values, np.arange(4) / 2)


@pytest.mark.parametrize("dtype", ["f8", "f4", "i8", "i2", "u1", "bool", "c16"])
@pytest.mark.parametrize("shape", [(), (1,), (100,), (7, 5), (3, 4096)])
def test_chunks_are_compressed_as_the_codec_does(dtype, shape):
    """The writer calls Blosc directly; its bytes are those of the store's codec."""
    import numcodecs

    from labstack.data.store import COMPRESSOR, _compress

    data = (np.random.default_rng(0).normal(size=shape) * 100).astype(dtype)
    codec = numcodecs.get_codec(dict(COMPRESSOR))
    assert _compress(data) == codec.encode(np.ascontiguousarray(data))
    np.testing.assert_array_equal(np.frombuffer(codec.decode(_compress(data)), dtype).reshape(shape),
                                  data)


def test_values_in_reads_a_stored_run_in_the_asked_axis_order(tmp_path):
    """The fits' reader of stored runs: the same numbers as xarray's lazy transpose (which
    reads pointwise, 24 bytes of index per element), C-ordered, and a clear error for
    dims the variable does not have."""
    from labstack.data import values_in

    rng = np.random.default_rng(0)
    samples = rng.integers(-1, 2, (7, 50, 5), dtype=np.int8)
    xr.Dataset({"samples": (("bias", "sample", "cell"), samples)}).to_zarr(tmp_path / "r.zarr", zarr_format=2)
    stored = xr.open_zarr(tmp_path / "r.zarr")["samples"]
    ours = values_in(stored, "cell", "bias", "sample")
    assert np.array_equal(ours, stored.transpose("cell", "bias", "sample").values)
    assert ours.flags.c_contiguous and ours.shape == (5, 7, 50)
    with pytest.raises(ValueError, match="asked for"):
        values_in(stored, "cell", "bias")
