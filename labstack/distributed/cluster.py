"""Where tasks run: a Dask scheduler at an address, a ``LocalCluster``, or this process.

Lab tasks (a chip calibration, a run replay) each build their own station inside
the worker, so they need worker *processes*: QCoDeS instruments are registered
process-wide by name, and two stations with a ``qdac1`` cannot live in one
process at the same time. The local cluster therefore has one thread per worker
process; :func:`run_tasks` also serialises lab tasks within a process (see
:data:`STATION_LOCK`), so a remote cluster started with several threads per
worker stays correct, only less parallel.

``scheduler`` is ``None`` (a ``LocalCluster`` sized to the machine and the work),
``"serial"`` (no Dask: run here, one after the other; for debugging and as the
baseline of the benchmark) or a scheduler address (``tcp://host:8786``).
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import dask

T = TypeVar("T")
SERIAL = "serial"

#: one lab task at a time per process (stations and PyVISA labs are process-global)
STATION_LOCK = threading.Lock()

#: A lab task is long, pure-Python-heavy work holding the GIL; Dask's statistical
#: profiler (a stack sample every 10 ms) and GIL monitor (every 1 ms) steal it and
#: slowed a chip calibration by ~1.5x on 2 cores. Off for the clusters we start.
LAB_WORKER_CONFIG = {
    "distributed.worker.profile.enabled": False,
    "distributed.admin.system-monitor.gil.enabled": False,
}


def machine_workers(n_tasks: int | None = None) -> int:
    """Worker processes for this machine: one per core, no more than there are tasks."""
    if hasattr(os, "sched_getaffinity"):
        cores = len(os.sched_getaffinity(0))
    else:
        cores = os.cpu_count() or 1
    return max(1, min(cores, n_tasks if n_tasks else cores))


@contextmanager
def dask_client(
    scheduler: str | None = None,
    *,
    n_workers: int | None = None,
    n_tasks: int | None = None,
    memory_limit: str | float | None = None,
) -> Iterator[Any]:
    """A ``distributed.Client`` on ``scheduler``, or on a fresh ``LocalCluster``
    of ``n_workers`` single-threaded worker processes (default: :func:`machine_workers`),
    closed on exit."""
    from distributed import Client, LocalCluster

    if scheduler:
        client = Client(scheduler)
        try:
            yield client
        finally:
            client.close()
        return
    workers = n_workers or machine_workers(n_tasks)
    # numba's parallel kernels get this worker's share of the cores, not all of them
    numba_threads = max(1, machine_workers() // workers)
    with dask.config.set(LAB_WORKER_CONFIG):
        cluster = LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            memory_limit=memory_limit if memory_limit is not None else "auto",
            dashboard_address=None,
            silence_logs=logging.ERROR,
            env={"NUMBA_NUM_THREADS": str(numba_threads)},
        )
    try:
        with Client(cluster) as client:
            yield client
    finally:
        cluster.close()


def _locked(fn: Callable[..., T], *args: Any) -> T:
    with STATION_LOCK:
        return fn(*args)


def run_tasks(
    fn: Callable[..., T],
    items: Sequence[Any],
    *args: Any,
    scheduler: str | None = None,
    n_workers: int | None = None,
    memory_limit: str | float | None = None,
    key_prefix: str = "labstack",
) -> Iterator[tuple[Any, T | None, BaseException | None]]:
    """Run ``fn(item, *args)`` for every item; yield ``(item, result, error)`` as each ends.

    An exception in one task (or the loss of its worker) is yielded as its
    ``error`` and never stops the others. ``fn`` must be importable by name
    (a module-level function) so worker processes can unpickle it.
    """
    if scheduler == SERIAL:
        for item in items:
            try:
                yield item, _locked(fn, item, *args), None
            except Exception as exc:  # reported per item, like a failed Dask task
                yield item, None, exc
        return
    from distributed import as_completed

    with dask_client(
        scheduler, n_workers=n_workers, n_tasks=len(items), memory_limit=memory_limit
    ) as client:
        batch = secrets.token_hex(4)  # keys unique on a shared scheduler
        futures = {
            client.submit(
                _locked, fn, item, *args, key=f"{key_prefix}-{batch}-{i}", pure=False
            ): (i, item)
            for i, item in enumerate(items)
        }
        lost: list[tuple[int, Any]] = []
        for future in as_completed(futures):
            i, item = futures[future]
            try:
                outcome: tuple[Any, T | None, BaseException | None] = (item, future.result(), None)
            except Exception as exc:  # the task raised, or its worker died (KilledWorker)
                outcome = (item, None, exc)
            future.release()
            if outcome[2] is not None and _lost_worker(outcome[2]):
                lost.append((i, item))  # tried again below
                continue
            yield outcome
        # a worker that dies takes every task it held, not only the one that killed it: each
        # lost task is tried once more, alone on the cluster, so that the culprit dying again
        # takes no bystander with it; the one that kills a second worker is reported
        for i, item in lost:
            again = client.submit(_locked, fn, item, *args, key=f"{key_prefix}-{batch}-{i}-again", pure=False)
            try:
                outcome = (item, again.result(), None)
            except Exception as exc:
                outcome = (item, None, exc)
            again.release()
            yield outcome


def _lost_worker(exc: BaseException) -> bool:
    """Whether a task failed because its worker process died (not because it raised)."""
    return type(exc).__name__ == "KilledWorker"
