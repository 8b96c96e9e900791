"""One writer at a time and damage detected: the calibration state's lock and checksums."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from labstack.calibrate import (
    CalibrationState,
    StateChange,
    StateConflictError,
    StateDamagedError,
    StateLockedError,
)
from labstack.cli import main
from labstack.clock import VirtualClock


def _three_versions(path: Path) -> CalibrationState:
    state = CalibrationState.load(path)
    clock = VirtualClock()
    for k in range(3):
        change = StateChange().set(f"cells.{k}.bias_offset_V", 0.01 * (k + 1), 0.001, "V")
        for j in range(12):  # enough entries that a cut lands mid-file
            change.set(f"cells.{k}.extra_{j}", float(j), 0.1, "V")
        state.apply(change, clock=clock, node="bias_scurve", message=f"update {k + 1}")
    return state


def test_a_truncated_current_version_is_named_and_the_last_good_one_offered(tmp_path, capsys):
    data = tmp_path / "data"
    path = data / "calibration_state"
    _three_versions(path)
    v3 = path / "v000003.yaml"
    text = v3.read_text()
    v3.write_text(text[: len(text) // 2].rsplit("\n", 1)[0] + "\n")  # cut at a line end: still YAML
    assert isinstance(yaml.safe_load(v3.read_text()), dict)  # the old failure: it parses, with fewer entries

    with pytest.raises(StateDamagedError) as info:
        CalibrationState.load(path)
    message = str(info.value)
    assert message.startswith(f"{v3}:") and "cut short" in message
    assert "last good version is v2" in message and "labstack state rollback 2" in message
    assert info.value.last_good is not None and info.value.last_good.version == 2

    assert main(["state", "history", "--data-dir", str(data)]) == 2
    assert "v000003.yaml" in capsys.readouterr().err
    assert main(["state", "rollback", "2", "--data-dir", str(data)]) == 0
    state = CalibrationState.load(path)
    assert state.version == 4 and [h.version for h in state.history()] == [1, 2, 4]
    assert state.value("cells.1.bias_offset_V") == 0.02 and "cells.2.bias_offset_V" not in state
    assert "v3 was damaged" in state.history()[-1].message
    assert v3.exists()  # nothing is deleted


def test_an_edited_version_fails_its_checksum_and_an_old_file_loads_unverified(tmp_path):
    path = tmp_path / "state"
    _three_versions(path)
    v1 = path / "v000001.yaml"
    text = v1.read_text()
    assert text.splitlines()[-1].startswith("sha256: ")
    v1.write_text(text.replace("value: 0.01", "value: 0.05", 1))
    state = CalibrationState.load(path)  # current (v3) is fine
    with pytest.raises(ValueError, match=r"v000001\.yaml: damaged: its content does not match"):
        state.history()
    # a file from before checksums (no marker, no checksum line) loads as it always did
    legacy = "\n".join(line.split("  #")[0] for line in text.splitlines()[:-1]) + "\n"
    v1.write_text(legacy)
    assert [h.version for h in CalibrationState.load(path).history()] == [1, 2, 3]


def test_a_writer_that_skipped_the_lock_is_refused_not_forked(tmp_path):
    path = tmp_path / "state"
    a, b = CalibrationState.load(path), CalibrationState.load(path)
    clock = VirtualClock()
    a.apply(StateChange().set("x", 1.0), clock=clock)
    with pytest.raises(StateConflictError, match=r"moved on to v1 since this process read v0"):
        b.apply(StateChange().set("x", 2.0), clock=clock)
    b.reload()
    assert b.apply(StateChange().set("x", 2.0), clock=clock) == 2
    assert [h.parent for h in CalibrationState.load(path).history()] == [0, 1]


def test_the_writer_lock_is_reentrant_in_a_thread_and_exclusive_across_threads(tmp_path):
    state = CalibrationState.load(tmp_path / "state")
    errors: list[BaseException] = []
    with state.writer(), state.writer():  # re-entrant
        def other() -> None:
            try:
                with CalibrationState.load(tmp_path / "state").writer(wait=0.2):
                    pass
            except BaseException as exc:  # noqa: BLE001 - handed to the test thread
                errors.append(exc)

        thread = threading.Thread(target=other)
        thread.start()
        thread.join()
    assert len(errors) == 1 and isinstance(errors[0], StateLockedError)
    assert "another thread of this process" in str(errors[0])
    with CalibrationState.load(tmp_path / "state").writer(wait=0):  # released
        pass


def _calibrate(data: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "labstack.cli", "calibrate", "--seed", "3", "--cells", "4", "--only", "readout",
         "--data-dir", str(data), "--no-progress", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def _stderr_until(process: subprocess.Popen[str], phrase: str, timeout: float = 60.0) -> str:
    """Read ``process``'s stderr line by line until ``phrase`` shows (or it ends)."""
    seen = ""
    deadline = time.monotonic() + timeout
    assert process.stderr is not None
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        seen += line
        if phrase in line or (not line and process.poll() is not None):
            return seen
    raise AssertionError(f"no {phrase!r} on stderr within {timeout} s: {seen!r}")


def test_two_calibrations_started_together_end_with_one_linear_history(tmp_path):
    data = tmp_path / "data"
    holder = CalibrationState.load(data / "calibration_state")
    # hold the lock while both start, so they really start together, then let them race
    with holder.writer(who="test holding the lock"):
        waiting = [_calibrate(data, "--wait"), _calibrate(data, "--wait")]
        for process in waiting:  # each says who it waits for
            seen = _stderr_until(process, "waiting for")
            assert f"written by pid {os.getpid()}" in seen and "test holding the lock" in seen
    results = [p.communicate(timeout=180) for p in waiting]
    assert [p.returncode for p in waiting] == [0, 0], results
    state = CalibrationState.load(data / "calibration_state")
    history = state.history()
    assert [h.parent for h in history] == [h.version - 1 for h in history]  # linear: one parent chain
    first, second = sorted(results, key=lambda r: "fresh   calibrated" not in r[0])
    assert "readout                fresh   calibrated" in first[0]
    # the second started from the first's result: nothing to recalibrate (its own lab's clock
    # restarted at zero, so it re-checked the data once and recorded that), and it reports
    # the version that is current at the end
    assert "kept (still valid)" in second[0]
    reported = [int(out.split("calibration state v")[1].split(":")[0]) for out, _ in (first, second)]
    assert reported[0] < reported[1] == state.version


def test_without_wait_a_second_calibration_stops_with_exit_code_1_naming_the_writer(tmp_path, capsys):
    data = tmp_path / "data"
    held, release = threading.Event(), threading.Event()

    def hold() -> None:  # another writer (a thread here; a process is the test above)
        with CalibrationState.load(data / "calibration_state").writer(who="labstack watch pass"):
            held.set()
            release.wait(30)

    thread = threading.Thread(target=hold)
    thread.start()
    try:
        held.wait(10)
        code = main(["calibrate", "--cells", "4", "--only", "readout", "--data-dir", str(data), "--no-progress"])
    finally:
        release.set()
        thread.join(10)
    assert code == 1
    err = capsys.readouterr().err
    assert "busy: calibration state" in err and "being written by another thread" in err
    assert CalibrationState.load(data / "calibration_state").version == 0  # nothing was touched
