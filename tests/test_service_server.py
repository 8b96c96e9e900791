"""The served lab: unmodified drivers over real sockets, several clients, the free-running clock, security.

Servers run in a thread of the test process (``LabServer.run_in_thread``): the same
loop ``labstack serve`` runs in its own process (that one is tested in
``test_service_watch.py``), with the lab at hand for fault injection.
"""

from __future__ import annotations

import re
import select
import socket
import struct
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from qcodes.instrument import Instrument

from labstack.calibrate import Status
from labstack.cli import main
from labstack.data import load_run
from labstack.safety import InstrumentFault
from labstack.service import LabServer, ServerConfigError
from labstack.service.server import MAX_LINE, _is_query
from labstack.service.timebase import MAX_CREDIT_S, MAX_DUTY, MESSAGE_STEP_WALL_S, LabTime
from labstack.session import calibrate_station, routines
from labstack.session.record import session_of
from labstack.visa import open_station
from tests.service_helpers import RawClient, served_station, wait_for
from tests.test_safety_fuzz import COMMANDS

LAB = "seed=3,cells=4"
SMALL = {  # a small graph (readout, cryostat -> bias_scurve) with few points: seconds, not minutes
    "bias_scurve": {"n_points": 21, "n_samples": 400, "check_points": 11, "check_samples": 200},
    "cryostat": {"heat_s": 600.0, "cool_s": 1200.0, "interval_s": 10.0, "cool_interval_s": 40.0},
    "readout": {"n_samples": 500},
}


@pytest.fixture
def server():
    srv = LabServer.from_description(LAB).run_in_thread()
    yield srv
    srv.stop()
    Instrument.close_all()


def _calibrate(station, data_dir: Path):
    report = calibrate_station(station, data_dir=data_dir, progress=False, names=["bias_scurve"], params=SMALL)
    session = session_of(load_run(report.run_id, data_dir))
    datasets = [load_run(run_id, data_dir).dataset() for run_id in session["runs"]]
    return report, session, datasets


def test_unmodified_drivers_calibrate_over_pyvisa_py_and_replay_bit_for_bit(tmp_path):
    outcomes = []
    for k in range(2):  # the same description served twice, at speed 0
        with LabServer.from_description(LAB) as srv:
            station = served_station(srv, LAB, tmp_path, f"served{k}.yaml")
            try:
                handle = station.qdac1.visa_handle
                assert type(handle.visalib).__module__.startswith("pyvisa_py")  # no labstack backend
                assert type(station.qdac1).__module__.startswith("qcodes_contrib_drivers")
                assert handle.resource_name.startswith("TCPIP0::127.0.0.1::")
                outcomes.append(_calibrate(station, tmp_path / f"data{k}"))
                assert srv.stats.messages > 1000 and srv.stats.errors == 0
            finally:
                station.close()
    local = open_station("virtual", lab=f"{LAB},instance=served-vs-local")
    try:
        outcomes.append(_calibrate(local, tmp_path / "local"))
    finally:
        local.close()
    (report_a, session_a, data_a), (report_b, session_b, data_b), (_, session_c, data_c) = outcomes
    assert all(str(s) == "fresh" for s in report_a.status.values()), report_a.status
    assert session_a["results"] and session_a["results"] == session_b["results"] == session_c["results"]
    # readout, the cryostat's three, and bias_scurve: with 21 points its chip-wide sweep
    # resolves no cell well enough, so it measures a window per cell and stores the
    # parts merged as one more run (the run its values name)
    runs_a = [load_run(r, tmp_path / "data0") for r in session_a["runs"]]
    scurve = [r for r in runs_a if r.metadata.get("calibration") == "bias_scurve"]
    (merged,) = [r for r in scurve if r.metadata.get("derived_from")]
    assert sorted(r.id for r in scurve) == sorted([merged.id, *merged.metadata["derived_from"]])
    assert len(scurve) > 2 and len(data_a) == len(data_b) == len(data_c) == 4 + len(scurve)
    for a, b, c in zip(data_a, data_b, data_c, strict=True):
        for name in a.data_vars:  # bit for bit: served again, and against the in-process backend
            assert np.array_equal(a[name].values, b[name].values, equal_nan=True), name
            assert np.array_equal(a[name].values, c[name].values, equal_nan=True), name
    run = load_run(report_a.run_id, tmp_path / "data0")
    assert run.metadata.get("kind") == "calibration"
    assert load_run(session_a["runs"][0], tmp_path / "data0").metadata["lab_service"] == {"lab": LAB, "speed": 0.0}


