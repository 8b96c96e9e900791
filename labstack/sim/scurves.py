"""S-curve counts of isolated cells, for chips too big for a full :class:`GroundTruth`.

A 10^6-cell :class:`~labstack.sim.truth.GroundTruth` would carry an N x N crosstalk
matrix; here only what an S-curve depends on is drawn, block by block, with the
spreads of :meth:`GroundTruth.from_seed <labstack.sim.truth.GroundTruth.from_seed>`
(gain 0.30 K/V +- 10 %, offsets 0.15 V rms clipped to +-0.5 V) at the default
fridge's base temperature. An isolated cell in equilibrium is exactly
``P(+1) = expit((V - V0) / w)``, ``w = T_eff / (2 alpha)``, so the counts of
``shots`` independent readouts are binomial.
"""

from __future__ import annotations

import numpy as np

from labstack.sim.truth import CryostatTruth, Noise


def draw_cells(
    rng: np.random.Generator, n_cells: int, t_chip_K: float | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``(v0_V, width_V)`` of ``n_cells`` cells drawn like ``GroundTruth.from_seed``."""
    alpha = rng.normal(0.30, 0.03, n_cells).clip(0.15, None)
    v0 = rng.normal(0.0, 0.15, n_cells).clip(-0.5, 0.5)
    t_chip = CryostatTruth().mc_base_K if t_chip_K is None else t_chip_K
    return v0, Noise().t_eff(t_chip) / (2.0 * alpha)


def scurve_counts(
    rng: np.random.Generator, volts: np.ndarray, v0: np.ndarray, width: np.ndarray, shots: int
) -> np.ndarray:
    """Binomial counts of +1 readouts, shape ``(cells, points)``, int32."""
    z = (np.asarray(volts)[None, :] - v0[:, None]) / width[:, None]
    p = 0.5 * (1.0 + np.tanh(0.5 * z))  # expit without scipy
    return rng.binomial(shots, p).astype(np.int32)
