"""The Optimus walk, asserted on the execution log over toy nodes on a virtual clock."""

from __future__ import annotations

import types

import pytest

from labstack.calibrate import (
    CalibrationGraph,
    Context,
    CycleError,
    MissingDependencyError,
    Mode,
    Node,
    Spec,
    StateChange,
    Status,
)
from labstack.calibrate.testing import ToyLab, toy_node


def chain(ctx: Context, lab: ToyLab, **graph_kw) -> CalibrationGraph:
    """A <- B <- C, plus D independent. B times out first."""
    return CalibrationGraph(
        ctx,
        [
            toy_node(lab, "C", ("B",), timeout_s=1000),
            toy_node(lab, "B", ("A",), timeout_s=50),
            toy_node(lab, "A", (), timeout_s=1000),
            toy_node(lab, "D", (), timeout_s=1000),
        ],
        **graph_kw,
    )


def test_cold_start_calibrates_everything_in_dependency_order(ctx):
    lab = ToyLab()
    g = chain(ctx, lab)
    assert set(g.status().values()) == {Status.NEVER}
    status = g.calibrate_all()
    assert status == {n: Status.FRESH for n in ("A", "B", "C", "D")}
    calibrated = g.calls("calibrate")
    assert sorted(calibrated) == ["A", "B", "C", "D"]
    assert calibrated.index("A") < calibrated.index("B") < calibrated.index("C")
    # Never-calibrated nodes skip the (pointless) acquisition of check_data.
    assert all(mode == "calibrate" for _, mode in lab.acquisitions)
    assert g.calls("check_data") == []
    assert ctx.state.value("toy.C.value") == pytest.approx(1.0)


def test_second_call_runs_no_experiment(ctx):
    lab = ToyLab()
    g = chain(ctx, lab)
    g.calibrate_all()
    g.clear_log()
    n_acq = len(lab.acquisitions)
    g.calibrate_all()
    assert g.calls("calibrate") == []
    assert g.calls("check_data") == []
    assert sorted(g.calls("check_state")) == ["A", "B", "C", "D"]
    assert len(lab.acquisitions) == n_acq


def test_timeout_of_b_runs_only_b_check_data(ctx, clock):
    lab = ToyLab()
    g = chain(ctx, lab)
    g.calibrate_all()
    clock.sleep(60)  # past B's 50 s, well within everyone else's 1000 s
    assert g.status()["B"] is Status.STALE
    assert g.status()["C"] is Status.STALE  # its dependency no longer vouched for
    assert g.status()["A"] is Status.FRESH
    g.clear_log()
    assert g.maintain("C")
    assert g.calls("check_data") == ["B"]
    assert g.calls("calibrate") == []
    # In spec: B is marked verified again, and C did not need touching.
    assert g.status() == {n: Status.FRESH for n in ("A", "B", "C", "D")}


def test_out_of_spec_recalibrates_only_that_node(ctx, clock):
    lab = ToyLab()
    g = chain(ctx, lab)
    g.calibrate_all()
    lab.truth["B"] = 1.5  # drifted well beyond tolerance 0.1
    clock.sleep(60)
    g.clear_log()
    assert g.maintain("C")
    assert g.calls("calibrate") == ["B"]
    assert ctx.state.value("toy.B.value") == pytest.approx(1.5)
    # C's check_state fails (a dependency was recalibrated), its cheap check passes.
    assert g.calls("check_data") == ["B", "C"]
    assert [e.outcome for e in g.log if e.function == "check_data"] == ["out_of_spec", "in_spec"]


def test_bad_data_diagnoses_dependencies(ctx, clock):
    lab = ToyLab()
    g = chain(ctx, lab)
    g.calibrate_all()
    lab.truth["A"] = 2.0  # A drifted, but A is within its timeout so nobody knows
    clock.sleep(60)  # B times out; its data are bad because A is wrong
    g.clear_log()
    assert g.maintain("C")
    assert g.calls("diagnose") == ["A"]
    check_outcomes = [(e.node, e.outcome) for e in g.log if e.function == "check_data"]
    assert check_outcomes[:2] == [("B", "bad_data"), ("A", "out_of_spec")]
    assert g.calls("calibrate") == ["A", "B"]
    assert ctx.state.value("toy.A.value") == pytest.approx(2.0)
    assert all(s is Status.FRESH for s in g.status().values())


def test_diagnose_recurses_through_bad_data(ctx, clock):
    lab = ToyLab()
    g = chain(ctx, lab)
    g.calibrate_all()
    lab.truth["A"] = 2.0
    g.clear_log()
    recalibrated = g.diagnose("C")  # C's data are bad (A wrong) -> B bad -> A out of spec
    assert recalibrated
    assert g.calls("diagnose") == ["C", "B", "A"]
    assert g.calls("calibrate") == ["A", "B", "C"]


