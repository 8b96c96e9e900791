"""Per-seed realism in the ground truth: drawn from the documented ranges, recorded, range-checked.

The ranges are :data:`labstack.sim.realism.RANGES`; the ground-truth docstring and the
README quote them. Every field of a ground-truth file is checked when it is loaded: a
missing, non-finite or out-of-range one names the file, its line and the key, and the
command line exits 2 before any instrument is opened.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import labstack.sim.truth as truth_module
from labstack.cli import main
from labstack.cli.exit_codes import EXIT_BAD_INPUT
from labstack.sim.lab import VirtualLab
from labstack.sim.realism import RANGES
from labstack.sim.truth import FORMAT_V1, GroundTruth, GroundTruthError

SEEDS = range(40)


def _value(truth: GroundTruth, key: str) -> np.ndarray:
    section, _, name = key.partition(".")
    if key == "cryostat.mc_base_K":
        return np.array([truth.cryostat.mc_base_K])
    if key == "cryostat.mc_tau_base_s":
        return np.array([truth.cryostat.mc_tau_s(truth.cryostat.mc_base_K)])
    if key.startswith("cryostat.stage_"):
        return np.array([truth.cryostat.stage_temperatures_K[key.removeprefix("cryostat.stage_")]])
    if key == "readout_crosstalk":
        return truth.readout_crosstalk
    if key == "dac.line_tau_s":
        return np.concatenate([truth.dac.bias_line_tau_s, truth.dac.coupler_line_tau_s])
    if section == "thermometry":
        return np.array([getattr(s, name) for s in truth.thermometry.sensors.values()])
    if key == "drift.jump_V":
        return np.array([truth.drift.jump_min_V, truth.drift.jump_max_V])
    return np.atleast_1d(np.asarray(getattr(getattr(truth, section), name), dtype=float))


@pytest.fixture(scope="module")
def chips() -> list[GroundTruth]:
    return [GroundTruth.from_seed(seed, 16) for seed in SEEDS]


@pytest.mark.parametrize("key", sorted(RANGES))
def test_every_realistic_magnitude_is_drawn_per_seed_inside_its_documented_range(chips, key):
    low, high, _law, _source = RANGES[key]
    values = np.array([_value(t, key) for t in chips])
    spread = 0.15 if key == "dac.line_tau_s" else 0.0  # each line +-5 % (clipped at 15 %) about the design value
    assert np.all(values >= low * (1 - spread) - 1e-15) and np.all(values <= high * (1 + spread) + 1e-15), key
    if key != "drift.jump_V":  # fixed bounds of the jump law, not a draw
        assert np.unique(np.round(values[:, 0], 12)).size > len(chips) // 2, f"{key} is not drawn per seed"


def test_ranges_are_documented_in_the_ground_truth_docstring():
    doc = truth_module.__doc__
    for key in RANGES:
        documented = key if not key.startswith("cryostat.stage_") else "cryostat.stage_temperatures_K"
        documented = "drift.jump_min_V" if key == "drift.jump_V" else documented
        assert documented in doc, f"{key} is missing from labstack/sim/truth.py's table"


def test_realistic_and_ideal_chips_of_a_seed_share_their_cells():
    real, ideal = GroundTruth.from_seed(3, 9, "grid"), GroundTruth.from_seed(3, 9, "grid", realism="ideal")
    assert real.realism == "realistic" and ideal.realism == "ideal"
    for name in ("alpha_K_per_V", "v0_V", "gamma0_Hz", "barrier_K", "readout_amp_V"):
        np.testing.assert_array_equal(getattr(real.cells, name), getattr(ideal.cells, name))
    np.testing.assert_array_equal(real.couplers.kappa_K_per_V, ideal.couplers.kappa_K_per_V)
    # the ideal chip is today's: one fridge, one amplifier, no drift, instant DACs
    assert ideal.noise.t_eff_exponent == 2.0 and ideal.cryostat.chip_tau_s == 30.0
    assert not ideal.drift.active and ideal.dac.ideal and not ideal.thermometry.scanner
    assert real.idealized().to_dict() == ideal.to_dict()


def test_realistic_truth_round_trips_through_json(tmp_path):
    truth = GroundTruth.from_seed(7, 6)
    path = truth.save(tmp_path / "chip.json")
    again = GroundTruth.load(path)
    assert again.to_dict() == truth.to_dict()
    assert json.loads(path.read_text())["format"] == "labstack-ground-truth/2"


def test_format_1_loads_as_the_ideal_chip_it_described(tmp_path):
    ideal = GroundTruth.from_seed(7, 4, realism="ideal").to_dict()
    old = {k: ideal[k] for k in ("seed", "n_cells", "topology", "grid_shape", "cells", "crosstalk_K_per_V", "couplers")}
    old["format"] = FORMAT_V1
    path = tmp_path / "old.json"
    path.write_text(json.dumps(old))
    loaded = GroundTruth.load(path)
    assert loaded.realism == "ideal" and loaded.to_dict() == ideal
    assert not VirtualLab(loaded).realistic


def _broken(tmp_path: Path, edit) -> Path:
    data = GroundTruth.from_seed(3, 4).to_dict()
    edit(data)
    path = tmp_path / "chip.json"
    path.write_text(json.dumps(data, indent=1).replace("NaN", "NaN"))
    return path


BAD = [
    ("amplifier.gain", lambda d: d["amplifier"].update(gain=float("nan")), "finite"),
    ("cells.barrier_K", lambda d: d["cells"]["barrier_K"].__setitem__(1, -0.2), "outside its range"),
    ("noise.t_eff_exponent", lambda d: d["noise"].pop("t_eff_exponent"), "missing key"),
    ("dac.bias_line_tau_s", lambda d: d["dac"]["bias_line_tau_s"].__setitem__(0, float("inf")), "finite"),
    ("thermometry.sensors", lambda d: d["thermometry"]["sensors"].pop("chip"), "must name the sensors"),
    ("thermometry.sensors.still.noise_rel",
     lambda d: d["thermometry"]["sensors"]["still"].update(noise_rel=float("inf")), "finite"),
    ("thermometry.sensors.chip.self_heating_K",
     lambda d: d["thermometry"]["sensors"]["chip"].pop("self_heating_K"), "missing key"),
    ("dynamics.bounded_kramers", lambda d: d["dynamics"].pop("bounded_kramers"), "missing key"),
    ("dynamics.bounded_kramers", lambda d: d["dynamics"].update(bounded_kramers=1), "true or false"),
    ("drift.jump_rate_per_s", lambda d: d["drift"].update(jump_rate_per_s=-1.0), "outside its range"),
    ("realism", lambda d: d.update(realism="very"), "must be one of"),
    ("cryostat.mc_load_W", lambda d: d["cryostat"].update(mc_load_W="1e-6"), "must be a number"),
    ("readout_crosstalk", lambda d: d.update(readout_crosstalk=[0.01]), "shape"),
]


@pytest.mark.parametrize("key,edit,why", BAD, ids=[f"{b[0]}-{b[2]}" for b in BAD])
def test_a_bad_field_is_refused_naming_file_line_and_key(tmp_path, key, edit, why):
    path = _broken(tmp_path, edit)
    with pytest.raises(GroundTruthError) as info:
        GroundTruth.load(path)
    message = str(info.value)
    assert message.startswith(f"{path}:") and key in message and why in message, message
    line = int(message.split(":")[1])
    assert key.split(".")[-1] in path.read_text().splitlines()[line - 1] or "missing" in message


CLI_BAD = [BAD[0], BAD[1], BAD[2], *[b for b in BAD if b[0].startswith(("thermometry.sensors.", "dynamics."))]]


@pytest.mark.parametrize("key,edit,why", CLI_BAD, ids=[f"{b[0]}-{b[2]}" for b in CLI_BAD])
def test_the_command_line_refuses_a_bad_truth_before_any_instrument(tmp_path, capsys, monkeypatch, key, edit, why):
    """NaN gain, negative barrier, missing or non-finite realism fields: exit 2, file and key named."""
    path = _broken(tmp_path, edit)
    opened = []
    monkeypatch.setattr("labstack.visa.stations.load_station", lambda *a, **k: opened.append(a))
    code = main(["calibrate", "--truth", str(path), "--data-dir", str(tmp_path / "data"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == EXIT_BAD_INPUT and not opened
    assert f"{path}:" in err and f"'{key}'" in err and why in err, err
    assert not (tmp_path / "data").exists()  # refused before the state's lock: nothing left behind


@pytest.mark.parametrize("description", ["realism=perfect", "drift=maybe", "seed=3,realism=ideal,cells=0"])
def test_bad_realism_descriptions_are_refused(description):
    with pytest.raises(GroundTruthError, match="virtual lab description|n_cells"):
        VirtualLab.from_description(description)
