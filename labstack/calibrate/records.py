"""The records the calibration state holds: value entries and per-node bookkeeping.

Plain dataclasses with ``to_dict`` / ``from_dict`` so every version file is a
readable YAML document and nothing in it needs Python to interpret.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any


@dataclass(frozen=True)
class Entry:
    """One calibrated quantity, with everything needed to trust (or distrust) it."""

    value: Any
    stderr: Any = None
    unit: str = ""
    valid: bool = True
    time_s: float | None = None  # station clock time when set
    utc: str | None = None  # ISO-8601 UTC when set
    run_id: str | None = None  # the run whose data gave this value
    node: str | None = None  # the node that set it
    version: int = 0  # the state version that set it
    note: str = ""  # fit model, or why the entry is invalid

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Entry:
        return cls(**_known(cls, d))


@dataclass(frozen=True)
class NodeRecord:
    """What the engine remembers about a node between runs (drives ``check_state``).

    ``calibrated_version`` changes only when ``calibrate`` succeeds (the node's
    values changed); ``verified_version`` also moves when ``check_data`` finds the
    node in spec. Optimus's "no dependency recalibrated since this node was last
    checked" compares a dependency's ``calibrated_version`` with this node's
    ``verified_version``: state versions are strictly ordered, clock readings can tie.
    """

    name: str
    calibrated_version: int | None = None
    calibrated_utc: str | None = None
    verified_version: int | None = None
    verified_utc: str | None = None
    verified_time_s: float | None = None
    run_id: str | None = None
    failed: str | None = None  # why the last calibrate/diagnose failed, until resolved
    last_outcome: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    #: the cells the last calibrate re-measured alone, with why (empty: the whole node)
    recalibrated_cells: dict[str, str] = field(default_factory=dict)
    #: the fixed-point group the node belongs to, and the pass its last calibrate was
    fixed_point: str | None = None
    fixed_point_pass: int | None = None
    #: what the last calibrate cost: lab-clock (fridge) seconds and wall seconds
    lab_s: float | None = None
    wall_s: float | None = None
    #: the lab seconds of the last check_data that found the node in spec
    check_lab_s: float | None = None
    #: dependencies recalibrated (some cells alone) since the node was verified, each
    #: with why the node was kept fresh (every change within what the node tolerates);
    #: cleared when the node is verified or calibrated again
    kept_fresh: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> NodeRecord:
        return cls(**_known(cls, d))


@dataclass(frozen=True)
class VersionInfo:
    """One line of the state's history."""

    version: int
    parent: int
    utc: str | None
    time_s: float | None
    message: str
    node: str | None
    run_id: str | None


def _known(cls: type, d: dict[str, Any]) -> dict[str, Any]:
    """Only the fields ``cls`` knows, so files written by newer code still load."""
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in d.items() if k in names}
