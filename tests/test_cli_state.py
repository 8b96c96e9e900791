"""``labstack state``: history, show, diff and rollback of the calibration state from a shell."""

from __future__ import annotations

from pathlib import Path

import pytest

from labstack.calibrate import STATE_DIRNAME, CalibrationState, StateChange
from labstack.cli import EXIT_BAD_INPUT, EXIT_OK, main
from labstack.clock import VirtualClock


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    state = CalibrationState.load(tmp_path / STATE_DIRNAME)
    clock = VirtualClock()
    state.apply(StateChange().set("cells.0.bias_offset_V", 0.010, 0.001, "V"), clock=clock, node="bias")
    state.apply(StateChange().set("cells.0.bias_offset_V", 0.025, 0.001, "V").set("cells.1.bias_offset_V", -0.01, 0.001, "V"),
                clock=clock, node="bias")
    return tmp_path


def test_history_show_and_diff(data_dir, capsys):
    assert main(["state", "history", "--data-dir", str(data_dir)]) == EXIT_OK
    out = capsys.readouterr().out.splitlines()
    assert [line[2:].split()[0] for line in out] == ["v1", "v2"] and out[1].startswith("*")
    assert main(["state", "show", "1", "--data-dir", str(data_dir)]) == EXIT_OK
    shown = capsys.readouterr().out
    assert "cells.0.bias_offset_V" in shown and "cells.1.bias_offset_V" not in shown
    assert main(["state", "diff", "1", "2", "--data-dir", str(data_dir)]) == EXIT_OK
    diff = capsys.readouterr().out
    assert "~  cells.0.bias_offset_V  0.01" in diff and "+  cells.1.bias_offset_V" in diff


def test_rollback_writes_a_new_version_with_the_old_content(data_dir, capsys):
    assert main(["state", "rollback", "1", "--data-dir", str(data_dir)]) == EXIT_OK
    state = CalibrationState.load(data_dir / STATE_DIRNAME)
    assert state.version == 3 and state.value("cells.0.bias_offset_V") == 0.010
    assert "cells.1.bias_offset_V" not in state
    assert [v.version for v in state.history()] == [1, 2, 3]


@pytest.mark.parametrize("argv", [["diff", "1", "9"], ["rollback", "7"], ["show", "5"], ["rollback", "0"]])
def test_unknown_versions_are_bad_input(data_dir, capsys, argv):
    assert main(["state", *argv, "--data-dir", str(data_dir)]) == EXIT_BAD_INPUT
    assert "no calibration state version" in capsys.readouterr().err
