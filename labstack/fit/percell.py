"""Fit many cells independently: one cell's failure never stops the others.

Fit functions in this package report expected failures as ``FitResult.failed``.
What they cannot foresee -- a numerical error deep inside scipy or numpy
(``RuntimeError``, ``LinAlgError``, ``FloatingPointError``) -- is caught *per
cell* here and turned into a failed result that names the exception, so it shows
in the calibration state as a flagged cell. Programming errors (``TypeError``,
``KeyError``, ``ValueError`` from wrong shapes) are not caught: they are bugs,
and hiding them behind a "failed cell" would be the swallowed exception that
qibocal's task runner is criticised for.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from typing import Any, TypeVar

import numpy as np

from labstack.fit.result import FitResult

K = TypeVar("K", bound=Hashable)

NUMERICAL_ERRORS: tuple[type[Exception], ...] = (
    RuntimeError,
    np.linalg.LinAlgError,
    FloatingPointError,
    OverflowError,
    ZeroDivisionError,
)


def fit_each(
    data: Mapping[K, Any], fit: Callable[[Any], FitResult], model: str | None = None
) -> dict[K, FitResult]:
    """``{cell: fit(data[cell])}``, with numerical errors isolated to their cell."""
    name = model or getattr(fit, "__name__", "fit")
    out: dict[K, FitResult] = {}
    for key, item in data.items():
        try:
            result = fit(item)
        except NUMERICAL_ERRORS as exc:
            result = FitResult.failed(name, f"{type(exc).__name__}: {exc}", cell=key)
        if not isinstance(result, FitResult):
            raise TypeError(f"{name} returned {type(result).__name__} for {key!r}, not FitResult")
        out[key] = result
    return out


def failures(results: Mapping[K, FitResult]) -> dict[K, str]:
    """The cells whose fit failed, with why."""
    return {k: r.message for k, r in results.items() if not r.success}
