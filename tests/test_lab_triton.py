"""The Oxford Triton twin behind QCoDeS's unmodified ``OxfordTriton`` (a raw-socket ``IPInstrument``).

In-process, the station opener points the driver at a loopback socket served by the
virtual lab's VISA library; the safety guard, the retry layer and the SCPI transcripts
cover that socket as they cover VISA resources. ``labstack serve`` serves the twin on
its own port too.
"""

from __future__ import annotations

import secrets
import socket
from pathlib import Path

import pytest
from pyvisa.highlevel import open_visa_library
from qcodes.instrument import Instrument
from qcodes.instrument_drivers.oxford.triton import OxfordTriton

from labstack.safety import InstrumentFault, SafetyError
from labstack.service import LabServer
from labstack.station import StationConfigError, load_station, station_path
from labstack.visa import (
    TranscriptMismatch,
    finish_recording,
    open_station,
    playback_station,
    record_station,
    verify_playback,
)


def _lab(tag: str) -> str:
    return f"seed=5,cells=16,drift=off,instance={tag}-{secrets.token_hex(4)}"


def _twin(lab: str):  # noqa: ANN202 - the virtual lab's Triton, to check what reached it
    return open_visa_library(f"{lab}@labstack").instruments.get("triton")


def _edited(tmp_path: Path, old: str, new: str) -> Path:
    text = station_path("oxford_lockin").read_text()
    assert old in text
    path = tmp_path / "edited.yaml"
    path.write_text(text.replace(old, new, 1))
    return path


# before the module's station opens: instrument names are global in QCoDeS
def test_a_triton_without_a_twin_is_named_with_its_roles(tmp_path: Path) -> None:
    path = _edited(tmp_path, "address: triton.virtual", "address: fridge.virtual")
    with pytest.raises(
        StationConfigError,
        match=r"edited.yaml:\d+: instrument 'triton' \(OxfordTriton\) has no virtual twin.*port 33576.*"
        r"the thermometry and heater",
    ):
        load_station(path, lab=_lab("notwin"))
    Instrument.close_all()


def _fridge_session(st) -> list[float]:  # noqa: ANN001
    st.triton.pid_setpoint(0.025)
    st.triton.pid_mode("on")
    st.clock.sleep(120)
    return [st.triton.T8(), st.triton.T9(), st.triton.pid_setpoint()]


def test_transcript_of_the_triton_replays_and_catches_a_changed_command(tmp_path: Path) -> None:
    st = record_station("oxford_lockin", tmp_path / "t.jsonl", lab=_lab("transcript"))
    try:
        recorded = _fridge_session(st)
    finally:
        path = finish_recording(st)
    assert '"resource": "RAW::triton.virtual::33576"' in path.read_text()
    played = playback_station("oxford_lockin", path)
    try:
        assert _fridge_session(played) == recorded
        verify_playback(played)
    finally:
        played.close()
    played = playback_station("oxford_lockin", path)
    try:
        with pytest.raises(Exception):  # noqa: B017 - the driver's error; the mismatch is verify's
            played.triton.pid_setpoint(0.026)
        with pytest.raises(TranscriptMismatch, match=r"instrument 'triton' \(RAW::triton.virtual::33576\).*TSET:0.025.*TSET:0.026"):
            verify_playback(played)
    finally:
        played.close()


@pytest.fixture(scope="module")
def station():
    lab = _lab("triton")
    with open_station("oxford_lockin", lab=lab) as st:
        yield st, lab


def test_the_unmodified_driver_reads_the_fridge_and_holds_a_setpoint(station) -> None:
    st, lab = station
    triton = st.triton
    assert isinstance(triton, OxfordTriton) and triton._address == "127.0.0.1"
    assert triton.get_idn()["vendor"] == "OXFORD INSTRUMENTS"
    assert st.layout.thermometer_mc == "triton.T8" and st.layout.heater_control == "closed_loop"
    assert triton.MC.get() == pytest.approx(triton.T8.get(), rel=0.05)  # the alias the driver looked up
    base = triton.T8()
    truth_base = _twin(lab).cryostat.truth.mc_base_K
    assert base == pytest.approx(truth_base, rel=0.1), "the reading is the sensor's, a few % off at most"
    assert 40 < triton.PT1() < 50 and triton.T5() is None  # a stage far up; an unwired channel
    triton.pid_range(1)
    triton.pid_setpoint(0.030)
    triton.pid_mode("on")
    st.clock.sleep(900)
    assert triton.T8() == pytest.approx(0.030, abs=1.5e-3)
    assert triton.T9() == pytest.approx(0.030, abs=3e-3)  # the chip follows with its lag
    power = float(triton.ask("READ:DEV:H1:HTR:SIG:POWR").rsplit(":", 1)[-1].removesuffix("uW"))
    assert power > 0
    triton.pid_mode("off")
    st.clock.sleep(3000)
    assert triton.T8() < 0.02
    assert _twin(lab).heater_power_W() == 0.0


