"""Runs on disk: ids, folders, the ``run.json`` index file and the registry.

A run is a folder ``<data_dir>/<run_id>/`` holding ``data.zarr`` (the dataset) and
``run.json`` (name, status, times, caller metadata, progress). ``run.json`` is small
and replaced atomically, so listing hundreds of runs never opens a zarr store and a
reader never sees a half-written index. Ids are ``YYYYMMDD-HHMMSS-xxxxxx``: UTC wall
time of creation plus random hex, so they sort by creation time and do not collide
between processes.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import xarray as xr
import zarr

from labstack.data.files import write_atomic
from labstack.data.jsontext import dumps

DATA_DIR_ENV = "LABSTACK_DATA_DIR"
DEFAULT_DATA_DIR = "labstack_data"
RUN_INDEX = "run.json"
STORE_NAME = "data.zarr"
RUN_FORMAT = "labstack-run/1"
STATUSES = ("running", "completed", "failed")


class RunNotFoundError(KeyError):
    """No run (or more than one) matches an id or prefix; the message says which and where."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def resolve_data_dir(data_dir: str | os.PathLike[str] | None = None) -> Path:
    """``data_dir`` if given, else ``$LABSTACK_DATA_DIR``, else ``./labstack_data``."""
    if data_dir is None:
        data_dir = os.environ.get(DATA_DIR_ENV) or Path.cwd() / DEFAULT_DATA_DIR
    # what Path.resolve() does, without its per-call overhead (every run resolves it)
    return Path(os.path.realpath(os.path.expanduser(os.fspath(data_dir))))


def new_run_id(when: datetime | None = None) -> str:
    """A unique id that sorts by creation time: ``20261123-184501-ab12cd``."""
    when = (when or datetime.now(UTC)).astimezone(UTC)
    return f"{when:%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"


def write_json_atomic(path: Path, data: Mapping[str, Any]) -> None:
    """Replace ``path`` with ``data`` so a concurrent reader (or a kill) never sees half a file.

    One line, not indented, through the fast encoder (:mod:`labstack.data.jsontext`):
    every run writes its index at least twice."""
    write_atomic(path, (dumps(data) + "\n").encode())


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _parse_utc(value: str | datetime) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    dt = datetime.fromisoformat(value)
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


class Run:
    """One run on disk. Cheap to create; reads ``run.json`` afresh on every query.

    ``status`` is ``running``, ``completed`` or ``failed``. A run whose index still says
    ``running`` but whose writing process on this host is gone (killed, power cut of
    the process) is reported ``failed``: its data up to the last flush is intact.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        if not (self.path / RUN_INDEX).is_file():
            raise FileNotFoundError(f"{self.path} is not a labstack run (no {RUN_INDEX})")

    def __repr__(self) -> str:
        return f"Run({self.id!r}, name={self.name!r}, status={self.status!r})"

    @property
    def id(self) -> str:
        return self.path.name

    @property
    def info(self) -> dict[str, Any]:
        """The parsed ``run.json``, with ``status`` corrected for dead writers."""
        info: dict[str, Any] = json.loads((self.path / RUN_INDEX).read_text())
        if (
            info.get("status") == "running"
            and info.get("host") == socket.gethostname()
            and isinstance(info.get("pid"), int)
            and not _pid_alive(info["pid"])
        ):
            info["status"] = "failed"
            info.setdefault("error", "the writing process ended without closing the run")
        return info

    @property
    def name(self) -> str:
        return str(self.info.get("name", ""))

    @property
    def status(self) -> str:
        return str(self.info["status"])

    @property
    def metadata(self) -> dict[str, Any]:
        return dict(self.info.get("metadata", {}))

    @property
    def created_utc(self) -> datetime:
        return _parse_utc(self.info["created_utc"])

    @property
    def store_path(self) -> Path:
        return self.path / STORE_NAME

    def _check_store(self) -> None:
        """A clear error for a run whose store is not in place yet."""
        if not self.store_path.is_dir():
            raise FileNotFoundError(
                f"run {self.id} ({self.path}) has no {STORE_NAME} yet: a sequence's store "
                "appears, whole, at its first flush of points (status: "
                f"{self.info.get('status')}, points flushed: {self.info.get('points_flushed', 0)})"
            )

    @property
    def attrs(self) -> dict[str, Any]:
        """Dataset attributes (snapshot, sequence, times, versions, metadata) and status."""
        self._check_store()
        attrs = dict(zarr.open_group(self.store_path, mode="r").attrs)
        attrs["status"] = self.status
        return attrs

    def dataset(self) -> xr.Dataset:
        """The run as an xarray Dataset, lazily read from zarr.

        Works while the run is still being written: it holds everything flushed so far
        (points not yet measured read as NaN in float variables; ``<dim>_clock`` tells
        which points were taken). A sequence's store appears at its first flush of points
        (after ``flush_interval`` seconds, a filled chunk, or the end); before that, and
        for a run killed before it, this raises :class:`FileNotFoundError`: there is
        nothing on disk to show, and nothing was lost.
        """
        self._check_store()
        consolidated = (self.store_path / ".zmetadata").exists()
        ds = xr.open_zarr(self.store_path, consolidated=consolidated, chunks=None)
        ds.attrs["status"] = self.status
        return ds


def list_runs(
    data_dir: str | os.PathLike[str] | None = None,
    name: str | None = None,
    since: str | datetime | None = None,
    until: str | datetime | None = None,
    calibration: str | None = None,
    status: str | None = None,
) -> list[Run]:
    """Runs in ``data_dir``, oldest first, filtered by exact name, creation time window
    (``since`` inclusive, ``until`` exclusive, wall-clock UTC), the ``calibration``
    metadata entry and status."""
    root = resolve_data_dir(data_dir)
    if not root.is_dir():
        return []
    lo = _parse_utc(since) if since is not None else None
    hi = _parse_utc(until) if until is not None else None
    runs = []
    for entry in sorted(root.iterdir()):
        if not (entry / RUN_INDEX).is_file():
            continue
        run = Run(entry)
        try:
            info = run.info
        except (OSError, ValueError):
            continue  # not a run this version can read; never hide it silently from load_run
        if name is not None and info.get("name") != name:
            continue
        if calibration is not None and info.get("metadata", {}).get("calibration") != calibration:
            continue
        if status is not None and info.get("status") != status:
            continue
        created = _parse_utc(info["created_utc"])
        if lo is not None and created < lo:
            continue
        if hi is not None and created >= hi:
            continue
        runs.append(run)
    return runs


def load_run(run_id: str, data_dir: str | os.PathLike[str] | None = None) -> Run:
    """The run with id ``run_id`` (or a unique prefix of one) in ``data_dir``."""
    root = resolve_data_dir(data_dir)
    exact = root / run_id
    if (exact / RUN_INDEX).is_file():
        return Run(exact)
    matches = sorted(p for p in root.glob(f"{run_id}*") if (p / RUN_INDEX).is_file())
    if len(matches) == 1:
        return Run(matches[0])
    if not matches:
        raise RunNotFoundError(f"no run {run_id!r} in {root}")
    raise RunNotFoundError(f"run id prefix {run_id!r} is ambiguous in {root}: {[m.name for m in matches]}")
