"""The result of one fit: values, standard errors and how good the fit was.

A fit that fails is a :class:`FitResult` with ``success=False`` and a message,
never an exception swallowed and replaced by a dummy value: callers report it
and flag the cell, and the other cells carry on.

``absolute_sigma`` says whether the standard errors come from the data's known
errors (then ``chi2_reduced`` is a real goodness-of-fit test, ≈ 1 for a correct
model) or were scaled by the scatter of the residuals (then ``chi2_reduced`` only
estimated the noise and tests nothing). ``checks`` holds residual diagnostics
(chi-square p-value, runs test, largest normalized residual) from
:mod:`labstack.fit.checks`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class FitResult:
    """Fitted parameters of one model for one object (a cell, a stage, a coupler)."""

    model: str
    values: dict[str, float] = field(default_factory=dict)
    stderr: dict[str, float] = field(default_factory=dict)
    chi2_reduced: float = math.nan
    dof: int = 0
    success: bool = True
    message: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    absolute_sigma: bool = False
    checks: dict[str, float] = field(default_factory=dict)
    covariance: np.ndarray | None = None
    names: tuple[str, ...] = ()

    def __getitem__(self, name: str) -> float:
        return self.values[name]

    def error(self, name: str) -> float:
        return self.stderr.get(name, math.nan)

    def correlation(self, a: str, b: str) -> float:
        """Correlation coefficient of two fitted parameters (nan if unknown)."""
        if self.covariance is None or a not in self.names or b not in self.names:
            return math.nan
        i, j = self.names.index(a), self.names.index(b)
        c = self.covariance
        return float(c[i, j] / math.sqrt(c[i, i] * c[j, j]))

    @classmethod
    def failed(cls, model: str, message: str, **extra: Any) -> FitResult:
        """A visible failure: no values, ``success=False`` and why."""
        return cls(model=model, success=False, message=message, extra=dict(extra))

    def summary(self) -> str:
        """One line a person reads: values ± errors and chi2_red, or why it failed."""
        if not self.success:
            return f"{self.model}: FAILED ({self.message})"
        parts = [f"{k}={v:.6g}±{self.error(k):.2g}" for k, v in self.values.items()]
        return f"{self.model}: " + ", ".join(parts) + f", chi2_red={self.chi2_reduced:.3g}"

    def to_dict(self) -> dict[str, Any]:
        """Plain Python types only (YAML/JSON safe): arrays become nested lists."""
        return {
            "model": self.model,
            "values": {k: float(v) for k, v in self.values.items()},
            "stderr": {k: float(v) for k, v in self.stderr.items()},
            "chi2_reduced": float(self.chi2_reduced),
            "dof": int(self.dof),
            "success": bool(self.success),
            "message": self.message,
            "absolute_sigma": bool(self.absolute_sigma),
            "checks": {k: float(v) for k, v in self.checks.items()},
            "covariance": None if self.covariance is None else self.covariance.tolist(),
            "names": list(self.names),
            "extra": _plain(self.extra),
        }


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    return obj
