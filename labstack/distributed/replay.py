"""Replay many stored runs as Dask tasks: by default, re-fit each with its routine.

Raw data are stored before fitting, so any calibration run can be fitted again
offline (a changed fit, a regression check in CI over hundreds of recorded runs).
:func:`replay_all` takes the replay as a callable ``replay(run_id, data_dir) -> value``
(any module-level function, so worker processes can import it); the default,
:func:`refit_run`, re-fits a run with the routine named in its metadata and the
parameters it was taken with. Failed replays are reported, never fatal to the rest.
"""

from __future__ import annotations

import os
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any

from labstack.data import list_runs, load_run, resolve_data_dir
from labstack.distributed.cluster import run_tasks
from labstack.session import routines

Replay = Callable[[str, str], Any]


def refit_run(run_id: str, data_dir: str) -> dict[str, Any]:
    """Re-fit a stored calibration run with its routine; a summary of the fit.

    Items (e.g. cells) that fit are counted ``ok`` (an item's ``ok`` attribute, or
    a :class:`~labstack.fit.FitResult`'s ``success``).
    """
    run = load_run(run_id, data_dir)
    meta = run.metadata
    name = meta.get("calibration")
    if not name:
        raise ValueError(f"run {run.id} ({run.name}) is not a calibration run: nothing to re-fit")
    module = routines()[name]
    params = None
    cls = getattr(module, "Parameters", None)
    if cls is not None and is_dataclass(cls):
        known = {f.name for f in fields(cls)}
        params = cls(**{k: v for k, v in (meta.get("parameters") or {}).items() if k in known})
    results = module.fit(run.dataset(), params)
    items = list(results) if isinstance(results, list | tuple) else [results]

    def ok(item: Any) -> bool:
        return bool(getattr(item, "ok", getattr(item, "success", True)))

    return {
        "run_id": run.id,
        "calibration": name,
        "chip": meta.get("chip"),
        "items": len(items),
        "ok_items": sum(ok(i) for i in items),
    }


def _replay_one(run_id: str, data_dir: str, replay: Replay) -> Any:
    return replay(run_id, data_dir)


@dataclass
class ReplayResult:
    run_id: str
    ok: bool
    value: Any = None
    error: str | None = None


@dataclass
class ReplayReport:
    results: list[ReplayResult]
    data_dir: str
    seconds: float
    scheduler: str
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)

    @property
    def failed(self) -> list[ReplayResult]:
        return [r for r in self.results if not r.ok]

    def render(self) -> str:
        lines = []
        for r in self.results:
            if r.ok:
                lines.append(f"{r.run_id}  ok      {r.value}")
            else:
                last = (r.error or "").strip().splitlines()[-1:] or ["?"]
                lines.append(f"{r.run_id}  FAILED  {last[0]}")
        n_ok = sum(r.ok for r in self.results)
        lines.append(
            f"{n_ok}/{len(self.results)} runs replayed in {self.seconds:.1f} s "
            f"on {self.scheduler}; data: {self.data_dir}"
        )
        return "\n".join(lines)


def select_runs(
    data_dir: str | os.PathLike[str] | None = None,
    *,
    calibration: str | None = None,
    chip: str | None = None,
) -> list[str]:
    """Ids of the completed runs in ``data_dir``, optionally of one routine and one chip."""
    runs = list_runs(data_dir, calibration=calibration, status="completed")
    return [r.id for r in runs if chip is None or r.metadata.get("chip") == chip]


def replay_all(
    run_ids: Sequence[str] | None = None,
    replay: Replay = refit_run,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    scheduler: str | None = None,
    n_workers: int | None = None,
    memory_limit: str | float | None = None,
) -> ReplayReport:
    """``replay(run_id, data_dir)`` for every run (default: every completed run) as Dask
    tasks; see :mod:`labstack.distributed.cluster` for ``scheduler``."""
    root = resolve_data_dir(data_dir)
    ids = list(run_ids) if run_ids is not None else select_runs(root)
    t0 = time.perf_counter()
    done: dict[str, ReplayResult] = {}
    for run_id, value, error in run_tasks(
        _replay_one, ids, str(root), replay,
        scheduler=scheduler, n_workers=n_workers, memory_limit=memory_limit, key_prefix="replay",
    ):
        if error is None:
            done[run_id] = ReplayResult(run_id, True, value)
        else:
            text = "".join(traceback.format_exception(error))
            done[run_id] = ReplayResult(run_id, False, error=text)
    return ReplayReport(
        results=[done[i] for i in ids],
        data_dir=str(root),
        seconds=time.perf_counter() - t0,
        scheduler=scheduler or "LocalCluster",
    )
