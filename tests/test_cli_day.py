"""Day-to-day commands as a newcomer runs them: measure, runs, report, replay, status."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from labstack.cli import build_parser, main
from labstack.presentation import write_report
from tests.golden.scripts import LAB

GOLDEN_RUNS = Path(__file__).parent / "golden" / "runs"
SEQUENCE = """\
name: iv_curve
metadata: {sample: A3}
sequence:
  type: sweep
  dim: v
  settle: 0.001
  setpoints: [[qdac1.ch01.dc_constant_V, {linspace: [-0.3, 0.3, 4]}]]
  body:
    - {type: read, param: ls372.ch06.temperature, name: t_mc}
"""


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "labstack.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=600
    )


def test_measure_list_replay_from_the_command_line(tmp_path: Path, capsys):
    (tmp_path / "iv.yaml").write_text(SEQUENCE)
    seed, cells = LAB.split(",")
    lab = ["--seed", seed.split("=")[1], "--cells", cells.split("=")[1]]
    done = run_cli("measure", "iv.yaml", *lab, "--data-dir", "data", "--no-progress", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "4 points" in done.stdout and "completed" in done.stdout

    assert main(["runs", "--data-dir", str(tmp_path / "data"), "--json"]) == 0
    (info,) = json.loads(capsys.readouterr().out)
    assert info["name"] == "iv_curve" and info["metadata"] == {"sample": "A3"}

    replayed = run_cli("replay", info["id"][:17], "--data-dir", "data", "--no-progress", cwd=tmp_path)
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    assert "bit-for-bit identical" in replayed.stdout and "result: PASS" in replayed.stdout


def test_bad_input_exits_2_naming_it(tmp_path: Path, capsys):
    (tmp_path / "bad.yaml").write_text("sequence: {type: hover, dim: v}\n")
    assert main(["measure", str(tmp_path / "bad.yaml"), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "bad.yaml" in err and "hover" in err
    assert main(["replay", "nosuchrun", "--data-dir", str(tmp_path)]) == 2
    assert "nosuchrun" in capsys.readouterr().err


def test_status_without_calibration_says_never_and_exits_1(tmp_path: Path, capsys):
    assert main(["status", "--data-dir", str(tmp_path / "data")]) == 1
    out = capsys.readouterr().out
    assert "bias_scurve" in out and "never" in out


def test_status_of_a_calibrated_state_is_fresh(tmp_path: Path):
    from labstack.session import calibration_status

    data = tmp_path / "data"
    state = data / "calibration_state"
    state.mkdir(parents=True)
    # a state written by a calibration of the golden chip (the calibration's start state is empty,
    # so rebuild the end state through a replay of the golden calibration)
    from labstack.pytest_plugin import golden_runs
    from labstack.session.replay import replay_run

    calibration = next(r for r in golden_runs(GOLDEN_RUNS) if (GOLDEN_RUNS / r / "run.json").read_text().count('"calibration"'))
    replay_run(calibration, GOLDEN_RUNS, out_dir=data)
    report = calibration_status("virtual", data)
    status = {node.name: node.status.value for node in report.nodes}
    replayed = {"bias_scurve", "cryostat", "readout"}  # the golden calibration and its dependencies
    assert all(status[name] == "fresh" for name in replayed), status
    assert all(v == "never" for name, v in status.items() if name not in replayed), status
    assert not report.all_fresh
    assert "bias_scurve" in report.render() and report.state_version == 3


@pytest.mark.parametrize("command", ["calibrate", "measure", "status", "runs", "report", "replay", "sim"])
def test_every_subcommand_has_help(command, capsys):
    with pytest.raises(SystemExit) as done:
        build_parser().parse_args([command, "--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    assert f"usage: labstack {command}" in text and len(text.splitlines()) > 3


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def test_html_report_renders_in_headless_chromium(tmp_path: Path):
    browser = _chromium()
    if browser is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("chromium is missing on CI: .ci/run installs it with apt-get")
        pytest.skip("chromium not installed on this developer machine (apt-get install chromium)")
    calibration = sorted(
        r.name for r in GOLDEN_RUNS.iterdir() if '"kind": "calibration"' in (r / "run.json").read_text()
    )[0]
    before = sorted(p.name for p in GOLDEN_RUNS.iterdir())
    page = write_report(calibration, GOLDEN_RUNS, tmp_path / "report.html")
    assert sorted(p.name for p in GOLDEN_RUNS.iterdir()) == before  # a report only reads
    text = page.read_text()
    assert text.count("data:image/png;base64,") >= 2  # the S-curves and the raw samples
    assert "bias_offset_V" in text and "<th>cell 3</th>" in text and "bias_scurve" in text
    assert "http://" not in text and "https://" not in text  # self-contained

    flags = [
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
    ]
    shot = tmp_path / "report.png"
    done = subprocess.run(
        [browser, *flags, f"--screenshot={shot}", "--window-size=1200,900", page.as_uri()],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    from matplotlib.image import imread

    pixels = imread(shot)
    assert pixels.shape[:2] == (900, 1200)
    assert pixels[..., :3].std() > 0.05  # not a blank page: text, tables and plots drew

    dom = subprocess.run(
        [browser, *flags, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120
    )
    assert dom.returncode == 0 and dom.stdout.count("<img") == text.count("<img")
    assert np.isfinite(pixels).all()
