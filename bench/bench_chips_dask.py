"""Calibrate K virtual chips serially in this process, then as tasks on a Dask LocalCluster.

Compared against: labstack itself, the same K chips calibrated one after the other in
one process (no external peer: the question is what the cluster buys on this machine).
Both calibrate the same K chips (seeds 1..K, 16 cells, the bias_scurve routine at
``--points`` x ``--samples``) into fresh data directories. The serial run goes first
after a warm-up chip, so it pays no import or numba-compile cost (its best case);
the cluster figure adds its start-up (cluster start, worker imports, numba kernels
loaded from the on-disk cache in each worker process) to the ``calibrate_chips``
call on it. Prints each wall time, seconds per chip, and ends with
``ratio: <serial seconds / cluster seconds>`` (the speed-up; higher is better; on a
2-core machine it cannot exceed 2).

    python bench/bench_chips_dask.py [--chips 6] [--workers N] [--points 31] [--samples 1000]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

from labstack.distributed.chips import calibrate_chips, parse_chips
from labstack.distributed.cluster import SERIAL, dask_client, machine_workers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chips", type=int, default=6)
    parser.add_argument("--workers", type=int, default=None, help="default: one per core")
    parser.add_argument("--points", type=int, default=31)
    parser.add_argument("--samples", type=int, default=1000)
    args = parser.parse_args()
    params = {"bias_scurve": {"n_points": args.points, "n_samples": args.samples}}
    chips = parse_chips([f"seed=1..{args.chips}"])
    workers = args.workers or machine_workers(args.chips)
    load_before = f"{os.getloadavg()[0]:.1f}"

    def run(scheduler: str, batch: list) -> tuple[float, list[float]]:
        with tempfile.TemporaryDirectory() as tmp:
            t = time.perf_counter()
            report = calibrate_chips(
                batch, tmp, scheduler=scheduler, n_workers=workers, names=["bias_scurve"],
                params=params,
            )
            elapsed = time.perf_counter() - t
        if not report.ok:
            raise SystemExit(report.render())
        return elapsed, [r.seconds for r in report.results]

    run(SERIAL, parse_chips(["seed=1000"]))  # warm-up: imports, numba cache, first station
    serial, serial_each = run(SERIAL, chips)
    t = time.perf_counter()
    with dask_client(None, n_workers=workers) as client:
        client.run(_warm)  # worker imports and numba cache loads, timed as start-up
        startup = time.perf_counter() - t
        batch, cluster_each = run(client.scheduler.address, chips)
    cluster = startup + batch
    print(f"load average before: {load_before}; after: {os.getloadavg()[0]:.1f} (2 cores)")
    print(f"chips: {args.chips} x 16 cells, bias_scurve {args.points} points x {args.samples} samples")
    print(f"serial (warm, in-process): {serial:.1f} s, {serial / args.chips:.2f} s/chip")
    print(
        f"LocalCluster, {workers} worker processes: start-up {startup:.1f} s "
        f"+ chips {batch:.1f} s = {cluster:.1f} s, {batch / args.chips:.2f} s/chip once warm"
    )
    print(f"per-chip task time serial: {min(serial_each):.1f}-{max(serial_each):.1f} s; "
          f"on workers: {min(cluster_each):.1f}-{max(cluster_each):.1f} s")
    print(f"speed-up once warm: {serial / batch:.2f}")
    print(f"ratio: {serial / cluster:.2f}")


def _warm() -> None:
    import labstack.session  # noqa: F401
    import labstack.sim.kernels  # noqa: F401
    import labstack.sim.lattice_kernels  # noqa: F401
    import labstack.station  # noqa: F401


if __name__ == "__main__":
    main()