def test_a_thread_reading_temperatures_while_another_calibrates(server, tmp_path):
    station = served_station(server, LAB, tmp_path)
    temperatures: list[float] = []
    idns: list[str] = []
    errors: list[BaseException] = []
    done = threading.Event()

    ranges: list[str] = []
    counts: list[int] = []

    def read_temperatures() -> None:  # shares the station (and its sessions) with the calibration
        try:
            while not done.is_set():
                temperatures.append(station.ls372.ch06.temperature())
                ranges.append(station.ls372.sample_heater.output_range())
                counts.append(station.sampler.n_samples())  # while the calibration acquires blocks
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            errors.append(exc)

    def other_client() -> None:  # a second process would look like this: its own connection
        client = RawClient(server.ports["sampler"])
        try:
            while not done.is_set():
                idns.append(client.ask("*IDN?"))
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            client.close()

    threads = [threading.Thread(target=read_temperatures), threading.Thread(target=other_client)]
    for thread in threads:
        thread.start()
    try:
        report = calibrate_station(station, data_dir=tmp_path / "data", progress=False, names=["readout"])
    finally:
        done.set()
        for thread in threads:
            thread.join(10)
        station.close()
    assert not errors, errors
    assert report.status["readout"].value == "fresh"
    assert len(temperatures) > 20 and all(0.005 < t < 0.1 for t in temperatures), temperatures[:5]
    assert set(ranges) == {"off"} and all(isinstance(n, int) and n >= 1 for n in counts)
    assert len(idns) > 20 and set(idns) == {"labstack,VSAMPLER-1,0001,1.0"}
    hardener = station.safety.hardener
    assert hardener is not None and hardener.stats.errors == 0  # no exchange was ever torn


def test_binary_blocks_partial_messages_and_vanishing_clients(server):
    a = RawClient(server.ports["sampler"])
    a.send("SAMP:COUN 16\n")
    a.send("REA")  # one message in pieces, its answer read back byte by byte
    time.sleep(0.05)
    a.send("D?\n")
    assert a.exactly(1) == b"#"
    digits = int(a.exactly(1))
    length = int(b"".join(a.exactly(1) for _ in range(digits)))
    payload = a.exactly(length)
    assert a.exactly(1) == b"\n" and length == 16 * 4 * 4  # 16 samples x 4 cells x float32, intact
    values = np.frombuffer(payload, "<f4")
    assert np.all(np.isfinite(values)) and values.std() > 0
    # a client that leaves mid-message: its half message never reaches the instrument
    b = RawClient(server.ports["sampler"])
    b.send("SAMP:COUN 99")
    b.close()
    c = RawClient(server.ports["sampler"])
    c.send("*ID")
    time.sleep(0.05)
    c.send("N?\nSAMP:COUN?\n")
    assert c.line() == b"labstack,VSAMPLER-1,0001,1.0\n"
    assert c.line() == b"16\n"
    assert c.ask("SYST:ERR?") == '0,"No error"'
    a.close()
    c.close()


