"""Calibrate many chips, each its own station, as Dask tasks into one data directory.

A wafer of virtual chips is ``parse_chips(["seed=1..24"])``; real chips are their
station files (``parse_chips(["fridge_a.yaml", "fridge_b.yaml"])``). Each task
(:func:`calibrate_chip`) builds its chip's station inside the worker process,
calibrates it with :func:`labstack.session.calibrate_station` and closes it,
whatever happens. Everything lands in one data directory:

- runs in ``<data_dir>/<run_id>/`` as usual (one registry: ``list_runs`` sees
  them all), each tagged ``metadata["chip"] = <chip id>``;
- each chip's calibration state in ``<data_dir>/chips/<chip id>/calibration_state``
  and its last result in ``<data_dir>/chips/<chip id>/chip.json``;
- the batch summary in ``<data_dir>/chips/batches/<batch id>.json``.

A chip that fails (bad station, instrument error, a crash, a lost worker) is
reported with its error and does not stop the others.
"""

from __future__ import annotations

import os
import secrets
import socket
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from labstack.calibrate import STATE_DIRNAME
from labstack.data import list_runs, resolve_data_dir
from labstack.data.runs import write_json_atomic
from labstack.distributed.cluster import run_tasks
from labstack.distributed.specs import ChipSpec, ChipSpecError, parse_chips
from labstack.session import UnknownRoutineError, calibrate_station, routines
from labstack.station import LabStation
from labstack.visa import open_station

#: ``inspect(chip, station, report) -> plain data``, run in the worker before the station closes
Inspect = Callable[[ChipSpec, LabStation, Any], Any]

__all__ = [
    "CHIPS_DIRNAME",
    "BatchReport",
    "ChipResult",
    "ChipSpec",
    "ChipSpecError",
    "calibrate_chip",
    "calibrate_chips",
    "chip_dir",
    "parse_chips",
]

CHIPS_DIRNAME = "chips"


def chip_dir(data_dir: str | os.PathLike[str], chip_id: str) -> Path:
    """``<data_dir>/chips/<chip id>``: the chip's calibration state and last result."""
    return Path(data_dir) / CHIPS_DIRNAME / chip_id


@dataclass
class ChipResult:
    """What one chip's task did; plain data, so it travels back from a worker."""

    chip_id: str
    spec: dict[str, Any]
    ok: bool
    error: str | None = None
    status: dict[str, str] = field(default_factory=dict)
    calibrated: list[str] = field(default_factory=list)
    flagged: dict[str, list[str]] = field(default_factory=dict)
    run_ids: list[str] = field(default_factory=list)
    state_path: str = ""
    state_version: int = 0
    seconds: float = 0.0
    worker: str = ""
    report: str = ""
    #: what the batch's ``inspect`` found on the chip before its station closed (plain data)
    inspection: Any = None

    @property
    def summary(self) -> str:
        if self.error:
            return f"FAILED: {self.error.strip().splitlines()[-1]}"
        flagged = sum(len(v) for v in self.flagged.values())
        status = ", ".join(f"{k} {v}" for k, v in self.status.items())
        tail = f"; {flagged} flagged" if flagged else ""
        return f"{'ok' if self.ok else 'flagged'}: {status}{tail}"


def _runs_of(root: Path, chip_id: str, since: float) -> list[str]:
    since_utc = datetime.fromtimestamp(since, UTC)
    return [r.id for r in list_runs(root, since=since_utc) if r.metadata.get("chip") == chip_id]


def calibrate_chip(
    chip: ChipSpec,
    data_dir: str,
    names: list[str] | None = None,
    params: Mapping[str, Mapping[str, Any]] | None = None,
    force: bool = False,
    inspect: Inspect | None = None,
) -> ChipResult:
    """Build the chip's station here, calibrate it, close it; never raises for the chip's
    own failures (they are returned in the result, with the traceback).

    ``inspect(chip, station, report)``, if given, runs here in the worker after the
    calibration and before the station closes, and its (picklable) answer travels
    back as ``result.inspection``: a benchmark compares the calibrated state with
    the virtual lab that lives only in this process.
    """
    root = Path(data_dir)
    here = chip_dir(root, chip.chip_id)
    here.mkdir(parents=True, exist_ok=True)
    t0, started = time.perf_counter(), time.time() - 1.0  # run ids have 1 s resolution
    worker = f"{socket.gethostname()}:{os.getpid()}"
    result = ChipResult(chip.chip_id, asdict(chip), ok=False, worker=worker)
    station = None
    try:
        station = open_station(chip.station, lab=chip.lab_description())
        station.run_metadata["chip"] = chip.chip_id
        report = calibrate_station(
            station, data_dir=root, progress=False, names=names, force=force, params=params,
            state_dir=here / STATE_DIRNAME,
        )
    except Exception:
        result.error = traceback.format_exc()
    else:
        result.ok = report.all_ok
        result.status = {k: str(v) for k, v in report.status.items()}
        result.calibrated = list(report.calibrated)
        result.flagged = {k: list(v) for k, v in report.flagged.items()}
        result.state_path = report.state_path
        result.state_version = report.state_version
        result.report = report.render()
        if inspect is not None:
            result.inspection = inspect(chip, station, report)
    finally:
        if station is not None:
            station.close()
    result.run_ids = _runs_of(root, chip.chip_id, started)
    result.seconds = time.perf_counter() - t0
    write_json_atomic(here / "chip.json", asdict(result))
    return result


