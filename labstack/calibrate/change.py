"""What a node's ``update`` returns: the change it wants made to the calibration state.

A node never writes the state itself. It returns a :class:`StateChange` and the
engine applies it, stamping every entry with the clock time, UTC, run id and node,
and writing a new state version. That keeps ``update`` a pure function of the fit
results (testable without a disk or a clock) and puts all bookkeeping in one place.

A cell whose fit failed is not dropped: :meth:`StateChange.flag` records it as
invalid with the reason, keeping its previous value for reference, so the failure
shows in the state table until a later calibration succeeds.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from labstack.fit.result import FitResult

_KEY = re.compile(r"^[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*$")


def check_key(key: str) -> str:
    """Keys are dotted paths of ``[A-Za-z0-9_]`` parts, e.g. ``cells.3.bias_offset_V``."""
    if not isinstance(key, str) or not _KEY.match(key):
        raise ValueError(f"bad calibration state key {key!r}: use dotted [A-Za-z0-9_] parts")
    return key


def plain(value: Any) -> Any:
    """Convert numpy scalars/arrays to Python types so the state stays YAML-safe."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    return value


@dataclass(frozen=True)
class Update:
    """One entry of a change: a new value, or (``valid=False``) a flagged failure."""

    value: Any
    stderr: Any = None
    unit: str = ""
    valid: bool = True
    note: str = ""
    keep_value: bool = False  # flagged failure: keep the previous value for reference


@dataclass
class StateChange:
    """Entries to set or flag, plus whether the node as a whole failed.

    ``failed`` is for a calibration that did not work at all (the cryostat fit
    diverged, every cell is dead): the engine still applies the flags so the
    failure is recorded, but marks the node failed and does not calibrate the
    nodes that depend on it. A few failed cells are *not* a failed node.
    """

    updates: dict[str, Update] = field(default_factory=dict)
    message: str = ""
    failed: str | None = None

    def set(
        self, key: str, value: Any, stderr: Any = None, unit: str = "", note: str = ""
    ) -> StateChange:
        """Record a calibrated value with its standard error."""
        value, stderr = plain(value), plain(stderr)
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{key}: refusing to store non-finite value {value}; use flag()")
        self.updates[check_key(key)] = Update(value, stderr, unit, True, note)
        return self

    def flag(self, key: str, reason: str, unit: str = "") -> StateChange:
        """Mark ``key`` invalid, keeping its previous value, and say why."""
        if not reason:
            raise ValueError(f"{key}: a flagged entry needs a reason")
        self.updates[check_key(key)] = Update(None, None, unit, False, reason, keep_value=True)
        return self

    def fail(self, reason: str) -> StateChange:
        """Declare the node's calibration failed as a whole."""
        if not reason:
            raise ValueError("a failed calibration needs a reason")
        self.failed = reason
        return self

    def add_fit(
        self, prefix: str, fit: FitResult, params: dict[str, tuple[str, str]]
    ) -> StateChange:
        """Set one key per fitted parameter, or flag them all if the fit failed.

        ``params`` maps a fit parameter to ``(key suffix, unit)``, e.g.
        ``{"V0": ("bias_offset_V", "V")}`` with prefix ``cells.3``.
        """
        for name, (suffix, unit) in params.items():
            key = f"{prefix}.{suffix}" if prefix else suffix
            if fit.success:
                self.set(key, fit[name], fit.error(name), unit, note=fit.model)
            else:
                self.flag(key, f"{fit.model} fit failed: {fit.message}", unit)
        return self

    def merge(self, other: StateChange) -> StateChange:
        """Combine two changes (``other`` wins on shared keys)."""
        self.updates.update(other.updates)
        self.message = "; ".join(m for m in (self.message, other.message) if m)
        self.failed = self.failed or other.failed
        return self

    @property
    def flagged(self) -> dict[str, str]:
        """The keys this change marks invalid, with their reasons."""
        return {k: u.note for k, u in self.updates.items() if not u.valid}
