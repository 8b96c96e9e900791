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

One writer at a time is assumed (one station, one calibration process).

Rollback never deletes anything: it writes a *new* version whose content is the
old one, so the history shows that a rollback happened.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
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
_VERSION_FILE = re.compile(r"^v(\d{6,})\.yaml$")


class StateFileError(ValueError):
    """A calibration-state file that cannot be read; the message names the file, line and key."""


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

    def __init__(self, path: Path | None, snapshot: _Snapshot) -> None:
        self._path = path
        self._snap = snapshot

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
        _atomic_write(path / version_file(snap.version), text)
        _atomic_write(path / CURRENT, version_file(snap.version) + "\n")
        return cls.load(path)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> CalibrationState:
        """Open the state directory ``path``; an empty state if it holds nothing yet."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        pointer = path / CURRENT
        if not pointer.exists():
            return cls(path, _Snapshot())
        name = pointer.read_text().strip()
        if not _VERSION_FILE.match(name) or not (path / name).is_file():
            raise StateFileError(f"{pointer}:1: names {name!r}, which is not a version file in {path}")
        return cls(path, _read(path / name))

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
    ) -> int:
        """Apply ``change`` (and optionally a node record) as one new version.

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
        if node_record is not None:
            nodes[node_record.name] = node_record
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
        """Make ``version``'s content current again, as a new version. Returns it."""
        old = self._snapshot(version)
        new = self.next_version()
        utc = clock.utcnow().isoformat() if clock else None
        time_s = clock.now() if clock else None
        self._commit(
            replace(
                old,
                version=new,
                parent=self.version,
                utc=utc,
                time_s=time_s,
                message=message or f"rollback to v{version}",
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
        return _read(file)

    def next_version(self) -> int:
        """The number the next :meth:`apply` will get (one writer at a time)."""
        if self._path is None:
            raise ValueError("this is a read-only view of an old version; apply to the live state")
        on_disk = [
            int(m.group(1)) for p in self._path.iterdir() if (m := _VERSION_FILE.match(p.name))
        ]
        return max([self.version, *on_disk]) + 1

    def _commit(self, snap: _Snapshot) -> None:
        assert self._path is not None
        text = yaml.dump(snap.to_doc(), Dumper=_DUMPER, sort_keys=False, allow_unicode=True)
        _atomic_write(self._path / version_file(snap.version), text)
        _atomic_write(self._path / CURRENT, version_file(snap.version) + "\n")
        self._snap = snap  # only once both renames succeeded


# libyaml's emitter and parser when PyYAML has them: a 64-cell chip's state (a 64x64
# crosstalk matrix with errors) took ~2.7 s per version to write in pure Python.
_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _essence(e: Entry) -> tuple[Any, ...]:
    return (e.value, e.stderr, e.unit, e.valid, e.run_id, e.note)


def _read(file: Path) -> _Snapshot:
    """One version file, checked so a damaged file is named with its line and key."""
    return _parse(file.read_text(encoding="utf-8"), file)


def _parse(text: str, file: Path) -> _Snapshot:
    """A version file's text, checked; errors name ``file`` with the line and key."""
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