def test_setpoint_and_heater_writes_go_through_the_guard(station) -> None:
    st, lab = station
    twin = _twin(lab)
    triton = st.triton
    triton.pid_setpoint(0.02)
    with pytest.raises(ValueError, match="pid_setpoint"):
        triton.pid_setpoint(0.5)  # labstack.limits
    with pytest.raises(ValueError, match="pid_range"):
        triton.pid_range(3.16)  # 1.2 mW full scale: above heater_max_power_W
    for command, why in (
        ("SET:DEV:T8:TEMP:LOOP:TSET:2", "above max_temperature_K"),
        ("SET:DEV:T8:TEMP:LOOP:TSET:0.5", r"outside the limits \[0, 0.2\]"),
        ("SET:DEV:T8:TEMP:LOOP:RANGE:10", "above heater_max_power_W"),
        ("SET:DEV:H1:HTR:SIG:POWR:5000", "heater_max_power_W"),
        ("SET:DEV:T8:TEMP:LOOP:TSET:nan", "not a temperature"),
    ):
        with pytest.raises(SafetyError, match=why):
            triton.write(command)  # a raw write, past every parameter
    assert twin.loop.setpoint == pytest.approx(0.02) and twin.loop.range_mA == 1.0 and twin.manual_uW == 0.0


def test_safe_state_switches_the_loop_off(station) -> None:
    st, lab = station
    st.triton.pid_mode("on")
    assert st.safe_state() == []
    assert st.triton.pid_mode() == "off" and _twin(lab).heater_power_W() == 0.0


def test_a_triton_that_times_out_or_answers_garbage_is_named_with_its_command(station) -> None:
    st, lab = station
    twin_faults = _twin(lab).lab.faults
    triton = st.triton
    triton.set_timeout(0.2)
    try:
        twin_faults.inject("garbled", "triton", count=20)
        with pytest.raises(InstrumentFault, match=r"triton: 'READ:DEV:T8:TEMP:SIG:TEMP' failed after 6 attempt"):
            triton.T8()
        twin_faults.pending.clear()
        twin_faults.stick("triton", 1e6)
        with pytest.raises(InstrumentFault, match=r"triton: .*READ:DEV:T9:TEMP:SIG:TEMP.*TimeoutError"):
            triton.T9()
        twin_faults.stuck_until.clear()
        assert triton.T9() > 0  # the retry layer reconnected: the exchange is in step again
    finally:
        twin_faults.pending.clear()
        twin_faults.stuck_until.clear()
        triton.set_timeout(5)


def test_a_write_the_triton_refuses_is_an_error_not_silence(station) -> None:
    """The Triton confirms every write with ``:VALID`` or ``:INVALID``; the unmodified
    driver ignores the answer, labstack does not: a refused set is named, not lost."""
    st, _lab = station
    triton = st.triton
    with pytest.raises(InstrumentFault, match=r"triton: .*SET:DEV:T8:TEMP:LOOP:NOSUCH:1.*refused.*INVALID"):
        triton.write("SET:DEV:T8:TEMP:LOOP:NOSUCH:1")
    triton.pid_setpoint(0.05)  # an accepted write passes, and the exchange is still in step
    assert triton.pid_setpoint() == pytest.approx(0.05)


def test_the_lab_service_serves_the_triton_on_its_own_port() -> None:
    server = LabServer.from_description("seed=5,cells=16", instruments=["qdac1", "triton", "clock"]).run_in_thread()
    try:
        port = server.ports["triton"]
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"READ:SYS:DR:CHAN\r\n")
            assert sock.recv(1024) == b"STAT:SYS:DR:CHAN:PT1:PT2:STIL:CP:MC:CHIP\r\n"
        triton = OxfordTriton(f"served_triton_{secrets.token_hex(3)}", address="127.0.0.1", port=port, timeout=5)
        try:
            assert triton.T8() == pytest.approx(server.lab.cryostat.t_mc, rel=0.1)
            triton.pid_setpoint(0.03)
            assert server.instruments.get("triton").loop.setpoint == pytest.approx(0.03)
        finally:
            triton.close()
    finally:
        server.stop()
