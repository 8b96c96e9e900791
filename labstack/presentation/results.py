"""A node's result from the data directory alone: its run, re-fitted with its parameters.

Raw data are stored before fitting, so a stored calibration run gives back the
results its node computed: the node's ``fit`` is pure, and the run's metadata
holds the parameters it ran with. A node that measures in parts (one run per
temperature) has its merged acquisition stored as a run of its own
(``derived_from`` in its metadata, see :mod:`labstack.calibrate.merged`); its parts
are not fitted alone.
"""

from __future__ import annotations

import dataclasses
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import xarray as xr

from labstack.data import Run, load_run
from labstack.session import routines


@dataclass
class NodeData:
    """One node's results and the dataset they came from (``error`` says why not)."""

    name: str
    run_id: str | None
    results: Any = None
    dataset: xr.Dataset | None = None
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error


def parameters_of(module: Any, run: Run) -> Any:
    """The node's ``Parameters`` as the run recorded them (unknown fields ignored)."""
    cls = getattr(module, "Parameters", None)
    stored = run.metadata.get("parameters")
    if cls is None or not dataclasses.is_dataclass(cls) or not isinstance(stored, dict):
        return None
    known = {f.name: f for f in dataclasses.fields(cls)}
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in stored.items() if k in known}
    return cls(**values)


def refit(run: Run) -> NodeData:
    """Re-fit a node's stored run with the node's own ``fit`` and recorded parameters."""
    name = run.metadata.get("calibration")
    module = routines().get(name) if name else None
    if module is None:
        return NodeData(str(name), run.id, error=f"run {run.id} was made by no installed calibration node")
    try:
        dataset = run.dataset()
        results = module.fit(dataset, parameters_of(module, run))
    except Exception as exc:  # a part of a merged acquisition, an old format: say so, go on
        return NodeData(name, run.id, error=f"{name} cannot re-fit run {run.id}: {type(exc).__name__}: {exc}")
    return NodeData(name, run.id, results, dataset)


class ResultCache:
    """Re-fitted results of finished runs by run id (a finished run never changes)."""

    def __init__(self, data_dir: str | Path, size: int = 32) -> None:
        self.data_dir = Path(data_dir)
        self.size = size
        self._items: dict[str, NodeData] = {}
        self._lock = threading.Lock()

    def get(self, run_id: str) -> NodeData:
        with self._lock:
            if run_id in self._items:
                return self._items[run_id]
        run = load_run(run_id, self.data_dir)
        data = refit(run)
        if run.status != "running":
            with self._lock:
                self._items[run_id] = data
                while len(self._items) > self.size:
                    self._items.pop(next(iter(self._items)))
        return data


def node_runs(runs: list[Run]) -> dict[str, Run]:
    """The run each node's result comes from among ``runs`` (a calibration's), last one wins.

    A merged acquisition's run stands for its parts; check runs count only for a
    node that did not calibrate.
    """
    parts = {p for r in runs for p in r.metadata.get("derived_from", [])}
    chosen: dict[str, Run] = {}
    for run in runs:
        name = run.metadata.get("calibration")
        if not name or run.id in parts or run.metadata.get("role") == "re-zero":
            continue  # a re-zero's shots serve the node's next run, which stands for both
        previous = chosen.get(name)
        if previous is not None and run.metadata.get("mode") == "check" and previous.metadata.get("mode") != "check":
            continue
        chosen[name] = run
    return chosen


def parts_of(runs: list[Run]) -> dict[str, str]:
    """``part id -> merged run id`` for the merged acquisitions among ``runs``."""
    return {p: r.id for r in runs for p in r.metadata.get("derived_from", [])}
