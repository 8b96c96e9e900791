"""The calibration state: versioned, human-readable, all-or-nothing on disk.

This module is the only one that reads or writes the state's files. Layout of a
state directory (by default ``<data_dir>/calibration_state/``)::

    v000001.yaml   full snapshot after update 1 (entries, node records, metadata)
    v000002.yaml   ...
    current        the file name of the current version, e.g. "v000002.yaml"

Every update writes a *whole* snapshot (not a delta), so any version can be read,
diffed or restored on its own, and a person can open one file and see the full
calibration. Each snapshot names its parent; :meth:`history` follows those links
back from ``current``.

All-or-nothing: a snapshot is written to a temporary file, flushed, fsynced and
renamed into place (``os.replace`` is atomic on POSIX and Windows), and only then
is ``current`` replaced the same way. A crash before the second rename leaves the
previous version current; the half-finished snapshot is an orphan that no parent
link reaches, so it never shows up in :meth:`history`.

One writer at a time, enforced: a calibration session (``labstack calibrate``, a
``labstack watch`` pass, a rollback) holds the state's writer lock for its whole
walk (:meth:`CalibrationState.writer`), so a second one waits for it, or stops
with a message naming the holder, and then continues from the first's result.
Why a session lock and not only a per-commit one: the Optimus walk decides from
what the state says (fresh? stale?), so a walk interleaved with another writer's
would decide on stale information even if every commit were consistent. Every
commit also takes the lock (re-entrantly) and checks that ``current`` still
names the version this object loaded, so a writer that skipped the session lock
(a notebook's bare :meth:`~CalibrationState.apply`) is refused with
:class:`StateConflictError` instead of forking the history. The lock is an
``fcntl`` lock on ``.lock`` in the state directory: the kernel releases it when
its process dies, so a killed calibration never leaves a stale lock; the file
names the holder (pid, host, command, since) for the message others see.

Damage is detected: every version file carries the sha256 of its content on its
last line (``sha256: ...``; the first line is marked ``# labstack-state/2``).
Loading verifies it, so a file that was cut short or edited is named instead of
loading as a state with fewer entries; loading a damaged *current* version
raises :class:`StateDamagedError`, which names the file and the last version
that still verifies (``labstack state rollback N`` makes it current again).
Files written before checksums (no marker) load as before, unverified.

Rollback never deletes anything: it writes a *new* version whose content is the
old one, so the history shows that a rollback happened.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from labstack.calibrate.change import StateChange
from labstack.calibrate.records import Entry, NodeRecord, VersionInfo
from labstack.calibrate.render import entries_rows, text_table
from labstack.clock import Clock

#: where the state lives next to the runs: ``<data_dir>/calibration_state``
STATE_DIRNAME = "calibration_state"
CURRENT = "current"
LOCK_FILE = ".lock"
#: marks a version file that carries its checksum (a comment on its first line)
FORMAT_MARK = "labstack-state/2"
_VERSION_FILE = re.compile(r"^v(\d{6,})\.yaml$")
_CHECKSUM_LINE = re.compile(r"sha256: ([0-9a-f]{64})\n?\Z")
#: how long a bare commit waits for another process's calibration session to finish
COMMIT_WAIT_S = 60.0


class StateFileError(ValueError):
    """A calibration-state file that cannot be read; the message names the file, line and key."""


class StateDamagedError(StateFileError):
    """The current version file is damaged (cut short, edited, unreadable).

    ``file`` is the damaged file; ``last_good`` the newest older version that still
    verifies (None if there is none), which ``labstack state rollback`` can restore.
    """

    def __init__(self, message: str, file: Path, last_good: VersionInfo | None = None) -> None:
        super().__init__(message)
        self.file = file
        self.last_good = last_good


class StateLockedError(RuntimeError):
    """Another process (or thread) is writing this calibration state; the message names it."""


class StateConflictError(RuntimeError):
    """The state on disk moved on since this object loaded it: another writer committed."""


def version_file(version: int) -> str:
    return f"v{version:06d}.yaml"


@dataclass
class _Snapshot:
    version: int = 0
    parent: int = 0
    utc: str | None = None
    time_s: float | None = None
    message: str = "empty"
    node: str | None = None
    run_id: str | None = None
    entries: dict[str, Entry] = field(default_factory=dict)
    nodes: dict[str, NodeRecord] = field(default_factory=dict)

    def to_doc(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "parent": self.parent,
            "utc": self.utc,
            "time_s": self.time_s,
            "message": self.message,
            "node": self.node,
            "run_id": self.run_id,
            "entries": {k: e.to_dict() for k, e in self.entries.items()},
            "nodes": {k: r.to_dict() for k, r in self.nodes.items()},
        }

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> _Snapshot:
        return cls(
            version=int(doc["version"]),
            parent=int(doc.get("parent", 0)),
            utc=doc.get("utc"),
            time_s=doc.get("time_s"),
            message=doc.get("message", ""),
            node=doc.get("node"),
            run_id=doc.get("run_id"),
            entries={k: Entry.from_dict(v) for k, v in (doc.get("entries") or {}).items()},
            nodes={k: NodeRecord.from_dict(v) for k, v in (doc.get("nodes") or {}).items()},
        )

    def info(self) -> VersionInfo:
        return VersionInfo(
            self.version, self.parent, self.utc, self.time_s, self.message, self.node, self.run_id
        )


@dataclass(frozen=True)
class StateDiff:
    """What changed between two versions, key by key."""

    v1: int
    v2: int
    added: dict[str, Entry]
    removed: dict[str, Entry]
    changed: dict[str, tuple[Entry, Entry]]
    nodes_changed: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.changed)

    def _rows(self) -> list[list[str]]:
        from labstack.calibrate.render import format_number as f

        rows = []
        for k, e in sorted(self.added.items()):
            rows.append(["+", k, "", f(e.value), f(e.stderr, 2), _valid(e)])
        for k, e in sorted(self.removed.items()):
            rows.append(["-", k, f(e.value), "", "", ""])
        for k, (a, b) in sorted(self.changed.items()):
            rows.append(["~", k, f(a.value), f(b.value), f(b.stderr, 2), _valid(b)])
        return rows

    HEADER = ("", "key", "old", "new", "± new", "valid")

    def rows(self) -> list[list[str]]:
        """One row per added (+), removed (-) and changed (~) key, as text cells."""
        return self._rows()

    def to_table(self) -> str:
        return f"diff v{self.v1} -> v{self.v2}\n" + text_table(self._rows(), self.HEADER)


def _valid(e: Entry) -> str:
    return "yes" if e.valid else "NO"


class CalibrationState:
    """The calibration state of one setup, backed by a directory of versions.

    ``load`` a directory (created if missing), read with :meth:`get`, change only
    through :meth:`apply` (values from a node) and :meth:`record_node` (node
    bookkeeping), inspect with :meth:`history` / :meth:`diff`, undo with
    :meth:`rollback`.
    """

    def __init__(self, path: Path | None, snapshot: _Snapshot, on_disk: int | None = None) -> None:
        self._path = path
        self._snap = snapshot
        #: the version ``current`` named when this object last read or wrote it (commit check)
        self._on_disk = snapshot.version if on_disk is None else on_disk

    # ---------------------------------------------------------------- loading
    @staticmethod
    def current_version(path: str | os.PathLike[str]) -> int:
        """The version ``current`` names in the state directory ``path`` (0: none yet).

        Reads only the pointer, so a run can record which state was current cheaply.
        """
        try:
            name = (Path(path) / CURRENT).read_text().strip()
        except OSError:
            return 0
        match = _VERSION_FILE.match(name)
        return int(match.group(1)) if match else 0

    @classmethod
    def restore(cls, path: str | os.PathLike[str], text: str) -> CalibrationState:
        """A state directory at ``path`` whose current version is the version file ``text``.

        ``text`` is what :meth:`version_text` gave (e.g. stored with a calibration run);
        it is checked like any version file before it becomes current.
        """
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        snap = _parse(text, path / "<restored>")
        with _DirLock.of(path).held(wait=COMMIT_WAIT_S):
            _atomic_write(path / version_file(snap.version), text)
            _atomic_write(path / CURRENT, version_file(snap.version) + "\n")
        return cls.load(path)

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, recover: bool = False) -> CalibrationState:
        """Open the state directory ``path``; an empty state if it holds nothing yet.

        A damaged current version raises :class:`StateDamagedError` naming it and the
        last good version; ``recover=True`` opens the last good version instead (what
        a rollback needs), remembering that ``current`` still names the damaged one.
        """
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        pointer = path / CURRENT
        if not pointer.exists():
            return cls(path, _Snapshot())
        name = pointer.read_text().strip()
        if not _VERSION_FILE.match(name) or not (path / name).is_file():
            raise StateFileError(f"{pointer}:1: names {name!r}, which is not a version file in {path}")
        try:
            return cls(path, _read(path / name))
        except StateFileError as exc:
            number = int(_VERSION_FILE.match(name).group(1))  # type: ignore[union-attr]
            good = _last_good(path, number)
            if recover and good is not None:
                return cls(path, good, on_disk=number)
            raise _damaged(exc, path / name, good) from None

    @contextlib.contextmanager
    def writer(
        self,
        *,
        wait: float | None = None,
        who: str = "",
        on_wait: Callable[[str], None] | None = None,
    ) -> Iterator[CalibrationState]:
        """Hold the writer lock for a whole calibration session; re-read ``current`` on entry.

        ``wait``: seconds to wait for another writer (None: as long as it takes; 0: not
        at all), then :class:`StateLockedError` naming the holder. ``on_wait(message)``
        is told once if it has to wait. Re-entrant within a thread, so a command that
        took the lock can call :func:`labstack.session.calibrate_station`, which takes it too.
        """
        if self._path is None:
            raise ValueError("a read-only view of an old version has no writer")
        with _DirLock.of(self._path).held(wait=wait, who=who, on_wait=on_wait):
            self.reload()
            yield self

    def reload(self) -> None:
        """Re-read the version ``current`` names (another writer may have moved it on)."""
        if self._path is None:
            return
        fresh = CalibrationState.load(self._path, recover=self._on_disk != self._snap.version)
        self._snap, self._on_disk = fresh._snap, fresh._on_disk

    @staticmethod
    def lock_holder(path: str | os.PathLike[str]) -> dict[str, Any] | None:
        """Who holds the writer lock of the state directory ``path`` (None: nobody)."""
        return _DirLock.holder(Path(path))

    @property
    def path(self) -> Path | None:
        return self._path

    @property
    def version(self) -> int:
        return self._snap.version

    def version_text(self) -> str:
        """The current version's file, as stored (``""`` for an empty state)."""
        if self.version == 0 or self._path is None:
            return ""
        return (self._path / version_file(self.version)).read_text(encoding="utf-8")

    # ---------------------------------------------------------------- reading
    def get(self, key: str) -> Entry:
        """The entry for ``key`` (``KeyError`` names the known keys' prefix if missing)."""
        try:
            return self._snap.entries[key]
        except KeyError:
            raise KeyError(
                f"no calibration entry {key!r} in state version {self.version}"
            ) from None

    def value(self, key: str, default: Any = ...) -> Any:
        """Just the value of ``key``; ``default`` if missing (else ``KeyError``)."""
        if key not in self._snap.entries and default is not ...:
            return default
        return self.get(key).value

    def __contains__(self, key: object) -> bool:
        return key in self._snap.entries

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._snap.entries))

    def __len__(self) -> int:
        return len(self._snap.entries)

    @property
    def entries(self) -> Mapping[str, Entry]:
        return MappingProxyType(self._snap.entries)

    def keys(self, prefix: str = "") -> list[str]:
        """Keys, optionally only those under ``prefix`` (e.g. ``"cells.3"``)."""
        if not prefix:
            return sorted(self._snap.entries)
        p = prefix.rstrip(".") + "."
        return sorted(k for k in self._snap.entries if k.startswith(p))

    def node_record(self, name: str) -> NodeRecord | None:
        return self._snap.nodes.get(name)

    @property
    def node_records(self) -> Mapping[str, NodeRecord]:
        return MappingProxyType(self._snap.nodes)

    # ---------------------------------------------------------------- writing
    def apply(
        self,
        change: StateChange,
        *,
        clock: Clock,
        node: str | None = None,
        run_id: str | None = None,
        node_record: NodeRecord | None = None,
        message: str = "",
        node_records: tuple[NodeRecord, ...] = (),
    ) -> int:
        """Apply ``change`` (and optionally node records) as one new version.

        Every entry is stamped with the clock time, UTC, run id, node and the new
        version number. Returns the new version.
        """
        version = self.next_version()
        time_s, utc = clock.now(), clock.utcnow().isoformat()
        entries = dict(self._snap.entries)
        for key, u in change.updates.items():
            old = entries.get(key)
            value, stderr = u.value, u.stderr
            if u.keep_value:
                value = old.value if old is not None else None
                stderr = old.stderr if old is not None else None
            entries[key] = Entry(
                value=value,
                stderr=stderr,
                unit=u.unit or (old.unit if old else ""),
                valid=u.valid,
                time_s=time_s,
                utc=utc,
                run_id=run_id,
                node=node,
                version=version,
                note=u.note,
            )
        nodes = dict(self._snap.nodes)
        for rec in (*node_records, *((node_record,) if node_record is not None else ())):
            nodes[rec.name] = rec
        msg = message or change.message or (f"update from {node}" if node else "update")
        self._commit(
            _Snapshot(version, self.version, utc, time_s, msg, node, run_id, entries, nodes)
        )
        return version

    def record_node(self, record: NodeRecord, *, clock: Clock, message: str = "") -> int:
        """Store a node's bookkeeping alone (e.g. "check_data found it in spec")."""
        return self.apply(
            StateChange(),
            clock=clock,
            node=record.name,
            run_id=record.run_id,
            node_record=record,
            message=message or f"record {record.name}",
        )

    def rollback(self, version: int, *, clock: Clock | None = None, message: str = "") -> int:
        """Make ``version``'s content current again, as a new version. Returns it.

        On a state opened with ``load(recover=True)`` past a damaged current version,
        the new version's parent is the good one (the damaged file's links cannot be read).
        """
        old = self._snapshot(version)
        new = self.next_version()
        utc = clock.utcnow().isoformat() if clock else None
        time_s = clock.now() if clock else None
        skipped = f" (v{self._on_disk} was damaged)" if self._on_disk != self.version else ""
        self._commit(
            replace(
                old,
                version=new,
                parent=self.version,
                utc=utc,
                time_s=time_s,
                message=(message or f"rollback to v{version}") + skipped,
                node=None,
                run_id=None,
                entries=dict(old.entries),
                nodes=dict(old.nodes),
            )
        )
        return new

    # ---------------------------------------------------------------- history
    def history(self) -> list[VersionInfo]:
        """Versions from the first to the current, following parent links."""
        out = []
        snap = self._snap
        while snap.version > 0:
            out.append(snap.info())
            snap = self._snapshot(snap.parent)
        return out[::-1]

    def info(self) -> VersionInfo:
        """This version's line of the history (its parent, time, message), reading nothing else.

        A reader that follows a growing history (the dashboard) reads each new
        version once instead of every version on every change (:meth:`history`).
        """
        return self._snap.info()

    def at(self, version: int) -> CalibrationState:
        """A read-only view of ``version`` (writing through it raises)."""
        return CalibrationState(None, self._snapshot(version))

    def timeline(self, prefix: str = "") -> list[dict[str, Any]]:
        """Every entry (under ``prefix``) at every version of the history, oldest first.

        One row per (version, key): ``version``, ``utc``, ``time_s``, ``node``, ``message``
        (of that version), ``key``, ``value``, ``stderr``, ``unit``, ``valid`` and
        ``recalibrated`` (True where this version set the entry, False where it was
        carried over), so a plot of a parameter over time can mark recalibrations.
        """
        rows: list[dict[str, Any]] = []
        p = prefix.rstrip(".") + "." if prefix else ""
        for info in self.history():
            snap = self._snapshot(info.version)
            for key, e in sorted(snap.entries.items()):
                if p and not key.startswith(p):
                    continue
                rows.append(
                    {
                        "version": info.version,
                        "utc": info.utc,
                        "time_s": info.time_s,
                        "node": info.node,
                        "message": info.message,
                        "key": key,
                        "value": e.value,
                        "stderr": e.stderr,
                        "unit": e.unit,
                        "valid": e.valid,
                        "recalibrated": e.version == info.version,
                    }
                )
        return rows

    def diff(self, v1: int, v2: int | None = None) -> StateDiff:
        """Entries added, removed and changed from ``v1`` to ``v2`` (default: current)."""
        a = self._snapshot(v1)
        b = self._snapshot(self.version if v2 is None else v2)
        added = {k: e for k, e in b.entries.items() if k not in a.entries}
        removed = {k: e for k, e in a.entries.items() if k not in b.entries}
        changed = {
            k: (a.entries[k], e)
            for k, e in b.entries.items()
            if k in a.entries and _essence(a.entries[k]) != _essence(e)
        }
        nodes = tuple(
            sorted(n for n in set(a.nodes) | set(b.nodes) if a.nodes.get(n) != b.nodes.get(n))
        )
        return StateDiff(a.version, b.version, added, removed, changed, nodes)

    # ---------------------------------------------------------------- display
    def to_table(self) -> str:
        title = f"calibration state v{self.version} ({len(self)} entries)"
        return title + "\n" + text_table(entries_rows(self._snap.entries))

    def __repr__(self) -> str:
        return f"CalibrationState(path={str(self._path)!r}, version={self.version}, entries={len(self)})"

    # ---------------------------------------------------------------- internals
    def _snapshot(self, version: int) -> _Snapshot:
        if version == self._snap.version:
            return self._snap
        if version == 0:
            return _Snapshot()
        if self._path is None:
            raise ValueError("a read-only view cannot reach other versions")
        file = self._path / version_file(version)
        if not file.exists():
            raise KeyError(f"no calibration state version {version} in {self._path}")
        return _read_cached(file)

    def next_version(self) -> int:
        """The number the next :meth:`apply` will get (one writer at a time)."""
        if self._path is None:
            raise ValueError("this is a read-only view of an old version; apply to the live state")
        on_disk = [
            int(m.group(1)) for p in self._path.iterdir() if (m := _VERSION_FILE.match(p.name))
        ]
        return max([self.version, *on_disk]) + 1

    def _commit(self, snap: _Snapshot) -> None:
        """Write ``snap`` and point ``current`` at it, under the writer lock, if nobody moved it."""
        assert self._path is not None
        with _DirLock.of(self._path).held(wait=COMMIT_WAIT_S):
            on_disk = CalibrationState.current_version(self._path)
            if on_disk != self._on_disk or snap.version != self.next_version():
                raise StateConflictError(
                    f"calibration state {self._path} moved on to v{on_disk} since this process "
                    f"read v{self._on_disk}: another writer committed in between. Reload it "
                    "(CalibrationState.load) and redo the change; calibrations take the writer "
                    "lock for their whole session (CalibrationState.writer) to avoid this"
                )
            text = _with_checksum(
                yaml.dump(snap.to_doc(), Dumper=_DUMPER, sort_keys=False, allow_unicode=True)
            )
            _atomic_write(self._path / version_file(snap.version), text)
            _atomic_write(self._path / CURRENT, version_file(snap.version) + "\n")
            self._snap = snap  # only once both renames succeeded
            self._on_disk = snap.version


