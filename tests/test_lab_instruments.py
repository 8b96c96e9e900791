"""The second lab's instruments behind unmodified QCoDeS drivers: SR860, preamp, B2962A.

SCPI transcripts, the physics each reading comes from (gain, filter, overload), the
safety guard on their outputs, and the station-file errors about roles and twins.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import pytest
from qcodes.instrument import Instrument

from labstack.safety import SafetyError
from labstack.station import StationConfigError, load_station, station_path
from labstack.visa import (
    finish_recording,
    open_station,
    playback_station,
    record_station,
    verify_playback,
)


@pytest.fixture(scope="module")
def station():
    lab = f"seed=5,cells=16,instance=instruments-{secrets.token_hex(4)}"
    with open_station("oxford_lockin", lab=lab) as st:
        yield st
    Instrument.close_all()


def session(st) -> list[float]:
    """Bias a cell, drive a coupler, read its line through preamp and lock-in."""
    st.qdac1.ch01.dc_constant_V(0.5)
    st.smu1.ch1.source_voltage(0.04)
    st.preamp.ch1.input(1)
    st.preamp.ch1.gain(100)
    st.lockin1.amplitude(0.1)
    st.lockin1.time_constant(0.1)
    st.clock.sleep(1.0)
    return [*st.lockin1.get_values("X", "Y"), st.smu1.ch1.source_voltage()]


def test_transcript_of_lockin_preamp_and_source_replays(tmp_path: Path) -> None:
    lab = f"seed=5,cells=16,instance=transcript-{secrets.token_hex(4)}"
    st = record_station("oxford_lockin", tmp_path / "t.jsonl", lab=lab)
    try:
        recorded = session(st)
    finally:
        path = finish_recording(st)
    sent = [json.loads(line).get("data", "") for line in path.read_text().splitlines()]
    for command in ("SLVL 0.1", "SNAP? 0,1", "CHAN1:GAIN 100", "SOURCE1:VOLT 0.04", "OFLT 10"):
        assert any(s.startswith(command) for s in sent), f"{command!r} not in the transcript"
    played = playback_station("oxford_lockin", path)
    try:
        assert session(played) == recorded
        verify_playback(played)
    finally:
        played.close()


def _edited(tmp_path: Path, old: str, new: str) -> Path:
    text = station_path("oxford_lockin").read_text()
    assert old in text
    path = tmp_path / "edited.yaml"
    path.write_text(text.replace(old, new, 1))
    return path


# before the module's station opens: instrument names are global in QCoDeS
def test_an_instrument_without_a_twin_is_named_with_its_roles(tmp_path: Path) -> None:
    path = _edited(tmp_path, "lockin4.virtual", "lockin9.virtual")
    with pytest.raises(StationConfigError, match=r"instrument 'lockin4' \(SR860\) has no virtual twin.*a lock-in readout"):
        load_station(path, lab=f"seed=5,cells=16,instance=twin-{secrets.token_hex(4)}")
    Instrument.close_all()


def test_sensitivity_overload_clips_and_is_reported(station) -> None:
    li = station.lockin1
    station.preamp.ch1.gain(100)
    station.lockin1.amplitude(0.1)
    li.sensitivity(1e-6)
    station.clock.sleep(2.0)
    x = li.X()
    assert abs(x) <= 1e-6 and int(li.ask("CUROVLDSTAT?")) & 0b11
    li.sensitivity(1.0)
    station.clock.sleep(2.0)
    assert abs(li.X()) > 1e-4 and int(li.ask("CUROVLDSTAT?")) == 0


def test_guard_covers_excitation_and_coupler_source(station) -> None:
    with pytest.raises(ValueError, match="amplitude"):
        station.lockin1.amplitude(0.5)  # above labstack.limits
    with pytest.raises(SafetyError, match="lockin1"):
        station.lockin1.write("SLVL 0.5")  # the wire: outside limits
    station.smu2.ch1.source_voltage(0.0)
    with pytest.raises(SafetyError, match="max_step"):
        station.smu2.write("SOURCE1:VOLT 0.5")  # a jump the ramp forbids
    with pytest.raises(SafetyError, match="voltage mode"):
        station.smu2.write(":SOUR1:FUNC:MODE CURR")
    station.smu2.ch1.source_voltage(0.5)  # the parameter ramps it in steps
    assert station.smu2.ch1.source_voltage() == pytest.approx(0.5)
    station.smu2.ch1.source_voltage(0.0)


def test_a_thermometer_as_a_bias_line_is_refused_with_file_and_line(tmp_path: Path) -> None:
    path = _edited(tmp_path, "bias: [qdac1.ch01-ch16]", "bias: [triton.ch01-ch16]")
    line = 1 + path.read_text().splitlines().index("    bias: [triton.ch01-ch16]")
    with pytest.raises(StationConfigError, match=rf"edited.yaml:{line}: labstack.chip.bias: instrument 'triton' \(OxfordTriton\) cannot be a bias line"):
        load_station(path)


def test_a_routine_that_needs_single_shots_says_so(station, tmp_path: Path) -> None:
    from labstack.calibrate import Context
    from labstack.session.run import UnknownRoutineError, build_graph

    ctx = Context.create(tmp_path, station, progress=False)
    with pytest.raises(UnknownRoutineError, match="thermalization: needs sampler readout; this station's readout role is lockin"):
        build_graph(ctx, ["thermalization"])


def test_real_dac_lines_without_ramps_are_refused_unless_ramps_are_off(tmp_path: Path) -> None:
    from labstack.station import read_station_file

    text = station_path("hardware_example").read_text()
    assert read_station_file("hardware_example").layout.safety.ramps  # shipped with ramps
    unramped = text.replace("    qdac2.ch01-ch15.dc_constant_V: {max_step: 0.01, rate_V_per_s: 0.1}\n", "", 1)
    path = tmp_path / "lab.yaml"
    path.write_text(unramped)
    line = 1 + unramped.splitlines().index("  ramps:                       # conservative: 10 mV steps, 0.1 V/s")
    with pytest.raises(StationConfigError, match=rf"lab.yaml:{line}: labstack.chip.couplers: qdac2.ch01.dc_constant_V drives a real DAC line without a ramp"):
        read_station_file(path)
    start = unramped.index("  ramps:")
    end = unramped.index("  interlocks:")
    path.write_text(unramped[:start] + "  ramps: off\n" + unramped[end:])
    assert read_station_file(path).layout.safety.ramps_off


def test_a_long_wait_is_never_skipped_and_a_bad_one_is_refused(station, monkeypatch):
    """The clock instrument refuses an advance over its limit (7 days) by queueing an error,
    which ``*OPC?`` does not report: the driver's long wait goes in steps and arrives.
    Both limits are shrunk here (10 s and 4 s) so the lab integrates seconds, not days."""
    monkeypatch.setattr("labstack.sim.instruments.clock.MAX_ADVANCE_S", 10.0)
    monkeypatch.setattr("labstack.drivers.lab_clock.MAX_STEP_S", 4.0)
    clock = station.clock
    t0 = clock.now()
    assert clock.ask("CLOC:ADV 25;*OPC?") == "1" and clock.now() == t0  # one command: refused, silently
    assert "advance 25.0 s outside" in clock.ask("SYST:ERR?")
    clock.sleep(25.25)
    assert clock.now() - t0 == pytest.approx(25.25)
    for bad in (float("nan"), float("inf"), -1.0):
        with pytest.raises(ValueError, match="clock: cannot sleep"):
            clock.sleep(bad)
    assert clock.now() - t0 == pytest.approx(25.25)
