"""What a node reads from a dependency, and how far it may move before the node must look again.

Optimus's ``check_state`` fails a node whenever a dependency was recalibrated since
the node was last verified. For a dependency recalibrated only for some cells
(``PER_CELL``), that is often too cautious: a node that merely centres its sweeps
on the stored offsets measures the same thing when an offset moved by a small part
of the S-curve width, and a slope measured around an operating point does not
depend on that point to first order. Running its ``check_data`` then spends fridge
time to learn nothing.

A node therefore declares, per dependency, the state keys it consumes and the
change each tolerates, with the physical reason next to it::

    CONSUMES = {
        "bias_scurve": (
            Uses("cells.*.bias_offset_V", within=0.25, per="scurve_width_V",
                 why="the grid is centred on V0 and spans +-3.5 widths"),
            Uses("cells.*.scurve_width_V", within=0.25, per=RELATIVE, why="..."),
        ),
    }

The engine (:mod:`labstack.calibrate.graph`) keeps the node fresh only when every
recalibration of the dependency since the node was verified re-measured some cells
alone, and every key it changed is declared here and moved within its tolerance
from the value the node was verified against (not from the last value: small
steps cannot add up to a large one unseen). Anything else -- a whole-node
recalibration, a key not declared, an entry that became invalid, a change beyond
its tolerance -- makes the node stale as before. The judgement is pure: entries in,
a :class:`Judgement` out.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from labstack.calibrate.records import Entry

#: ``per=RELATIVE``: the tolerance is a fraction of the old value itself
RELATIVE = "relative"
#: ``per=ABSOLUTE``: the tolerance is in the key's own unit
ABSOLUTE = "absolute"


@dataclass(frozen=True)
class Uses:
    """One quantity (a glob over state keys) a node reads from a dependency, and its tolerance.

    The change ``|new - old|`` (largest element for arrays) may be at most
    ``within`` times: the key's unit (``per=ABSOLUTE``), ``|old|``
    (``per=RELATIVE``), or the old value of a sibling key (``per="scurve_width_V"``:
    ``cells.3.bias_offset_V`` is scaled by ``cells.3.scurve_width_V`` as the node was
    verified against it). ``within=0`` tolerates no change; :meth:`unused` any.
    ``why`` is the physical reason, shown wherever the node is kept fresh.
    """

    pattern: str
    within: float
    why: str
    per: str = ABSOLUTE

    def __post_init__(self) -> None:
        if not self.pattern:
            raise ValueError("Uses: the key pattern is empty")
        if not (self.within >= 0):  # also refuses NaN
            raise ValueError(f"Uses({self.pattern!r}): within must be >= 0, got {self.within}")
        if not self.why.strip():
            raise ValueError(f"Uses({self.pattern!r}): say why the tolerance holds (why='...')")
        if not self.per or "." in self.per:
            raise ValueError(f"Uses({self.pattern!r}): per must be {RELATIVE!r}, {ABSOLUTE!r} or a sibling key name")

    @classmethod
    def unused(cls, pattern: str, why: str) -> Uses:
        """A key the dependency writes that the node does not read: any change is harmless."""
        return cls(pattern, math.inf, why)

    def matches(self, key: str) -> bool:
        return fnmatch.fnmatchcase(key, self.pattern)

    def limit(self, key: str, old: Entry, lookup: Callable[[str], Entry | None]) -> tuple[float, str]:
        """(the largest change allowed for ``key``, how it was computed) from the old state."""
        if math.isinf(self.within):
            return math.inf, "not used"
        if self.per == ABSOLUTE:
            return self.within, f"{self.within:g}"
        if self.per == RELATIVE:
            scale = _magnitude(old.value)
            return self.within * scale, f"{self.within:g} x |old| {scale:.3g}"
        sibling = key.rsplit(".", 1)[0] + "." + self.per
        entry = lookup(sibling)
        if entry is None or not entry.valid or not math.isfinite(scale := _magnitude(entry.value)):
            return math.nan, f"{sibling} not valid when verified"
        return self.within * scale, f"{self.within:g} x {self.per} {scale:.3g}"


def validate(node: str, depends_on: Iterable[str], consumes: Mapping[str, Iterable[Uses]]) -> dict[str, tuple[Uses, ...]]:
    """Check a node's declaration: a dict dependency -> tuple of :class:`Uses`, dependencies only."""
    if not isinstance(consumes, Mapping):
        raise TypeError(f"{node}: consumes must map a dependency to Uses, not {type(consumes).__name__}")
    deps = set(depends_on)
    out: dict[str, tuple[Uses, ...]] = {}
    for dep, uses in consumes.items():
        if dep not in deps:
            raise ValueError(f"{node}: consumes names {dep!r}, which is not among its dependencies {sorted(deps)}")
        uses = tuple(uses)
        bad = [u for u in uses if not isinstance(u, Uses)]
        if bad:
            raise TypeError(f"{node}: consumes[{dep!r}] holds {bad[0]!r}, expected Uses(...)")
        out[dep] = uses
    return out


@dataclass(frozen=True)
class Judgement:
    """Whether a dependency's changes since a node was verified leave the node's results as they were."""

    ok: bool
    reason: str


def judge(
    uses: Iterable[Uses],
    changed: Mapping[str, tuple[Entry | None, Entry | None]],
    lookup_old: Callable[[str], Entry | None],
) -> Judgement:
    """Judge every changed key (key -> (entry as verified, entry now)) against the declared tolerances.

    The first key that is undeclared, new, gone, invalid or moved beyond its
    tolerance decides ``ok=False`` and names itself; otherwise the reason gives the
    largest change as a fraction of its tolerance.
    """
    uses = tuple(uses)
    worst: tuple[float, str] = (-1.0, "")
    for key in sorted(changed):
        old, new = changed[key]
        use = next((u for u in uses if u.matches(key)), None)
        if use is None:
            return Judgement(False, f"{key} changed and no tolerance is declared for it")
        if math.isinf(use.within):
            continue
        if old is None or new is None:
            return Judgement(False, f"{key} {'is new' if old is None else 'is gone'}")
        if not (old.valid and new.valid):
            return Judgement(False, f"{key} {'became' if old.valid else 'was'} invalid")
        delta = _change(old.value, new.value)
        limit, how = use.limit(key, old, lookup_old)
        if not (delta <= limit):  # NaN: cannot tell, so not within
            return Judgement(False, f"{key} moved {delta:.3g}, beyond {how} = {limit:.3g}")
        share = delta / limit if limit > 0 else 0.0
        if share > worst[0]:
            worst = (share, f"{key} moved {delta:.3g} of {how} = {limit:.3g} ({use.why})")
    if worst[0] < 0:
        return Judgement(True, "no consumed value changed")
    return Judgement(True, f"largest change {worst[0]:.0%} of its tolerance: {worst[1]}")


def _magnitude(value: Any) -> float:
    try:
        arr = np.abs(np.asarray(value, dtype=float))
    except (TypeError, ValueError):
        return math.nan
    return float(arr.max()) if arr.size else math.nan


def _change(old: Any, new: Any) -> float:
    """Largest ``|new - old|``; NaN when the two cannot be compared as numbers of one shape."""
    try:
        a, b = np.asarray(old, dtype=float), np.asarray(new, dtype=float)
    except (TypeError, ValueError):
        return math.nan
    if a.shape != b.shape:
        return math.nan
    d = np.abs(b - a)
    return float(d.max()) if d.size else 0.0
