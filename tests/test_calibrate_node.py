"""A per-cell S-curve node end to end: failed cells are flagged, the others calibrate."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from labstack.calibrate import (
    CalibrationGraph,
    CalibrationState,
    Context,
    FitQuality,
    Mode,
    Node,
    Spec,
    StateChange,
    Status,
    Tolerance,
    Verdict,
    combine,
)
from labstack.clock import VirtualClock
from labstack.fit import FitResult, fit_each, fit_logistic, logistic

TRUE_V0 = {0: 0.05, 1: -0.10, 2: 0.00, 3: 0.12}


@dataclass
class Parameters:
    v_span: float = 0.5
    points: int = 41
    shots: int = 200
    check_points: int = 9
    tolerance_V: float = 0.01


@dataclass
class Scan:
    run_id: str
    V: np.ndarray
    counts: dict[int, np.ndarray]
    shots: int


class Chip:
    def __init__(self) -> None:
        self.v0 = dict(TRUE_V0)
        self.dead = {2}
        self.rng = np.random.default_rng(7)
        self.runs = 0


def make_node(chip: Chip) -> Node:
    def acquire(ctx: Context, p: Parameters, mode: Mode) -> Scan:
        chip.runs += 1
        n = p.points if mode is Mode.CALIBRATE else p.check_points
        V = np.linspace(-p.v_span, p.v_span, n)
        counts = {}
        for cell, v0 in chip.v0.items():
            prob = np.zeros(n) if cell in chip.dead else logistic(V, v0, 0.04)
            counts[cell] = chip.rng.binomial(p.shots, prob)
        ctx.clock.sleep(n * 0.1)
        return Scan(f"scurve-{chip.runs}", V, counts, p.shots)

    def fit(data: Scan, p: Parameters) -> dict[int, FitResult]:
        return fit_each(data.counts, lambda k: fit_logistic(data.V, k, data.shots))

    def check(results: dict[int, FitResult], p: Parameters, state: CalibrationState) -> Verdict:
        verdicts = []
        for cell, f in results.items():
            key = f"cells.{cell}.bias_offset_V"
            if not state.get(key).valid:
                continue  # a known-dead cell does not make the data bad
            verdicts.append(FitQuality().judge(key, f))
            if f.success:
                e = state.get(key)
                verdicts.append(
                    Tolerance(p.tolerance_V).judge(key, f["V0"], f.error("V0"), e.value, e.stderr)
                )
        return combine(verdicts)

    def update(results: dict[int, FitResult], p: Parameters) -> StateChange:
        change = StateChange()
        for cell, f in results.items():
            change.add_fit(
                f"cells.{cell}", f, {"V0": ("bias_offset_V", "V"), "w": ("bias_width_V", "V")}
            )
        if all(not f.success for f in results.values()):
            change.fail("no cell produced an S-curve")
        return change

    return Node("bias", acquire, fit, check, update, timeout_s=3600, params=Parameters())


@pytest.fixture
def setup(tmp_path):
    clock = VirtualClock()
    chip = Chip()
    ctx = Context.create(tmp_path, clock=clock)
    return chip, ctx, CalibrationGraph(ctx, [make_node(chip)]), clock


def test_dead_cell_flagged_others_calibrated(setup):
    chip, ctx, g, _ = setup
    assert g.calibrate_all() == {"bias": Status.FRESH}
    state = ctx.state
    for cell in (0, 1, 3):
        e = state.get(f"cells.{cell}.bias_offset_V")
        assert e.valid and abs(e.value - TRUE_V0[cell]) < 4 * e.stderr
        assert e.run_id == "scurve-1" and e.unit == "V"
    dead = state.get("cells.2.bias_offset_V")
    assert not dead.valid and "no transition" in dead.note
    assert "cells.2.bias_offset_V" in g.log[-1].detail  # flagged cells named in the log
    assert "NO" in state.to_table()


def test_drifted_cell_recalibrates_on_timeout(setup):
    chip, ctx, g, clock = setup
    g.calibrate_all()
    clock.sleep(1800)
    g.clear_log()
    g.calibrate_all()
    assert g.calls() == [("maintain", "bias"), ("check_state", "bias")]
    clock.sleep(3600)
    chip.v0[1] += 0.05  # well past tolerance
    g.clear_log()
    g.calibrate_all()
    assert [e.outcome for e in g.log if e.function == "check_data"] == ["out_of_spec"]
    assert g.calls("calibrate") == ["bias"]
    assert ctx.state.value("cells.1.bias_offset_V") == pytest.approx(-0.05, abs=0.01)
    d = ctx.state.diff(1, ctx.state.version)
    assert "cells.1.bias_offset_V" in d.changed


def test_all_cells_dead_fails_the_node(setup):
    chip, ctx, g, _ = setup
    chip.dead = set(TRUE_V0)
    assert g.calibrate_all() == {"bias": Status.FAILED}
    assert ctx.state.node_record("bias").failed == "no cell produced an S-curve"
    assert all(not ctx.state.get(k).valid for k in ctx.state.keys("cells"))


def test_tolerance_and_quality_verdicts():
    t = Tolerance(abs=0.01, n_sigma=3)
    assert t.judge("x", 0.105, 0.001, 0.100, 0.001).spec is Spec.IN_SPEC  # small move
    assert t.judge("x", 0.150, 0.001, 0.100, 0.001).spec is Spec.OUT_OF_SPEC
    assert t.judge("x", 0.150, 0.05, 0.100, 0.001).spec is Spec.IN_SPEC  # big but not significant
    assert t.judge("x", float("nan"), 0.1, 0.1).spec is Spec.BAD_DATA
    # a guard band: a significant move not shown to be within the tolerance is out of spec
    guarded = Tolerance(abs=0.01, n_sigma=3, guard_sigma=2)
    assert t.judge("x", 0.109, 0.001, 0.100, 0.001).spec is Spec.IN_SPEC  # 9 +- 1.4 mV: no guard
    assert guarded.judge("x", 0.109, 0.001, 0.100, 0.001).spec is Spec.OUT_OF_SPEC
    assert guarded.judge("x", 0.105, 0.001, 0.100, 0.001).spec is Spec.IN_SPEC  # 5 + 2.8 < 10 mV
    assert guarded.judge("x", 0.109, 0.005, 0.100, 0.001).spec is Spec.IN_SPEC  # not significant
    bad = FitResult(model="m", values={"a": 1}, chi2_reduced=10, absolute_sigma=True)
    assert FitQuality().judge("k", bad).spec is Spec.BAD_DATA
    unknown_errors = FitResult(model="m", values={"a": 1}, chi2_reduced=10, absolute_sigma=False)
    assert FitQuality().judge("k", unknown_errors).spec is Spec.IN_SPEC
    assert FitQuality().judge("k", FitResult.failed("m", "x")).spec is Spec.BAD_DATA
    assert combine([]).spec is Spec.BAD_DATA
    v = combine(
        [Verdict(Spec.IN_SPEC), Verdict(Spec.OUT_OF_SPEC, "a"), Verdict(Spec.BAD_DATA, "b")]
    )
    assert v == Verdict(Spec.BAD_DATA, "b")
