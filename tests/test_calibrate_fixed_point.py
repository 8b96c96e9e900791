"""Fixed-point groups: a cyclic pair of toy nodes iterated until it stops moving.

The toy (:class:`labstack.calibrate.testing.LoopLab`) measures offsets around the
stored coupler zeros and the zeros around the stored offsets, the shape of the bias
offset / coupler zero loop on a chip. Its truth is known, so the tests assert that
the walk reaches it, not merely that it stops.
"""

from __future__ import annotations

import numpy as np
import pytest

from labstack.calibrate import (
    NOT_CONVERGED,
    CalibrationGraph,
    Context,
    FixedPoint,
    Status,
)
from labstack.calibrate.fixed_point import compare, snapshot
from labstack.calibrate.records import Entry
from labstack.calibrate.testing import LoopLab, ToyLab, loop_node, toy_node
from labstack.clock import VirtualClock

KEYS = ("cells.*.offset", "cells.*.zero")


@pytest.fixture
def ctx(tmp_path) -> Context:
    return Context.create(tmp_path / "data", station=None, clock=VirtualClock())


def loop_graph(ctx: Context, lab: LoopLab, max_passes: int = 8, with_downstream: bool = False):
    toys = ToyLab()
    nodes = [loop_node(lab, "offsets"), loop_node(lab, "zeros", ("offsets",))]
    if with_downstream:
        nodes.append(toy_node(toys, "validation", ("zeros",)))
    group = FixedPoint("loop", ("offsets", "zeros"), KEYS, max_passes=max_passes)
    return CalibrationGraph(ctx, nodes, groups=[group]), toys


def pulls(ctx: Context, lab: LoopLab, what: str, truth: dict[int, float]) -> np.ndarray:
    out = []
    for c in range(lab.n_cells):
        e = ctx.state.get(f"cells.{c}.{what}")
        if e.valid:
            out.append((e.value - truth[c]) / e.stderr)
    return np.array(out)


def test_a_single_pass_is_many_sigma_off_and_the_fixed_point_is_not(ctx):
    """The reason for the engine feature: one DAG pass leaves k*z errors of ~100 sigma."""
    lab = LoopLab(n_cells=16, k=0.6, m=0.6, seed=1)
    g = CalibrationGraph(ctx, [loop_node(lab, "offsets"), loop_node(lab, "zeros", ("offsets",))])
    g.calibrate_all()
    assert np.sqrt(np.mean(pulls(ctx, lab, "offset", lab.x) ** 2)) > 20

    ctx2 = Context.create(ctx.data_dir.parent / "fp", station=None, clock=VirtualClock())
    lab2 = LoopLab(n_cells=16, k=0.6, m=0.6, seed=1)
    g2, _ = loop_graph(ctx2, lab2)
    status = g2.calibrate_all()
    assert set(status.values()) == {Status.FRESH}
    for what, truth in (("offset", lab2.x), ("zero", lab2.z)):
        p = pulls(ctx2, lab2, what, truth)
        # the fixed point leaves a residual of (k m)^passes times the first error; the
        # criterion stops it once that is within noise, so pulls are noise-sized
        assert np.max(np.abs(p)) < 4.5, (what, p)
        assert np.sqrt(np.mean(p**2)) < 2.0, (what, p)


def test_state_records_passes_and_last_change(ctx):
    lab = LoopLab(n_cells=8, k=0.5, m=0.5, seed=2)
    g, _ = loop_graph(ctx, lab)
    g.calibrate_all()
    run = g.convergence["loop"]
    passes = ctx.state.value("fixed_point.loop.passes")
    assert passes == run.passes == len(run.history)
    # (k m)^n shrinks the first error (~0.1 V / 1 mV = 100 sigma) below noise in a few passes
    assert 3 <= passes <= 8
    assert ctx.state.value("fixed_point.loop.converged") is True
    last = ctx.state.value("fixed_point.loop.last_change_sigma")
    assert last == pytest.approx(run.last.max_sigma, abs=1e-3)
    assert last <= ctx.state.value("fixed_point.loop.threshold_sigma")
    assert ctx.state.value("fixed_point.loop.moving") == []
    # each member's record names its group and the pass that set its values
    rec = ctx.state.node_record("zeros")
    assert rec.fixed_point == "loop" and rec.fixed_point_pass == passes
    # every pass but the first compared all 16 keys; the first had nothing to compare
    assert run.history[0].new and all(h.compared == 16 for h in run.history[1:])