@dataclass
class BatchReport:
    """Every chip's result, in the order the chips were given."""

    results: list[ChipResult]
    data_dir: str
    seconds: float
    scheduler: str
    summary_path: str = ""

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)

    @property
    def failed(self) -> list[ChipResult]:
        return [r for r in self.results if not r.ok]

    def render(self) -> str:
        width = max([4, *(len(r.chip_id) for r in self.results)])
        lines = [f"{'chip':<{width}}  {'time':>7}  {'worker':<22}  result"]
        for r in self.results:
            lines.append(f"{r.chip_id:<{width}}  {r.seconds:>6.1f}s  {r.worker:<22}  {r.summary}")
        n_ok = sum(r.ok for r in self.results)
        lines.append(
            f"{n_ok}/{len(self.results)} chips ok in {self.seconds:.1f} s on {self.scheduler}; "
            f"data: {self.data_dir}"
        )
        if self.summary_path:
            lines.append(f"batch summary: {self.summary_path}")
        return "\n".join(lines)


def check_params(params: Mapping[str, Mapping[str, Any]] | None) -> None:
    """Refuse overrides of routines or parameters that do not exist, before any task runs."""
    available = routines()
    for name, overrides in (params or {}).items():
        if name not in available:
            raise UnknownRoutineError(f"no calibration routine {name!r}; installed: {sorted(available)}")
        cls = getattr(available[name], "Parameters", None)
        known = {f.name for f in fields(cls)} if cls is not None and is_dataclass(cls) else set()
        unknown = set(overrides) - known
        if unknown:
            raise UnknownRoutineError(f"{name} has no parameter(s) {sorted(unknown)}; it has {sorted(known)}")


def calibrate_chips(
    chips: Sequence[ChipSpec],
    data_dir: str | os.PathLike[str] | None = None,
    *,
    scheduler: str | None = None,
    n_workers: int | None = None,
    memory_limit: str | float | None = None,
    names: list[str] | None = None,
    params: Mapping[str, Mapping[str, Any]] | None = None,
    force: bool = False,
    on_result: Callable[[ChipResult], None] | None = None,
    inspect: Inspect | None = None,
) -> BatchReport:
    """Calibrate every chip as a task on ``scheduler`` (see :mod:`labstack.distributed.cluster`:
    ``None`` starts a ``LocalCluster`` sized to the machine, ``"serial"`` runs here).

    ``on_result`` is called as each chip finishes (in completion order); ``inspect``
    see :func:`calibrate_chip`.
    """
    ids = [c.chip_id for c in chips]
    if len(set(ids)) != len(ids):
        raise ChipSpecError(f"chip ids must be unique: {ids}")
    check_params(params)
    root = resolve_data_dir(data_dir)
    root.mkdir(parents=True, exist_ok=True)
    plain_params = {k: dict(v) for k, v in (params or {}).items()}
    t0 = time.perf_counter()
    by_id: dict[str, ChipResult] = {}
    for chip, result, error in run_tasks(
        calibrate_chip, list(chips), str(root), names, plain_params, force, inspect,
        scheduler=scheduler, n_workers=n_workers, memory_limit=memory_limit,
        key_prefix="calibrate-chip",
    ):
        if result is None:  # the task itself died (lost worker, unpicklable result, ...)
            text = "".join(traceback.format_exception(error)) if error else "no result"
            result = ChipResult(chip.chip_id, asdict(chip), ok=False, error=text)
        by_id[chip.chip_id] = result
        if on_result is not None:
            on_result(result)
    report = BatchReport(
        results=[by_id[i] for i in ids],
        data_dir=str(root),
        seconds=time.perf_counter() - t0,
        scheduler=scheduler or "LocalCluster",
    )
    batch_id = f"{datetime.now(UTC):%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"
    path = root / CHIPS_DIRNAME / "batches" / f"{batch_id}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, {**asdict(report), "ok": report.ok})
    report.summary_path = str(path)
    return report