def test_a_malformed_query_is_answered_with_its_error_and_a_malformed_command_only_queued(server):
    client = RawClient(server.ports["qdac1"])
    client.send(b"\xff\xfe\x00garbage?\r\n")  # binary junk that looks like a query: its error, at once
    assert client.line() == b'-101,"Invalid character; a message held a byte that is not printable ASCII"\n'
    client.send("sour1:volt? ü\n".encode())  # UTF-8, not ASCII: refused whole
    assert client.line().startswith(b"-101,")
    client.send(b"sour1:volt\x00 0.1\n")  # a NUL inside a command: queued, never answered
    client.send(b"x" * (MAX_LINE + 10) + b"\n")  # longer than any message, not a query: queued only
    client.send(b"NO:SUCH:HEADER?\n")  # well-formed, unknown: a failed query answered with its error
    assert client.line() == b'-113,"Undefined header"\n'
    client.send(b"*IDN? " + b"x" * (MAX_LINE + 10) + b"\n")  # an over-long query
    assert client.line().startswith(b'-223,"Too much data')
    client.send(b"sour1:volt 99\n")  # out of range: a failed command, queued only
    # no command was answered: the next line read is the next query's answer, in step
    assert client.ask("*IDN?").startswith("QDevil, QDAC-II")
    assert client.ask("*STB?") == "4"  # the status byte says the error queue holds errors
    errors = [client.ask("SYST:ERR?") for _ in range(8)]
    assert [e.split(",")[0] for e in errors[:7]] == ["-101", "-101", "-101", "-223", "-113", "-223", "-222"], errors
    assert errors[7] == '0,"No error"'
    ls372 = RawClient(server.ports["ls372"])  # replies end as the instrument's answers end
    assert ls372.ask("KRDG? 6;NOPE?") == '-113,"Undefined header"' and ls372.buffer == b""
    assert float(ls372.ask("KRDG? 6")) > 0
    ls372.close()
    client.close()


def test_a_driver_reads_a_failed_query_at_once_and_works_on(server, tmp_path):
    station = served_station(server, LAB, tmp_path)
    try:
        ls372 = station.ls372
        # the reply a pyvisa-py host reads (a timeout would raise): the error, also in the queue
        assert ls372.ask("NO:SUCH:HEADER?") == '-113,"Undefined header"'
        assert ls372.ask("SYST:ERR?") == '-113,"Undefined header"'
        assert station.qdac1.ask("sour1:volt? \x01").startswith("-101,")
        assert ls372.ch06.temperature() > 0 and station.qdac1.ch01.dc_constant_V() == 0.0  # in step
        assert station.safety.hardener.stats.errors == 0  # nothing timed out, nothing was retried
    finally:
        station.close()


def test_an_idle_client_and_a_flooding_client_do_not_block_a_third(server):
    idle = RawClient(server.ports["ls372"])  # connects, says nothing
    flood = socket.create_connection(("127.0.0.1", server.ports["ls372"]))
    flood.setblocking(False)
    stop = threading.Event()
    sent = [0]

    def flooding() -> None:  # queries as fast as the socket takes them, never reads an answer
        message = b"KRDG? 6\n" * 512
        while not stop.is_set():
            try:
                sent[0] += flood.send(message)
            except BlockingIOError:
                time.sleep(0.001)

    thread = threading.Thread(target=flooding)
    thread.start()
    try:
        wait_for(lambda: sent[0] > 1 << 20, 20, "the flooder to push a megabyte")
        third = RawClient(server.ports["ls372"], timeout=5)
        latencies = []
        for _ in range(30):
            t = time.perf_counter()
            assert float(third.ask("KRDG? 6")) > 0
            latencies.append(time.perf_counter() - t)
        assert max(latencies) < 1.0, latencies
        third.close()
    finally:
        stop.set()
        thread.join(5)
        flood.close()
        idle.close()
    assert server.stats.messages > 30


def test_a_client_that_floods_and_vanishes_holds_no_one_up(server):
    port = server.ports["ls372"]
    flood = socket.create_connection(("127.0.0.1", port))
    flood.sendall(b"KRDG? 6\n" * (1 << 17))  # a megabyte of queries, none of their answers read
    wait_for(lambda: sum(len(c.lines) for c in server._connections) > 50_000, 20, "the server to read the flood")
    flood.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    flood.close()  # reset: what it sent and was not executed yet stays the instrument's to execute
    backlog = server._endpoints["ls372"].backlog
    wait_for(lambda: len(backlog) > 0, 20, "the vanished client's messages to become the backlog")
    third = RawClient(port, timeout=20)
    for _ in range(5):
        assert float(third.ask("KRDG? 6")) > 0
    assert len(backlog) > 1000  # answered in turn with the backlog, not after it
    third.close()


