"""Station files: limits that only narrow, errors that name the file and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from labstack.station import StationConfigError, expand_channels
from labstack.visa import open_station


def test_limit_refuses_out_of_range_voltage_and_nothing_reaches_the_instrument(virtual_station):
    station, lab = virtual_station(seed=3, cells=16)
    device = lab_device(lab, "qdac1")
    device.log = []
    with pytest.raises(ValueError) as info:
        station.qdac1.ch05.dc_constant_V(1.6)
    message = str(info.value)
    assert "qdac1_ch05" in message and "1.5" in message
    assert device.log == []
    assert lab.bias_V[4] == 0.0
    station.qdac1.ch05.dc_constant_V(1.2)  # inside the limit: goes through
    assert any("volt 1.2" in c for c in device.log)
    # the default chip is realistic: the DAC holds 1.2 V (to its 25-bit step) and the line's
    # filter brings it to the cell within milliseconds
    assert lab.dacs.target[4] == pytest.approx(1.2, abs=1e-6)
    assert lab.dacs.output(lab.clock.now() + 1.0)[4] == pytest.approx(1.2, abs=1e-6)


def lab_device(lab, name):
    import pyvisa

    for library in pyvisa.highlevel.VisaLibraryBase._registry.values():
        if getattr(library, "lab", None) is lab:
            return library.instruments.get(name)
    raise AssertionError("lab not found")


def test_station_limits_cannot_widen_the_driver_range(tmp_path: Path, virtual_station):
    text = Path(__file__).parents[1].joinpath("station_configs", "virtual.yaml").read_text()
    wide = text.replace("qdac1.ch01-ch16.dc_constant_V: [-1.5, 1.5]", "qdac1.ch01-ch16.dc_constant_V: [-20.0, 20.0]")
    path = tmp_path / "wide.yaml"
    path.write_text(wide)
    station, _ = virtual_station(str(path), seed=3, cells=16)
    with pytest.raises(ValueError):
        station.qdac1.ch01.dc_constant_V(15.0)  # the driver's own +-10 V still holds


def test_qcodes_limits_key_that_would_replace_the_validator_is_refused(tmp_path: Path):
    text = Path(__file__).parents[1].joinpath("station_configs", "virtual.yaml").read_text()
    bad = text.replace(
        '  qdac2:   # coupler lines\n',
        '    parameters:\n      ch01.dc_constant_V:\n        limits: [-20, 20]\n  qdac2:   # coupler lines\n',
    )
    path = tmp_path / "bad.yaml"
    path.write_text(bad)
    with pytest.raises(StationConfigError) as info:
        open_station(path, lab="seed=1,instance=limits")
    limits_line = bad.splitlines().index("        limits: [-20, 20]") + 1
    assert str(info.value).startswith(f"{path}:{limits_line}:")
    assert "labstack.limits" in str(info.value)


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("bias: [qdac1.ch01-ch16]", "bias: [qdac1.ch01-ch15]", "lists 15 channels for 16 cells"),
        ("readout: sampler", "readout: digitizer", "names instrument 'digitizer'"),
        ("[-1.5, 1.5]", "[1.5, -1.5]", "must be below"),
        ("cells: 16", "cells: sixteen", "whole number"),
        ("  clock: clock\n", "  clock: clock\n  bad: [unclosed\n", "not valid YAML"),
    ],
)
def test_malformed_station_files_name_file_and_line(tmp_path: Path, old: str, new: str, expected: str):
    text = Path(__file__).parents[1].joinpath("station_configs", "virtual.yaml").read_text()
    assert old in text
    path = tmp_path / "station.yaml"
    path.write_text(text.replace(old, new, 1))
    with pytest.raises(StationConfigError) as info:
        open_station(path, lab="seed=1,instance=malformed")
    message = str(info.value)
    assert expected in message
    assert message.startswith(f"{path}:")
    line = message.split(":")[1]
    assert line.isdigit() and int(line) > 1


def test_unknown_station_name_lists_the_shipped_ones():
    with pytest.raises(StationConfigError, match="virtual"):
        open_station("no_such_station")


def test_channel_ranges_expand():
    assert expand_channels("qdac1.ch08-ch10") == ["qdac1.ch08", "qdac1.ch09", "qdac1.ch10"]
    assert expand_channels("qdac1.ch01-ch02.dc_constant_V") == ["qdac1.ch01.dc_constant_V", "qdac1.ch02.dc_constant_V"]
    assert expand_channels("sampler") == ["sampler"]


def test_virtual_station_follows_a_bigger_chip(virtual_station):
    station, lab = virtual_station(seed=4, cells=64)


    layout = station.layout
    assert layout.n_cells == 64 and len(layout.couplers) == 63
    assert layout.bias[63] == "qdac3.ch16.dc_constant_V"
    station.qdac3.ch16.dc_constant_V(0.4)
    assert lab.dacs.target[63] == pytest.approx(0.4, abs=1e-6)  # the last line's DAC, realistic chip
    assert lab.dacs.output(lab.clock.now() + 1.0)[63] == pytest.approx(0.4, abs=1e-6)
    with pytest.raises(ValueError, match="1.5"):
        station.qdac3.ch16.dc_constant_V(1.7)
    assert lab.dacs.target[63] == pytest.approx(0.4, abs=1e-6)  # the refused value changed nothing


def test_virtual_station_for_a_grid_chip_lists_its_coupler_pairs(virtual_station):
    station, lab = virtual_station(seed=4, cells=16, topology="grid")


    layout = station.layout
    assert sorted(layout.coupler_pairs) == sorted(map(tuple, lab.truth.couplers.pairs.tolist()))
