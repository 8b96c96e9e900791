"""Runs in and out: netCDF export and import of QCoDeS SQLite datasets.

netCDF is what colleagues without labstack open; QCoDeS databases are where older
measurements live. Both go through xarray, so dims, coords and units carry over.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import xarray as xr

from labstack.data.attrs import attr_value, netcdf_attrs
from labstack.data.provenance import package_versions
from labstack.data.runs import STORE_NAME, Run, load_run
from labstack.data.store import ZARR_FORMAT, RunWriter


def _as_run(run: Run | str, data_dir: str | os.PathLike[str] | None) -> Run:
    return run if isinstance(run, Run) else load_run(run, data_dir)


def export_netcdf(
    run: Run | str,
    path: str | os.PathLike[str],
    data_dir: str | os.PathLike[str] | None = None,
) -> Path:
    """Write ``run`` (a Run or a run id) to a netCDF4 file at ``path``; returns the path.

    Attributes are made netCDF-safe (bools as 0/1, None dropped, structures as JSON).
    """
    ds = _as_run(run, data_dir).dataset().load()
    ds.attrs = netcdf_attrs(ds.attrs)
    complex_data = False
    for var in ds.variables.values():
        var.attrs = netcdf_attrs(var.attrs)
        var.encoding = {}
        complex_data |= var.dtype.kind == "c"
    path = Path(path)
    ds.to_netcdf(path, engine="h5netcdf", invalid_netcdf=complex_data)
    return path


def import_qcodes_dataset(
    db_path: str | os.PathLike[str],
    run_id: int,
    data_dir: str | os.PathLike[str] | None = None,
    *,
    name: str | None = None,
) -> Run:
    """Copy QCoDeS run ``run_id`` from the SQLite database ``db_path`` into a labstack run.

    The run gets a labstack id dated by the QCoDeS run's start; QCoDeS' own attributes
    are kept with a ``qcodes_`` prefix (its snapshot becomes ``snapshot``), and the
    source (database path, run id, guid) is recorded in ``metadata``.
    """
    from qcodes.dataset import load_by_id
    from qcodes.dataset.sqlite.database import connect

    db_path = Path(db_path).resolve()
    if not db_path.is_file():
        raise FileNotFoundError(f"no QCoDeS database at {db_path}")
    conn = connect(str(db_path))
    try:
        qds = load_by_id(run_id, conn=conn)
        xds = qds.to_xarray_dataset(use_multi_index="never")
        started = qds.run_timestamp_raw
        completed = qds.completed_timestamp_raw
        qname, guid = qds.name, qds.guid
    finally:
        conn.close()

    def utc(ts: float | None) -> str | None:
        return None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat()

    attrs: dict[str, Any] = {
        "name": name or qname,
        "start_utc": utc(started),
        "end_utc": utc(completed),
        "clock": "wall",
        "snapshot": xds.attrs.get("snapshot", "{}"),
        "sequence": "",
        "source": "qcodes",
    }
    for pkg, ver in package_versions().items():
        attrs[f"version_{pkg}"] = ver
    for key, value in xds.attrs.items():
        if key != "snapshot":
            attrs[f"qcodes_{key}"] = attr_value(value)
    metadata = {"source": "qcodes", "qcodes_db": str(db_path), "qcodes_run_id": run_id}
    metadata["qcodes_guid"] = guid
    created = datetime.fromtimestamp(started, UTC) if started else None
    writer = RunWriter(attrs["name"], data_dir=data_dir, metadata=metadata, created=created)
    attrs["run_id"] = writer.id
    try:
        xds.attrs = {k: v for k, v in attrs.items() if v is not None}
        for var in xds.variables.values():
            var.attrs = {k: attr_value(v) for k, v in var.attrs.items()}
        xds.to_zarr(writer.path / STORE_NAME, mode="w", zarr_format=ZARR_FORMAT, consolidated=False)
        writer.adopt_store()
    except BaseException as err:
        writer.close("failed", error=f"{type(err).__name__}: {err}")
        raise
    status = "completed" if completed else "failed"
    return writer.close(status, error=None if completed else "the QCoDeS run was not completed")


def store_dataset(
    ds: xr.Dataset,
    name: str,
    data_dir: str | os.PathLike[str] | None = None,
    *,
    metadata: dict[str, Any] | None = None,
) -> Run:
    """Store a dataset that exists only in memory as a completed run of its own.

    For data assembled from several runs (a node that measures each temperature as
    a run and merges them): without it, a value fitted from the merged data would
    name no dataset on disk that its fit could be re-run on. ``ds.attrs`` are kept
    (``run_id`` becomes the new run's id); ``metadata`` goes into ``run.json``.
    """
    writer = RunWriter(name, data_dir=data_dir, metadata=metadata)
    stored = ds.copy(deep=False)
    stored.attrs = {k: attr_value(v) for k, v in ds.attrs.items() if v is not None}
    stored.attrs.update(name=name, run_id=writer.id)
    try:
        for var in stored.variables.values():
            var.attrs = {k: attr_value(v) for k, v in var.attrs.items()}
            var.encoding = {}
        stored.to_zarr(writer.path / STORE_NAME, mode="w", zarr_format=ZARR_FORMAT, consolidated=False)
        writer.adopt_store()
    except BaseException as err:
        writer.close("failed", error=f"{type(err).__name__}: {err}")
        raise
    return writer.close("completed")


def open_dataset(run: Run | str, data_dir: str | os.PathLike[str] | None = None) -> xr.Dataset:
    """Shorthand for ``load_run(run_id).dataset()``."""
    return _as_run(run, data_dir).dataset()
