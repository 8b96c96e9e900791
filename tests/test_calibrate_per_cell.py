"""Per-cell recalibration: only the cells a check finds out of spec are measured again."""

from __future__ import annotations

import pytest

from labstack.calibrate import CalibrationGraph, Context, FixedPoint, Spec, Verdict, combine
from labstack.calibrate.testing import LoopLab, loop_node


def calibrated_loop(ctx: Context, **lab_kw) -> tuple[CalibrationGraph, LoopLab]:
    lab = LoopLab(**{"n_cells": 10, "k": 0.5, "m": 0.5, "seed": 11, **lab_kw})
    g = CalibrationGraph(
        ctx,
        [loop_node(lab, "offsets"), loop_node(lab, "zeros", ("offsets",))],
        groups=[FixedPoint("loop", ("offsets", "zeros"), ("cells.*.offset", "cells.*.zero"), max_passes=8)],
    )
    g.calibrate_all()
    assert ctx.state.value("fixed_point.loop.converged") is True
    return g, lab


def test_only_the_drifted_cell_is_remeasured_and_the_state_says_why(ctx, clock):
    g, lab = calibrated_loop(ctx)
    versions = {c: ctx.state.get(f"cells.{c}.offset").version for c in range(10)}
    lab.x[4] += 0.03  # 30 sigma, beyond the 5-sigma tolerance
    clock.sleep(3601)  # both nodes stale by timeout: maintain checks them
    lab.calls.clear()
    g.clear_log()
    g.calibrate_all()
    calibrations = [c for c in lab.calls if c[1] == "calibrate"]
    assert calibrations and all(cells == (4,) for _, _, cells in calibrations)
    rec = ctx.state.node_record("offsets")
    assert set(rec.recalibrated_cells) == {"4"}
    assert "moved" in rec.recalibrated_cells["4"] or "fixed point" in rec.recalibrated_cells["4"]
    # the others were not touched; cell 4 found its new offset within its error
    for c in range(10):
        e = ctx.state.get(f"cells.{c}.offset")
        if c == 4:
            assert abs(e.value - lab.x[4]) < 4 * e.stderr
        else:
            assert e.version == versions[c]
    # the loop was closed for that cell too (its zero re-measured around the new offset)
    assert any(name == "zeros" and cells == (4,) for name, _, cells in calibrations)
    assert ctx.state.value("fixed_point.loop.converged") is True


def test_the_first_recalibration_reason_names_the_check(ctx, clock):
    g, lab = calibrated_loop(ctx, seed=12)
    lab.x[7] -= 0.05
    clock.sleep(3601)
    g.clear_log()
    g.calibrate_all()
    first = next(e for e in g.log if e.function == "calibrate" and e.node == "offsets")
    assert "cells [7]" in first.detail
    history = [v.message for v in ctx.state.history()]
    assert any("calibrate offsets cells [7]" in m for m in history)


def test_a_node_without_per_cell_support_is_recalibrated_whole(ctx, clock):
    lab = LoopLab(n_cells=6, seed=13, k=0.0, m=0.0)
    g = CalibrationGraph(ctx, [loop_node(lab, "offsets", per_cell=False)])
    g.calibrate_all()
    lab.x[2] += 0.03
    clock.sleep(3601)
    lab.calls.clear()
    g.calibrate_all()
    assert [c for c in lab.calls if c[1] == "calibrate"] == [("offsets", "calibrate", tuple(range(6)))]
    assert ctx.state.node_record("offsets").recalibrated_cells == {}
    with pytest.raises(ValueError, match="per_cell"):
        g.calibrate("offsets", {2: "test"})


def test_selection_is_cleared_even_when_acquire_raises(ctx):
    lab = LoopLab(n_cells=4, seed=14, k=0.0, m=0.0)
    g = CalibrationGraph(ctx, [loop_node(lab, "offsets")])
    g.calibrate_all()
    lab.crash_at.add(("offsets", 2))
    with pytest.raises(RuntimeError):
        g.calibrate("offsets", {1: "test"})
    assert ctx.selection is None


def test_combine_keeps_cells_only_when_every_out_of_spec_verdict_names_them():
    a = Verdict(Spec.OUT_OF_SPEC, "cell 1 moved").about(1)
    b = Verdict(Spec.OUT_OF_SPEC, "cell 3 moved").about(3)
    ok = Verdict(Spec.IN_SPEC).about(5)
    assert dict(combine([a, ok, b]).cells) == {1: "cell 1 moved", 3: "cell 3 moved"}
    chip = Verdict(Spec.OUT_OF_SPEC, "readout gain moved")
    assert dict(combine([a, chip]).cells) == {}
    bad = Verdict(Spec.BAD_DATA, "no feature")
    assert combine([a, bad]).spec is Spec.BAD_DATA and not combine([a, bad]).cells
    assert ok.cells == {}
