"""Runs on disk: streamed zarr stores, their index and the registry.

Each run is a folder ``<data_dir>/<run_id>/`` with ``data.zarr`` (an xarray Dataset
written chunk by chunk) and ``run.json`` (name, status, times, metadata).

Imports: nothing else of labstack. Imported by measure, the calibrations, session, presentation,
distributed and cli.
"""

from labstack.data.arrays import values_in
from labstack.data.interop import export_netcdf, import_qcodes_dataset, open_dataset, store_dataset
from labstack.data.runs import (
    DATA_DIR_ENV,
    Run,
    RunNotFoundError,
    list_runs,
    load_run,
    new_run_id,
    resolve_data_dir,
)
from labstack.data.store import RunWriter

__all__ = [
    "DATA_DIR_ENV",
    "Run",
    "RunNotFoundError",
    "RunWriter",
    "export_netcdf",
    "import_qcodes_dataset",
    "open_dataset",
    "list_runs",
    "load_run",
    "new_run_id",
    "resolve_data_dir",
    "store_dataset",
    "values_in",
]
