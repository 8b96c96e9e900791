"""A per-cell recalibration of a dependency leaves a node fresh only within what the node tolerates.

Two fake nodes: ``offsets`` (per cell: an offset and a width per cell, its check
names the cells that moved) and ``sweep``, which centres a measurement on the
offsets and declares (``consumes``) that it tolerates an offset change up to a
quarter of the cell's width and a width change of 25 %.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from labstack.calibrate import (
    RELATIVE,
    CalibrationGraph,
    Context,
    Node,
    Spec,
    StateChange,
    Uses,
    Verdict,
    combine,
)
from labstack.clock import VirtualClock

N = 6
CHECK_TOL = 0.002  # the offsets' own check: a cell that moved more is recalibrated alone
WIDTH = 0.1


@dataclass
class Lab:
    x: dict[int, float] = field(default_factory=lambda: {i: 0.1 * i for i in range(N)})
    w: dict[int, float] = field(default_factory=lambda: dict.fromkeys(range(N), WIDTH))
    calls: list[tuple[str, str]] = field(default_factory=list)


def offsets_node(lab: Lab) -> Node:
    def acquire(ctx, params, mode):
        cells = sorted(ctx.selection) if ctx.selection else list(range(N))
        lab.calls.append(("offsets", str(mode)))
        ctx.clock.sleep(5.0)
        return {c: (lab.x[c], lab.w[c]) for c in cells}

    def check(results, params, state):
        verdicts = []
        for c, (x, _) in results.items():
            moved = abs(x - state.value(f"cells.{c}.offset"))
            spec = Spec.OUT_OF_SPEC if moved > CHECK_TOL else Spec.IN_SPEC
            verdicts.append(Verdict(spec, f"cell {c} moved {moved:.3g}").about(c))
        return combine(verdicts)

    def update(results, params):
        change = StateChange()
        for c, (x, w) in results.items():
            change.set(f"cells.{c}.offset", x, 1e-4, "V")
            change.set(f"cells.{c}.width", w, 1e-4, "V")
        return change

    return Node("offsets", acquire, lambda d, p: d, check, update, timeout_s=100.0, per_cell=True)


def sweep_node(lab: Lab, consumes=None) -> Node:
    def acquire(ctx, params, mode):
        lab.calls.append(("sweep", str(mode)))
        ctx.clock.sleep(60.0)
        return 1.0

    def check(results, params, state):
        return Verdict(Spec.IN_SPEC, "the sweep found its feature")

    def update(results, params):
        return StateChange().set("sweep.value", results, 0.01, "")

    if consumes is None:
        consumes = {
            "offsets": (
                Uses("cells.*.offset", within=0.25, per="width", why="the sweep is centred on it, +-5 widths"),
                Uses("cells.*.width", within=0.25, per=RELATIVE, why="it only scales the sweep's span"),
            )
        }
    return Node("sweep", acquire, lambda d, p: d, check, update, depends_on=("offsets",), timeout_s=1e6,
                consumes=consumes)


def calibrated(ctx: Context, **sweep_kw) -> tuple[CalibrationGraph, Lab]:
    lab = Lab()
    g = CalibrationGraph(ctx, [offsets_node(lab), sweep_node(lab, **sweep_kw)])
    g.calibrate_all()
    assert ctx.state.node_record("sweep").calibrated_version is not None
    return g, lab


def maintain_after(g: CalibrationGraph, lab: Lab, clock: VirtualClock) -> list[tuple[str, str]]:
    """Age the offsets past their timeout and maintain the graph; the acquisitions it made."""
    clock.sleep(101.0)
    lab.calls.clear()
    g.clear_log()
    g.calibrate_all()
    return list(lab.calls)


def sweep_check_state(g: CalibrationGraph):
    return next(e for e in g.log if e.function == "check_state" and e.node == "sweep")


def test_a_change_within_tolerance_keeps_the_dependent_fresh_with_its_reason(ctx, clock):
    g, lab = calibrated(ctx)
    lab.x[3] += 0.01  # 0.1 width: beyond the offsets' check, within the sweep's 0.25 width
    calls = maintain_after(g, lab, clock)
    assert ("offsets", "calibrate") in calls
    assert ctx.state.node_record("offsets").recalibrated_cells.keys() == {"3"}
    assert ("sweep", "check") not in calls and ("sweep", "calibrate") not in calls
    entry = sweep_check_state(g)
    assert entry.outcome == "pass"
    assert "kept fresh" in entry.detail and "cells [3]" in entry.detail and "cells.3.offset" in entry.detail
    assert "the sweep is centred on it" in entry.detail
    assert "kept fresh" in g.explain()["sweep"]
    assert g.status()["sweep"] == "fresh"
    kept = ctx.state.node_record("sweep").kept_fresh
    assert set(kept) == {"offsets"} and "cells [3]" in kept["offsets"]


def test_a_change_beyond_tolerance_sends_the_dependent_to_check_data(ctx, clock):
    g, lab = calibrated(ctx)
    lab.x[2] += 0.04  # 0.4 width
    calls = maintain_after(g, lab, clock)
    assert ("offsets", "calibrate") in calls and ("sweep", "check") in calls
    entry = sweep_check_state(g)
    assert entry.outcome == "fail"
    assert "dependency offsets recalibrated since" in entry.detail and "cells.2.offset" in entry.detail
    assert ctx.state.node_record("sweep").kept_fresh == {}


def test_small_steps_are_judged_against_the_values_the_dependent_was_verified_with(ctx, clock):
    g, lab = calibrated(ctx)
    lab.x[1] += 0.015  # 0.15 width: tolerated
    assert ("sweep", "check") not in maintain_after(g, lab, clock)
    lab.x[1] += 0.015  # 0.15 width from the last value, 0.3 from the verified one
    calls = maintain_after(g, lab, clock)
    assert ("sweep", "check") in calls
    assert "cells.1.offset moved 0.03" in sweep_check_state(g).detail
    # verified again: the next small step is measured from the new reference
    lab.x[1] += 0.015
    assert ("sweep", "check") not in maintain_after(g, lab, clock)


def test_a_width_change_is_judged_relative_to_the_old_width(ctx, clock):
    g, lab = calibrated(ctx)
    lab.x[4] += 0.005
    lab.w[4] = 1.5 * WIDTH  # 50 %, beyond the 25 % declared
    assert ("sweep", "check") in maintain_after(g, lab, clock)
    assert "cells.4.width" in sweep_check_state(g).detail


def test_a_whole_node_recalibration_makes_the_dependent_stale(ctx, clock):
    g, lab = calibrated(ctx)
    g.calibrate("offsets")  # nothing moved, but every cell re-measured
    assert not g.check_state("sweep")
    assert "recalibrated whole" in g.explain()["sweep"]
    lab.calls.clear()
    g.calibrate_all()
    assert ("sweep", "check") in lab.calls


def test_without_a_declaration_any_recalibration_makes_the_dependent_stale(ctx, clock):
    g, lab = calibrated(ctx, consumes={})
    lab.x[3] += 0.01
    calls = maintain_after(g, lab, clock)
    assert ("sweep", "check") in calls
    assert sweep_check_state(g).detail == "dependency offsets recalibrated since"


def test_a_key_the_dependent_does_not_declare_makes_it_stale(ctx, clock):
    only_offsets = {"offsets": (Uses("cells.*.offset", within=0.25, per="width", why="centred on it"),)}
    g, lab = calibrated(ctx, consumes=only_offsets)
    lab.x[3] += 0.01
    assert ("sweep", "check") in maintain_after(g, lab, clock)
    assert "cells.3.width changed and no tolerance is declared" in sweep_check_state(g).detail


def test_bad_declarations_are_refused_with_the_node_named():
    lab = Lab()
    with pytest.raises(ValueError, match=r"sweep: consumes names 'readout', which is not among its dependencies"):
        sweep_node(lab, consumes={"readout": (Uses("x", 0.1, why="w"),)})
    with pytest.raises(TypeError, match=r"sweep: consumes\['offsets'\] holds"):
        sweep_node(lab, consumes={"offsets": ("cells.*.offset",)})
    with pytest.raises(ValueError, match="say why"):
        Uses("cells.*.offset", 0.1, why=" ")
    with pytest.raises(ValueError, match="within must be >= 0"):
        Uses("cells.*.offset", float("nan"), why="centred on it")

