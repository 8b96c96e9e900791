"""Each training is one run: one point per iteration, streamed to zarr as it happens.

The run (:class:`labstack.data.RunWriter`, crash-safe) has a sweep dim ``iteration``
sized to the most iterations the stop rule allows; every iteration appends the
parameters it programmed, the voltages written, the chip's statistics and errors,
``χ²/dof``, the step size and scale, whether the update was sent, and the time split
(wall and lab seconds of instrument I/O, waiting, sampling, computing), then flushes,
so a killed process keeps every finished iteration. Unreached iterations read NaN.
The write (a chunk per variable and the run's index: milliseconds) runs on one
writer thread while the loop goes on to program and sample the chip: the next
iteration's record waits for it, and so does closing the run, so records stay in
order and a crash still closes the run with every finished iteration on disk.

:func:`resume_point` reads a stored run (finished, failed or killed) back: the last
iteration it recorded, the parameters to continue from and the best so far, so
``train(..., resume=RUN_ID)`` carries on where it stopped (the new run names the old
one in ``resumed_from``).
"""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from labstack.data import RunWriter, load_run

NAME = "train"
#: the time split of one iteration: parts, each in wall and lab seconds
PARTS = ("io", "wait", "sample", "compute")


class Recorder:
    """Streams one training run."""

    def __init__(self, data_dir: str | Path | None, n_iterations: int, n_params: int, n_cells: int,
                 n_couplers: int, metadata: Mapping[str, Any], target_moments: np.ndarray) -> None:
        self.writer = RunWriter(NAME, data_dir=data_dir, metadata=dict(metadata), flush_every=1,
                                attrs={"target_moments": [float(x) for x in target_moments]},
                                info={"points_total": n_iterations})
        it = (("iteration", n_iterations),)
        w = self.writer
        w.add_coord("iteration", ("iteration",), np.arange(n_iterations))
        self.vars = {
            "params": w.add_variable("params", it, ("param",)),
            "bias_V": w.add_variable("bias_V", it, ("cell",)),
            "coupler_V": w.add_variable("coupler_V", it, ("coupler",)),
            "moments": w.add_variable("moments", it, ("param",)),
            "moments_err": w.add_variable("moments_err", it, ("param",)),
            "chi2": w.add_variable("chi2", it),
            "eta": w.add_variable("eta", it),
            "scale": w.add_variable("scale", it),
            "sent": w.add_variable("sent", it),
            "messages": w.add_variable("messages", it),
            "n_eff": w.add_variable("n_eff", it),
        }
        for part in PARTS:
            for clock in ("wall", "lab"):
                name = f"{clock}_{part}_s"
                self.vars[name] = w.add_variable(name, it)
        self.count = 0
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="train-record")
        self._pending: Future[None] | None = None

    @property
    def run_id(self) -> str:
        return self.writer.id

    def iteration(self, values: Mapping[str, Any]) -> None:
        """Append one iteration (every variable) and flush it to disk on the writer thread
        (after the last one's write finished; its error, if any, is raised here)."""
        rows = {name: np.array(values[name], dtype=np.float64) for name in self.vars}  # copies: the loop goes on
        self.wait()
        self._pending = self._pool.submit(self._write, rows)

    def _write(self, rows: Mapping[str, np.ndarray]) -> None:
        for name, var in self.vars.items():
            var.append(rows[name])
        self.count += 1
        self.writer.flush(iterations_done=self.count)

    def wait(self) -> None:
        """Until the last iteration is on disk."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def close(self, status: str, summary: Mapping[str, Any], error: str | None = None) -> None:
        try:
            self.wait()
        finally:
            self._pool.shutdown(wait=True)
            self.writer.close(status, attrs=dict(summary), error=error, summary=dict(summary))


@dataclass(frozen=True)
class ResumePoint:
    """Where a stored training stopped."""

    run_id: str
    iterations: int  # iterations recorded
    params: np.ndarray  # the last parameters the chip was programmed with
    best_params: np.ndarray
    best_chi2: float
    metadata: dict[str, Any]


def resume_point(run_id: str, data_dir: str | Path | None = None) -> ResumePoint:
    """The last recorded iteration of a (possibly killed) training run."""
    run = load_run(run_id, data_dir)
    ds = run.dataset()
    chi2 = np.asarray(ds["chi2"].values, dtype=float)
    done = np.flatnonzero(np.isfinite(chi2))
    if done.size == 0:
        raise ValueError(f"training run {run_id} recorded no iteration to resume from")
    params = np.asarray(ds["params"].values, dtype=float)
    last = int(done[-1])
    best = int(done[np.argmin(chi2[done])])
    return ResumePoint(run_id, last + 1, params[last], params[best], float(chi2[best]), dict(run.metadata))