def test_second_walk_runs_nothing(ctx):
    lab = LoopLab(n_cells=8, seed=3)
    g, _ = loop_graph(ctx, lab)
    g.calibrate_all()
    n = len(lab.calls)
    g.clear_log()
    g.calibrate_all()
    assert len(lab.calls) == n
    assert g.calls("calibrate") == []


def test_runaway_loop_stops_with_a_verdict_naming_what_moves(ctx):
    lab = LoopLab(n_cells=6, k=1.3, m=1.3, seed=4)  # k m > 1: every pass makes it worse
    g, toys = loop_graph(ctx, lab, max_passes=4, with_downstream=True)
    status = g.calibrate_all()
    assert status["offsets"] is Status.FAILED and status["zeros"] is Status.FAILED
    # nothing downstream is calibrated on values that still move
    assert "validation" not in g.calls("calibrate")
    assert ("validation", "calibrate") not in toys.acquisitions
    assert ctx.state.value("fixed_point.loop.converged") is False
    assert ctx.state.value("fixed_point.loop.passes") == 4
    moving = ctx.state.value("fixed_point.loop.moving")
    assert moving and all(k.startswith("cells.") for k in moving)
    rec = ctx.state.node_record("offsets")
    assert rec.last_outcome == NOT_CONVERGED
    assert "NOT converged" in rec.failed and moving[0] in rec.failed
    # and a later walk does not let a lucky check_data paper over it: it starts over
    g.clear_log()
    n = len(lab.calls)
    g.calibrate_all()
    assert [c for c in lab.calls[n:] if c[1] == "check"] == []
    assert g.calls("calibrate")[:2] == ["offsets", "zeros"]


def test_a_cell_dying_between_passes_is_flagged_and_excluded(ctx):
    lab = LoopLab(n_cells=8, k=0.5, m=0.5, seed=5)
    g, _ = loop_graph(ctx, lab)
    offsets = g["offsets"]
    inner = offsets.acquire

    def dies_after_first_pass(c, p, mode):
        if len([x for x in lab.calls if x[0] == "offsets"]) >= 1:
            lab.dead.add(3)
        return inner(c, p, mode)

    offsets.acquire = dies_after_first_pass
    g.calibrate_all()
    assert ctx.state.value("fixed_point.loop.converged") is True
    assert not ctx.state.get("cells.3.offset").valid
    assert "dead" in ctx.state.get("cells.3.offset").note
    dropped = set().union(*(h.dropped for h in g.convergence["loop"].history))
    assert "cells.3.offset" in dropped
    # the others still reached the truth
    p = pulls(ctx, lab, "offset", lab.x)
    assert len(p) == 7 and np.max(np.abs(p)) < 4.5


def test_a_fault_mid_pass_resumes_from_the_failed_node_and_loses_nothing(ctx):
    lab = LoopLab(n_cells=8, k=0.5, m=0.5, seed=6)
    # calls: 1 offsets, 2 zeros (pass 1), 3 offsets, 4 zeros (pass 2) <- fails once
    lab.crash_at.add(("zeros", 4))
    g, _ = loop_graph(ctx, lab)
    g.calibrate_all()
    names = [c[0] for c in lab.calls]
    # the retry re-measures zeros only: the offsets of pass 2 (call 3) are kept
    assert names[:5] == ["offsets", "zeros", "offsets", "zeros", "zeros"]
    retries = [e for e in g.log if e.outcome == "retry"]
    assert [e.node for e in retries] == ["zeros"]
    assert ctx.state.node_record("zeros").fixed_point_pass == ctx.state.value("fixed_point.loop.passes")
    assert ctx.state.value("fixed_point.loop.converged") is True


def test_a_fault_that_persists_propagates_and_keeps_the_completed_nodes(ctx):
    lab = LoopLab(n_cells=4, k=0.5, m=0.5, seed=7)
    g, _ = loop_graph(ctx, lab)
    zeros = g["zeros"]

    def broken(c, p, mode):
        if len(lab.calls) >= 3:
            raise RuntimeError("sampler gone")
        return inner(c, p, mode)

    inner = zeros.acquire
    zeros.acquire = broken
    with pytest.raises(RuntimeError, match="sampler gone"):
        g.calibrate_all()
    # pass 2's offsets were measured and committed before zeros failed twice
    assert ctx.state.node_record("offsets").fixed_point_pass == 2
    assert [e.outcome for e in g.log if e.node == "zeros" and e.function == "calibrate"][-2:] == [
        "retry",
        "error",
    ]