def test_diagnose_in_spec_changes_nothing(ctx):
    lab = ToyLab()
    g = chain(ctx, lab)
    g.calibrate_all()
    g.clear_log()
    assert g.diagnose("C") is False
    assert g.calls("calibrate") == []
    assert g.calls("check_data") == ["C"]


def test_strict_optimus_diagnose_does_not_calibrate_unexplained_bad_data(ctx):
    lab = ToyLab()
    g = chain(ctx, lab, strict_optimus=True)
    g.calibrate_all()
    lab.broken.add("B")  # B's data are bad but nothing upstream is wrong
    g.clear_log()
    assert g.diagnose("B") is False
    assert g.calls("calibrate") == []
    assert [e.outcome for e in g.log if e.function == "diagnose"][-1] == "unexplained"


def test_failed_node_is_flagged_blocks_dependents_not_others(ctx):
    lab = ToyLab(broken={"B"})
    g = chain(ctx, lab)
    status = g.calibrate_all()
    assert status["B"] is Status.FAILED
    assert status["A"] is Status.FRESH and status["D"] is Status.FRESH
    assert status["C"] is Status.NEVER  # blocked: never calibrated on a broken B
    assert "C" not in g.calls("calibrate")
    assert any(e.node == "C" and e.outcome == "blocked" for e in g.log)
    entry = ctx.state.get("toy.B.value")
    assert entry.valid is False and "no feature" in entry.note
    assert ctx.state.node_record("B").failed == "fit failed"
    # Fixed hardware: the next call retries B and then calibrates C.
    lab.broken.clear()
    g.clear_log()
    assert g.calibrate_all() == {n: Status.FRESH for n in ("A", "B", "C", "D")}
    assert g.calls("calibrate") == ["B", "C"]
    assert ctx.state.get("toy.B.value").valid


def test_state_survives_a_new_process(tmp_path, clock):
    lab = ToyLab()
    g = chain(Context.create(tmp_path, clock=clock), lab)
    g.calibrate_all()
    clock.sleep(10)
    g2 = chain(Context.create(tmp_path, clock=clock), lab)  # fresh objects, same directory
    assert g2.status() == {n: Status.FRESH for n in ("A", "B", "C", "D")}
    g2.calibrate_all()
    assert g2.calls("calibrate") == [] and g2.calls("check_data") == []


def test_force_recalibrates_everything(ctx):
    lab = ToyLab()
    g = chain(ctx, lab)
    g.calibrate_all()
    g.clear_log()
    g.calibrate_all(force=True)
    assert sorted(g.calls("calibrate")) == ["A", "B", "C", "D"]


def test_node_exception_propagates_and_is_logged(ctx):
    lab = ToyLab(crash={"B"})
    g = chain(ctx, lab)
    version = ctx.state.version
    with pytest.raises(RuntimeError, match="not responding"):
        g.maintain("B")
    assert g.log[-1].outcome == "error" and g.log[-1].node == "B"
    assert ctx.state.node_record("B") is None
    assert ctx.state.version == version + 1  # only A's calibration was written


def test_cycle_is_reported_with_its_path(ctx):
    lab = ToyLab()
    g = CalibrationGraph(
        ctx, [toy_node(lab, "a", ("c",)), toy_node(lab, "b", ("a",)), toy_node(lab, "c", ("b",))]
    )
    with pytest.raises(CycleError, match=r"a -> c -> b -> a"):
        g.order()
    with pytest.raises(CycleError):
        g.calibrate_all()
    assert lab.acquisitions == []


def test_unknown_dependency_and_duplicates(ctx):
    lab = ToyLab()
    g = CalibrationGraph(ctx, [toy_node(lab, "a", ("nope",))])
    with pytest.raises(MissingDependencyError, match="nope"):
        g.maintain("a")
    with pytest.raises(ValueError, match="already"):
        g.add(toy_node(lab, "a"))
    with pytest.raises(ValueError, match="itself"):
        toy_node(lab, "x", ("x",))


def test_topological_order_and_dependents(ctx):
    lab = ToyLab()
    g = chain(ctx, lab)
    order = g.order()
    assert order.index("A") < order.index("B") < order.index("C")
    assert g.dependents("A") == ["B"]
    assert g.dependencies("C") == ("B",)


def test_diamond_maintains_shared_dependency_once(ctx, clock):
    lab = ToyLab()
    g = CalibrationGraph(
        ctx,
        [
            toy_node(lab, "root", timeout_s=10),
            toy_node(lab, "left", ("root",)),
            toy_node(lab, "right", ("root",)),
            toy_node(lab, "top", ("left", "right")),
        ],
    )
    g.calibrate_all()
    assert g.calls("calibrate").count("root") == 1
    clock.sleep(20)
    g.clear_log()
    g.maintain("top")
    assert g.calls("check_data") == ["root"]
    assert g.calls("maintain").count("root") == 1


