"""What training reads of the calibration state: virtual biases, couplers, readout split.

The core never imports the calibration nodes (their helpers included), so the few
rules training shares with them are restated here from the state's documented keys:

* the virtual biases, as :mod:`labstack.calibrations.virtual_bias` defines them: a
  cell's detuning ``u = V - V0 + C V`` with the crosstalk ``C``, dimensionless field
  ``theta = u / (2 w)``; offsets and widths crosstalk-corrected ``x (1 + Σ_j C_ij)``
  once the crosstalk node ran; fields programmed by solving ``(1 + C) V = u + V0`` on
  the calibrated cells with the other lines at 0 V;
* each coupler's zero ``couplers.<k>.zero_coupling_V`` and slope ``kappa / T_eff``;
* a cell's readings split halfway between its two readout levels with misassignment
  ``Φ(-separation / 2)`` (as :mod:`labstack.calibrations.cell_states`).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
from scipy import special

from labstack.calibrate import CalibrationState
from labstack.fit.two_level import effective_count, two_level_threshold

#: fewer sigma between the two readout levels than this: no two-level signal
MIN_SEPARATION = 2.0


def valid(state: CalibrationState, key: str) -> bool:
    """A calibrated, finite-or-present value."""
    if key not in state:
        return False
    e = state.get(key)
    return bool(e.valid) and e.value is not None


def _scalar(state: CalibrationState, key: str) -> float:
    return float(state.value(key)) if valid(state, key) else math.nan


@dataclass(frozen=True)
class VirtualBias:
    """Calibrated bias lines: offsets, widths, crosstalk (V/V), which cells are usable."""

    offset_V: np.ndarray
    width_V: np.ndarray
    crosstalk: np.ndarray
    usable: np.ndarray

    @classmethod
    def from_state(cls, state: CalibrationState, n: int) -> VirtualBias:
        offset = np.array([_scalar(state, f"cells.{i}.bias_offset_V") for i in range(n)])
        width = np.array([_scalar(state, f"cells.{i}.scurve_width_V") for i in range(n)])
        health = np.array([state.value(f"cells.{i}.health", "ok") in ("", "ok", None) for i in range(n)])
        usable = np.isfinite(offset) & np.isfinite(width) & health
        xt = np.zeros((n, n))
        if valid(state, "crosstalk.matrix_V_per_V"):
            xt = np.asarray(state.value("crosstalk.matrix_V_per_V"), dtype=float)
            if xt.shape != (n, n):
                raise ValueError(f"crosstalk matrix is {xt.shape}, chip has {n} cells")
            rows = np.array([valid(state, f"cells.{i}.crosstalk_row_V_per_V") for i in range(n)])
            usable &= rows
            xt = np.where(usable[:, None], xt, 0.0)
            scale = 1.0 + xt.sum(axis=1)
            offset, width = offset * scale, width * scale
        return cls(np.where(usable, offset, 0.0), np.where(usable, width, 0.0), xt, usable)

    @functools.cached_property
    def _inverse(self) -> np.ndarray:
        """``(1 + X)^-1`` on the usable lines: fixed for a calibration, used every iteration."""
        a = self.usable
        return np.linalg.inv(np.eye(int(a.sum())) + self.crosstalk[np.ix_(a, a)])

    def voltages_for_theta(self, theta: np.ndarray) -> np.ndarray:
        """Line voltages giving usable cells the fields ``theta``; other lines at 0 V."""
        a = self.usable
        v = np.zeros(len(a))
        u = 2.0 * np.asarray(theta, dtype=float) * self.width_V
        if a.any():
            v[a] = self._inverse @ (u[a] + self.offset_V[a])
        return v


@dataclass(frozen=True)
class Couplers:
    """Each coupler's zero and ``kappa / T_eff``; ``ok`` where both are calibrated."""

    zero_V: np.ndarray
    kappa_over_teff: np.ndarray
    ok: np.ndarray
    t_eff_K: float  # kappa / (kappa / T_eff) at the coupler node, median; else the noise floor

    @classmethod
    def from_state(cls, state: CalibrationState, n_couplers: int) -> Couplers:
        zero = np.array([_scalar(state, f"couplers.{k}.zero_coupling_V") for k in range(n_couplers)])
        kot = np.array([_scalar(state, f"couplers.{k}.kappa_over_teff_per_V") for k in range(n_couplers)])
        kappa = np.array([_scalar(state, f"couplers.{k}.kappa_K_per_V") for k in range(n_couplers)])
        ok = np.isfinite(zero) & np.isfinite(kot) & (kot != 0)
        ratios = (kappa / kot)[ok & np.isfinite(kappa)]
        t_eff = float(np.median(ratios)) if ratios.size else _scalar(state, "noise.t_excess_K")
        # a coupler without a calibrated zero idles at its last value, else 0 V
        idle = np.array([float(state.value(f"couplers.{k}.zero_coupling_V", None) or 0.0) for k in range(n_couplers)])
        return cls(np.where(np.isfinite(zero), zero, idle), kot, ok, t_eff)


@dataclass(frozen=True)
class Split:
    """One cell's states (0/1) and misassignment; ``ok`` if two levels were seen."""

    states: np.ndarray
    misassignment: float
    ok: bool
    threshold: float = float("nan")  # volts: halfway between the two levels
    noise: float = float("nan")  # volts rms of one level


def digitize(readings: np.ndarray, min_fraction: float = 0.005) -> Split:
    values = np.asarray(readings, dtype=np.float64)
    threshold, lo, hi, noise = two_level_threshold(values)
    separation = (hi - lo) / noise if noise > 0 else 0.0
    states = values > threshold
    frac = float(states.mean())
    ok = separation >= MIN_SEPARATION and min_fraction <= frac <= 1 - min_fraction
    e = float(special.ndtr(-separation / 2)) if separation > 0 else 0.5
    return Split(states, e, bool(ok), float(threshold), float(noise))


def n_effective(states: np.ndarray) -> np.ndarray:
    """Independent samples per row of a ``(cells, samples)`` 0/1 array (lag-1 autocorrelation).

    The same count as :func:`labstack.fit.two_level.effective_count`, from integer counts
    of the boolean rows instead of a float64 copy (a training iteration computes it on
    every sample): for 0/1 values with mean ``m`` over ``n`` samples,
    ``Σ (x_t - m)(x_t+1 - m) = N11 - m (2 N1 - x_0 - x_last) + (n - 1) m²`` with ``N1``
    the ones and ``N11`` the neighbouring pairs of ones.
    """
    x = np.asarray(states)
    if x.dtype != bool or x.ndim != 2 or x.shape[1] < 2:
        return effective_count(np.asarray(states, dtype=np.float64))
    n = x.shape[1]
    n1 = np.count_nonzero(x, axis=1).astype(np.float64)
    n11 = np.count_nonzero(x[:, 1:] & x[:, :-1], axis=1).astype(np.float64)
    return effective_from_counts(n1, n11, x[:, 0], x[:, -1], n)


def effective_from_counts(n1: np.ndarray, n11: np.ndarray, first: np.ndarray, last: np.ndarray,
                          n: int) -> np.ndarray:
    """:func:`n_effective` from each row's ones ``n1``, neighbouring pairs of ones ``n11``,
    first and last value (0/1), over ``n >= 2`` samples."""
    m = n1 / n
    var = m * (1.0 - m)
    lag = (n11 - m * (2.0 * n1 - first - last) + (n - 1) * m * m) / (n - 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = lag / var
    rho = np.clip(np.nan_to_num(rho, nan=0.0), 0.0, 0.99)
    return n * (1 - rho) / (1 + rho)
