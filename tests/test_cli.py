"""The command line, run as a newcomer would: a real subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from labstack.calibrate import CalibrationState
from labstack.sim.truth import GroundTruth


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "labstack.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=600
    )


def test_ground_truth_then_calibrate_that_chip_through_the_cli(tmp_path: Path):
    made = run_cli("sim", "ground-truth", "--seed", "42", "--cells", "16", "-o", "chip.json", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    truth = GroundTruth.load(tmp_path / "chip.json")
    assert truth.n_cells == 16 and truth.seed == 42
    assert json.loads((tmp_path / "chip.json").read_text())["format"] == "labstack-ground-truth/2"  # a realistic chip, the default

    # the S-curves and what they need (every routine runs from the command line in CI's
    # main job, `labstack calibrate`, and from cold in tests/test_routines_graph.py)
    done = run_cli("calibrate", "--truth", "chip.json", "--data-dir", "data", "--no-progress",
                   "--only", "bias_scurve", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "bias_scurve" in done.stdout and "V0 (mV)" in done.stdout
    state = CalibrationState.load(tmp_path / "data" / "calibration_state")
    v0 = np.array([state.value(f"cells.{i}.bias_offset_V") for i in range(16)])
    width = np.array([state.value(f"cells.{i}.scurve_width_V") for i in range(16)])
    assert np.all(np.abs(v0 - truth.cells.v0_V) < 0.02 * 2.0)
    t_eff = truth.noise.t_eff(truth.cryostat.mc_base_K)
    assert np.all(np.abs(width / (t_eff / (2 * truth.cells.alpha_K_per_V)) - 1) < 0.05)


def test_bad_station_file_exits_2_naming_file_and_line(tmp_path: Path):
    station = tmp_path / "broken.yaml"
    station.write_text("instruments:\n  qdac1:\n    address: nowhere\n")
    done = run_cli("calibrate", "--station", str(station), cwd=tmp_path)
    assert done.returncode == 2
    assert f"{station}:2" in done.stderr and "needs a 'type'" in done.stderr


def test_bad_ground_truth_file_exits_2(tmp_path: Path):
    (tmp_path / "chip.json").write_text('{"format": "labstack-ground-truth/1", "n_cells": 4}')
    done = run_cli("calibrate", "--truth", "chip.json", cwd=tmp_path)
    assert done.returncode == 2
    assert "chip.json" in done.stderr and "cells" in done.stderr


def test_help_lists_subcommands(tmp_path: Path):
    done = run_cli("--help", cwd=tmp_path)
    assert done.returncode == 0 and "calibrate" in done.stdout and "sim" in done.stdout


def test_commands_start_without_the_web_stack_and_the_dashboard_defaults_agree():
    # the CLI's own copy of the dashboard's defaults (so that no other command loads FastAPI,
    # uvicorn and matplotlib at start) is the dashboard server's
    code = ("import sys, labstack.cli; "
            "print(sorted(m for m in ('fastapi', 'uvicorn', 'matplotlib') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stdout + done.stderr
    from labstack.cli import dashboard
    from labstack.presentation.dashboard import server

    assert (dashboard.DEFAULT_HOST, dashboard.DEFAULT_PORT) == (server.DEFAULT_HOST, server.DEFAULT_PORT)
