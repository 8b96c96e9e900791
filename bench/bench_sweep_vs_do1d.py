"""Sweep one DummyInstrument parameter and read another: QCoDeS ``do1d`` vs labstack.

Both run in this process on the same instruments over the same N points: ``do1d``
writes a QCoDeS SQLite dataset in a temporary directory, labstack's ``run_sequence``
streams a zarr run into another. Each figure is wall time of the whole call (setup,
snapshot and final write included) divided by N. Prints microseconds per point for
each and ends with ``ratio: <do1d us/point / labstack us/point>`` (higher is better).

    python bench/bench_sweep_vs_do1d.py [--points 10000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np
from qcodes import Station
from qcodes.dataset import do1d, initialise_or_create_database_at, load_or_create_experiment
from qcodes.instrument_drivers.mock_instruments import DummyInstrument

from labstack.measure import Read, Sweep, run_sequence


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3, help="best of this many runs each")
    args = parser.parse_args()
    n = args.points

    dac = DummyInstrument("bench_dac", gates=["ch1"])
    dmm = DummyInstrument("bench_dmm", gates=["v1"])
    station = Station(dac, dmm)
    with tempfile.TemporaryDirectory() as tmp:
        initialise_or_create_database_at(os.path.join(tmp, "bench.db"))
        load_or_create_experiment("bench", sample_name="dummy")

        def qcodes_once() -> float:
            t = time.perf_counter()
            do1d(dac.ch1, 0.0, 1.0, n, 0.0, dmm.v1, do_plot=False, show_progress=False)
            return time.perf_counter() - t

        seq = Sweep.over("v", "bench_dac.ch1", np.linspace(0.0, 1.0, n), Read("bench_dmm.v1"))

        def labstack_once() -> float:
            t = time.perf_counter()
            run_sequence(seq, station, name="bench", data_dir=tmp, progress=False)
            return time.perf_counter() - t

        qcodes_us = min(qcodes_once() for _ in range(args.repeat)) / n * 1e6
        labstack_us = min(labstack_once() for _ in range(args.repeat)) / n * 1e6
    dac.close()
    dmm.close()
    print(f"points: {n}")
    print(f"qcodes do1d (sqlite): {qcodes_us:.1f} us/point")
    print(f"labstack sweep (zarr): {labstack_us:.1f} us/point")
    print(f"ratio: {qcodes_us / labstack_us:.2f}")


if __name__ == "__main__":
    main()
