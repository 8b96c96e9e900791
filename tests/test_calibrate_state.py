"""The versioned calibration state: stamps, history, diff, rollback, atomic writes."""

from __future__ import annotations

import os

import pytest
import yaml

from labstack.calibrate import CalibrationState, StateChange
from labstack.calibrate import state as state_module
from labstack.presentation import to_html


@pytest.fixture
def state(tmp_path) -> CalibrationState:
    return CalibrationState.load(tmp_path / "calibration_state")


def test_apply_stamps_every_entry(state, clock):
    assert state.version == 0 and len(state) == 0
    clock.sleep(12.5)
    v = state.apply(
        StateChange().set("cells.3.bias_offset_V", 0.0123, 0.0004, "V"),
        clock=clock,
        node="bias",
        run_id="run-7",
    )
    assert v == 1 == state.version
    e = state.get("cells.3.bias_offset_V")
    assert (e.value, e.stderr, e.unit, e.valid) == (0.0123, 0.0004, "V", True)
    assert e.time_s == 12.5 and e.utc.startswith("2026-01-01T00:00:12.5")
    assert (e.run_id, e.node, e.version) == ("run-7", "bias", 1)
    with pytest.raises(KeyError, match="cells.4"):
        state.get("cells.4.bias_offset_V")


def test_files_are_readable_yaml_with_current_pointer(state, clock):
    state.apply(StateChange().set("cryostat.mc_tau_s", 312.0, 4.0, "s"), clock=clock)
    path = state.path
    assert (path / "current").read_text().strip() == "v000001.yaml"
    doc = yaml.safe_load((path / "v000001.yaml").read_text())
    assert doc["entries"]["cryostat.mc_tau_s"]["value"] == 312.0
    assert doc["version"] == 1 and doc["parent"] == 0
    reloaded = CalibrationState.load(path)
    assert reloaded.get("cryostat.mc_tau_s") == state.get("cryostat.mc_tau_s")


def test_numpy_values_are_stored_as_plain_python(state, clock):
    np = pytest.importorskip("numpy")
    state.apply(
        StateChange()
        .set("crosstalk.matrix", np.eye(2) * 0.5)
        .set("a", np.float64(2.0), np.float32(0.5)),
        clock=clock,
    )
    again = CalibrationState.load(state.path)
    assert again.value("crosstalk.matrix") == [[0.5, 0.0], [0.0, 0.5]]
    assert type(again.value("a")) is float


def test_flag_keeps_old_value_and_says_why(state, clock):
    state.apply(StateChange().set("cells.1.bias_offset_V", 0.01, 0.001, "V"), clock=clock)
    state.apply(StateChange().flag("cells.1.bias_offset_V", "no transition in scan"), clock=clock)
    e = state.get("cells.1.bias_offset_V")
    assert e.valid is False and e.value == 0.01 and e.unit == "V"
    assert e.note == "no transition in scan"
    state.apply(StateChange().flag("cells.2.bias_offset_V", "dead cell"), clock=clock)
    assert state.get("cells.2.bias_offset_V").value is None


def test_bad_inputs_are_refused(state, clock):
    with pytest.raises(ValueError, match="key"):
        StateChange().set("cells..3", 1.0)
    with pytest.raises(ValueError, match="non-finite"):
        StateChange().set("x", float("nan"))
    with pytest.raises(ValueError, match="reason"):
        StateChange().flag("x", "")


def test_history_diff_and_rollback(state, clock):
    state.apply(StateChange().set("a", 1.0, 0.1).set("b", 2.0), clock=clock, message="first")
    clock.sleep(5)
    state.apply(StateChange().set("a", 1.5, 0.1).set("c", 3.0), clock=clock, message="second")
    hist = state.history()
    assert [h.version for h in hist] == [1, 2]
    assert [h.message for h in hist] == ["first", "second"]
    assert hist[1].parent == 1 and hist[1].time_s == 5.0

    d = state.diff(1, 2)
    assert set(d.added) == {"c"} and set(d.changed) == {"a"} and not d.removed
    assert d.changed["a"][0].value == 1.0 and d.changed["a"][1].value == 1.5
    assert "a" in d.to_table() and "<table" in to_html(d) and "<td>c</td>" in to_html(d)
    assert not state.diff(2, 2)
    assert set(state.diff(2, 1).removed) == {"c"}

    v = state.rollback(1, clock=clock)
    assert v == 3 and state.version == 3
    assert state.value("a") == 1.0 and "c" not in state
    assert [h.version for h in state.history()] == [1, 2, 3]
    assert state.history()[-1].message == "rollback to v1"
    assert not state.diff(1, 3)
    assert state.at(2).value("a") == 1.5
    with pytest.raises(ValueError, match="read-only"):
        state.at(2).apply(StateChange().set("a", 0.0), clock=clock)
    with pytest.raises(KeyError):
        state.rollback(99)


def test_interrupted_update_is_all_or_nothing(state, clock, monkeypatch):
    state.apply(StateChange().set("a", 1.0), clock=clock)
    real_replace = os.replace

    def crash_on_pointer(src, dst):
        if os.path.basename(dst) == "current":
            raise OSError("power cut")
        real_replace(src, dst)

    monkeypatch.setattr(state_module.os, "replace", crash_on_pointer)
    with pytest.raises(OSError, match="power cut"):
        state.apply(StateChange().set("a", 2.0).set("b", 5.0), clock=clock)
    monkeypatch.setattr(state_module.os, "replace", real_replace)

    assert state.version == 1 and state.value("a") == 1.0 and "b" not in state  # in memory
    reloaded = CalibrationState.load(state.path)  # and on disk
    assert reloaded.version == 1 and reloaded.value("a") == 1.0 and "b" not in reloaded
    assert not [p for p in os.listdir(state.path) if ".tmp-" in p]

    v = reloaded.apply(StateChange().set("a", 3.0), clock=clock)
    assert v == 3  # the orphaned v2 is skipped, never reused
    assert [h.version for h in reloaded.history()] == [1, 3]


def test_crash_while_writing_snapshot_leaves_no_trace(state, clock, monkeypatch):
    state.apply(StateChange().set("a", 1.0), clock=clock)

    def crash(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(state_module.os, "replace", crash)
    with pytest.raises(OSError):
        state.apply(StateChange().set("a", 2.0), clock=clock)
    monkeypatch.undo()
    assert sorted(p for p in os.listdir(state.path) if p != ".lock") == ["current", "v000001.yaml"]
    assert CalibrationState.load(state.path).value("a") == 1.0


def test_tables(state, clock):
    state.apply(
        StateChange()
        .set("cells.10.bias_offset_V", 0.02, 0.001, "V")
        .set("cells.9.bias_offset_V", 0.01, 0.001, "V")
        .flag("cells.2.bias_offset_V", "dead cell"),
        clock=clock,
        node="bias",
        run_id="r1",
    )
    text = state.to_table()
    lines = text.splitlines()
    keys = [ln.split()[0] for ln in lines[3:]]
    assert keys == ["cells.2.bias_offset_V", "cells.9.bias_offset_V", "cells.10.bias_offset_V"]
    assert "NO" in lines[3] and "dead cell" in lines[3]
    html = to_html(state)
    assert html.count("<tr") == 4 and html.count('<tr class="bad">') == 1
