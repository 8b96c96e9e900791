"""Bad input is refused with the file, line and key, before any instrument is touched."""

from __future__ import annotations

import json

import pytest
from safety_helpers import write_station

from labstack.calibrate import CalibrationState, StateFileError
from labstack.cli import EXIT_BAD_INPUT, main
from labstack.sim.lab import VirtualLab
from labstack.sim.truth import GroundTruth, GroundTruthError
from labstack.station import StationConfigError
from labstack.visa import open_station


def _line_of(path, needle: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if needle in line)


@pytest.mark.parametrize(
    ("old", "new", "key", "needle"),
    [
        ("{max_step: 0.05, rate_V_per_s: 1.0}", "{max_step: -0.05, rate_V_per_s: 1.0}", "max_step", "qdac1.ch01-ch04.dc_constant_V: {max_step"),
        ("{max_step: 0.1, rate_V_per_s: 2.0}", "{max_stp: 0.1, rate_V_per_s: 2.0}", "max_stp", "qdac2.ch01-ch03.dc_constant_V: {max_st"),
        ("heater_max_range: 5", "heater_max_range: 12", "heater_max_range", "heater_max_range"),
        ("    heater_resistance_ohm: 120\n", "", "heater_max_power_W", "heater_max_power_W"),
        ("max_temperature_K: 0.5", "max_temperature_K: hot", "max_temperature_K", "max_temperature_K"),
        ("qdac2.ch01-ch03.dc_constant_V: {max_step", "qdac3.ch01-ch03.dc_constant_V: {max_step", "ramps", "qdac3.ch01"),
    ],
)
def test_bad_safety_sections_name_file_line_and_key(tmp_path, old, new, key, needle):
    path = write_station(tmp_path, replace={old: new})
    with pytest.raises(StationConfigError) as info:
        open_station(path, lab="instance=never-opened")
    message = str(info.value)
    assert message.startswith(f"{path}:") and key in message
    line = int(message.split(":")[1])
    assert line == _line_of(path, needle), message


def test_bad_suspender_is_named_by_its_list_entry_line(tmp_path):
    extra = "  suspenders:\n    - {signal: ls372.ch06.temperature, high: 0.03}\n    - {signal: ls372.ch06.temperature, low: 0.2, high: 0.1}\n"
    path = write_station(tmp_path, extra)
    with pytest.raises(StationConfigError, match=r"suspenders\.1.*low 0.2 must be below high 0.1") as info:
        open_station(path, lab="instance=never-opened")
    assert int(str(info.value).split(":")[1]) == _line_of(path, "low: 0.2")


def _state_with_one_version(tmp_path):
    from labstack.calibrate import StateChange
    from labstack.clock import VirtualClock

    state = CalibrationState.load(tmp_path / "state")
    change = StateChange()
    change.set("cells.0.bias_offset_V", 0.1, 0.001, "V")
    state.apply(change, clock=VirtualClock(), node="bias_scurve")
    return tmp_path / "state" / "v000001.yaml"


@pytest.mark.parametrize(
    ("old", "new", "match"),
    [
        ("version: 1", "version: one", r":1: version: must be a whole number"),
        ("    value: 0.1\n", "    valu: 0.1\n", r"entries\.cells\.0\.bias_offset_V: .*value"),
        ("entries:", "entries: [\n", r"not valid YAML"),
    ],
)
def test_damaged_calibration_state_names_file_line_and_key(tmp_path, old, new, match):
    file = _state_with_one_version(tmp_path)
    text = file.read_text()
    assert old in text
    file.write_text(text.replace(old, new, 1))
    with pytest.raises(StateFileError, match=match) as info:
        CalibrationState.load(tmp_path / "state")
    assert str(info.value).startswith(f"{file}:")


def test_cli_refuses_a_damaged_state_before_opening_instruments(tmp_path, capsys):
    file = _state_with_one_version(tmp_path)
    file.write_text(file.read_text().replace("version: 1", "version: [1"))
    (tmp_path / "data").mkdir()
    (tmp_path / "state").rename(tmp_path / "data" / "calibration_state")
    assert main(["calibrate", "--data-dir", str(tmp_path / "data"), "--cells", "4", "--no-progress"]) == EXIT_BAD_INPUT
    assert "v000001.yaml:" in capsys.readouterr().err


def test_ground_truth_errors_name_the_line_of_the_key(tmp_path):
    path = tmp_path / "chip.json"
    data = GroundTruth.from_seed(3, 4, "chain").to_dict()
    data["cells"]["v0_V"] = data["cells"]["v0_V"][:3]
    path.write_text(json.dumps(data, indent=1))
    with pytest.raises(GroundTruthError, match=r"cells\.v0_V") as info:
        GroundTruth.load(path)
    assert int(str(info.value).split(":")[1]) == _line_of(path, '"v0_V"')


@pytest.mark.parametrize("description", ["faults=2", "faults=0.1,fault_kinds=meteor", "seed=abc", "fault_seed=x,faults=0.1"])
def test_bad_fault_descriptions_are_refused(description):
    with pytest.raises(GroundTruthError, match="virtual lab description"):
        VirtualLab.from_description(description)
