"""The result of one fit: values, standard errors and how good the fit was.

A fit that fails is a :class:`FitResult` with ``success=False`` and a message,
never an exception swallowed and replaced by a dummy value: callers report it
and flag the cell, and the other cells carry on.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any


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

    def __getitem__(self, name: str) -> float:
        return self.values[name]

    def error(self, name: str) -> float:
        return self.stderr.get(name, math.nan)

    @classmethod
    def failed(cls, model: str, message: str, **extra: Any) -> FitResult:
        """A visible failure: no values, ``success=False`` and why."""
        return cls(model=model, success=False, message=message, extra=dict(extra))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
