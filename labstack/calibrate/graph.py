"""The calibration graph and the Optimus walk over it.

Algorithm (Kelly, O'Malley, Neeley, Neven, Martinis, "Physical qubit calibration
on a directed acyclic graph", arXiv:1803.03226), as implemented here:

``check_state(node)`` -- no experiment. Passes only if

1. the node has had ``check_data`` or ``calibrate`` succeed within its timeout;
2. it has not failed ``calibrate`` without a later resolution;
3. no dependency has been *recalibrated* since this node was last checked or
   calibrated (compared by state version, which is strictly ordered; a
   dependency that merely passed ``check_data`` does not invalidate it);
4. every dependency passes ``check_state``.

``check_data(node)`` -- a cheap measurement judged against the stored values:
``in_spec`` (mark the node verified now), ``out_of_spec`` (values moved; only this
node needs recalibrating), ``bad_data`` (cannot be interpreted, suspect upstream).

``calibrate(node)`` -- the full measurement, fit, and update of the state.

``maintain(node)``::

    for each dependency d: maintain(d)          # make sure the foundations hold
    if check_state(node): return                # nothing to do, no experiment
    result = check_data(node)
    if result == in_spec: return                # (check_data has marked it)
    if result == bad_data:
        for each dependency d: diagnose(d)      # look for a hidden upstream fault
    calibrate(node)

``diagnose(node)`` -> True if it (or something under it) was recalibrated::

    result = check_data(node)                   # check_state is NOT trusted here
    if result == in_spec: return False
    if result == bad_data:
        recalibrated = [diagnose(d) for d in dependencies]
        if not any(recalibrated) and strict_optimus: return False   # see below
    calibrate(node)
    return True

The paper's diagnose returns False when no dependency needed recalibrating
(the bad data are not explained by the graph). We default to calibrating the node
anyway (``strict_optimus=False``): a cheap check that cannot read its data often
just missed a feature that moved out of its narrow window, which the full scan of
``calibrate`` recovers; if calibrate fails too, the failure is recorded and visible.

Choices beyond the paper, each to keep the walk cheap and honest:

* Within one top-level call (``maintain``, ``diagnose``, ``calibrate_all``) each
  node is maintained and diagnosed at most once (diamonds in the DAG would
  otherwise repeat checks).
* A node never successfully calibrated skips ``check_data`` (there is nothing to
  compare with) and goes straight to ``calibrate``.
* If a dependency ends up failed, the node is *blocked*: not calibrated on a
  broken foundation. Independent branches carry on.
* Exceptions from a node (instrument errors, bugs) are logged and re-raised, never
  turned into a verdict: a crash is not "bad data".
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from types import ModuleType
from typing import Any

from labstack.calibrate.change import StateChange, plain
from labstack.calibrate.context import Context
from labstack.calibrate.dag import check_dependencies, topological_order
from labstack.calibrate.merged import keep_merged
from labstack.calibrate.node import Node, run_id_of
from labstack.calibrate.records import NodeRecord
from labstack.calibrate.spec import Mode, Spec, Verdict
from labstack.clock import Clock


class Status(StrEnum):
    """Where a node stands, without running anything."""

    FRESH = "fresh"  # check_state passes
    STALE = "stale"  # calibrated once, but timed out or a dependency changed since
    FAILED = "failed"  # last calibrate (or diagnose) failed, unresolved
    NEVER = "never"  # never calibrated


@dataclass(frozen=True)
class StateCheck:
    """The answer of ``check_state``: truthy when it passes, with the reason when not."""

    ok: bool
    reason: str = ""

    def __bool__(self) -> bool:
        return self.ok


@dataclass(frozen=True)
class LogEntry:
    """One function run on one node (the execution log tests and people read)."""

    function: str  # check_state / check_data / calibrate / diagnose / maintain
    node: str
    outcome: str  # pass/fail, in_spec/out_of_spec/bad_data, ok/failed, blocked, error
    time_s: float
    detail: str = ""


class CalibrationGraph:
    """Calibration nodes by name, their dependencies, and the Optimus walk.

    The graph is bound to a :class:`Context` (station, clock, state): the state
    records what was calibrated when, so a second ``calibrate_all`` -- even in a
    new process -- redoes only what is stale or out of spec.
    """

    def __init__(
        self, context: Context, nodes: Iterable[Node] = (), *, strict_optimus: bool = False
    ) -> None:
        self.context = context
        self.strict_optimus = strict_optimus
        self._nodes: dict[str, Node] = {}
        self.log: list[LogEntry] = []
        #: the fit results of the last calibrate / check_data of each node, for reports
        self.results: dict[str, Any] = {}
        self._maintained: dict[str, bool] | None = None
        self._diagnosed: dict[str, bool] | None = None
        for node in nodes:
            self.add(node)

    # ------------------------------------------------------------- structure
    def add(self, node: Node) -> Node:
        if node.name in self._nodes:
            raise ValueError(f"node {node.name!r} is already in the graph")
        self._nodes[node.name] = node
        return node

    def add_module(self, module: ModuleType, params: Any = None, **overrides: Any) -> Node:
        """Register the node a ``calibrations/`` module defines."""
        return self.add(Node.from_module(module, params, **overrides))

    def __getitem__(self, name: str) -> Node:
        try:
            return self._nodes[name]
        except KeyError:
            raise KeyError(f"no node {name!r} in the graph (have: {sorted(self._nodes)})") from None

    def __contains__(self, name: object) -> bool:
        return name in self._nodes

    @property
    def names(self) -> list[str]:
        return list(self._nodes)

    def dependencies(self, name: str) -> tuple[str, ...]:
        return self[name].depends_on

    def dependents(self, name: str) -> list[str]:
        """Nodes that depend directly on ``name``."""
        self[name]
        return [n for n, node in self._nodes.items() if name in node.depends_on]

    def order(self) -> list[str]:
        """Topological order (dependencies first); raises on cycles or unknown names."""
        return topological_order({n: node.depends_on for n, node in self._nodes.items()})

    def validate(self) -> None:
        check_dependencies({n: node.depends_on for n, node in self._nodes.items()})
        self.order()

    # ------------------------------------------------------------- log
    def calls(self, function: str | None = None) -> list[tuple[str, str]] | list[str]:
        """``(function, node)`` pairs in order, or the node names for one function."""
        if function is None:
            return [(e.function, e.node) for e in self.log]
        return [e.node for e in self.log if e.function == function]

    def clear_log(self) -> None:
        self.log.clear()

    def _log(self, function: str, node: str, outcome: str, detail: str = "") -> None:
        entry = LogEntry(function, node, outcome, self.context.clock.now(), detail)
        self.log.append(entry)
        self.context.logger.info(
            "%s(%s) -> %s%s", function, node, outcome, f": {detail}" if detail else ""
        )

    # ------------------------------------------------------------- check_state
    def check_state(self, name: str, clock: Clock | None = None) -> StateCheck:
        """Optimus ``check_state``: is the last calibration still good? No experiment."""
        result = self._state_check(name, clock or self.context.clock, {})
        self._log("check_state", name, "pass" if result else "fail", result.reason)
        return result

    def _state_check(self, name: str, clock: Clock, memo: dict[str, StateCheck]) -> StateCheck:
        if name in memo:
            return memo[name]
        node = self[name]
        rec = self.context.state.node_record(name)
        result = StateCheck(True)
        if rec is None or rec.calibrated_version is None:
            result = StateCheck(False, "never calibrated")
        elif rec.failed:
            result = StateCheck(False, f"failed: {rec.failed}")
        else:
            age = _age_s(rec.verified_utc, clock)
            if age < 0:
                result = StateCheck(False, f"verified {-age:.0f} s in the future (clock reset?)")
            elif age > node.timeout_s:
                result = StateCheck(False, f"timed out: age {age:.4g} s > {node.timeout_s:.4g} s")
        if result:
            for dep in node.depends_on:
                drec = self.context.state.node_record(dep)
                if drec is None or drec.calibrated_version is None:
                    result = StateCheck(False, f"dependency {dep} never calibrated")
                elif drec.calibrated_version > (rec.verified_version or 0):  # type: ignore[union-attr]
                    result = StateCheck(False, f"dependency {dep} recalibrated since")
                elif not (dep_check := self._state_check(dep, clock, memo)):
                    result = StateCheck(False, f"dependency {dep}: {dep_check.reason}")
                if not result:
                    break
        memo[name] = result
        return result

    def status(self, clock: Clock | None = None) -> dict[str, Status]:
        """Each node's :class:`Status` in topological order, running nothing."""
        clock = clock or self.context.clock
        memo: dict[str, StateCheck] = {}
        out: dict[str, Status] = {}
        for name in self.order():
            rec = self.context.state.node_record(name)
            if rec is not None and rec.failed:
                out[name] = Status.FAILED
            elif rec is None or rec.calibrated_version is None:
                out[name] = Status.NEVER
            elif self._state_check(name, clock, memo):
                out[name] = Status.FRESH
            else:
                out[name] = Status.STALE
        return out

    def explain(self, clock: Clock | None = None) -> dict[str, str]:
        """Why each node is not fresh ('' when it is)."""
        clock = clock or self.context.clock
        memo: dict[str, StateCheck] = {}
        return {n: self._state_check(n, clock, memo).reason for n in self.order()}

    # ------------------------------------------------------------- check_data
    def check_data(self, name: str) -> Verdict:
        """Optimus ``check_data``: cheap measurement, judged in/out of spec or bad data.

        In spec marks the node verified now (a new state version).
        """
        node = self[name]
        state = self.context.state
        rec = state.node_record(name)
        if rec is None or rec.calibrated_version is None:
            verdict = Verdict(Spec.OUT_OF_SPEC, "never calibrated: nothing to check against")
            self._log("check_data", name, f"skipped -> {verdict.spec}", verdict.reason)
            return verdict
        with self._guard("check_data", name):
            data = keep_merged(node.acquire(self.context, node.params, Mode.CHECK), node, self.context, Mode.CHECK)
            results = node.fit(data, node.params)
            verdict = Verdict.coerce(node.check(results, node.params, state))
        run_id = run_id_of(data)
        if verdict.spec is Spec.IN_SPEC:
            clock = self.context.clock
            version = state.next_version()
            state.record_node(
                replace(
                    rec,
                    verified_version=version,
                    verified_utc=clock.utcnow().isoformat(),
                    verified_time_s=clock.now(),
                    run_id=run_id,
                    failed=None,
                    last_outcome=str(Spec.IN_SPEC),
                ),
                clock=clock,
                message=f"check_data {name}: in_spec",
            )
        self._log("check_data", name, str(verdict.spec), verdict.reason)
        return verdict

    # ------------------------------------------------------------- calibrate
    def calibrate(self, name: str) -> bool:
        """Optimus ``calibrate``: full acquisition, fit, update; recorded either way.

        Returns True if the node calibrated (some cells may still be flagged).
        """
        node = self[name]
        state, clock = self.context.state, self.context.clock
        with self._guard("calibrate", name):
            data = keep_merged(
                node.acquire(self.context, node.params, Mode.CALIBRATE), node, self.context, Mode.CALIBRATE
            )
            results = node.fit(data, node.params)
            self.results[name] = results
            change = node.update(results, node.params)
            if not isinstance(change, StateChange):
                raise TypeError(
                    f"{name}.update returned {type(change).__name__}, expected StateChange"
                )
        run_id = run_id_of(data)
        version = state.next_version()
        utc = clock.utcnow().isoformat()
        old = state.node_record(name) or NodeRecord(name)
        if change.failed:
            record = replace(
                old, failed=change.failed, last_outcome="calibrate failed", run_id=run_id
            )
        else:
            record = NodeRecord(
                name,
                calibrated_version=version,
                calibrated_utc=utc,
                verified_version=version,
                verified_utc=utc,
                verified_time_s=clock.now(),
                run_id=run_id,
                failed=None,
                last_outcome="calibrated",
                params=plain(node.params_dict()),
            )
        state.apply(
            change,
            clock=clock,
            node=name,
            run_id=run_id,
            node_record=record,
            message=f"calibrate {name}" + (f": FAILED {change.failed}" if change.failed else ""),
        )
        flagged = change.flagged
        detail = change.failed or (f"flagged {sorted(flagged)}" if flagged else "")
        self._log("calibrate", name, "failed" if change.failed else "ok", detail)
        return not change.failed

    # ------------------------------------------------------------- maintain / diagnose
    def maintain(self, name: str) -> bool:
        """Bring ``name`` and everything it depends on into spec; True if it is."""
        with self._session():
            return self._maintain(name)

    def diagnose(self, name: str) -> bool:
        """Search for and fix a fault at or under ``name``; True if anything recalibrated."""
        with self._session():
            return self._diagnose(name)

    def calibrate_all(self, force: bool = False) -> dict[str, Status]:
        """Maintain every node (``force``: calibrate every node in order). Returns the status.

        On a cold chip this calibrates everything in dependency order; called again,
        it only redoes what is stale or out of spec.
        """
        with self._session():
            for name in self.order():
                if force:
                    blocked = self._failed_dependencies(name)
                    if blocked:
                        self._log("calibrate", name, "blocked", f"failed dependencies {blocked}")
                        continue
                    self._maintained[name] = self.calibrate(name)  # type: ignore[index]
                else:
                    self._maintain(name)
        return self.status()

    def _maintain(self, name: str) -> bool:
        assert self._maintained is not None
        if name in self._maintained:
            return self._maintained[name]
        node = self[name]
        self._log("maintain", name, "start")
        deps_ok = [self._maintain(d) for d in node.depends_on]
        if not all(deps_ok):
            bad = [d for d, ok in zip(node.depends_on, deps_ok, strict=True) if not ok]
            self._log("maintain", name, "blocked", f"dependencies not in spec: {bad}")
            result = False
        elif self.check_state(name):
            result = True
        elif self._never_calibrated(name):
            self._log("maintain", name, "never calibrated", "no reference for check_data")
            result = self.calibrate(name)
        else:
            verdict = self.check_data(name)
            if verdict.spec is Spec.IN_SPEC:
                result = True
            else:
                if verdict.spec is Spec.BAD_DATA:
                    for d in node.depends_on:
                        self._diagnose(d)
                blocked = self._failed_dependencies(name)
                if blocked:
                    self._log("maintain", name, "blocked", f"failed dependencies {blocked}")
                    result = False
                else:
                    result = self.calibrate(name)
        self._maintained[name] = result
        return result

    def _diagnose(self, name: str) -> bool:
        assert self._diagnosed is not None
        if name in self._diagnosed:
            return self._diagnosed[name]
        node = self[name]
        self._log("diagnose", name, "start")
        if self._never_calibrated(name):
            self._log("diagnose", name, "never calibrated", "no reference for check_data")
            verdict = Verdict(Spec.OUT_OF_SPEC, "never calibrated")
        else:
            verdict = self.check_data(name)
        if verdict.spec is Spec.IN_SPEC:
            result = False
        else:
            if verdict.spec is Spec.BAD_DATA:
                recalibrated = [self._diagnose(d) for d in node.depends_on]
                if not any(recalibrated) and self.strict_optimus:
                    self._log(
                        "diagnose", name, "unexplained", "bad data, no dependency recalibrated"
                    )
                    self._diagnosed[name] = False
                    return False
            blocked = self._failed_dependencies(name)
            if blocked:
                self._log("diagnose", name, "blocked", f"failed dependencies {blocked}")
                result = False
            else:
                result = self.calibrate(name)
        self._diagnosed[name] = result
        return result

    def _never_calibrated(self, name: str) -> bool:
        rec = self.context.state.node_record(name)
        return rec is None or rec.calibrated_version is None

    def _failed_dependencies(self, name: str) -> list[str]:
        state = self.context.state
        out = []
        for d in self[name].depends_on:
            rec = state.node_record(d)
            if rec is None or rec.calibrated_version is None or rec.failed:
                out.append(d)
        return out

    @contextmanager
    def _session(self) -> Iterator[None]:
        """One top-level walk: memoize maintain/diagnose so diamonds run once."""
        if self._maintained is not None:  # nested call: join the running session
            yield
            return
        self.validate()
        self._maintained, self._diagnosed = {}, {}
        try:
            yield
        finally:
            self._maintained = self._diagnosed = None

    @contextmanager
    def _guard(self, function: str, name: str) -> Iterator[None]:
        """Log a node's exception with where it happened, then let it propagate."""
        try:
            yield
        except Exception as exc:
            self._log(function, name, "error", f"{type(exc).__name__}: {exc}")
            raise


def _age_s(utc: str | None, clock: Clock) -> float:
    """Seconds since ``utc`` by ``clock``'s calendar (virtual or real).

    UTC, not ``clock.now()``: a wall clock's ``now()`` restarts with every process,
    while records must stay comparable across sessions.
    """
    if utc is None:
        return math.inf
    return (clock.utcnow() - datetime.fromisoformat(utc)).total_seconds()