# libyaml's emitter and parser when PyYAML has them: a 64-cell chip's state (a 64x64
# crosstalk matrix with errors) took ~2.7 s per version to write in pure Python.
_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _essence(e: Entry) -> tuple[Any, ...]:
    return (e.value, e.stderr, e.unit, e.valid, e.run_id, e.note)


def _read(file: Path) -> _Snapshot:
    """One version file, checked so a damaged file is named with its line and key."""
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise StateFileError(f"{file}:?: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    return _parse(text, file)


#: version files are immutable once written: parsed snapshots by (path, size, mtime)
_CACHE: dict[tuple[str, int, int], _Snapshot] = {}
_CACHE_MAX = 512


def _read_cached(file: Path) -> _Snapshot:
    """:func:`_read`, remembering parsed versions (history walks read each file once)."""
    st = file.stat()
    key = (str(file), st.st_size, st.st_mtime_ns)
    snap = _CACHE.get(key)
    if snap is None:
        snap = _read(file)
        if len(_CACHE) >= _CACHE_MAX:
            _CACHE.clear()
        _CACHE[key] = snap
    return snap


def _with_checksum(text: str) -> str:
    """``text`` marked as checksummed on its first line, with its sha256 as the last line."""
    first, nl, rest = text.partition("\n")
    body = f"{first}  # {FORMAT_MARK}: the last line is the sha256 of every line above it{nl}{rest}"
    if not body.endswith("\n"):
        body += "\n"
    return body + f"sha256: {hashlib.sha256(body.encode('utf-8')).hexdigest()}\n"


def _verify(text: str, file: Path) -> None:
    """Raise :class:`StateFileError` if a checksummed version file's content does not match."""
    first = text.partition("\n")[0]
    if FORMAT_MARK not in first:
        return  # written before checksums: nothing to verify against
    cut = text.rfind("\n", 0, len(text) - 1) + 1
    match = _CHECKSUM_LINE.match(text, cut)
    if match is None:
        raise StateFileError(f"{file}: damaged: cut short (its last line, the sha256 checksum, is missing)")
    if hashlib.sha256(text[:cut].encode("utf-8")).hexdigest() != match.group(1):
        raise StateFileError(
            f"{file}: damaged: its content does not match its sha256 checksum "
            "(it was changed or cut short after it was written)"
        )


def _last_good(path: Path, below: int) -> _Snapshot | None:
    """The newest version numbered below ``below`` whose file reads and verifies."""
    numbers = sorted(
        (int(m.group(1)) for p in path.iterdir() if (m := _VERSION_FILE.match(p.name))), reverse=True
    )
    for number in numbers:
        if number >= below:
            continue
        try:
            return _read(path / version_file(number))
        except (StateFileError, OSError):
            continue
    return None


def _damaged(exc: StateFileError, file: Path, good: _Snapshot | None) -> StateDamagedError:
    """``exc`` (about the current version ``file``) with the last good version offered."""
    if good is None:
        offer = "no earlier version reads and verifies; move the directory aside to start afresh"
    else:
        offer = (
            f"the last good version is v{good.version} ({(good.utc or '?')[:19]}, {good.message}); "
            f"make it current again with: labstack state rollback {good.version}"
        )
    return StateDamagedError(f"{exc}\n  {offer}", file, good.info() if good else None)


def _parse(text: str, file: Path) -> _Snapshot:
    """A version file's text, checked; errors name ``file`` with the line and key.

    Structure first (so an edit is named by line and key), then the checksum.
    """
    snap = _parse_structure(text, file)
    _verify(text, file)
    return snap


def _parse_structure(text: str, file: Path) -> _Snapshot:
    try:
        root = yaml.compose(text, Loader=_LOADER)
        doc = yaml.load(text, Loader=_LOADER)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else "?"
        raise StateFileError(f"{file}:{line}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
    lines: dict[tuple[str, ...], int] = {}

    def walk(node: Any, prefix: tuple[str, ...]) -> None:
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                lines[(*prefix, str(k.value))] = k.start_mark.line + 1
                walk(v, (*prefix, str(k.value)))

    walk(root, ())

    def fail(key: tuple[str, ...], message: str) -> StateFileError:
        line = next((lines[key[:i]] for i in range(len(key), 0, -1) if key[:i] in lines), 1)
        return StateFileError(f"{file}:{line}: {'.'.join(key) or '<top>'}: {message}")

    if not isinstance(doc, dict):
        raise fail((), "a state version is a mapping with version, entries and nodes")
    if not isinstance(doc.get("version"), int) or isinstance(doc.get("version"), bool):
        raise fail(("version",), f"must be a whole number, got {doc.get('version')!r}")
    for section, cls in (("entries", Entry), ("nodes", NodeRecord)):
        items = doc.get(section) or {}
        if not isinstance(items, dict):
            raise fail((section,), "must map names to records")
        for name, record in items.items():
            if not isinstance(record, dict):
                raise fail((section, str(name)), "must be a mapping")
            try:
                cls.from_dict(record)
            except TypeError as exc:
                raise fail((section, str(name)), str(exc)) from None
    try:
        return _Snapshot.from_doc(doc)
    except (TypeError, ValueError, KeyError) as exc:
        raise fail((), f"{type(exc).__name__}: {exc}") from None


def _atomic_write(target: Path, text: str) -> None:
    """Write ``text`` to ``target`` so readers see the old file or the new, never half."""
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()
    _fsync_dir(target.parent)


def _fsync_dir(path: Path) -> None:
    if os.name != "posix":
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# ---------------------------------------------------------------------- the writer lock
class _DirLock:
    """The writer lock of one state directory: across processes (``fcntl.flock`` on
    ``.lock``) and across threads of this process (re-entrant for its owner thread)."""

    _registry: dict[str, _DirLock] = {}
    _registry_lock = threading.Lock()

    def __init__(self, path: Path) -> None:
        self.path = path
        self.file = path / LOCK_FILE
        self.cond = threading.Condition()
        self.owner: int | None = None
        self.count = 0
        self.fd: int | None = None

    @classmethod
    def of(cls, path: Path) -> _DirLock:
        key = os.path.realpath(path)
        with cls._registry_lock:
            lock = cls._registry.get(key)
            if lock is None:
                lock = cls._registry[key] = cls(Path(key))
            return lock

    @staticmethod
    def holder(path: Path) -> dict[str, Any] | None:
        """The holder a lock file names, if it is held (probed without taking it)."""
        file = path / LOCK_FILE
        try:
            fd = os.open(file, os.O_RDWR)
        except OSError:
            return None
        try:
            if _try_flock(fd):
                _unflock(fd)
                return None
            return _read_holder(fd)
        finally:
            os.close(fd)

    @contextlib.contextmanager
    def held(
        self, *, wait: float | None, who: str = "", on_wait: Callable[[str], None] | None = None
    ) -> Iterator[None]:
        self.acquire(wait, who, on_wait)
        try:
            yield
        finally:
            self.release()

    def acquire(self, wait: float | None, who: str, on_wait: Callable[[str], None] | None) -> None:
        me = threading.get_ident()
        deadline = None if wait is None else time.monotonic() + max(0.0, wait)
        told = False
        with self.cond:
            while self.owner not in (None, me):  # another thread of this process writes
                if not told and on_wait is not None:
                    on_wait(f"waiting for another thread of this process writing {self.path}")
                    told = True
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise StateLockedError(
                        f"calibration state {self.path} is being written by another thread of "
                        f"this process (pid {os.getpid()})"
                    )
                self.cond.wait(timeout=remaining if remaining is not None else 1.0)
            if self.owner == me:
                self.count += 1
                return
            fd = os.open(self.file, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                delay = 0.02
                while not _try_flock(fd):
                    holder = _read_holder(fd)
                    text = _describe(holder)
                    if deadline is not None and time.monotonic() >= deadline:
                        hint = "" if wait else "; wait for it (labstack calibrate --wait) or stop it"
                        raise StateLockedError(
                            f"calibration state {self.path} is being written by {text}{hint}"
                        )
                    if not told and on_wait is not None:
                        on_wait(f"waiting for the calibration state {self.path}, written by {text}")
                        told = True
                    time.sleep(delay)
                    delay = min(delay * 1.5, 0.25)
                _write_holder(fd, who)
            except BaseException:
                os.close(fd)
                raise
            self.fd, self.owner, self.count = fd, me, 1

    def release(self) -> None:
        with self.cond:
            if self.owner != threading.get_ident():
                raise RuntimeError(f"writer lock of {self.path} released by a thread that does not hold it")
            self.count -= 1
            if self.count:
                return
            fd, self.fd, self.owner = self.fd, None, None
            assert fd is not None
            try:
                os.ftruncate(fd, 0)
                _unflock(fd)
            finally:
                os.close(fd)
            self.cond.notify_all()


def _try_flock(fd: int) -> bool:
    import fcntl  # POSIX; the state's lock is advisory and kernel-released on process death

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _unflock(fd: int) -> None:
    import fcntl

    fcntl.flock(fd, fcntl.LOCK_UN)


def _write_holder(fd: int, who: str) -> None:
    info = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "command": who or " ".join(os.path.basename(a) if i == 0 else a for i, a in enumerate(sys.argv))[:200],
        "since_utc": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(info).encode(), 0)


def _read_holder(fd: int) -> dict[str, Any] | None:
    try:
        data = os.pread(fd, 4096, 0)
        info = json.loads(data.decode()) if data else None
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def _describe(holder: dict[str, Any] | None) -> str:
    if not holder:
        return "another process"
    return (
        f"pid {holder.get('pid')} on {holder.get('host')} ({holder.get('command') or '?'}, "
        f"since {holder.get('since_utc')})"
    )
