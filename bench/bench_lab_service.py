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
costs about 2.5 times as much between socket round trips as in-process (its caches
went to the other process meanwhile), and the scheduler decides whether the two
processes share a core (the fast case) or wake each other across cores (much
slower on a VM); so gets are timed in interleaved rounds, best of all.

    python bench/bench_lab_service.py [--cells 8] [--gets 2000] [--repeat 3]
"""

from __future__ import annotations

import argparse
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

PARAMETERS = ("ls372.ch06.temperature", "qdac1.ch01.dc_constant_V", "sampler.n_samples", "clock.time")


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
while True:  # one client at a time, each answered '+1.23456E-02' per message until it leaves
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
        conn.send(b"+1.23456E-02\\r\\n" * data.count(b"\\n"))
    selector.close()
    conn.close()
"""
ECHO_VALUE = 1.23456e-2


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


def echo_floors(station, n: int, repeat: int) -> tuple[float, float]:
    """Round trips to a minimal Python echo server in its own process: any Python server's floor.

    Returns (a bare socket's round trip, the QCoDeS get of ``ls372.ch06.temperature``
    with its socket pointed at the echo server): the second is the floor of the
    unmodified client stack (QCoDeS, labstack's layers, pyvisa, pyvisa-py) against a
    server that costs nothing. The station's own socket is put back afterwards.
    """
    process = subprocess.Popen([sys.executable, "-c", ECHO_SERVER], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        port = int(process.stdout.readline())
        bare = round_trip(port, n, repeat)  # the echo server takes one client at a time: this one, then the station
        handle = station.ls372.visa_handle
        session = handle.visalib.sessions[handle.session]  # pyvisa-py's TCPIP SOCKET session
        served, echo = session.interface, socket.create_connection(("127.0.0.1", port))
        echo.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        session.interface = echo
        try:
            get = best_of(station.ls372.ch06.temperature.get, n, repeat)
            # every get was answered by the echo server (a failure would have reconnected to the lab)
            assert station.ls372.ch06.temperature.get() == ECHO_VALUE and station.ls372.visa_handle is handle
        finally:
            session.interface = served
            echo.close()
        return bare, get
    finally:
        process.kill()
        process.wait()


def exchange_layers(station, n: int, repeat: int) -> dict[str, float]:
    """One query through each layer: a bare socket, pyvisa-py, the QCoDeS parameter."""
    handle = station.ls372.visa_handle
    port = int(handle.resource_name.split("::")[2])
    return {
        "bare TCP round trip to the served instrument": round_trip(port, n, repeat),
        "pyvisa-py query (write + read)": best_of(lambda: handle.query("KRDG? 6"), n, repeat),
        "QCoDeS parameter get (driver, labstack layers)": best_of(station.ls372.ch06.temperature.get, n, repeat),
    }


def time_calibration(station, data_dir: Path) -> tuple[float, dict]:
    t = time.perf_counter()
    report = calibrate_station(station, data_dir=data_dir, progress=False)
    return time.perf_counter() - t, {k: str(v) for k, v in report.status.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cells", type=int, default=8)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--gets", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=3, help="best of N for the gets")
    ap.add_argument("--no-calibration", action="store_true")
    args = ap.parse_args()
    lab = f"seed={args.seed},cells={args.cells}"
    print(f"lab '{lab}'; {os.cpu_count()} cores; gets: best of {args.repeat} x {args.gets}")

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        # ---------------------------------------------------------------- gets
        gets: dict[str, dict[str, float]] = {}
        # no acquisition before the gets, on either side: the simulator's parallel kernels
        # leave threads spinning for a while after they run, which would time them, not I/O
        local = open_station("virtual", lab=f"{lab},instance=bench-gets")
        for _ in range(args.repeat):  # interleaved rounds, best of all
            for name in PARAMETERS:
                t = time_gets(local, name, args.gets)
                gets.setdefault(name, {})["in-process"] = min(gets.get(name, {}).get("in-process", t), t)
        device = local.ls372.visa_handle.visalib.instruments.get("ls372")
        engine = best_of(lambda: device.handle("KRDG? 6"), args.gets, args.repeat)
        local.close()
        process, station_file = start_service(lab, root / "svc-gets")
        try:
            served = load_station(station_file)
            for _ in range(args.repeat):
                for name in PARAMETERS:
                    t = time_gets(served, name, args.gets)
                    gets[name]["socket"] = min(gets[name].get("socket", t), t)
            layers = exchange_layers(served, args.gets, args.repeat)
            floor, floor_get = echo_floors(served, args.gets, args.repeat)
            served.close()
        finally:
            stop_service(process)
        print()
        print(f"{'parameter get':<28} {'in-process':>12} {'socket':>12} {'ratio':>7} {'target':>7}")
        get_ratios = []
        for name, t in gets.items():
            slow = t["socket"] / t["in-process"]
            get_ratios.append(3.0 / slow)
            print(f"{name:<28} {t['in-process'] * 1e6:>9.1f} us {t['socket'] * 1e6:>9.1f} us {slow:>6.2f}x {'<= 3x':>7}")
        ratio = min(get_ratios)
        print()
        print("where a socket get's time goes (ls372 'KRDG? 6', best of the same repeats):")
        print(f"  {'round trip to a minimal Python echo server':<44} {floor * 1e6:>7.1f} us  (the floor)")
        print(f"  {'the instrument SCPI engine, in process':<44} {engine * 1e6:>7.1f} us")
        for what, seconds in layers.items():
            print(f"  {what:<44} {seconds * 1e6:>7.1f} us")
        ls372 = gets["ls372.ch06.temperature"]["in-process"]
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
