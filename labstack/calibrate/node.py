"""A calibration node: dependencies, timeout, and four small functions.

The shape follows qibocal's ``Protocol(acquisition, fit, report, update)`` and
Optimus's node (Kelly et al., arXiv:1803.03226):

``acquire(ctx, params, mode) -> data``
    Run the measurement. ``mode`` is :attr:`Mode.CHECK` for ``check_data`` (a
    cheap measurement, a few points) or :attr:`Mode.CALIBRATE` for the full scan.
    Returns a run / dataset; its ``run_id`` (attribute, or ``attrs["run_id"]`` of
    an xarray Dataset) is recorded with every value it produces.
``fit(data, params) -> results``
    Pure: depends on the data alone, never the instrument, so any stored dataset
    can be re-fitted later (:meth:`Node.refit`).
``check(results, params, state) -> Verdict | Spec``
    Judge a *check* acquisition against the current state and tolerances:
    in_spec / out_of_spec / bad_data.
``update(results, params) -> StateChange``
    Turn a *calibrate* acquisition's results into the change the engine applies
    and records; flags failed cells, or ``fail()`` s the whole node.

A node is usually one module in ``calibrations/`` that defines ``NAME``,
``DEPENDS_ON``, ``TIMEOUT_S``, a ``Parameters`` dataclass and the four functions;
:meth:`Node.from_module` reads exactly those names (nothing is guessed from
signatures), plus four optional ones:

``PER_CELL = True``
    ``acquire`` honours ``ctx.selection`` (cell -> reason, or None for all): when
    ``check`` finds only some cells out of spec, the engine recalibrates those
    alone and keeps only their ``cells.<i>.`` entries from ``update``.
``FIXED_POINT = "group"`` and ``CONVERGES = ("couplers.*.zero_coupling_V", ...)``
    the node belongs to a fixed-point group (:mod:`labstack.calibrate.fixed_point`)
    whose members are calibrated again until the listed state keys stop moving;
    ``CARRIED = True``: the node only sits between members (for the order) and is
    checked, not re-measured, after the first pass.
``CONSUMES = {"bias_scurve": (Uses("cells.*.bias_offset_V", within=0.25, per="scurve_width_V", why=...),)}``
    per dependency, the state keys the node reads and how far each may move
    before its own results could change (:mod:`labstack.calibrate.consumes`): a
    dependency recalibrated for some cells alone, every change within these, leaves
    the node fresh instead of sending it to ``check_data``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from labstack.calibrate.change import StateChange
from labstack.calibrate.consumes import Uses, validate
from labstack.calibrate.context import Context
from labstack.calibrate.spec import Mode, Spec, Verdict
from labstack.calibrate.state import CalibrationState

Acquire = Callable[[Context, Any, Mode], Any]
Fit = Callable[[Any, Any], Any]
Check = Callable[[Any, Any, CalibrationState], "Verdict | Spec"]
UpdateFn = Callable[[Any, Any], StateChange]

MODULE_ATTRIBUTES = ("NAME", "acquire", "fit", "check", "update")


@dataclass
class Node:
    """One calibration step in the graph."""

    name: str
    acquire: Acquire
    fit: Fit
    check: Check
    update: UpdateFn
    depends_on: tuple[str, ...] = ()
    timeout_s: float = math.inf
    params: Any = None
    doc: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    #: acquire honours ``ctx.selection``: out-of-spec cells are recalibrated alone
    per_cell: bool = False
    #: the fixed-point group this node belongs to, and the state keys it converges
    fixed_point: str | None = None
    converges: tuple[str, ...] = ()
    #: in its fixed point only checked after the first pass (it converges nothing)
    carried: bool = False
    #: per dependency, what this node reads from it and the change each key tolerates
    consumes: Mapping[str, tuple[Uses, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.name or "." in self.name:
            raise ValueError(f"node name {self.name!r} must be non-empty and contain no '.'")
        if isinstance(self.depends_on, str):
            raise TypeError(f"{self.name}: depends_on must be a sequence of names, not a string")
        self.depends_on = tuple(self.depends_on)
        self.converges = tuple(self.converges)
        if self.name in self.depends_on:
            raise ValueError(f"node {self.name!r} depends on itself")
        if not self.timeout_s > 0:
            raise ValueError(f"{self.name}: timeout_s must be > 0, got {self.timeout_s}")
        self.consumes = validate(self.name, self.depends_on, self.consumes)

    @classmethod
    def from_module(cls, module: ModuleType, params: Any = None, **overrides: Any) -> Node:
        """Build a node from a module defining ``NAME``, ``acquire``, ``fit``, ``check``,
        ``update`` and optionally ``DEPENDS_ON``, ``TIMEOUT_S``, ``Parameters``.

        ``params`` defaults to ``module.Parameters()``; ``overrides`` replace any
        field (e.g. ``timeout_s=60`` for a test).
        """
        missing = [a for a in MODULE_ATTRIBUTES if not hasattr(module, a)]
        if missing:
            raise AttributeError(f"calibration module {module.__name__} lacks {missing}")
        if params is None and hasattr(module, "Parameters"):
            params = module.Parameters()
        fields = dict(
            name=module.NAME,
            acquire=module.acquire,
            fit=module.fit,
            check=module.check,
            update=module.update,
            depends_on=tuple(getattr(module, "DEPENDS_ON", ())),
            timeout_s=float(getattr(module, "TIMEOUT_S", math.inf)),
            params=params,
            doc=(module.__doc__ or "").strip(),
            per_cell=bool(getattr(module, "PER_CELL", False)),
            fixed_point=getattr(module, "FIXED_POINT", None),
            converges=tuple(getattr(module, "CONVERGES", ())),
            carried=bool(getattr(module, "CARRIED", False)),
            consumes=getattr(module, "CONSUMES", {}),
        )
        fields.update(overrides)
        if "depends_on" in overrides and "consumes" not in overrides:
            # a node built with fewer dependencies (another readout) keeps what it consumes from those
            fields["consumes"] = {d: u for d, u in fields["consumes"].items() if d in fields["depends_on"]}
        return cls(**fields)

    def refit(self, data: Any, params: Any = None) -> Any:
        """Fit stored ``data`` again, without any instrument (default: this node's params)."""
        return self.fit(data, self.params if params is None else params)

    def params_dict(self) -> dict[str, Any]:
        """The parameters as a plain dict, for the node record."""
        p = self.params
        if p is None:
            return {}
        if dataclasses.is_dataclass(p) and not isinstance(p, type):
            return dataclasses.asdict(p)
        if isinstance(p, Mapping):
            return dict(p)
        return {"repr": repr(p)}


def run_id_of(data: Any) -> str | None:
    """The run id of an acquisition's result: ``.run_id``, or ``.attrs["run_id"]``."""
    rid = getattr(data, "run_id", None)
    if rid is None:
        attrs = getattr(data, "attrs", None)
        if isinstance(attrs, Mapping):
            rid = attrs.get("run_id")
    return None if rid is None else str(rid)