#: what a fuzzing client sends: SCPI-like commands, random bytes, non-UTF-8 text, over-long lines
CHUNKS = st.one_of(
    COMMANDS.map(lambda c: (c + "\n").encode("utf-8", "replace")),
    st.binary(max_size=64),
    st.text(max_size=24).map(lambda t: (t + "?\n").encode("utf-16-le")),
    st.tuples(st.sampled_from([b"", b"*IDN? ", b"SOUR1:VOLT ", b";"]), st.integers(MAX_LINE - 8, MAX_LINE + 8))
    .map(lambda t: t[0] + b"x" * t[1] + b"\n"),
)


def _queries(data: bytes) -> int:
    """How many replies ``data`` asks for: one per message that is a query (see the server's docstring)."""
    count = 0
    for raw in data.split(b"\n")[:-1]:  # whole messages only
        line = raw[:-1] if raw.endswith(b"\r") else raw
        text = line.decode("ascii", "replace")
        if len(raw) > MAX_LINE:  # refused whole; its first command says whether it asked
            text = raw[:256].decode("ascii", "replace").split(";", 1)[0]
        count += _is_query(text)
    return count


def _tame(name: str, data: bytes) -> bytes:
    if name == "clock":
        return re.sub(rb"(?i)ADV", b"TIME?", data)  # no weeks of lab time
    if name == "sampler":
        return re.sub(rb"(?i)COUN", b"RATE", data)  # no huge acquisitions
    return data


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    name=st.sampled_from(["qdac1", "ls372", "sampler", "clock"]),
    chunks=st.lists(CHUNKS, max_size=6),
    leave_early=st.booleans(),
)
@example(name="qdac1", chunks=[b"\xff\xfe\x00garbage?\r\n", b"*IDN? " + b"x" * (MAX_LINE + 1) + b"\n"], leave_early=False)
def test_fuzzed_socket_input_never_crashes_the_server(fuzz_server, name, chunks, leave_early):
    server = fuzz_server
    data = _tame(name, b"".join(chunks))
    client = socket.create_connection(("127.0.0.1", server.ports[name]), timeout=10)
    client.sendall(data)
    if leave_early:
        client.close()  # mid-message, answers unread
    elif name == "sampler":  # binary blocks: read to the end
        client.shutdown(socket.SHUT_WR)  # done: the server answers what it got, then closes
        while client.recv(65536):
            pass
        client.close()
    else:  # text answers: exactly one line per query message, then the probe's own answer
        client.sendall(b"\n*IDN?\n")  # (the newline ends whatever half message came before)
        reader = RawClient.__new__(RawClient)
        reader.sock, reader.buffer = client, b""
        replies = [reader.line() for _ in range(_queries(data))]
        assert reader.line().count(b",") == 3, replies  # in step: the probe's answer comes next
        client.close()
    probe = RawClient(server.ports[name])
    assert probe.ask("*IDN?").count(",") == 3  # still serving, answers whole
    probe.close()
    assert server._thread is not None and server._thread.is_alive()


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(junk=st.lists(CHUNKS, min_size=1, max_size=4).map(b"".join).filter(len), half=st.binary(min_size=1, max_size=32).filter(lambda b: b"\n" not in b))
def test_a_client_flooding_junk_and_one_saying_half_a_message_do_not_block_a_third(fuzz_server, junk, half):
    server = fuzz_server
    port = server.ports["ls372"]
    idle = socket.create_connection(("127.0.0.1", port))
    idle.sendall(half)  # half a message, then nothing
    flood = socket.create_connection(("127.0.0.1", port))
    flood.setblocking(False)
    stop = threading.Event()
    message = junk * max(1, 4096 // len(junk))
    sent = [0]

    def flooding() -> None:  # as fast as the socket takes it, never reading a reply
        while not stop.is_set():
            try:
                sent[0] += flood.send(message)
            except BlockingIOError:
                time.sleep(0.001)
            except OSError:
                return

    thread = threading.Thread(target=flooding)
    thread.start()
    third = RawClient(port, timeout=10)
    try:
        wait_for(lambda: sent[0] > 64 << 10, 20, "the flooder to push 64 KiB")
        for _ in range(10):  # answered, whole and in step, while the flood goes on
            assert float(third.ask("KRDG? 6")) > 0
            assert third.ask("NOPE?") == '-113,"Undefined header"'
    finally:
        stop.set()
        thread.join(5)
        third.close()
        flood.close()
        idle.close()
    assert server._thread is not None and server._thread.is_alive()


@pytest.fixture(scope="module")
def fuzz_server():
    srv = LabServer.from_description(LAB + ",instance=fuzz").run_in_thread()
    yield srv
    srv.stop()


def test_faults_are_injected_over_sockets_and_the_drivers_recover(server, tmp_path):
    station = served_station(server, LAB, tmp_path)
    try:
        truth = station.ls372.ch06.temperature()
        with server.lock:
            server.lab.faults.inject("garbled", "ls372")
            server.lab.faults.inject("dropped", "ls372")
        assert station.ls372.ch06.temperature() == pytest.approx(truth, rel=0.05)
        stats = station.safety.hardener.stats
        assert stats.errors >= 2 and stats.reconnects >= 1 and stats.failures == 0
        assert {e.kind for e in server.lab.faults.log} >= {"garbled", "dropped"}
    finally:
        station.close()


def test_a_query_given_up_on_leaves_no_late_answer_for_the_next_one(server, tmp_path):
    """An instrument that answers after the host gave up: the next query must get its own reply.

    The lab stands still (speed 0), so a stuck instrument stays stuck until the station's
    clock moves it on; every retry of the temperature times out and the layer gives up.
    The last attempt's answer is still on its way when the instrument comes back: had
    the session been left as it was, ``*IDN?`` would read that temperature.
    """
    station = served_station(server, LAB, tmp_path)
    try:
        station.ls372.visa_handle.timeout = 300  # ms
        with server.lock:
            server.lab.faults.stick("ls372", 3600.0)
        with pytest.raises(InstrumentFault, match="ls372"):
            station.ls372.ch06.temperature()
        station.clock.sleep(3600.0)  # the instrument comes back and answers what it was sent
        wait_for(lambda: not server.lab.faults.is_stuck("ls372"), 5, "the instrument to come back")
        time.sleep(0.3)  # the late answers, had anyone kept the socket, would be here by now
        assert station.ls372.ask("*IDN?").startswith("LSCI,MODEL372")
        assert 0.0 < station.ls372.ch06.temperature() < 1.0
    finally:
        station.close()


def test_the_clock_is_exact_at_speed_0_and_runs_on_at_speed(tmp_path):
    with LabServer.from_description(LAB) as still:
        clock = RawClient(still.ports["clock"])
        t0 = float(clock.ask("CLOC:TIME?"))
        time.sleep(0.2)
        assert float(clock.ask("CLOC:TIME?")) == t0  # nothing moves by itself at speed 0
        clock.send("CLOC:ADV 12.5\n")
        assert float(clock.ask("CLOC:TIME?")) == t0 + 12.5  # a wait is exactly its duration
        clock.close()
    built = time.monotonic()
    with LabServer.from_description(LAB, speed=3600.0) as running:
        clock = RawClient(running.ports["clock"])
        t0 = float(clock.ask("CLOC:TIME?"))
        time.sleep(0.3)
        t1, w1 = float(clock.ask("CLOC:TIME?")), time.monotonic()
        clock.close()
    # the clock follows wall time in idle ticks (TICK_S apart) and a little before each message;
    # the first reading may still owe some of the idle time since the server was built (caught
    # up by the second), so the upper bound counts the wall time from then
    assert 0.5 * 3600 * 0.3 < t1 - t0 <= 3600 * (w1 - built + 0.2)


class _FakeLab:
    def __init__(self) -> None:
        self.slept: list[float] = []

    def sleep(self, seconds: float, chunk_s: float | None = None) -> None:
        self.slept.append(seconds)


def test_lab_time_counts_idle_time_only():
    wall = [100.0]
    lab = _FakeLab()
    time_ = LabTime(lab, speed=10.0, wall=lambda: wall[0])  # type: ignore[arg-type]
    wall[0] += 0.02  # idle
    time_.catch_up()
    assert lab.slept == [pytest.approx(0.2)]
    wall[0] += 1.0
    time_.catch_up(max_wall_s=0.1)  # paced: a tenth of a second's worth now, the rest carried
    assert lab.slept[-1] == pytest.approx(1.0) and time_.lag_s == pytest.approx(9.0)
    time_.catch_up()
    assert lab.slept[-1] == pytest.approx(5.0) and time_.lag_s == pytest.approx(4.0)
    time_.catch_up()
    assert time_.lag_s == pytest.approx(0.0)
    wall[0] += 3.0  # an exchange that took 3 s of wall time (an acquisition's physics)
    time_.exchange_done()
    wall[0] += 0.01
    time_.catch_up()
    assert lab.slept[-1] == pytest.approx(0.1)  # only the idle 10 ms after it
    with pytest.raises(ValueError, match="speed"):
        LabTime(lab, speed=-1.0)  # type: ignore[arg-type]


def test_catching_up_takes_at_most_its_share_of_the_wall_time():
    """A machine too slow for the asked speed: the clock lags, the clients are not starved.

    On a wall clock of its own: each idle chunk the lab simulates costs it 4 ms (~15 000
    lab s per wall s at best, for a speed of 10^5), and the clients take 2 ms between
    one message's catch-up and tick and the next's.
    """
    wall = [0.0]

    class SlowLab(_FakeLab):
        def sleep(self, seconds: float, chunk_s: float | None = None) -> None:
            super().sleep(seconds, chunk_s)
            wall[0] += 0.004

    time_ = LabTime(SlowLab(), speed=1e5, wall=lambda: wall[0])  # type: ignore[arg-type]
    busy = 0.0
    while wall[0] < 10.0:
        before = wall[0]
        time_.catch_up(MESSAGE_STEP_WALL_S)  # before a message
        time_.catch_up()  # and a tick
        busy += wall[0] - before
        wall[0] += 0.002  # the clients' share
    assert MAX_DUTY * 10.0 - 0.1 <= busy <= MAX_DUTY * 10.0 + MAX_CREDIT_S + 0.004, busy  # its share, no more
    assert time_.lag_s > 8e5  # behind by most of the 10^6 lab s asked, and it says so


def test_servers_bind_loopback_unless_told_otherwise(server, capsys):
    assert server.host == "127.0.0.1"
    assert all(a.startswith("TCPIP0::127.0.0.1::") for a in server.addresses.values())
    with pytest.raises(ServerConfigError, match="allow_remote"):
        LabServer.from_description(LAB, host="0.0.0.0")
    assert main(["serve", "--seed", "3", "--cells", "4", "--host", "0.0.0.0"]) == 2
    err = capsys.readouterr().err
    assert "--allow-remote" in err and "not a loopback address" in err


def test_every_installed_routine_calibrates_a_served_chip_from_cold(tmp_path):
    description = "seed=5,cells=4"
    with LabServer.from_description(description) as srv:
        station = served_station(srv, description, tmp_path)
        try:
            report = calibrate_station(station, data_dir=tmp_path / "data", progress=False)
        finally:
            station.close()
            Instrument.close_all()
        assert set(report.calibrated) == set(routines())  # the whole graph, through the sockets
        assert all(s is Status.FRESH for s in report.status.values()), report.status
        assert srv.stats.messages > 1000 and srv.stats.errors == 0



def _pumped_line(srv: LabServer, client: RawClient) -> bytes:
    """Run the (threadless) server's wakeups until ``client`` has a whole answer."""
    client.sock.settimeout(0.05)
    try:
        deadline = time.monotonic() + 5.0
        while b"\n" not in client.buffer:
            assert time.monotonic() < deadline, "no answer"
            srv._serve_once(0.05)
            try:
                client.buffer += client.sock.recv(65536)
            except TimeoutError:
                pass
        return client.line()
    finally:
        client.sock.settimeout(5.0)


def _one_wakeup_write_and_query(srv: LabServer) -> float:
    """A query of the lab time on one socket, then a 5 s wait written on another, both
    read in one wakeup of the server (query first): the lab time the query answers."""
    srv.start()
    port = srv.ports["clock"]
    asker, waiter = RawClient(port), RawClient(port)
    while len(srv._connections) < 2:
        srv._serve_once(1.0)
    asker.send("CLOC:TIME?\n")
    before = float(_pumped_line(srv, asker))
    asker.send("CLOC:TIME?\n")
    waiter.send("CLOC:ADV 5\n")
    mine = [c.sock for c in srv._connections]
    deadline = time.monotonic() + 5.0
    while len(select.select(mine, [], [], 0.2)[0]) < 2:  # both in the kernel: one wakeup reads both
        assert time.monotonic() < deadline, "the two messages never arrived together"
    assert srv._serve_once(0.0) == 2
    return float(_pumped_line(srv, asker)) - before


def test_a_write_read_in_the_same_wakeup_as_a_query_runs_first(monkeypatch):
    """A client that waits (a write on the clock's socket) and then asks from another socket
    sent the wait first; when both reach the server in one wakeup the query must see the
    lab after the wait, whatever order the sockets became ready in."""
    srv = LabServer.from_description(LAB)
    try:
        assert _one_wakeup_write_and_query(srv) == pytest.approx(5.0)
    finally:
        srv._shutdown()
    # the same exchange without the rule (no writes ahead of a round's queries) sees the
    # lab before the wait: the test can tell the difference
    monkeypatch.setattr("labstack.service.server.WRITES_PER_ROUND", 0)
    srv = LabServer.from_description(LAB)
    try:
        assert _one_wakeup_write_and_query(srv) == pytest.approx(0.0)
    finally:
        srv._shutdown()


def test_labstack_serve_serves_the_second_lab_station_and_its_drivers_reach_it(tmp_path) -> None:
    """``labstack serve --station oxford_lockin``: lock-ins, sources, preamp and Triton on
    their own loopback sockets; the station file it writes opens with the unmodified
    drivers (pyvisa-py for the VISA ones, a raw socket for the Triton) and reads the lab."""
    from labstack.service import LabService
    from labstack.station import load_station

    Instrument.close_all()  # the served station's instruments take the shipped names
    service = LabService("", tmp_path / "svc", station="oxford_lockin").start()
    service.server.run_in_thread()
    station = None
    try:
        served = yaml.safe_load(service.station_file.read_text())
        triton_spec = served["instruments"]["triton"]
        assert triton_spec["address"] == "127.0.0.1" and triton_spec["port"] == service.server.ports["triton"]
        assert "visalib" not in triton_spec.get("init", {})
        assert served["instruments"]["lockin1"]["init"]["visalib"] == "@py"
        assert set(service.server.ports) == set(served["instruments"])
        station = load_station(service.station_file)
        lab = service.server.lab
        assert station.instrument("triton").T8() == pytest.approx(lab.cryostat.t_mc, rel=0.1)
        station.instrument("smu1").ch1.source_voltage(0.05)  # a coupler line, through the guard
        assert station.instrument("smu1").ch1.source_voltage() == pytest.approx(0.05)
        assert station.instrument("lockin1").R() >= 0
    finally:
        if station is not None:
            station.close()
        service.server.stop()
        Instrument.close_all()
    with pytest.raises(ValueError, match="not virtual"):
        LabService("", tmp_path / "svc2", station="hardware_example")
