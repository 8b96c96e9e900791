"""The lab service's cost: the same drivers through a served lab's sockets vs the in-process backend.

Two targets from the lab-service issue, each against its in-process peer:

1. a QCoDeS parameter ``get`` through the unmodified driver over the socket (pyvisa-py,
   ``labstack serve`` in its own process) within 3x the same ``get`` through the
   in-process ``@labstack`` backend;
2. a full calibration (every installed routine, from cold) through ``labstack serve``
   within 1.5x of the in-process wall time.

Both sides run the same chip (``--lab``), the same routines and parameters, and the
served lab runs at ``--speed 0`` so the two calibrations do the same work (they
produce the same data, bit for bit). Kernels are compiled before timing on both
sides. ``ratio`` is the worst of (3 x in-process get / socket get) over the
parameters and (1.5 x in-process calibration / served calibration): higher is
better, >= 1 meets both targets.

Where a socket get's time goes is printed layer by layer (a bare socket, pyvisa-py,
the QCoDeS parameter), next to the floor any Python server has (a minimal echo
server in its own process), the instrument's own work (its SCPI engine, in
process) and the same QCoDeS get with its socket pointed at the echo server (the
floor of the unmodified client stack: what a server that cost nothing would give). A get is one write and one read: the driver's whole Python stack runs in
the client, then the served instrument loop runs in the server, one after the
other, with two context switches in between. The same QCoDeS and pyvisa code
costs more between socket round trips than in-process (its caches went to the
other process meanwhile), and the scheduler decides whether the two processes
share a core (the fast case) or wake each other across cores (much slower on a VM).

The in-process peer runs in a process of its own (QCoDeS names an instrument once
per process), as it would for a user: its gets, the served gets and the echo-floor
gets are timed in interleaved rounds and each side keeps its best round, so a busy
spell of the (shared) machine falls on every side alike. The table's ``floor`` is
the echo-floor get plus the instrument's own work (its SCPI engine, timed in
process): what a served get would cost if serving cost nothing, the bound below
which no server change can bring the ratio.

    python bench/bench_lab_service.py [--cells 8] [--gets 1000] [--repeat 6]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from labstack.session import calibrate_station  # noqa: E402
from labstack.station import load_station  # noqa: E402
from labstack.visa import open_station  # noqa: E402

#: each parameter timed, with the instrument and the SCPI query its get sends
PARAMETERS = {
    "ls372.ch06.temperature": ("ls372", "KRDG? 6"),
    "qdac1.ch01.dc_constant_V": ("qdac1", "sour1:volt?"),
    "sampler.n_samples": ("sampler", "SAMP:COUN?"),
    "clock.time": ("clock", "CLOC:TIME?"),
}


def start_service(lab: str, directory: Path) -> tuple[subprocess.Popen[str], Path]:
    process = subprocess.Popen(
        [sys.executable, "-m", "labstack.cli", "serve", "--lab", lab, "--dir", str(directory), "--fresh"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    assert process.stdout is not None
    for line in process.stdout:
        if line.startswith("serving on"):
            return process, directory / "station.yaml"
    raise RuntimeError(f"labstack serve did not start (exit {process.wait()})")


def stop_service(process: subprocess.Popen[str]) -> None:
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()


def warm(station) -> None:
    """Compile the simulator's kernels (in whichever process runs them) before timing."""
    station.sampler.n_samples(4)
    station.sampler.samples()


def time_gets(station, name: str, n: int) -> float:
    parameter = station.parameter(name)
    for _ in range(20):
        parameter.get()
    t = time.perf_counter()
    for _ in range(n):
        parameter.get()
    return (time.perf_counter() - t) / n


ECHO_SERVER = """
import selectors, socket
listener = socket.create_server(("127.0.0.1", 0))
print(listener.getsockname()[1], flush=True)
while True:  # one client at a time, each answered '1' per message until it leaves
    conn, _ = listener.accept()
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    conn.setblocking(False)
    selector = selectors.DefaultSelector()
    selector.register(conn, selectors.EVENT_READ)
    while True:
        selector.select(0.05)
        try:
            data = conn.recv(65536)
        except BlockingIOError:
            continue
        except OSError:
            break
        if not data:
            break
        conn.send(b"1\\r\\n" * data.count(b"\\n"))
    selector.close()
    conn.close()
"""
ECHO_VALUE = 1  # a float, an int: what every timed parameter's parser reads


