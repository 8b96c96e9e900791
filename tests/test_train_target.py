"""Bad training targets get an error naming the file and the entry, before anything is sent.

The file-level errors (non-finite numbers, samples that are not ±1) are caught on
reading; the chip-level ones (cells that do not exist or are flagged dead, couplings
between uncoupled cells) on the chip's layout and calibration state, and the test
checks that no line of the station was written and the sampler was not touched. The
last test trains on exact enumeration alone: the ML fit of a data set reproduces its
moments, and the moment-matching step from the exact Fisher matrix is a Newton step.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from labstack.calibrate import CalibrationState, StateChange
from labstack.clock import WallClock
from labstack.train import TargetError, exact, load_target, train
from labstack.train.stats import Moments
from labstack.train.update import step


def write(tmp_path, doc, name="target.json"):
    path = tmp_path / name
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return path


def test_non_finite_field_names_file_and_entry(tmp_path):
    path = write(tmp_path, '{"cells": [0, 1], "h_K": [0.01, NaN], "J_K": []}')
    with pytest.raises(TargetError, match=rf"{path.name}: h_K\[1\]: .*not a finite number"):
        load_target(path)


def test_non_finite_coupling_names_file_and_entry(tmp_path):
    path = write(tmp_path, '{"cells": [0, 1], "h_K": [0, 0], "J_K": [[0, 1, Infinity]]}')
    with pytest.raises(TargetError, match=rf"{path.name}: J_K\[0\]\[2\]: .*not a finite number"):
        load_target(path)


def test_sample_not_plus_minus_one_names_row_and_column(tmp_path):
    rows = [[1, -1, 1]] * 12
    rows[7] = [1, 0, 1]
    path = write(tmp_path, {"cells": [0, 1, 2], "samples": rows})
    with pytest.raises(TargetError, match=rf"{path.name}: samples\[7\]\[1\]: 0 is not \+1 or -1"):
        load_target(path)


def test_coupling_to_a_cell_outside_the_target(tmp_path):
    path = write(tmp_path, {"cells": [0, 1], "h_K": [0, 0], "J_K": [[0, 5, 0.01]]})
    with pytest.raises(TargetError, match=r"J_K\[0\]: j = 5 is not one of the target's cells"):
        load_target(path)


# ------------------------------------------------------------- on the chip
N = 8


def design_state(tmp_path) -> CalibrationState:
    """A calibration state of an 8-cell chain with cell 3 flagged dead (design values)."""
    state = CalibrationState.load(tmp_path / "state")
    change = StateChange()
    for i in range(N):
        change.set(f"cells.{i}.bias_offset_V", 0.0, 1e-3, "V")
        change.set(f"cells.{i}.scurve_width_V", 0.05, 1e-3, "V")
        change.set(f"cells.{i}.health", "dead" if i == 3 else "ok")
    for k in range(N - 1):
        change.set(f"couplers.{k}.zero_coupling_V", 0.0, 1e-3, "V")
        change.set(f"couplers.{k}.kappa_over_teff_per_V", 1.6, 0.01, "1/V")
        change.set(f"couplers.{k}.kappa_K_per_V", 0.048, 0.001, "K/V")
    state.apply(change, clock=WallClock(), node="design")
    return state


@pytest.fixture
def chip(virtual_station, tmp_path):
    station, _ = virtual_station(seed=5, cells=N)
    return station, design_state(tmp_path)


def nothing_sent(station) -> bool:
    lines = list(station.layout.bias) + list(station.layout.couplers)
    return all(not station.safety.channels[name].history for name in lines)


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"cells": [0, 1, 9], "h_K": [0, 0, 0], "J_K": []}, r"cells\[2\]: cell 9 does not exist"),
        ({"cells": [2, 3, 4], "h_K": [0, 0, 0], "J_K": []}, r"cells\[1\]: cell 3 is flagged dead"),
        ({"cells": [0, 1, 2], "h_K": [0, 0, 0], "J_K": [[0, 2, 0.01]]}, r"J_K\[0\]: cells 0 and 2 are not coupled"),
        ({"cells": [4, 5, 6], "samples": [[1, 1, 1]] * 10 + [[1, -1, 1]] * 5}, None),
    ],
    ids=["no-such-cell", "dead-cell", "uncoupled-pair", "good-data-target-shape"],
)
def test_chip_level_errors_before_anything_is_sent(chip, tmp_path, doc, message):
    station, state = chip
    path = write(tmp_path, doc)
    if message is None:  # the well-formed target of the same shape passes the chip check
        from labstack.train.program import ChipMap

        cmap = ChipMap.build(load_target(path), state, N, [tuple(p) for p in station.layout.coupler_pairs])
        assert cmap.edges.tolist() == [[0, 1], [1, 2]]
        return
    rate_before = station.components["sampler"].sample_rate()
    with pytest.raises(TargetError, match=rf"{path.name}: {message}"):
        train(station, path, state=state, data_dir=tmp_path / "data")
    assert nothing_sent(station)
    assert station.components["sampler"].sample_rate() == rate_before
    assert not (tmp_path / "data").exists()  # no run was even started



def test_a_warm_start_of_the_wrong_size_is_refused_before_anything_is_sent(chip, tmp_path):
    station, state = chip
    path = write(tmp_path, {"cells": [0, 1, 2], "h_K": [0, 0, 0], "J_K": [[0, 1, 0.01], [1, 2, 0.01]]})
    with pytest.raises(TargetError, match=r"start_params: 4 values, the target has 5 parameters"):
        train(station, path, state=state, data_dir=tmp_path / "data", start_params=[0.0] * 4)
    assert nothing_sent(station)
    assert not (tmp_path / "data").exists()

def test_cli_bad_target_exit_code_2_naming_the_entry(tmp_path):
    path = write(tmp_path, '{"cells": [0, 1], "h_K": [0.01, -Infinity], "J_K": []}')
    out = subprocess.run([sys.executable, "-m", "labstack.cli", "train", "--target", str(path),
                          "--data-dir", str(tmp_path / "d"), "--seed", "5", "--cells", "8"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2, out.stderr
    assert f"{path}: h_K[1]:" in out.stderr and "not a finite number" in out.stderr


# ------------------------------------------------------------- exact pieces
def test_ml_fit_reproduces_the_moments_of_bars_and_stripes():
    from tests.train_helpers import bars_and_stripes

    samples = bars_and_stripes(3, 3000, seed=1)
    edges = np.array([(a, a + 1) for a in range(9) if a % 3 < 2] + [(a, a + 3) for a in range(6)])
    mu = exact.features(samples, edges).mean(axis=0)
    params = exact.fit_ml(mu, 9, edges)
    got = exact.moments(exact.distribution(params, 9, edges), 9, edges)
    assert np.max(np.abs(got - mu)) < 1e-6
    # ML maximises the training likelihood: any perturbation lowers it
    ll = exact.log_likelihood(exact.distribution(params, 9, edges), samples)
    rng = np.random.default_rng(0)
    for _ in range(5):
        other = params + 0.05 * rng.standard_normal(params.size)
        assert exact.log_likelihood(exact.distribution(other, 9, edges), samples) < ll


def test_moment_matching_step_from_exact_fisher_lands_on_the_target():
    n, edges = 5, np.array([[0, 1], [1, 2], [2, 3], [3, 4]])
    rng = np.random.default_rng(3)
    target = rng.uniform(-0.5, 0.5, n + len(edges))
    chip_params = target + rng.uniform(-0.1, 0.1, target.size)  # a calibration error
    f = exact.features(np.asarray(__import__("labstack.fit.ising", fromlist=["x"]).all_states(n)), edges)
    for _ in range(3):  # exact moments and Fisher: Newton converges quadratically
        p = exact.distribution(chip_params, n, edges)
        mu = p @ f
        fisher = (f * p[:, None]).T @ f - np.outer(mu, mu)
        chip = Moments(mu, np.full(mu.size, 1e-3), fisher, np.zeros(n), 1, 1.0, np.zeros(2**n, np.int64))
        r = exact.moments(exact.distribution(target, n, edges), n, edges) - mu
        chip_params = chip_params + step(r, chip, 1.0, ridge=0.0)
    assert np.max(np.abs(chip_params - target)) < 1e-8
