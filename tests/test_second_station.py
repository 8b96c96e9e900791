"""A second lab calibrates the same chip: lock-in readout, B2962A couplers (oxford_lockin.yaml).

The shipped default station (sampler readout, QDAC-II couplers) and the second one
calibrate the same virtual chip (seed 1234, 16 cells, held still) with independent noise. The
chip's offsets V0, widths w and effective temperatures T_eff = 2 alpha w must agree
within their errors: pulls (a - b) / sqrt(sa^2 + sb^2) within 3 for >= 95 % of them,
with rms between 0.7 and 1.3, and neither station's median standard error more than
twice the other's. Routines the lock-in cannot serve are reported, not run.

The second station's fridge is an Oxford Triton, stepped by closed-loop set-points
where the default station's Lake Shore steps an open-loop heater current; the fridge
quantities both measure (base temperature, its time constant, the chip's lag) must
agree within their errors too.
"""

from __future__ import annotations

import numpy as np
import pytest

from labstack.calibrate import CalibrationState
from labstack.session import calibrate_station
from labstack.sim.truth import GroundTruth
from labstack.visa import open_station

NODES = ["effective_temperature"]  # with its dependencies: readout, cryostat, bias_scurve
#: the same settings on both stations, lighter than the defaults (three temperatures, not
#: five): the comparison is in units of each station's own errors; the module took 75-105 s
#: of a suite near its time limit. (41 bias points instead of 61 as well made the lock-in
#: station's offset errors 2.0x the sampler's, at the criterion's edge: not done.)
PARAMS = {"effective_temperature": {"temperatures_K": [0.0, 0.035, 0.08]}}
#: what both fridges' cryostat calibrations measure (open-loop heater steps vs closed-loop set-points)
FRIDGE = ("mc_base_K", "mc_tau_base_s", "chip_tau_s")


def _values(state: CalibrationState, key: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    v = np.full(n, np.nan)
    e = np.full(n, np.nan)
    for i in range(n):
        full = f"cells.{i}.{key}"
        if full in state and state.get(full).valid:
            v[i], e[i] = state.get(full).value, state.get(full).stderr
    return v, e


def _chip(state: CalibrationState, n: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    v0 = _values(state, "bias_offset_V", n)
    w = _values(state, "scurve_width_V", n)
    alpha = _values(state, "alpha_K_per_V", n)
    t_eff = 2 * w[0] * alpha[0]
    t_err = t_eff * np.hypot(w[1] / w[0], alpha[1] / alpha[0])  # separate runs: independent
    fridge = [state.get(f"cryostat.{k}") for k in FRIDGE]
    return {
        "V0": v0, "width": w, "T_eff": (t_eff, t_err),
        "fridge": (np.array([e.value for e in fridge]), np.array([e.stderr for e in fridge])),
    }


@pytest.fixture(scope="module")
def both(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, dict, object]:
    root = tmp_path_factory.mktemp("two_labs")
    truth = GroundTruth.from_seed(1234, 16, "chain").save(root / "chip.json")
    results = []
    # Each lab's chip drifts on its own (offset random walks of 0.1 - 1 mV/sqrt(h) and
    # 3 - 30 mV defect jumps, drawn from the lab's seed), so after the tens of minutes
    # each calibration takes the two labs would hold two different chips. This compares
    # two stations on one chip, so both keep it still (drift=off); drift itself is
    # checked in test_sim_drift.py and against the truth at acquisition time.
    for name, lab in (("virtual", f"truth={truth},seed=11,drift=off"), ("oxford_lockin", f"truth={truth},seed=22,drift=off")):
        with open_station(name, lab=lab) as station:
            report = calibrate_station(station, data_dir=root / name, names=NODES, params=PARAMS, progress=False)
            state = CalibrationState.load(root / name / "calibration_state")
            results.append((_chip(state, 16), report))
    return results[0][0], results[1][0], results[1][1]


def test_lockin_station_agrees_with_the_sampler_station(both: tuple[dict, dict, object]) -> None:
    a, b, _ = both
    pulls = []
    for quantity in ("V0", "width", "T_eff"):
        (va, ea), (vb, eb) = a[quantity], b[quantity]
        assert np.isfinite(va).all() and np.isfinite(vb).all(), f"{quantity}: a cell was not calibrated"
        pulls.append((va - vb) / np.hypot(ea, eb))
        ratio = np.median(ea) / np.median(eb)
        assert 0.5 <= ratio <= 2.0, f"{quantity}: median errors {np.median(ea):.3g} vs {np.median(eb):.3g}"
    pull = np.concatenate(pulls)
    within = np.mean(np.abs(pull) < 3)
    rms = float(np.sqrt(np.mean(pull**2)))
    assert within >= 0.95, f"{within:.0%} of pulls within 3: {np.round(pull, 1)}"
    assert 0.7 <= rms <= 1.3, f"pull rms {rms:.2f}: {np.round(pull, 1)}"


def test_lockin_station_says_which_routines_need_single_shots(both: tuple[dict, dict, object]) -> None:
    report = both[2]
    assert set(report.status) == {"readout", "cryostat", "bias_scurve", "effective_temperature"}
    assert all(s.value == "fresh" for s in report.status.values())


def test_triton_and_lakeshore_stations_agree_on_the_fridge(both: tuple[dict, dict, object]) -> None:
    a, b, _ = both
    (va, ea), (vb, eb) = a["fridge"], b["fridge"]
    assert np.isfinite(va).all() and np.isfinite(vb).all() and (ea > 0).all() and (eb > 0).all()
    pull = (va - vb) / np.hypot(ea, eb)
    assert np.all(np.abs(pull) < 3), f"fridge pulls {dict(zip(FRIDGE, np.round(pull, 2), strict=True))}"