def test_members_must_not_have_an_outsider_between_them(ctx):
    lab, toys = LoopLab(), ToyLab()
    nodes = [
        loop_node(lab, "offsets"),
        toy_node(toys, "middle", ("offsets",)),
        loop_node(lab, "zeros", ("middle",)),
    ]
    g = CalibrationGraph(ctx, nodes, groups=[FixedPoint("loop", ("offsets", "zeros"), KEYS)])
    with pytest.raises(ValueError, match="middle"):
        g.validate()


def test_compare_is_in_units_of_the_standard_errors():
    group = FixedPoint("g", ("a",), ("cells.*.v",))
    e = lambda v, s, ver, valid=True: Entry(v, s, valid=valid, version=ver)  # noqa: E731
    before = snapshot(group, {"cells.0.v": e(1.0, 0.1, 1), "cells.1.v": e(2.0, 0.1, 1), "other": e(0, 1, 1)})
    after = snapshot(group, {"cells.0.v": e(1.0 + 0.1 * 2**0.5 * 5, 0.1, 2), "cells.1.v": e(9.0, 0.1, 2, False)})
    assert set(before) == {"cells.0.v", "cells.1.v"}
    conv = compare(group, before, after, passes=2)
    assert conv.compared == 1 and conv.max_sigma == pytest.approx(5.0)
    assert conv.dropped == ("cells.1.v",)
    assert not conv.converged and conv.moving[0][0] == "cells.0.v"
    # unchanged version: not re-measured, not compared
    same = compare(group, before, before, passes=2)
    assert same.compared == 0 and same.converged


def test_groups_declared_by_nodes_and_a_carried_member_only_checked_after_pass_one(ctx):
    """A member that converges nothing itself (it only sits between two that do) is
    measured in pass 1 and afterwards only checked, not re-measured every pass."""
    lab, toys = LoopLab(n_cells=6, k=0.5, m=0.5, seed=8), ToyLab()
    offsets = loop_node(lab, "offsets")
    middle = toy_node(toys, "middle", ("offsets",), timeout_s=3600)
    toys.deps["middle"] = ()  # the toy judges its data by toy ancestors only; offsets is none
    zeros = loop_node(lab, "zeros", ("middle",))
    offsets.fixed_point, offsets.converges = "loop", ("cells.*.offset",)
    zeros.fixed_point, zeros.converges = "loop", ("cells.*.zero",)
    middle.fixed_point, middle.carried = "loop", True
    g = CalibrationGraph(ctx, [offsets, middle, zeros])
    group = g.groups["loop"]
    assert group.members == ("offsets", "middle", "zeros") and group.carried == ("middle",)
    assert group.keys == ("cells.*.offset", "cells.*.zero")
    g.calibrate_all()
    passes = ctx.state.value("fixed_point.loop.passes")
    assert passes >= 3 and ctx.state.value("fixed_point.loop.converged") is True
    modes = [mode for name, mode in toys.acquisitions if name == "middle"]
    assert modes == ["calibrate"] + ["check"] * (passes - 1)
    assert len([c for c in lab.calls if c[0] == "offsets"]) == passes


def test_a_declared_group_without_its_converging_members_is_no_loop(ctx):
    lab = LoopLab(n_cells=4, seed=9)
    offsets = loop_node(lab, "offsets")
    offsets.fixed_point = "loop"  # declares the group, converges nothing itself
    g = CalibrationGraph(ctx, [offsets])
    assert g.groups == {}
    g.calibrate_all()
    assert len(lab.calls) == 1 and "fixed_point.loop.passes" not in ctx.state


def test_forced_walk_recalibrates_the_group_from_a_full_pass(ctx):
    lab = LoopLab(n_cells=6, k=0.5, m=0.5, seed=10)
    g, _ = loop_graph(ctx, lab)
    g.calibrate_all()
    first = ctx.state.value("fixed_point.loop.passes")
    n = len(lab.calls)
    g.clear_log()
    g.calibrate_all(force=True)
    again = lab.calls[n:]
    # pass 1 of a forced walk calibrates every member (no cheap checks); the loop was at its
    # fixed point, so pass 1 moves nothing beyond noise from the stored values: done
    assert all(mode == "calibrate" and cells == tuple(range(6)) for _, mode, cells in again)
    assert [name for name, _, _ in again] == ["offsets", "zeros"]
    assert ctx.state.value("fixed_point.loop.passes") == 1 < first
    assert ctx.state.value("fixed_point.loop.converged") is True
    assert g.convergence["loop"].last.compared == 12
