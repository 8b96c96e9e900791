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


def exchange_layers(station, n: int, repeat: int) -> dict[str, float]:
    """One query through each layer: a bare socket, pyvisa-py, the QCoDeS parameter."""
    handle = station.ls372.visa_handle
    host, port = handle.resource_name.split("::")[1:3]
    sock = socket.create_connection((host, int(port)))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def raw() -> None:
        sock.sendall(b"KRDG? 6\r\n")
        data = b""
        while not data.endswith(b"\n"):
            data += sock.recv(4096)

    def best(fn) -> float:
        for _ in range(20):
            fn()
        out = []
        for _ in range(repeat):
            t = time.perf_counter()
            for _ in range(n):
                fn()
            out.append((time.perf_counter() - t) / n)
        return min(out)

    layers = {
        "bare TCP round trip to the served instrument": best(raw),
        "pyvisa-py query (write + read)": best(lambda: handle.query("KRDG? 6")),
        "QCoDeS parameter get (driver, labstack layers)": best(station.ls372.ch06.temperature.get),
    }
    sock.close()
    return layers


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
        for name in PARAMETERS:
            gets.setdefault(name, {})["in-process"] = min(time_gets(local, name, args.gets) for _ in range(args.repeat))
        local.close()
        process, station_file = start_service(lab, root / "svc-gets")
        try:
            served = load_station(station_file)
            for name in PARAMETERS:
                gets[name]["socket"] = min(time_gets(served, name, args.gets) for _ in range(args.repeat))
            layers = exchange_layers(served, args.gets, args.repeat)
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
        for what, seconds in layers.items():
            print(f"  {what:<44} {seconds * 1e6:>7.1f} us")

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