def test_node_from_module_minimal_example(ctx):
    mod = types.ModuleType("calibrations.toy_offset", "Offset of a toy cell (example node).")
    mod.NAME = "toy_offset"
    mod.DEPENDS_ON = ()
    mod.TIMEOUT_S = 3600.0

    from dataclasses import dataclass

    @dataclass
    class Parameters:
        points: int = 5

    def acquire(ctx, params, mode):
        n = params.points if mode is Mode.CALIBRATE else 2
        return {"run_id": f"r{n}", "y": [0.25] * n}

    def fit(data, params):
        return sum(data["y"]) / len(data["y"])

    def check(results, params, state):
        old = state.value("cells.0.offset_V")
        return Spec.IN_SPEC if abs(results - old) < 0.01 else Spec.OUT_OF_SPEC

    def update(results, params):
        return StateChange().set("cells.0.offset_V", results, 0.001, "V")

    mod.Parameters, mod.acquire, mod.fit, mod.check, mod.update = (
        Parameters,
        acquire,
        fit,
        check,
        update,
    )
    node = Node.from_module(mod)
    assert node.params == Parameters() and node.timeout_s == 3600.0
    assert node.doc.startswith("Offset")
    g = CalibrationGraph(ctx, [node])
    g.calibrate_all()
    entry = ctx.state.get("cells.0.offset_V")
    assert entry.value == 0.25 and entry.node == "toy_offset"
    assert ctx.state.node_record("toy_offset").params == {"points": 5}
    assert node.refit({"y": [1.0, 3.0]}) == 2.0  # re-fit stored data, no instrument
    del mod.check
    with pytest.raises(AttributeError, match="check"):
        Node.from_module(mod)


def test_update_must_return_state_change(ctx):
    lab = ToyLab()
    node = toy_node(lab, "a")
    node.update = lambda results, params: {"toy.a.value": 1.0}
    g = CalibrationGraph(ctx, [node])
    with pytest.raises(TypeError, match="StateChange"):
        g.calibrate("a")


def test_every_node_and_the_walk_report_the_fridge_time_they_took(ctx, clock):
    """Lab time is what the fridge pays: each toy acquisition waits 10 s (calibrate) or
    1 s (check_data) on the lab clock, and the graph, the log and the state say so."""
    lab = ToyLab()
    g = chain(ctx, lab)
    g.calibrate_all()
    for name in "ABCD":
        assert g.costs[name]["calibrate"].lab_s == pytest.approx(10.0)
        assert g.costs[name]["calibrate"].wall_s >= 0
        assert ctx.state.node_record(name).lab_s == pytest.approx(10.0)
    assert g.walk_cost.lab_s == pytest.approx(40.0)
    assert g.cost("calibrate").lab_s == pytest.approx(40.0) and g.cost("check_data").lab_s == 0
    assert [e.lab_s for e in g.log if e.function == "calibrate"] == pytest.approx([10.0] * 4)
    assert all(e.lab_s is None for e in g.log if e.function == "check_state")  # no experiment
    clock.sleep(60)  # B times out: the next walk checks B's data only
    g.calibrate_all()
    assert g.walk_cost.lab_s == pytest.approx(1.0)
    assert ctx.state.node_record("B").check_lab_s == pytest.approx(1.0)
    assert ctx.state.node_record("B").lab_s == pytest.approx(10.0)  # its last calibrate's cost stays


def test_status_estimates_the_next_calibrates_fridge_time_from_the_last_runs():
    from labstack.session.status import NodeStatus, StatusReport

    nodes = [
        NodeStatus("cryostat", Status.FRESH, (), "", "2026-01-01T00:00:00", "r1", lab_s=4500.0),
        NodeStatus("bias_scurve", Status.STALE, ("cryostat",), "timed out", None, "r2", lab_s=1800.0),
        NodeStatus("couplers", Status.STALE, ("bias_scurve",), "dependency", None, "r3", lab_s=60.0),
        NodeStatus("validation", Status.NEVER, ("couplers",), "never", None, None),
    ]
    report = StatusReport(nodes, 7, "2026-01-01T02:00:00")
    lab_s, redo, unknown = report.next_calibrate()
    assert lab_s == pytest.approx(1860.0) and redo == ["bias_scurve", "couplers", "validation"]
    assert unknown == ["validation"]
    assert "up to 31 min of fridge time for 3 nodes" in report.render()
    fresh = StatusReport(nodes[:1], 7, "2026-01-01T02:00:00")
    assert fresh.next_calibrate()[1] == [] and "nothing to redo" in fresh.render()


def test_durations_read_as_a_fridge_log():
    from labstack.clock import format_duration

    assert [format_duration(s) for s in (0.421, 12.34, 840, 3900, 21312)] == [
        "0.42 s", "12.3 s", "14 min", "1 h 05 min", "5 h 55 min"
    ]
