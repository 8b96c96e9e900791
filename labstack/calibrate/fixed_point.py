"""Fixed-point groups: nodes whose results depend on each other, iterated until they agree.

Real chips have cyclic dependencies that a DAG cannot express: a cell's S-curve
offset is measured with its couplers idling at their zero-coupling voltage, which
is only known after the couplers were measured around those offsets. Optimus
(Kelly et al., arXiv:1803.03226) breaks such loops with coarse and fine layers of
the same quantity; qubit labs iterate to a fixed point. A :class:`FixedPoint`
group does the latter, and coarse/fine is its two-pass special case.

The members stay ordinary nodes on the DAG (the order *within* one pass is the
DAG's); the group says "after calibrating these, calibrate them again until the
values in ``keys`` stop moving". Moving is measured in the parameters' own
standard errors: between two passes a key changed by

    z = (new - old) / sqrt(stderr_new^2 + stderr_old^2)

which is a standard normal number when nothing but noise changed. Because two
independent measurements of an unchanged quantity never agree exactly, the
criterion cannot be "z = 0": the group has converged when the *largest* |z| over
its ``n`` keys is below the family-wise threshold :func:`family_n_sigma` (n)
(what noise alone reaches with probability 1 %), and the rms of z is below
``max_rms`` (a systematic shift of every key by one sigma would pass the first
test but not this one). A key that is invalid in either pass (a cell that died
between passes) is excluded and listed, never holding the others back. Only keys
a pass actually re-measured are compared (a per-cell pass leaves the others alone).

Everything here is pure (snapshots in, a :class:`Convergence` out); the walk that
runs the passes lives in :mod:`labstack.calibrate.graph`.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from labstack.calibrate.spec import family_n_sigma

#: a snapshot of the watched keys: key -> (value, stderr, state version that set it),
#: or None where invalid
Snapshot = dict[str, "tuple[float, float, int] | None"]


@dataclass(frozen=True)
class FixedPoint:
    """A group of nodes iterated until ``keys`` stop moving, at most ``max_passes`` times.

    ``keys`` are glob patterns over state keys (``cells.*.bias_offset_V``).
    ``n_sigma`` fixes the largest allowed |z| (default: the family-wise threshold
    for the number of keys compared); ``max_rms`` bounds the rms of z.
    """

    name: str
    members: tuple[str, ...]
    keys: tuple[str, ...]
    max_passes: int = 5
    n_sigma: float | None = None
    max_rms: float = 1.5
    #: how often a member that raised is retried within a pass before the walk gives up
    retries: int = 1
    #: members that only sit between others (for the order), converging nothing of their
    #: own: after pass 1 they are checked (check_data) and recalibrated only if out of
    #: spec, instead of re-measured every pass
    carried: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.name or "." in self.name:
            raise ValueError(f"fixed-point group name {self.name!r} must be non-empty, no '.'")
        if len(self.members) < 1:
            raise ValueError(f"fixed-point group {self.name!r} has no members")
        if not self.keys:
            raise ValueError(f"fixed-point group {self.name!r} watches no keys")
        if self.max_passes < 1:
            raise ValueError(f"{self.name}: max_passes must be >= 1, got {self.max_passes}")
        stray = set(self.carried) - set(self.members)
        if stray:
            raise ValueError(f"{self.name}: carried {sorted(stray)} are not members")

    def watches(self, key: str) -> bool:
        return any(fnmatch.fnmatchcase(key, pattern) for pattern in self.keys)

    def threshold(self, n_keys: int) -> float:
        return self.n_sigma if self.n_sigma is not None else family_n_sigma(n_keys)


def snapshot(group: FixedPoint, entries: Mapping[str, Any]) -> Snapshot:
    """The watched keys of a state's ``entries`` (key -> Entry): value and stderr, None if invalid."""
    out: Snapshot = {}
    for key, entry in entries.items():
        if not group.watches(key):
            continue
        value, err = entry.value, entry.stderr
        ok = entry.valid and _finite(value) and _finite(err) and float(err) > 0
        out[key] = (float(value), float(err), int(entry.version)) if ok else None
    return out


