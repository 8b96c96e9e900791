"""Reading a stored variable into numpy with its axes in the order a fit wants.

``da.transpose(*dims).values`` on a dataset opened lazily from zarr (every stored
run) does not read and then transpose: xarray represents the lazy transposition
as vectorized (pointwise) indexing, and zarr answers that by building an int64
index per element and dimension and sorting them. For the one-byte samples of a
128-cell S-curve that was 2 GB and 18 s for a 23-million-element read, against
32 MB and 0.08 s for the same values read whole in stored order and transposed
in numpy. :func:`values_in` does the latter, and returns a C-ordered array as
the vectorized read did (the fits' compiled loops and their memory access expect
one).
"""

from __future__ import annotations

import numpy as np
import xarray as xr


def values_in(da: xr.DataArray, *dims: str) -> np.ndarray:
    """``da``'s values with axes in ``dims`` order (every dim of ``da``, once each).

    Read whole in stored order, transposed in numpy and laid out C-ordered (one copy,
    none when the order is already the stored one).
    """
    if sorted(dims) != sorted(map(str, da.dims)):
        raise ValueError(f"{da.name!r} has dims {da.dims}, asked for {dims}")
    return np.ascontiguousarray(np.transpose(da.values, [da.dims.index(d) for d in dims]))
