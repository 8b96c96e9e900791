"""How far the couplers' idle coupling can shift an S-curve: the offset error it adds.

Couplers idle at their calibrated zero-coupling voltage ``Vc0``, known to its
standard error ``s_k``. What is left is a coupling ``J = kappa (Vc - Vc0_true)`` of
unknown sign and rms ``kappa s_k``; with the neighbour ``j`` at mean spin ``m_j``
when cell ``i`` crosses its centre, it shifts that centre by ``J m_j / alpha_i``.
In the S-curve's own units (``w_i = T_eff / 2 alpha_i``, the slope in ``kappa /
T_eff`` that the coupler node measures) that is

    sigma_i^2 = sum over couplers k = (i, j) of (2 w_i (kappa / T_eff)_k s_k m_j)^2,

an error of the offset the fit alone cannot see, since every point of the sweep
carries the same shift. A coupler whose zero cannot be measured (a dead or stuck cell
at one end) idles at 0 V with an idle coupling nobody knows: its zero is taken as
uncertain by the spread of the chip's measured zeros about 0 V (rms), its slope as
their median, since fabrication drew it from the same distribution; its live
neighbour's offset carries that error. Before the coupler node has run (the first pass of the bias
loop, couplers at 0 V) the zeros have no error to propagate; the values then carry
the full idle coupling, which the fixed point removes.

Not a routine itself (no ``NAME``), so it is not registered as an entry point.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from labstack.calibrate import CalibrationState


def idle_coupling(state: CalibrationState, pairs: list[tuple[int, int]]) -> dict[str, Any]:
    """Each coupler's calibrated slope and zero error (NaN where unknown), for a run's attrs."""
    slope, zero_err, zeros = [], [], []
    for k in range(len(pairs)):
        s = _valid(state, f"couplers.{k}.kappa_over_teff_per_V")
        z = _valid(state, f"couplers.{k}.zero_coupling_V")
        slope.append(abs(float(s.value)) if s is not None else math.nan)
        zero_err.append(float(z.stderr) if z is not None and z.stderr is not None else math.nan)
        if z is not None:
            zeros.append(float(z.value))
    if zeros and np.isfinite(slope).any():
        # unmeasurable zeros (a broken cell at one end): as uncertain as the chip's zeros spread
        spread = float(np.sqrt(np.mean(np.square(zeros))))
        typical = float(np.nanmedian(slope))
        for k in range(len(pairs)):
            if not math.isfinite(zero_err[k]) and _flagged(state, f"couplers.{k}.zero_coupling_V"):
                slope[k], zero_err[k] = typical, spread
    return {"pairs": [list(map(int, p)) for p in pairs], "slope_per_V": slope, "zero_err_V": zero_err}


def _flagged(state: CalibrationState, key: str) -> bool:
    """The coupler node looked at this coupler and could not measure it."""
    return key in state and not state.get(key).valid


def offset_errors(coupling: dict[str, Any], v0: np.ndarray, width: np.ndarray) -> np.ndarray:
    """Per cell, the offset error the idle couplings add (0 where nothing is known).

    ``v0`` and ``width`` are the fitted S-curves (NaN for a flagged cell: a dead or stuck
    neighbour is taken at full spin, the worst case).
    """
    n = len(v0)
    var = np.zeros(n)
    pairs = coupling.get("pairs", [])
    for (a, b), slope, err in zip(pairs, coupling.get("slope_per_V", []), coupling.get("zero_err_V", []), strict=True):
        if not (math.isfinite(slope) and math.isfinite(err)):
            continue
        for i, j in ((a, b), (b, a)):
            if not (0 <= i < n and math.isfinite(v0[i]) and math.isfinite(width[i])):
                continue
            m = math.tanh((v0[i] - v0[j]) / (2 * width[j])) if math.isfinite(v0[j]) and math.isfinite(width[j]) else 1.0
            var[i] += (2 * width[i] * slope * err * m) ** 2
    return np.sqrt(var)


def _valid(state: CalibrationState, key: str) -> Any:
    if key not in state:
        return None
    e = state.get(key)
    return e if e.valid and e.value is not None else None