@dataclass(frozen=True)
class Convergence:
    """How far a pass moved the group's keys from the pass before, and whether that is noise."""

    group: str
    passes: int
    compared: int  # keys valid in both snapshots
    max_sigma: float  # largest |z|
    rms_sigma: float
    threshold: float
    max_rms: float
    #: keys whose |z| exceeds the threshold, largest first, with their z
    moving: tuple[tuple[str, float], ...] = ()
    #: keys valid before and invalid (or gone) now: a cell that died between passes
    dropped: tuple[str, ...] = ()
    #: keys with no valid previous value (first calibration): nothing to compare yet
    new: tuple[str, ...] = ()
    converged: bool = False

    def summary(self) -> str:
        head = (
            f"fixed point {self.group}: pass {self.passes}, {self.compared} values compared, "
            f"largest change {self.max_sigma:.2f} sigma (threshold {self.threshold:.2f}), "
            f"rms {self.rms_sigma:.2f} (max {self.max_rms:.2f})"
        )
        if self.converged:
            return head + ": converged"
        parts = [head + ": NOT converged"]
        if self.moving:
            shown = ", ".join(f"{k} {z:+.1f} sigma" for k, z in self.moving[:8])
            more = f" and {len(self.moving) - 8} more" if len(self.moving) > 8 else ""
            parts.append(f"still moving: {shown}{more}")
        if self.new:
            parts.append(f"{len(self.new)} values without a previous pass")
        return "; ".join(parts)


def compare(group: FixedPoint, before: Snapshot, after: Snapshot, passes: int) -> Convergence:
    """Judge the change from ``before`` to ``after`` (see the module docstring)."""
    z: dict[str, float] = {}
    dropped, new = [], []
    for key, now in after.items():
        old = before.get(key)
        if now is None:
            if old is not None:
                dropped.append(key)
            continue
        if old is None:
            if key not in before:
                new.append(key)
            continue  # invalid before (flagged), valid now: a revived cell, nothing to compare
        if now[2] == old[2]:
            continue  # not re-measured in this pass (a per-cell pass left it alone)
        sigma = math.hypot(now[1], old[1])
        z[key] = (now[0] - old[0]) / sigma
    dropped += [k for k, v in before.items() if v is not None and k not in after]
    n = len(z)
    threshold = group.threshold(n)
    max_sigma = max((abs(v) for v in z.values()), default=0.0)
    rms = math.sqrt(sum(v * v for v in z.values()) / n) if n else 0.0
    moving = tuple(sorted(((k, v) for k, v in z.items() if abs(v) > threshold), key=lambda kv: -abs(kv[1])))
    converged = not new and max_sigma <= threshold and rms <= group.max_rms
    return Convergence(
        group.name,
        passes,
        n,
        max_sigma,
        rms,
        threshold,
        group.max_rms,
        moving,
        tuple(sorted(dropped)),
        tuple(sorted(new)),
        converged,
    )


def groups_from_nodes(nodes: Iterable[Any], configured: Mapping[str, FixedPoint]) -> dict[str, FixedPoint]:
    """Groups declared by nodes (``node.fixed_point``, ``node.converges``) merged with explicit ones.

    A group configured explicitly wins on its settings; nodes that name it join its
    members, add the keys they converge, and say whether they are *carried*
    (``node.carried``, see :attr:`FixedPoint.carried`). A declared group none of whose
    nodes in the graph converges a key is no loop (e.g. a graph of the S-curve node
    alone): its nodes are walked as ordinary nodes.
    """
    members: dict[str, list[str]] = {}
    keys: dict[str, list[str]] = {}
    carried: dict[str, list[str]] = {}
    for node in nodes:
        g = getattr(node, "fixed_point", None)
        if g:
            members.setdefault(g, []).append(node.name)
            keys.setdefault(g, []).extend(k for k in node.converges if k not in keys.get(g, []))
            if getattr(node, "carried", False):
                carried.setdefault(g, []).append(node.name)
    out = dict(configured)
    for g, names in members.items():
        base = configured.get(g)
        if base is None:
            if not keys[g]:
                continue  # none of its converging members is in this graph: no loop to close
            out[g] = FixedPoint(g, tuple(names), tuple(keys[g]), carried=tuple(carried.get(g, ())))
        else:
            out[g] = replace(
                base,
                members=tuple(dict.fromkeys(base.members + tuple(names))),
                keys=tuple(dict.fromkeys(base.keys + tuple(keys[g]))),
                carried=tuple(dict.fromkeys(base.carried + tuple(carried.get(g, ())))),
            )
    return out


@dataclass
class GroupRun:
    """Bookkeeping of one group's walk (the graph's ``convergence[name]``)."""

    group: str
    passes: int = 0
    history: list[Convergence] = field(default_factory=list)

    @property
    def last(self) -> Convergence | None:
        return self.history[-1] if self.history else None


def _finite(x: Any) -> bool:
    try:
        return math.isfinite(float(x))
    except (TypeError, ValueError):
        return False