def best_of(fn, n: int, repeat: int) -> float:
    for _ in range(20):
        fn()
    out = []
    for _ in range(repeat):
        t = time.perf_counter()
        for _ in range(n):
            fn()
        out.append((time.perf_counter() - t) / n)
    return min(out)


def round_trip(port: int, n: int, repeat: int) -> float:
    """A bare TCP client's query and answer, ``KRDG? 6`` (best of ``repeat``)."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def raw() -> None:
        sock.sendall(b"KRDG? 6\r\n")
        data = b""
        while not data.endswith(b"\n"):
            data += sock.recv(4096)

    try:
        return best_of(raw, n, repeat)
    finally:
        sock.close()


class EchoFloor:
    """A minimal Python echo server in its own process: the floor any Python server has.

    :meth:`bare` times a bare socket's round trip to it; :meth:`gets` times each
    parameter's QCoDeS get with its instrument's socket pointed at it (put back
    afterwards): the floor of the unmodified client stack (QCoDeS, labstack's layers,
    pyvisa, pyvisa-py) against a server that costs nothing.
    """

    def __init__(self) -> None:
        self.process = subprocess.Popen([sys.executable, "-c", ECHO_SERVER], stdout=subprocess.PIPE, text=True)
        assert self.process.stdout is not None
        self.port = int(self.process.stdout.readline())

    def bare(self, n: int, repeat: int) -> float:
        return round_trip(self.port, n, repeat)  # it takes one client at a time: this one, then each get's

    def gets(self, station, n: int) -> dict[str, float]:
        out = {}
        for name, (instrument, _) in PARAMETERS.items():
            handle = getattr(station, instrument).visa_handle
            session = handle.visalib.sessions[handle.session]  # pyvisa-py's TCPIP SOCKET session
            served, echo = session.interface, socket.create_connection(("127.0.0.1", self.port))
            echo.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as labstack sets it on the served one
            session.interface = echo
            parameter = station.parameter(name)
            try:
                out[name] = time_gets(station, name, n)
                # every get was answered by the echo server (a failure would have reconnected to the lab)
                assert parameter.get() == ECHO_VALUE and getattr(station, instrument).visa_handle is handle
            finally:
                session.interface = served
                echo.close()
        return out

    def close(self) -> None:
        self.process.kill()
        self.process.wait()


def exchange_layers(station, n: int, repeat: int) -> dict[str, float]:
    """One query through each layer: a bare socket, pyvisa-py, the QCoDeS parameter."""
    handle = station.ls372.visa_handle
    port = int(handle.resource_name.split("::")[2])
    return {
        "bare TCP round trip to the served instrument": round_trip(port, n, repeat),
        "pyvisa-py query (write + read)": best_of(lambda: handle.query("KRDG? 6"), n, repeat),
        "QCoDeS parameter get (driver, labstack layers)": best_of(station.ls372.ch06.temperature.get, n, repeat),
    }


INPROCESS_WORKER = """
import json, sys
sys.path.insert(0, {root!r})
from bench.bench_lab_service import PARAMETERS, best_of, time_gets
from labstack.visa import open_station
station = open_station("virtual", lab={lab!r})
devices = station.ls372.visa_handle.visalib.instruments
print("ready", flush=True)
for line in sys.stdin:  # one round of gets per line, timed while the parent waits
    n, repeat = map(int, line.split())
    out = {{name: time_gets(station, name, n) for name in PARAMETERS}}
    out["engine"] = {{name: best_of(lambda d=devices.get(i), c=c: d.handle(c), n, repeat)
                     for name, (i, c) in PARAMETERS.items()}}
    print(json.dumps(out), flush=True)
