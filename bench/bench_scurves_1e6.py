"""S-curve fits of a 10^6-cell chip: chunked, vectorized (labstack) vs scipy curve_fit per cell.

The chip's counts (``--cells`` x ``--points`` bias points, ``--shots`` readouts each,
isolated-cell model of the simulator, truth drawn per chunk) are written to a zarr
store first (timed apart). labstack then reads, fits and writes the per-cell results
zarr to zarr, chunk by chunk on dask's threaded scheduler, while a sampler thread
records this process's peak RSS above its level before the fit. The peer is the
usual per-cell loop: ``scipy.optimize.curve_fit`` of the logistic to the fractions
with binomial errors (what a per-cell routine does). Both sides get the same cores:
dask's threaded scheduler runs one thread per core, and the peer's loop runs over a
process pool with one worker per core (processes, since curve_fit holds the GIL),
started and warmed before its timing, the cells handed out in batches. The peer is
timed on ``--peer-cells`` cells and extrapolated linearly to all cells (its cost per
cell does not grow with the chip); labstack's own scalar ``fit_logistic`` is timed
the same way (pool) for reference. Also prints the cost at 10x and 100x fewer cells,
to show how it grows. Ends with ``ratio: <peer seconds / labstack seconds>``.

    python bench/bench_scurves_1e6.py [--cells 1000000] [--chunk 16384] [--points 61]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from functools import partial

import numpy as np
import psutil
import xarray as xr
from scipy import optimize, special

from labstack.distributed.scurves import fit_scurves_zarr, synthetic_scurves
from labstack.fit import fit_logistic
from labstack.fit.logistic_many import OK


class PeakRSS:
    """Peak resident memory of this process while the block runs (sampled every 10 ms)."""

    def __enter__(self) -> PeakRSS:
        self.proc = psutil.Process()
        self.base = self.proc.memory_info().rss
        self.peak = self.base
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, self.proc.memory_info().rss)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)

    @property
    def growth_MB(self) -> float:
        return (self.peak - self.base) / 2**20


def curve_fit_cell(volts: np.ndarray, k: np.ndarray, shots: int) -> float:
    p = k / shots
    err = np.sqrt((k + 0.5) * (shots - k + 0.5) / (shots + 1) ** 3)
    v0 = float(volts[np.argmin(np.abs(p - 0.5))])
    popt, _ = optimize.curve_fit(
        lambda v, v0, w: special.expit((v - v0) / w), volts, p, p0=[v0, 0.05], sigma=err,
        absolute_sigma=True,
    )
    return float(popt[0])


def curve_fit_rows(rows: np.ndarray, volts: np.ndarray, shots: int) -> int:
    for row in rows:
        curve_fit_cell(volts, row, shots)
    return len(rows)


def fit_logistic_rows(rows: np.ndarray, volts: np.ndarray, shots: int) -> int:
    for row in rows:
        fit_logistic(volts, row, shots)
    return len(rows)


def pooled_seconds_per_cell(pool: ProcessPoolExecutor, fn, sample: np.ndarray, volts: np.ndarray,
                            shots: int, workers: int) -> float:
    """Wall seconds per cell of ``fn`` over ``sample`` on the (warm) pool, batches per worker."""
    batches = np.array_split(sample, 4 * workers)
    list(pool.map(partial(fn, volts=volts, shots=shots), batches[:workers]))  # warm every worker
    t = time.perf_counter()
    done = sum(pool.map(partial(fn, volts=volts, shots=shots), batches))
    return (time.perf_counter() - t) / done


def labstack_fit(tmp: str, n: int, volts: np.ndarray, shots: int, chunk: int) -> tuple[float, float, xr.Dataset]:
    counts = os.path.join(tmp, f"counts-{n}.zarr")
    fits = os.path.join(tmp, f"fits-{n}.zarr")
    synthetic_scurves(n, volts, shots, seed=1, chunk_cells=chunk).to_zarr(
        counts, mode="w", consolidated=False
    )
    with PeakRSS() as mem:
        t = time.perf_counter()
        result = fit_scurves_zarr(counts, fits)
        elapsed = time.perf_counter() - t
    return elapsed, mem.growth_MB, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=1_000_000)
    parser.add_argument("--chunk", type=int, default=16_384)
    parser.add_argument("--points", type=int, default=61)
    parser.add_argument("--shots", type=int, default=1000)
    parser.add_argument("--peer-cells", type=int, default=2000)
    args = parser.parse_args()
    volts = np.linspace(-1.0, 1.0, args.points)
    n = args.cells
    workers = os.cpu_count() or 1
    print(f"load average: {os.getloadavg()[0]:.1f} (cores: {workers}); labstack: dask threaded "
          f"scheduler, {workers} threads; peer: process pool, {workers} workers")
    with tempfile.TemporaryDirectory() as tmp:
        for m in (n // 100, n // 10):
            if m >= args.chunk:
                secs, mb, _ = labstack_fit(tmp, m, volts, args.shots, args.chunk)
                print(f"labstack {m:>9} cells: {secs:7.1f} s  {secs / m * 1e6:6.1f} us/cell  "
                      f"peak RSS +{mb:.0f} MB")
        secs, mb, fits = labstack_fit(tmp, n, volts, args.shots, args.chunk)
        print(f"labstack {n:>9} cells: {secs:7.1f} s  {secs / n * 1e6:6.1f} us/cell  "
              f"peak RSS +{mb:.0f} MB (counts alone: {n * args.points * 4 / 2**20:.0f} MB int32)")
        truth = xr.open_zarr(os.path.join(tmp, f"counts-{n}.zarr"), consolidated=False)
        ok = (fits["flag"] == OK).values
        pull = ((fits["V0_V"] - truth["v0_true_V"]) / fits["V0_err_V"]).values[ok]
        print(f"  fitted ok: {ok.mean():.4%}; V0 pulls vs truth: mean {pull.mean():+.3f}, "
              f"std {pull.std():.3f}")
        sample = truth["counts"][: args.peer_cells].values
    with ProcessPoolExecutor(max_workers=workers) as pool:
        peer = pooled_seconds_per_cell(pool, curve_fit_rows, sample, volts, args.shots, workers) * n
        scalar = pooled_seconds_per_cell(pool, fit_logistic_rows, sample, volts, args.shots,
                                         workers) * n
    print(f"peer scipy curve_fit per cell, {workers} processes: {peer / n * 1e6:.0f} us/cell "
          f"(wall) -> {peer:.0f} s for {n} cells (extrapolated from {len(sample)})")
    print(f"labstack scalar fit_logistic per cell, {workers} processes: {scalar / n * 1e6:.0f} "
          f"us/cell (wall) -> {scalar:.0f} s")
    print(f"ratio: {peer / secs:.1f}")


if __name__ == "__main__":
    main()
