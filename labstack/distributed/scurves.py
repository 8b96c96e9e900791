"""S-curve fits of chips with 10^5-10^6 cells in bounded memory: xarray + dask over zarr.

The counts of +1 readouts form a ``(cell, bias)`` array chunked along ``cell``
(each chunk holds every bias point of a block of cells). :func:`fit_scurves`
applies :func:`labstack.fit.logistic_many.fit_logistic_many` to each chunk with
``xr.apply_ufunc(..., dask="parallelized")``; nothing is computed until the
result is written (``to_zarr``) or reduced, and then dask streams chunk by chunk,
so peak memory is a few chunks per worker thread whatever the cell count. The
same graph runs on the local threaded scheduler or on a ``distributed`` cluster.

:func:`synthetic_scurves` builds such a dataset lazily from the simulator's
isolated-cell model (:mod:`labstack.sim.scurves`), with the drawn truth alongside,
for validation and benchmarks.
"""

from __future__ import annotations

import os
from functools import partial
from typing import Any

import dask
import dask.array as da
import numpy as np
import xarray as xr

from labstack.fit.logistic_many import FLAG_NAMES, fit_logistic_many
from labstack.sim.scurves import draw_cells, scurve_counts

DEFAULT_CHUNK_CELLS = 16384
FIT_VARIABLES = ("V0_V", "width_V", "V0_err_V", "width_err_V", "chi2_reduced", "flag")


def _fit_block(
    counts: np.ndarray, shots: np.ndarray | int, *, volts: np.ndarray
) -> tuple[np.ndarray, ...]:
    fits = fit_logistic_many(volts, counts, shots)
    return fits.V0, fits.w, fits.V0_err, fits.w_err, fits.chi2_reduced, fits.flag


def fit_scurves(
    counts: xr.DataArray, shots: int | xr.DataArray, *, bias_dim: str = "bias"
) -> xr.Dataset:
    """Per-cell logistic fits of ``counts`` (+1 readouts out of ``shots``) along ``bias_dim``.

    ``counts`` may be numpy- or dask-backed with any other dims (usually ``cell``);
    ``shots`` is a number or a DataArray that broadcasts against ``counts``.
    Returns a Dataset over the other dims with ``V0_V``, ``width_V``, their standard
    errors, ``chi2_reduced`` and ``flag`` (0 ok; meanings in ``flag.attrs``); lazy
    when ``counts`` is a dask array.
    """
    if bias_dim not in counts.dims:
        raise ValueError(f"counts has no {bias_dim!r} dimension (dims: {counts.dims})")
    volts = np.asarray(counts[bias_dim].values, dtype=float)
    if counts.chunks is not None:
        counts = counts.chunk({bias_dim: -1})  # a fit needs every bias point of a cell
    shots_da = shots if isinstance(shots, xr.DataArray) else xr.DataArray(float(shots))
    shots_core = [bias_dim] if bias_dim in shots_da.dims else []
    if shots_da.chunks is not None and shots_core:
        shots_da = shots_da.chunk({bias_dim: -1})
    outputs = xr.apply_ufunc(
        partial(_fit_block, volts=volts),
        counts,
        shots_da,
        input_core_dims=[[bias_dim], shots_core],
        output_core_dims=[[] for _ in FIT_VARIABLES],
        dask="parallelized",
        output_dtypes=[float] * 5 + [np.int8],
    )
    ds = xr.Dataset(dict(zip(FIT_VARIABLES, outputs, strict=True)))
    for name in ("V0_V", "width_V", "V0_err_V", "width_err_V"):
        ds[name].attrs["units"] = "V"
    ds["flag"].attrs["flag_values"] = list(FLAG_NAMES)
    ds["flag"].attrs["flag_meanings"] = " ".join(FLAG_NAMES.values())
    ds.attrs["model"] = "logistic: P(+1) = 1 / (1 + exp(-(V - V0_V) / width_V))"
    ds.attrs["bias_V"] = volts.tolist()
    return ds


def _synthetic_block(
    seed: int, block: int, size: int, volts: np.ndarray, shots: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng([seed, block])
    v0, width = draw_cells(rng, size)
    return scurve_counts(rng, volts, v0, width, shots), v0, width


def synthetic_scurves(
    n_cells: int,
    volts: np.ndarray,
    shots: int,
    *,
    seed: int = 0,
    chunk_cells: int = DEFAULT_CHUNK_CELLS,
) -> xr.Dataset:
    """A lazy ``(cell, bias)`` dataset of simulated counts with the truth per cell.

    Variables: ``counts`` (int32), ``v0_true_V``, ``width_true_V``; attrs ``shots``
    and ``seed``. Each chunk of ``chunk_cells`` cells draws its own cells from
    ``(seed, chunk index)``, so the data do not depend on the scheduler or worker.
    """
    volts = np.asarray(volts, dtype=float)
    counts_blocks, v0_blocks, width_blocks = [], [], []
    for block, start in enumerate(range(0, n_cells, chunk_cells)):
        size = min(chunk_cells, n_cells - start)
        parts = dask.delayed(_synthetic_block, nout=3, pure=True)(seed, block, size, volts, shots)
        counts_blocks.append(da.from_delayed(parts[0], (size, volts.size), np.int32))
        v0_blocks.append(da.from_delayed(parts[1], (size,), float))
        width_blocks.append(da.from_delayed(parts[2], (size,), float))
    coords: dict[str, Any] = {"cell": np.arange(n_cells), "bias": volts}
    ds = xr.Dataset(
        {
            "counts": (("cell", "bias"), da.concatenate(counts_blocks)),
            "v0_true_V": ("cell", da.concatenate(v0_blocks)),
            "width_true_V": ("cell", da.concatenate(width_blocks)),
        },
        coords=coords,
        attrs={"shots": int(shots), "seed": int(seed)},
    )
    ds["bias"].attrs["units"] = "V"
    return ds


def fit_scurves_zarr(
    counts_store: str | os.PathLike[str],
    fits_store: str | os.PathLike[str],
    *,
    shots: int | None = None,
    variable: str = "counts",
    chunk_cells: int | None = None,
) -> xr.Dataset:
    """Fit the counts in one zarr store and write the per-cell results to another.

    ``shots`` defaults to the store's ``shots`` attribute. Reads, fits and writes
    chunk by chunk (on the active dask scheduler); returns the written fits, lazily
    reopened.
    """
    source = xr.open_zarr(counts_store, consolidated=False)
    if chunk_cells is not None:
        source = source.chunk({"cell": chunk_cells})
    if shots is None:
        if "shots" not in source.attrs:
            raise ValueError(f"{counts_store}: no 'shots' attribute; pass shots=")
        shots = int(source.attrs["shots"])
    fits = fit_scurves(source[variable], shots)
    fits.to_zarr(fits_store, mode="w", consolidated=False)
    return xr.open_zarr(fits_store, consolidated=False)