"""


class InProcess:
    """The in-process ``@labstack`` station in a process of its own, timed a round at a time.

    The peer of the served gets is timed in rounds interleaved with theirs, so a
    busy spell of the machine (it is shared) falls on both sides alike; it runs in
    its own process because QCoDeS names each instrument once per process.
    """

    def __init__(self, lab: str) -> None:
        code = INPROCESS_WORKER.format(root=str(Path(__file__).resolve().parents[1]), lab=lab)
        self.process = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, text=True)
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.startswith("ready"):
                return
        raise RuntimeError("the in-process station did not open")

    def round(self, n: int, repeat: int) -> dict:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(f"{n} {repeat}\n")
        self.process.stdin.flush()
        return json.loads(self.process.stdout.readline())

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        self.process.wait(30)


def time_calibration(station, data_dir: Path) -> tuple[float, dict]:
    t = time.perf_counter()
    report = calibrate_station(station, data_dir=data_dir, progress=False)
    return time.perf_counter() - t, {k: str(v) for k, v in report.status.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cells", type=int, default=8)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--gets", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=6, help="best of N interleaved rounds for the gets")
    ap.add_argument("--no-calibration", action="store_true")
    args = ap.parse_args()
    lab = f"seed={args.seed},cells={args.cells}"
    print(f"lab '{lab}'; {os.cpu_count()} cores; gets: best of {args.repeat} x {args.gets}")

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        # ---------------------------------------------------------------- gets
        gets: dict[str, dict[str, float]] = {}
        engine: dict[str, float] = {}
        # no acquisition before the gets, on either side: the simulator's parallel kernels
        # leave threads spinning for a while after they run, which would time them, not I/O
        local = InProcess(f"{lab},instance=bench-gets")
        process, station_file = start_service(lab, root / "svc-gets")
        try:
            served = load_station(station_file)
            echo = EchoFloor()
            floor_gets: dict[str, float] = {}
            for _ in range(args.repeat):  # interleaved rounds: in-process, served, echo floor; best of all
                timed = local.round(args.gets, 1)
                for name in PARAMETERS:
                    gets.setdefault(name, {})
                    gets[name]["in-process"] = min(gets[name].get("in-process", 1.0), timed[name])
                    engine[name] = min(engine.get(name, 1.0), timed["engine"][name])
                for name in PARAMETERS:
                    t = time_gets(served, name, args.gets)
                    gets[name]["socket"] = min(gets[name].get("socket", t), t)
                for name, t in echo.gets(served, args.gets).items():
                    floor_gets[name] = min(floor_gets.get(name, t), t)
            layers = exchange_layers(served, args.gets, args.repeat)
            floor = echo.bare(args.gets, args.repeat)
            echo.close()
            served.close()
        finally:
            stop_service(process)
            local.close()
        print()
        print(f"{'parameter get':<28} {'in-process':>12} {'socket':>12} {'ratio':>7} {'target':>7}"
              f"  {'floor':>10} {'floor ratio':>11}")
        get_ratios = []
        for name, t in gets.items():
            slow = t["socket"] / t["in-process"]
            get_ratios.append(3.0 / slow)
            least = floor_gets[name] + engine[name]
            print(f"{name:<28} {t['in-process'] * 1e6:>9.1f} us {t['socket'] * 1e6:>9.1f} us {slow:>6.2f}x {'<= 3x':>7}"
                  f"  {least * 1e6:>7.1f} us {least / t['in-process']:>10.2f}x")
        print("  floor: the same get with its socket on a minimal echo server, plus the instrument's own work"
              " (its SCPI engine, in process): what a served get costs if serving cost nothing")
        ratio = min(get_ratios)
        print()
        print("where a socket get's time goes (ls372 'KRDG? 6', best of the same repeats):")
        print(f"  {'round trip to a minimal Python echo server':<44} {floor * 1e6:>7.1f} us  (the floor)")
        print(f"  {'the instrument SCPI engine, in process':<44} {engine['ls372.ch06.temperature'] * 1e6:>7.1f} us")
        for what, seconds in layers.items():
            print(f"  {what:<44} {seconds * 1e6:>7.1f} us")
        ls372 = gets["ls372.ch06.temperature"]["in-process"]
        floor_get = floor_gets["ls372.ch06.temperature"]
        print(f"  {'the same QCoDeS get to the echo server':<44} {floor_get * 1e6:>7.1f} us  "
              f"({floor_get / ls372:.2f}x in-process: the unmodified client stack's floor)")

        # ---------------------------------------------------------------- calibration
        if not args.no_calibration:
            local = open_station("virtual", lab=f"{lab},instance=bench-cal")
            warm(local)
            t_local, status_local = time_calibration(local, root / "data-local")
            local.close()
            process, station_file = start_service(lab, root / "svc-cal")
            try:
                served = load_station(station_file)
                warm(served)
                t_served, status_served = time_calibration(served, root / "data-served")
                served.close()
            finally:
                stop_service(process)
            slow = t_served / t_local
            print()
            print(f"{'full calibration':<28} {'in-process':>12} {'served':>12} {'ratio':>7} {'target':>7}")
            print(f"{'all routines, from cold':<28} {t_local:>10.2f} s {t_served:>10.2f} s {slow:>6.2f}x {'<= 1.5x':>7}")
            if status_local != status_served:
                print(f"status differs: in-process {status_local}, served {status_served}")
            ratio = min(ratio, 1.5 / slow)
    print()
    print(f"ratio: {ratio:.3f}")


if __name__ == "__main__":
    main()
