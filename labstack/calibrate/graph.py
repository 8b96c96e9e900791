"""The calibration graph and the Optimus walk over it.

Algorithm (Kelly, O'Malley, Neeley, Neven, Martinis, "Physical qubit calibration
on a directed acyclic graph", arXiv:1803.03226), as implemented here:

``check_state(node)`` -- no experiment. Passes only if

1. the node has had ``check_data`` or ``calibrate`` succeed within its timeout;
2. it has not failed ``calibrate`` without a later resolution;
3. no dependency has been *recalibrated* since this node was last checked or
   calibrated (compared by state version, which is strictly ordered; a
   dependency that merely passed ``check_data`` does not invalidate it), unless
   the node declares what it consumes from that dependency and every
   recalibration since re-measured some cells alone, each changed value within
   the node's declared tolerance of the one it was verified against (see
   *Tolerated per-cell changes* below);
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

Two extensions, for what a DAG cannot say:

* **Per-cell recalibration.** A ``check`` whose out-of-spec verdict names cells
  (:attr:`Verdict.cells`) on a node declared ``per_cell`` makes ``calibrate``
  re-measure those cells alone (``ctx.selection``), keep only their ``cells.<i>.``
  entries, and record which cells and why (``NodeRecord.recalibrated_cells``).
* **Tolerated per-cell changes** (:mod:`labstack.calibrate.consumes`). A node may
  declare per dependency the keys it reads and how far each may move before its
  own results could change (``Node.consumes``). A dependency recalibrated for some
  cells alone then leaves the node fresh when every changed key stayed within that,
  compared with the state the node was verified against (``CalibrationState.at``):
  ``check_state`` passes with the reason (the walk log, ``explain()``, and the
  node record's ``kept_fresh``), and no ``check_data`` runs. A whole-node
  recalibration, an undeclared or invalidated key, or a change beyond its tolerance
  fails ``check_state`` as before. The routines declare; the engine decides.
* **Fixed-point groups** (:mod:`labstack.calibrate.fixed_point`). Maintaining any
  member maintains the whole group: pass 1 is the ordinary walk over the members
  in DAG order; if it recalibrated anything, the members are calibrated again
  (fully, or per cell if pass 1 only touched some cells; a *carried* member, one
  that converges nothing itself, is only checked) until the watched keys
  move by no more than noise, at most ``max_passes`` times. A member that raises
  is retried in the same pass (``retries``) from where the pass stood: nodes
  already calibrated in it keep their results. The state records the passes, the
  last change in sigma and the keys still moving (``fixed_point.<group>.*``); a
  group that does not converge marks its members failed with that verdict, so
  nothing downstream is calibrated on values that still move.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from types import ModuleType
from typing import Any

from labstack.calibrate.change import StateChange, plain
from labstack.calibrate.consumes import Judgement, judge
from labstack.calibrate.context import Context
from labstack.calibrate.dag import check_dependencies, topological_order
from labstack.calibrate.fixed_point import (
    Convergence,
    FixedPoint,
    GroupRun,
    compare,
    groups_from_nodes,
    snapshot,
)
from labstack.calibrate.merged import keep_merged
from labstack.calibrate.node import Node, run_id_of
from labstack.calibrate.records import NodeRecord
from labstack.calibrate.spec import Mode, Spec, Verdict
from labstack.calibrate.state import CalibrationState
from labstack.clock import Clock, Elapsed, Stopwatch

#: a member's ``last_outcome`` when its group stopped without converging
NOT_CONVERGED = "fixed point not converged"


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
    #: (dependency, why) for each dependency recalibrated since that the node tolerates
    kept_fresh: tuple[tuple[str, str], ...] = ()

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
    #: what the call cost: lab-clock seconds (fridge time) and wall seconds (None: no experiment)
    lab_s: float | None = None
    wall_s: float | None = None


class CalibrationGraph:
    """Calibration nodes by name, their dependencies, and the Optimus walk.

    The graph is bound to a :class:`Context` (station, clock, state): the state
    records what was calibrated when, so a second ``calibrate_all`` -- even in a
    new process -- redoes only what is stale or out of spec.
    """

    def __init__(
        self,
        context: Context,
        nodes: Iterable[Node] = (),
        *,
        strict_optimus: bool = False,
        groups: Iterable[FixedPoint] = (),
    ) -> None:
        self.context = context
        self.strict_optimus = strict_optimus
        self._nodes: dict[str, Node] = {}
        self._configured_groups: dict[str, FixedPoint] = {}
        self.log: list[LogEntry] = []
        #: the fit results of the last calibrate / check_data of each node, for reports
        self.results: dict[str, Any] = {}
        #: a node's last check_data when its verdict offered a refresh: (data, fit results, cost)
        self._checked: dict[str, tuple[Any, Any, Any]] = {}
        #: each fixed-point group's passes in the last walk that iterated it
        self.convergence: dict[str, GroupRun] = {}
        #: lab and wall time each node's experiments cost in this graph's walks, by function
        self.costs: dict[str, dict[str, Elapsed]] = {}
        #: the last top-level walk's lab and wall time (calibrate_all, maintain, diagnose)
        self.walk_cost: Elapsed | None = None
        self._maintained: dict[str, bool] | None = None
        self._diagnosed: dict[str, bool] | None = None
        self._in_group: set[str] = set()
        #: tolerance judgements by (node, dependency, verified version, state version): the
        #: history they walk is written once per version, and the watch asks every 0.1 s
        self._tolerance_memo: dict[tuple[str, str, int, int], Judgement] = {}
        for node in nodes:
            self.add(node)
        for group in groups:
            self.add_group(group)

    # ------------------------------------------------------------- structure
    def add(self, node: Node) -> Node:
        if node.name in self._nodes:
            raise ValueError(f"node {node.name!r} is already in the graph")
        self._nodes[node.name] = node
        return node

    def add_module(self, module: ModuleType, params: Any = None, **overrides: Any) -> Node:
        """Register the node a ``calibrations/`` module defines."""
        return self.add(Node.from_module(module, params, **overrides))

    def add_group(self, group: FixedPoint) -> FixedPoint:
        """Declare (or configure) a fixed-point group; nodes naming it join its members."""
        if group.name in self._configured_groups:
            raise ValueError(f"fixed-point group {group.name!r} is already in the graph")
        self._configured_groups[group.name] = group
        return group

    @property
    def groups(self) -> dict[str, FixedPoint]:
        """Fixed-point groups by name: configured ones, plus those nodes declare."""
        return groups_from_nodes(self._nodes.values(), self._configured_groups)

    def group_of(self, name: str) -> FixedPoint | None:
        for group in self.groups.values():
            if name in group.members:
                return group
        return None

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
        seen: dict[str, str] = {}
        for group in self.groups.values():
            for m in group.members:
                self[m]
                if m in seen:
                    raise ValueError(f"node {m!r} is in fixed-point groups {seen[m]!r} and {group.name!r}")
                seen[m] = group.name
            self._check_convex(group)

    def _check_convex(self, group: FixedPoint) -> None:
        """No path may leave a group and come back: a pass could not be ordered."""
        members = set(group.members)
        below: set[str] = set()  # ancestors of members
        stack = [d for m in members for d in self[m].depends_on]
        while stack:
            n = stack.pop()
            if n not in below:
                below.add(n)
                stack.extend(self[n].depends_on)
        above = {n for n in self._nodes if members & self._ancestors(n)}
        outside = sorted((below & above) - members)
        if outside:
            raise ValueError(
                f"fixed-point group {group.name!r}: {outside} lie between its members; add them to the group"
            )

    def _ancestors(self, name: str) -> set[str]:
        out: set[str] = set()
        stack = list(self[name].depends_on)
        while stack:
            n = stack.pop()
            if n not in out:
                out.add(n)
                stack.extend(self[n].depends_on)
        return out

    # ------------------------------------------------------------- log
    def calls(self, function: str | None = None) -> list[tuple[str, str]] | list[str]:
        """``(function, node)`` pairs in order, or the node names for one function."""
        if function is None:
            return [(e.function, e.node) for e in self.log]
        return [e.node for e in self.log if e.function == function]

    def clear_log(self) -> None:
        self.log.clear()

    def _log(
        self, function: str, node: str, outcome: str, detail: str = "", spent: Elapsed | None = None
    ) -> None:
        entry = LogEntry(
            function, node, outcome, self.context.clock.now(), detail,
            lab_s=spent.lab_s if spent else None, wall_s=spent.wall_s if spent else None,
        )
        self.log.append(entry)
        self.context.logger.info(
            "%s(%s) -> %s%s%s", function, node, outcome, f": {detail}" if detail else "",
            f" ({spent})" if spent else "",
        )

    def cost(self, function: str | None = None) -> Elapsed:
        """The lab and wall time the nodes' experiments cost (one function, or all)."""
        total = Elapsed()
        for by_function in self.costs.values():
            for fn, spent in by_function.items():
                if function is None or fn == function:
                    total = total + spent
        return total

    # ------------------------------------------------------------- check_state
    def check_state(self, name: str, clock: Clock | None = None) -> StateCheck:
        """Optimus ``check_state``: is the last calibration still good? No experiment."""
        result = self._state_check(name, clock or self.context.clock, {})
        self._log("check_state", name, "pass" if result else "fail", result.reason)
        if result.kept_fresh:
            self._record_kept_fresh(name, dict(result.kept_fresh))
        return result

    def _record_kept_fresh(self, name: str, kept: dict[str, str]) -> None:
        """Write why ``name`` was kept fresh into its node record (once per new reason)."""
        state = self.context.state
        rec = state.node_record(name)
        if rec is None or rec.kept_fresh == kept:
            return
        state.record_node(
            replace(rec, kept_fresh=kept),
            clock=self.context.clock,
            message=f"check_state {name}: kept fresh, " + "; ".join(f"{d} {why}" for d, why in kept.items()),
        )

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
        kept: list[tuple[str, str]] = []
        if result:
            for dep in node.depends_on:
                drec = self.context.state.node_record(dep)
                if drec is None or drec.calibrated_version is None:
                    result = StateCheck(False, f"dependency {dep} never calibrated")
                elif drec.calibrated_version > (rec.verified_version or 0):  # type: ignore[union-attr]
                    judged = self._within_tolerance(node, dep, rec.verified_version or 0)  # type: ignore[union-attr]
                    if judged is None:
                        result = StateCheck(False, f"dependency {dep} recalibrated since")
                    elif not judged.ok:
                        result = StateCheck(False, f"dependency {dep} recalibrated since: {judged.reason}")
                    else:
                        kept.append((dep, judged.reason))
                if result and not (dep_check := self._state_check(dep, clock, memo)):
                    result = StateCheck(False, f"dependency {dep}: {dep_check.reason}")
                if not result:
                    break
        if result and kept:
            result = StateCheck(True, "kept fresh: " + "; ".join(f"dependency {d} {why}" for d, why in kept), tuple(kept))
        memo[name] = result
        return result

    def _within_tolerance(self, node: Node, dep: str, verified: int) -> Judgement | None:
        """Whether ``dep``'s recalibrations since state version ``verified`` leave ``node``'s results as
        they were (:mod:`labstack.calibrate.consumes`); None if the node declares nothing for ``dep``.

        Tolerated only if every calibration of ``dep`` since then re-measured some cells
        alone, and every key ``dep`` set since moved, from the value ``node`` was verified
        against, within what ``node`` declares.
        """
        uses = node.consumes.get(dep)
        if not uses:
            return None
        state = self.context.state
        key = (node.name, dep, verified, state.version)
        if key in self._tolerance_memo:
            return self._tolerance_memo[key]
        try:
            then, cells, whole_at = self._recalibrations_since(dep, verified)
        except (KeyError, ValueError) as exc:  # an in-memory state, or history out of reach:
            # not memoised, since an in-memory state may change under one version
            return Judgement(False, f"cannot compare with version {verified}: {exc}")
        if whole_at is not None:
            judged = Judgement(False, f"recalibrated whole at version {whole_at}")
        else:
            old_entries = then.entries
            changed = {
                k: (old_entries.get(k), e)
                for k, e in state.entries.items()
                if e.node == dep and e.version > verified
            }
            changed |= {k: (e, None) for k, e in old_entries.items() if e.node == dep and k not in state.entries}
            judged = judge(uses, changed, old_entries.get)
            if judged.ok:
                judged = Judgement(True, f"recalibrated cells {sorted(cells)} since, within tolerance: {judged.reason}")
        self._tolerance_memo[key] = judged
        return judged

    def _recalibrations_since(self, dep: str, verified: int) -> tuple[CalibrationState, set[int], int | None]:
        """(the state at ``verified``, the cells ``dep`` re-measured alone since, the latest
        version at which it was recalibrated whole or None), walking the history back."""
        state = self.context.state
        then = state.at(verified)
        cells: set[int] = set()
        version = state.version
        while version > verified:
            snap = state.at(version)
            drec = snap.node_record(dep)
            if drec is not None and drec.calibrated_version == version:
                if not drec.recalibrated_cells:
                    return then, cells, version
                cells |= {int(c) for c in drec.recalibrated_cells}
            version = snap.info().parent
        return then, cells, None

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
        """Why each node is not fresh; for a fresh node, why it was kept fresh although a
        dependency was recalibrated since ('' when nothing needed saying)."""
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
        with self._guard("check_data", name) as watch:
            data = keep_merged(node.acquire(self.context, node.params, Mode.CHECK), node, self.context, Mode.CHECK)
            results = node.fit(data, node.params)
            verdict = Verdict.coerce(node.check(results, node.params, state))
        spent = watch.elapsed()
        if verdict.spec is Spec.OUT_OF_SPEC and verdict.refresh:
            self._checked[name] = (data, results, spent)  # for maintain's refresh from it
        else:
            self._checked.pop(name, None)
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
                    check_lab_s=spent.lab_s,
                    kept_fresh={},
                ),
                clock=clock,
                message=f"check_data {name}: in_spec",
            )
        self._log("check_data", name, str(verdict.spec), verdict.reason, spent)
        return verdict

    # ------------------------------------------------------------- calibrate
    def calibrate(
        self,
        name: str,
        cells: Mapping[int, str] | None = None,
        *,
        fixed_point_pass: int | None = None,
    ) -> bool:
        """Optimus ``calibrate``: full acquisition, fit, update; recorded either way.

        ``cells`` (cell -> why) re-measures only those cells on a ``per_cell`` node:
        the node's acquire sees them as ``ctx.selection``, and only their
        ``cells.<i>.`` entries are kept from its update. Returns True if the node
        calibrated (some cells may still be flagged).
        """
        node = self[name]
        if cells is not None and not node.per_cell:
            raise ValueError(f"node {name!r} does not recalibrate single cells (per_cell is False)")
        selection = {int(c): str(why) for c, why in cells.items()} if cells else None
        with self._guard("calibrate", name) as watch:
            self.context.selection = selection
            try:
                data = keep_merged(
                    node.acquire(self.context, node.params, Mode.CALIBRATE), node, self.context, Mode.CALIBRATE
                )
            finally:
                self.context.selection = None
            results = node.fit(data, node.params)
            self.results[name] = results
            change = node.update(results, node.params)
            if not isinstance(change, StateChange):
                raise TypeError(
                    f"{name}.update returned {type(change).__name__}, expected StateChange"
                )
            if selection is not None:
                change = _only_cells(change, selection)
        return self._record_calibration(name, data, change, watch.elapsed(), selection, fixed_point_pass)

    def refresh(self, name: str) -> bool:
        """Update ``name`` from its last ``check_data`` (whose verdict offered ``refresh``):
        the node's own update of the check's results, recorded as a calibration taken from
        the check's run at the check's cost (no new acquisition)."""
        node = self[name]
        data, results, spent = self._checked.pop(name)
        with self._guard("calibrate", name):
            self.results[name] = results
            change = node.update(results, node.params)
            if not isinstance(change, StateChange):
                raise TypeError(f"{name}.update returned {type(change).__name__}, expected StateChange")
        return self._record_calibration(name, data, change, spent, None, None, refreshed=True)

    def _record_calibration(
        self,
        name: str,
        data: Any,
        change: StateChange,
        spent: Any,
        selection: Mapping[int, str] | None,
        fixed_point_pass: int | None,
        refreshed: bool = False,
    ) -> bool:
        """Apply a calibration's ``change`` and record the node (see :meth:`calibrate`)."""
        node = self[name]
        state, clock = self.context.state, self.context.clock
        run_id = run_id_of(data)
        version = state.next_version()
        utc = clock.utcnow().isoformat()
        old = state.node_record(name) or NodeRecord(name)
        group = self.group_of(name)
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
                last_outcome=("refreshed from its check" if refreshed
                              else "calibrated" + (f" {len(selection)} cells" if selection else "")),
                params=plain(node.params_dict()),
                recalibrated_cells={str(c): why for c, why in (selection or {}).items()},
                fixed_point=group.name if group else None,
                fixed_point_pass=fixed_point_pass,
                lab_s=spent.lab_s,
                wall_s=spent.wall_s,
                check_lab_s=old.check_lab_s,
            )
        what = (f"refresh {name} from its check" if refreshed
                else f"calibrate {name}" + (f" cells {sorted(selection)}" if selection else ""))
        if fixed_point_pass is not None:
            what += f" (fixed point pass {fixed_point_pass})"
        state.apply(
            change,
            clock=clock,
            node=name,
            run_id=run_id,
            node_record=record,
            message=what + (f": FAILED {change.failed}" if change.failed else ""),
        )
        flagged = change.flagged
        detail = change.failed or (f"flagged {sorted(flagged)}" if flagged else "")
        if selection:
            detail = "; ".join(d for d in (f"cells {sorted(selection)}", detail) if d)
        if refreshed:
            # the check's entry already carries its cost: logged again, it would count twice
            detail = "; ".join(d for d in ("refreshed from the check's data", detail) if d)
            spent = None
        self._log("calibrate", name, "failed" if change.failed else "ok", detail, spent)
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
                group = self.group_of(name)
                if group is not None:
                    if name not in self._maintained:  # type: ignore[operator]
                        self._maintain_group(group, force=force)
                    continue
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
        group = self.group_of(name)
        if group is not None and name not in self._in_group:
            self._maintain_group(group)
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
                elif name in self._checked:  # this check's verdict offered a refresh (check_data)
                    result = self.refresh(name)
                else:
                    result = self.calibrate(name, self._cells_to_redo(name, verdict))
        self._maintained[name] = result
        return result

    def _cells_to_redo(self, name: str, verdict: Verdict) -> dict[int, str] | None:
        """The cells to recalibrate alone, or None for the whole node."""
        if verdict.spec is Spec.OUT_OF_SPEC and verdict.cells and self[name].per_cell:
            return dict(verdict.cells)
        return None

    # ------------------------------------------------------------- fixed points
    def converge(self, group_name: str, force: bool = False) -> bool:
        """Bring a fixed-point group to self-consistency (``force``: from a full pass)."""
        group = self.groups[group_name]
        with self._session():
            self._maintain_group(group, force=force)
            return all(self._maintained[m] for m in group.members)  # type: ignore[index]

    def _maintain_group(self, group: FixedPoint, force: bool = False) -> None:
        """Pass 1: the ordinary walk (or full calibrations if ``force``); then iterate."""
        assert self._maintained is not None
        members = [n for n in self.order() if n in group.members]
        state = self.context.state
        self._log("maintain", group.name, "start", f"fixed point of {members}")
        for dep in sorted({d for m in members for d in self[m].depends_on} - set(members)):
            self._maintain(dep)
        unconverged = [m for m in members if (r := state.node_record(m)) and r.last_outcome == NOT_CONVERGED]
        if unconverged and not force:
            # a check_data in spec must not hide that the values never settled: start over
            self._log("maintain", group.name, "redo", f"did not converge last time: {unconverged}")
            force = True
        before = snapshot(group, state.entries)
        start = state.version
        self._in_group |= set(members)
        try:
            for m in members:
                if force:
                    blocked = self._failed_dependencies(m)
                    if blocked:
                        self._log("calibrate", m, "blocked", f"failed dependencies {blocked}")
                        self._maintained[m] = False
                    else:
                        self._maintained[m] = self._calibrate_retrying(group, m, None, 1)
                else:
                    self._maintain(m)
            results = {m: self._maintained[m] for m in members}
            touched = [m for m in members if self._calibrated_since(m, start)]
            if not all(results.values()) or not touched:
                why = "a member failed or is blocked" if not all(results.values()) else "nothing recalibrated"
                self._log("maintain", group.name, "no iteration", why)
                return
            cells = self._pass_selection(members, start)
            self._iterate(group, members, before, cells)
        finally:
            self._in_group -= set(members)

    def _calibrated_since(self, name: str, version: int) -> bool:
        rec = self.context.state.node_record(name)
        return rec is not None and rec.calibrated_version is not None and rec.calibrated_version > version

    def _pass_selection(self, members: list[str], start: int) -> dict[int, str] | None:
        """Cells the next passes redo: those pass 1 redid, if it only redid cells; else None (all)."""
        cells: dict[int, str] = {}
        for m in members:
            if not self._calibrated_since(m, start):
                continue
            rec = self.context.state.node_record(m)
            if not rec.recalibrated_cells:  # type: ignore[union-attr]
                return None
            for c in rec.recalibrated_cells:  # type: ignore[union-attr]
                cells[int(c)] = f"fixed point: recalibrated by {m}"
        return cells

    def _iterate(
        self,
        group: FixedPoint,
        members: list[str],
        before: dict[str, Any],
        cells: dict[int, str] | None,
    ) -> None:
        assert self._maintained is not None
        state = self.context.state
        run = GroupRun(group.name)
        self.convergence[group.name] = run
        after = snapshot(group, state.entries)
        conv = compare(group, before, after, 1)
        run.history.append(conv)
        self._log("converge", group.name, "pass 1", conv.summary())
        passes = 1
        ok = True
        while not conv.converged and passes < group.max_passes and ok:
            passes += 1
            for m in members:
                ok = self._redo(group, m, cells, passes)
                if not ok:
                    break
            before, after = after, snapshot(group, state.entries)
            conv = compare(group, before, after, passes)
            run.history.append(conv)
            self._log("converge", group.name, f"pass {passes}", conv.summary())
        run.passes = passes
        self._record_convergence(group, members, conv, failed_member=not ok)

    def _redo(self, group: FixedPoint, name: str, cells: dict[int, str] | None, n_pass: int) -> bool:
        """One member in pass ``n_pass``: its cells again, or the whole node, or a check."""
        assert self._maintained is not None
        blocked = self._failed_dependencies(name)
        if blocked:
            self._log("calibrate", name, "blocked", f"failed dependencies {blocked}")
            self._maintained[name] = False
            return False
        node = self[name]
        carried = name in group.carried
        if not carried and (cells is None or node.per_cell):
            result = self._calibrate_retrying(group, name, cells, n_pass)
        else:  # carried, or a per-cell pass on a whole-chip member: checked, redone if it moved
            verdict = self.check_data(name)
            result = True if verdict.spec is Spec.IN_SPEC else self._calibrate_retrying(
                group, name, self._cells_to_redo(name, verdict), n_pass
            )
        self._maintained[name] = result
        return result

    def _calibrate_retrying(
        self, group: FixedPoint, name: str, cells: dict[int, str] | None, n_pass: int
    ) -> bool:
        """Calibrate one member; if it raises, retry it (``group.retries`` times) in place.

        The members calibrated before it in this pass keep their results (each
        calibrate commits its own state version), so a fault costs one node's
        measurement, not the pass.
        """
        for attempt in range(group.retries + 1):
            try:
                return self.calibrate(name, cells, fixed_point_pass=n_pass)
            except Exception:
                if attempt >= group.retries:
                    raise
                self._log("calibrate", name, "retry", f"attempt {attempt + 2} of {group.retries + 1}")
        raise AssertionError("unreachable")

    def _record_convergence(
        self, group: FixedPoint, members: list[str], conv: Convergence, failed_member: bool
    ) -> None:
        """``fixed_point.<group>.*`` entries; members marked failed if the group did not converge."""
        assert self._maintained is not None
        state, clock = self.context.state, self.context.clock
        prefix = f"fixed_point.{group.name}"
        change = StateChange()
        change.set(f"{prefix}.passes", conv.passes, note="passes the last walk took")
        change.set(f"{prefix}.last_change_sigma", round(conv.max_sigma, 4), unit="sigma",
                   note="largest |change| / stderr between the last two passes")
        change.set(f"{prefix}.last_change_rms_sigma", round(conv.rms_sigma, 4), unit="sigma")
        change.set(f"{prefix}.threshold_sigma", round(conv.threshold, 4), unit="sigma")
        change.set(f"{prefix}.converged", bool(conv.converged and not failed_member))
        change.set(f"{prefix}.moving", [k for k, _ in conv.moving])
        change.set(f"{prefix}.dropped", list(conv.dropped))
        records: list[NodeRecord] = []
        if not conv.converged and not failed_member:
            reason = conv.summary()
            for m in members:
                rec = state.node_record(m) or NodeRecord(m)
                records.append(replace(rec, failed=reason, last_outcome=NOT_CONVERGED))
                self._maintained[m] = False
        state.apply(
            change,
            clock=clock,
            node=None,
            node_records=tuple(records),
            message=conv.summary(),
        )
        self._log("converge", group.name, "converged" if conv.converged else "NOT converged", conv.summary())

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
        watch = Stopwatch(self.context.clock)
        try:
            yield
        finally:
            self._maintained = self._diagnosed = None
            self.walk_cost = watch.elapsed()

    @contextmanager
    def _guard(self, function: str, name: str) -> Iterator[Stopwatch]:
        """Time a node's experiment (charged to ``costs``); log an exception with where it
        happened, then let it propagate."""
        watch = Stopwatch(self.context.clock)
        try:
            yield watch
        except Exception as exc:
            self._log(function, name, "error", f"{type(exc).__name__}: {exc}", watch.elapsed())
            raise
        finally:
            by_function = self.costs.setdefault(name, {})
            by_function[function] = by_function.get(function, Elapsed()) + watch.elapsed()


def _only_cells(change: StateChange, cells: Mapping[int, str]) -> StateChange:
    """The part of ``change`` about ``cells``: ``cells.<i>.`` keys of those cells only.

    A per-cell recalibration measured nothing else, so chip-wide keys and other
    cells' keys its update may have produced are not new information.
    """
    wanted = tuple(f"cells.{c}." for c in cells)
    out = StateChange(message=change.message, failed=change.failed)
    out.updates = {k: u for k, u in change.updates.items() if k.startswith(wanted)}
    return out


def _age_s(utc: str | None, clock: Clock) -> float:
    """Seconds since ``utc`` by ``clock``'s calendar (virtual or real).

    UTC, not ``clock.now()``: a wall clock's ``now()`` restarts with every process,
    while records must stay comparable across sessions.
    """
    if utc is None:
        return math.inf
    return (clock.utcnow() - datetime.fromisoformat(utc)).total_seconds()
