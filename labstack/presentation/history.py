"""Parameter histories from the calibration state's versions: what the chip did over time.

Every calibration writes a whole new version of the state, so a parameter's
history is its value in each version a node *calibrated* (messages
``calibrate <node>``). Versions are immutable files, so each is read once
(:meth:`CalibrationState.at`, :meth:`CalibrationState.info`) and what is needed of
it kept: when ``current`` moves, only the new versions are read, following parent
links back to a version already known (a rollback's parent is one), so a long
history costs nothing per update.

Parameters (:data:`PARAMETERS`): per cell V0, S-curve width, ``T_eff = 2 α w`` (the
cell's effective temperature from its gain and width, errors combined as if
independent), correlation time τ_c; for the chip the validation KL divergence.
"""

from __future__ import annotations

import math
import re
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labstack.calibrate import CalibrationState
from labstack.calibrate.records import VersionInfo

_CELL_KEY = re.compile(r"^cells\.(\d+)\.(.+)$")


@dataclass(frozen=True)
class Parameter:
    """One plotted quantity: the state keys it comes from and the nodes that set it."""

    name: str
    label: str
    unit: str
    description: str
    keys: tuple[str, ...]  # suffixes of cells.<i>.<suffix>, or full chip keys
    nodes: tuple[str, ...]
    per_cell: bool = True

    def value(self, entries: dict[str, tuple[Any, Any, bool]], prefix: str) -> tuple[float, float | None, bool] | None:
        """(value, stderr, valid) from one version's entries, or None if it has none."""
        got = [entries.get(f"{prefix}{k}" if self.per_cell else k) for k in self.keys]
        if any(g is None for g in got):
            return None
        if self.name == "T_eff":
            (a, da, va), (w, dw, vw) = got  # type: ignore[misc]
            if a is None or w is None:
                return None
            value = 2 * float(a) * float(w)
            rel = math.hypot(_rel(da, a), _rel(dw, w))
            return value, value * rel if math.isfinite(rel) else None, bool(va and vw)
        value, err, valid = got[0]  # type: ignore[misc]
        if value is None or isinstance(value, (list, str, bool)):
            return None
        return float(value), None if err is None else float(err), bool(valid)


def _rel(err: Any, value: Any) -> float:
    return math.nan if err is None or not value else float(err) / abs(float(value))


PARAMETERS: dict[str, Parameter] = {
    p.name: p
    for p in (
        Parameter("V0", "V0", "V", "bias offset per cell", ("bias_offset_V",), ("bias_scurve",)),
        Parameter("width", "width w", "V", "S-curve width per cell", ("scurve_width_V",), ("bias_scurve",)),
        Parameter("T_eff", "T_eff = 2 α w", "K", "effective temperature per cell",
                  ("alpha_K_per_V", "scurve_width_V"), ("bias_scurve", "effective_temperature")),
        Parameter("tau_c", "τ_c", "s", "correlation time at base per cell", ("tau_c_s",), ("thermalization",)),
        Parameter("KL", "KL", "nats", "validation KL divergence of the chip", ("validation.kl_nats",),
                  ("validation",), per_cell=False),
    )
}


def calibration_events(history: list[VersionInfo]) -> list[dict[str, Any]]:
    """Versions in which a node calibrated (succeeded or failed), oldest first."""
    out = []
    for info in history:
        if info.node and info.message.startswith(f"calibrate {info.node}"):
            out.append({
                "version": info.version, "utc": info.utc, "node": info.node,
                "failed": "FAILED" in info.message, "run_id": info.run_id,
            })
    return out


class StateHistory:
    """The calibration state of one directory, read incrementally for histories."""

    def __init__(self, state_dir: str | Path) -> None:
        self.state_dir = Path(state_dir)
        self._lock = threading.Lock()
        self._version = -1
        self._history: list[VersionInfo] = []
        self._infos: dict[int, VersionInfo] = {}
        self._empty: CalibrationState | None = None
        self._state: CalibrationState | None = None
        self._entries: dict[int, dict[str, tuple[Any, Any, bool]]] = {}

    def refresh(self) -> CalibrationState:
        """The current state; the version list re-read if ``current`` moved."""
        with self._lock:
            version = CalibrationState.current_version(self.state_dir)
            if version != self._version or self._state is None:
                state = self._load()
                v = state.version
                while v > 0 and v not in self._infos:
                    self._infos[v] = (state if v == state.version else state.at(v)).info()
                    v = self._infos[v].parent
                chain, v = [], state.version
                while v > 0:
                    chain.append(self._infos[v])
                    v = self._infos[v].parent
                self._history = chain[::-1]
                self._state, self._version = state, state.version
            return self._state

    def _load(self) -> CalibrationState:
        """The state; an empty one while the directory has none (never created: a reader)."""
        if self.state_dir.is_dir():
            return CalibrationState.load(self.state_dir)
        if self._empty is None:
            self._empty = CalibrationState.load(Path(tempfile.mkdtemp(prefix="labstack-empty-state-")))
        return self._empty

    @property
    def history(self) -> list[VersionInfo]:
        self.refresh()
        return list(self._history)

    def entries_at(self, version: int) -> dict[str, tuple[Any, Any, bool]]:
        """``key -> (value, stderr, valid)`` of one version, read once and kept."""
        with self._lock:
            got = self._entries.get(version)
        if got is None:
            state = self.refresh()
            view = state if version == state.version else state.at(version)
            got = {k: (e.value, e.stderr, e.valid) for k, e in view.entries.items()
                   if not isinstance(e.value, list)}
            with self._lock:
                self._entries[version] = got
        return got

    def series(self, name: str) -> dict[str, Any]:
        """Parameter ``name`` per cell at every calibration of its nodes, and those events."""
        param = PARAMETERS[name]
        events = [e for e in calibration_events(self.history) if e["node"] in param.nodes]
        cells: dict[str, list[dict[str, Any]]] = {}
        for event in events:
            entries = self.entries_at(event["version"])
            if param.per_cell:
                ids = sorted({int(m.group(1)) for k in entries if (m := _CELL_KEY.match(k))})
                targets = [(str(i), f"cells.{i}.") for i in ids]
            else:
                targets = [("chip", "")]
            for cell, prefix in targets:
                found = param.value(entries, prefix)
                if found is None:
                    continue
                value, err, valid = found
                cells.setdefault(cell, []).append({
                    "version": event["version"], "utc": event["utc"], "value": value,
                    "stderr": err, "valid": valid,
                })
        return {
            "parameter": name, "label": param.label, "unit": param.unit,
            "description": param.description, "cells": cells, "events": events,
        }
