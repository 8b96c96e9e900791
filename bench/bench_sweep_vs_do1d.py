"""Sweep one DummyInstrument parameter and read another: QCoDeS ``do1d`` vs labstack.

Both run in this process on the same instruments over the same N points: ``do1d``
writes a QCoDeS SQLite dataset in a temporary directory, labstack's ``run_sequence``
streams a zarr run into another. Each figure is wall time of the whole call (setup,
snapshot, store creation and final write included) divided by N, the best of the
timed runs. The two sides take turns in blocks: each block starts with an untimed run
of its side, then times a few (``--repeat`` rounds, every side timed as often). A call
timed straight after the other side's runs pays for the caches that side filled: a
100-point labstack run took 1.5 ms after its own runs and 2.1 ms straight after a
``do1d``, which would have measured the turn-taking rather than either side; within a
block both are measured as a script that sweeps repeatedly sees them. The peer gets its best: ``do1d`` is
timed with and without its in-memory cache (``in_memory_cache=False`` skips a copy
of every point kept for live plots; labstack keeps none either) and the faster counts. A run has a fixed cost as well as a
cost per point, and calibration sweeps are short, so the comparison is made at
several N (default 100, 1 000 and 20 000 points). Prints microseconds per point for
each N and ends with ``ratio: <do1d us/point / labstack us/point>``, the smallest
over the N (the worst case; higher is better).

Both sides write in one temporary directory under ``--dir``: by default the current
directory, the disk a lab's data goes to (labstack writes ``./labstack_data``, QCoDeS
``~/experiments.db``). A short run's fixed cost is mostly file-system calls (a zarr
store is a directory of small files, a QCoDeS dataset a few rows in one SQLite file),
so the bench prints what one file creation costs there: on a disk where that is slow
(a ``/tmp`` watched by a scanner costs 30x the data disk on some machines) labstack's
100-point ratio drops with it, and ``--dir`` shows by how much.

    python bench/bench_sweep_vs_do1d.py [--points 100 1000 20000] [--repeat 5] [--dir DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import tempfile
import time

import numpy as np
from qcodes import Station
from qcodes.dataset import do1d, initialise_or_create_database_at, load_or_create_experiment
from qcodes.instrument_drivers.mock_instruments import DummyInstrument

from labstack.measure import Read, Sweep, run_sequence


def file_creation_us(directory: str, files: int = 200) -> float:
    """Microseconds to create and close one empty file in ``directory`` (median of ``files``)."""
    scratch = tempfile.mkdtemp(dir=directory)
    costs = []
    for i in range(files):
        t = time.perf_counter()
        os.close(os.open(os.path.join(scratch, f"f{i}"), os.O_CREAT | os.O_WRONLY))
        costs.append(time.perf_counter() - t)
    return float(np.median(costs)) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, nargs="+", default=[100, 1_000, 20_000])
    parser.add_argument("--repeat", type=int, default=5, help="rounds of blocks (each side timed in each)")
    parser.add_argument("--dir", default=".", help="where the temporary directory goes (default: here)")
    args = parser.parse_args()

    dac = DummyInstrument("bench_dac", gates=["ch1"])
    dmm = DummyInstrument("bench_dmm", gates=["v1"])
    station = Station(dac, dmm)
    print(f"# {args.repeat} rounds, the sides in turn in blocks (an untimed run, then timed ones); "
          "best wall time of the whole call / N")
    print(f"{'points':>7} {'do1d us/pt':>11} {'labstack us/pt':>15} {'do1d ms/run':>12} "
          f"{'labstack ms/run':>16} {'ratio':>6}")
    ratios = []
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="bench_sweep_") as tmp:
        print(f"# in {tmp}: creating a file costs {file_creation_us(tmp):.0f} us")
        initialise_or_create_database_at(os.path.join(tmp, "bench.db"))
        load_or_create_experiment("bench", sample_name="dummy")
        for n in args.points:
            seq = Sweep.over("v", "bench_dac.ch1", np.linspace(0.0, 1.0, n), Read("bench_dmm.v1"))

            def qcodes_once(n: int = n, cache: bool = True) -> float:
                t = time.perf_counter()
                with contextlib.redirect_stdout(io.StringIO()):  # its per-run message, not timed I/O
                    do1d(dac.ch1, 0.0, 1.0, n, 0.0, dmm.v1, do_plot=False, show_progress=False,
                         in_memory_cache=cache)
                return time.perf_counter() - t

            def labstack_once(seq: Sweep = seq) -> float:
                t = time.perf_counter()
                run_sequence(seq, station, name="bench", data_dir=tmp, progress=False)
                return time.perf_counter() - t

            block = 3 if n <= 3_000 else 1  # timed runs after each untimed one

            def timed(once, block: int = block) -> list[float]:  # noqa: ANN001
                once()  # untimed: this side's code and data back in the caches
                return [once() for _ in range(block)]

            q, ls = [], []
            for _ in range(args.repeat):
                q += timed(qcodes_once)
                ls += timed(labstack_once)
                q += timed(lambda: qcodes_once(cache=False))
                ls += timed(labstack_once)
            q_us, l_us = min(q) / n * 1e6, min(ls) / n * 1e6
            ratios.append(q_us / l_us)
            print(f"{n:>7} {q_us:>11.1f} {l_us:>15.1f} {min(q) * 1e3:>12.1f} "
                  f"{min(ls) * 1e3:>16.1f} {ratios[-1]:>6.1f}")
    dac.close()
    dmm.close()
    print(f"ratio: {min(ratios):.2f}")


if __name__ == "__main__":
    main()
