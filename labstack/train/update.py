"""The moment-matching update, its step-size schedule, and when to stop.

The gradient of the cross-entropy ``-E_target[log P_chip]`` with respect to the
natural parameters is ``μ_target - μ_chip`` (means and pair correlations). Each step
is preconditioned by the chip's own Fisher matrix (the covariance of the statistics,
measured on the same sample), so one step at ``eta = 1`` is a Newton step: it
corrects a calibration error of the fields and couplings in one go whatever the
target's conditioning. The schedule keeps ``eta0`` for ``warm`` iterations, then
decays as ``1 / (1 + (t - warm) / tau)`` (Robbins-Monro), so the sampling noise of
late iterations averages out instead of being written to the chip.

The stop rule is in units of the statistics' own errors: ``χ² / dof`` of the residuals
``(μ_target - μ_chip) / σ`` (σ from the effective sample sizes of the chip's sample,
and of the data for a data target) at most ``1 + z √(2 / dof)`` on ``patience``
consecutive iterations: the chip agrees with the target as well as one sample can
tell. A run diverges when χ² grows ``diverge_factor`` times above its best, or a
parameter leaves ``±max_param``; it then stops and the best parameters are kept.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from labstack.train.stats import Moments


@dataclass(frozen=True)
class Schedule:
    """Step size per iteration."""

    eta0: float = 1.0
    warm: int = 2
    tau: float = 2.0

    def eta(self, iteration: int) -> float:
        return self.eta0 / (1.0 + max(0, iteration - self.warm) / self.tau)


@dataclass(frozen=True)
class StopRule:
    """Stop once the residuals are consistent with noise; call a run diverging."""

    z: float = 2.0
    patience: int = 2
    min_iterations: int = 3
    max_iterations: int = 30
    diverge_factor: float = 25.0
    max_param: float = 6.0

    def threshold(self, dof: int) -> float:
        return 1.0 + self.z * math.sqrt(2.0 / max(dof, 1))


def residual(target: np.ndarray, target_err: np.ndarray, chip: Moments) -> tuple[np.ndarray, float]:
    """Residuals ``target - chip`` and their ``χ² / dof`` in units of the combined errors."""
    r = np.asarray(target, dtype=float) - chip.value
    sigma = np.sqrt(chip.stderr**2 + np.asarray(target_err, dtype=float) ** 2)
    chi2 = float(np.sum((r / sigma) ** 2)) / r.size
    return r, chi2


def step(r: np.ndarray, chip: Moments, eta: float, ridge: float = 1e-3) -> np.ndarray:
    """The preconditioned moment-matching step ``eta F⁻¹ r`` (F: the chip's Fisher matrix)."""
    f = chip.fisher + ridge * np.eye(len(r))
    return eta * np.linalg.solve(f, r)


def diverging(chi2: float, best_chi2: float, params: np.ndarray, rule: StopRule) -> str | None:
    """Why a run is diverging, or None."""
    if not np.all(np.isfinite(params)) or not math.isfinite(chi2):
        return "non-finite parameters or statistics"
    if float(np.max(np.abs(params))) > rule.max_param:
        return f"a parameter left ±{rule.max_param:g} (|max| {float(np.max(np.abs(params))):.3g})"
    if chi2 > rule.diverge_factor * max(best_chi2, 1.0):
        return f"χ²/dof {chi2:.3g} grew over {rule.diverge_factor:g}x its best ({best_chi2:.3g})"
    return None
