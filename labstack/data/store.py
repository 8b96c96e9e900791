"""Stream a run into zarr, chunk by chunk, so that a killed process loses little.

Crash-safety rests on three facts:

* every array is created at its full final shape (sweep lengths are known before the
  run starts), so array metadata is written once, up front, and never rewritten while
  points arrive; only chunk files change during the run;
* every file (chunk, metadata) is written to a temporary name and renamed into place,
  so it is either the old or the new version, never half of one;
* a new array (``.zarray`` and ``.zattrs``) is written in a staging directory next to
  the store (in the run folder, which no zarr reader lists) and renamed into the store
  in one step, so a reader or a kill never meets an array without its dimension names
  (xarray would refuse the whole store); the store itself (``.zgroup`` and ``.zattrs``
  with the snapshot) appears the same way, whole;
* ``run.json`` is replaced atomically too.

A SIGKILL at any instant therefore leaves a store that opens and holds every point
flushed before the kill; unmeasured float points read as NaN (integer variables read
as 0; the ``<dim>_clock`` variables say which points were taken).

Points are buffered in memory per variable, in flat C order of the sweep dims, and
written when a buffer fills one chunk (``flush_every`` points, fewer for big arrays)
or when the runner calls :meth:`RunWriter.flush` (every ``flush_interval`` seconds
of wall time). The store uses zarr format 2: its consolidated metadata is part of the
spec, and zarr-python 2 and 3, xarray and other readers all open it.

Writing: the format is a handful of JSON files and one compressed file per chunk, so
this module writes it directly (:class:`_V2Array`: JSON, numcodecs' Blosc, an atomic
rename) instead of through zarr-python, whose every call hops to its I/O thread and
back. That hop cost ~1 ms per operation and made the two dozen operations of a short
run (~20 ms) its largest cost; the files are the same as zarr-python's (same chunking,
compressor and metadata), and zarr-python and xarray read them (tested).

Fixed cost: a short sweep spends most of its time creating files, and on a busy disk
each new file or directory costs tens to hundreds of microseconds. So a run creates
no file it does not keep (no staging group to make and remove, ``points_total`` in
the first ``run.json``), writes staged files without temporary names (nobody sees
them until the rename), and encodes each piece of metadata once: the closing
``.zattrs`` and ``.zmetadata`` are spliced from the JSON text written at creation
(the snapshot can be megabytes), not encoded again.

Deferred store (``RunWriter(deferred=True)``, what sequences use): the whole store is
built in one staging directory (``<run>/.data.zarr.staging``) and renamed into place
at the first flush of points: a :meth:`RunWriter.flush` (the runner's
``flush_interval``), a variable's filled chunk (the runner places it after that
point; after the run's last point, :meth:`RunWriter.close` does), or close. Until
then its arrays and chunks are plain files (no temporary names, no rename per array),
and a run that ends before its first flush writes its closing ``.zattrs`` and
``.zmetadata`` once, into the staged store, and places it in one rename. So nothing
flushed is ever only in staging: the rename happens before a flush returns, before
``run.json`` counts the points. What a reader of a running run sees: ``run.json``
(status ``running``, ``points_total``) from the start; the store from the first flush
on, whole, holding every point flushed so far (as above); before it, no store
(:meth:`labstack.data.runs.Run.dataset` says so). A kill before the first flush leaves
``run.json`` and the staging leftover, with nothing flushed to lose.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import shutil
import socket
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import numcodecs
import numcodecs.blosc
import numpy as np

from labstack.data.files import write_atomic, write_file
from labstack.data.jsontext import dumps
from labstack.data.layout import box_shape, flat_boxes, sweep_chunks
from labstack.data.runs import (
    RUN_FORMAT,
    RUN_INDEX,
    STORE_NAME,
    Run,
    new_run_id,
    resolve_data_dir,
    write_json_atomic,
)

ZARR_FORMAT: Final = 2
STAGING_SUFFIX = ".staging"
"""A directory ``<run>/.<name>.staging`` is an array (or the store) not yet in place."""
DEFAULT_FLUSH_EVERY = 10_000
DEFAULT_CHUNK_BYTES = 32 * 2**20


COMPRESSOR: Final = {"id": "blosc", "cname": "lz4", "clevel": 5, "shuffle": 1, "blocksize": 0}
"""zarr-python's default compressor for format 2, so the files are the ones it would write."""


def _write_json(path: Path, data: Mapping[str, Any]) -> None:
    write_atomic(path, dumps(data).encode())


def _extend_json(text: str, keys: set[str], extra: Mapping[str, Any]) -> str | None:
    """The JSON object ``text`` (with top-level ``keys``) plus the items of ``extra``.

    Spliced as text, so a large object is not encoded again; None when a key of
    ``extra`` is already in ``text`` (the caller re-encodes the whole object).
    """
    if not extra:
        return text
    if keys.intersection(extra):
        return None
    tail = dumps(dict(extra))
    return tail if text == "{}" else f"{text[:-1]}, {tail[1:]}"


def _consolidated_text(metadata: Mapping[str, str]) -> str:
    """The ``.zmetadata`` document from each key's JSON text (as ``json.dumps`` lays it out)."""
    body = ", ".join(f"{json.dumps(key)}: {text}" for key, text in metadata.items())
    return f'{{"metadata": {{{body}}}, "zarr_consolidated_format": 1}}'


_CNAME: Final = COMPRESSOR["cname"].encode()


def _compress(data: np.ndarray) -> bytes:
    """``data`` compressed as :data:`COMPRESSOR` does (the same bytes as its codec's
    ``encode``): Blosc's own call, without the codec's checks of what it is handed
    (always a numeric array of at most one chunk here), a third of the time for the
    small chunks of a short run."""
    return numcodecs.blosc.compress(np.ascontiguousarray(data), _CNAME, COMPRESSOR["clevel"],
                                    COMPRESSOR["shuffle"], COMPRESSOR["blocksize"])


def _fill_json(fill: Any) -> Any:
    """A fill value as zarr format 2 writes it in ``.zarray`` (NaN as the string "NaN",
    infinities as "Infinity" and "-Infinity"): never a non-finite float."""
    if fill is None:
        return None
    if isinstance(fill, complex):
        return [_fill_json(fill.real), _fill_json(fill.imag)]
    if isinstance(fill, float | np.floating) and not math.isfinite(fill):
        return "NaN" if math.isnan(fill) else ("Infinity" if fill > 0 else "-Infinity")
    return fill


class _V2Array:
    """One zarr format-2 array on disk, written chunk by chunk without zarr-python.

    Chunks that are being filled stay in memory (initialised to the fill value) and
    are rewritten whole, atomically, on every write that touches them; a chunk whose
    every element has been written is dropped from memory.
    """

    def __init__(self, path: str, shape: tuple[int, ...], chunks: tuple[int, ...],
                 dtype: np.dtype, fill_value: Any) -> None:
        self.path = path
        self.staged = True  # in its staging directory: chunks are written without a rename
        self.shape = tuple(int(n) for n in shape)
        self.chunks = tuple(int(c) for c in chunks) if self.shape else ()
        self.dtype = np.dtype(dtype)
        self.fill_value = fill_value
        # one chunk holds the whole array (coordinates, short sweeps): written in one go
        self._whole = self.chunks == self.shape and all(n > 0 for n in self.shape)
        self._whole_key = ".".join("0" for _ in self.shape) or "0"
        self._open: dict[tuple[int, ...], list[Any]] = {}  # chunk index -> [data, elements left]

    def metadata(self) -> dict[str, Any]:
        return {
            "shape": list(self.shape),
            "chunks": list(self.chunks),
            "dtype": self.dtype.str,
            "fill_value": _fill_json(self.fill_value),
            "order": "C",
            "filters": None,
            "dimension_separator": ".",
            "compressor": dict(COMPRESSOR),
            "zarr_format": ZARR_FORMAT,
        }

    def _covers(self, box: tuple[slice, ...]) -> bool:
        """Whether ``box`` (leading dims; the rest taken whole) is the whole array."""
        return all(s.start in (0, None) and s.stop == n and s.step in (1, None)
                   for s, n in zip(box, self.shape, strict=False))

    def _new_chunk(self, index: tuple[int, ...]) -> list[Any]:
        data = np.full(self.chunks, 0 if self.fill_value is None else self.fill_value, self.dtype)
        valid = math.prod(min(c, n - i * c) for i, c, n in zip(index, self.chunks, self.shape,
                                                              strict=True))
        return [data, valid]

    def __setitem__(self, box: Any, value: Any) -> None:
        """Write ``value`` into the hyper-rectangle ``box`` (slices, or ``...`` for all)."""
        box = () if box is Ellipsis else tuple(box)
        if self._whole and not self._open and self._covers(box):
            whole = np.asarray(value, dtype=self.dtype)
            if whole.shape == self.shape:
                write = write_file if self.staged else write_atomic
                write(f"{self.path}/{self._whole_key}", _compress(whole))
                return
        box = box + tuple(slice(0, n) for n in self.shape[len(box):])  # trailing dims whole
        value = np.broadcast_to(np.asarray(value, dtype=self.dtype), tuple(
            s.stop - s.start for s in box))
        ranges = [range(s.start // c, (s.stop - 1) // c + 1) for s, c in zip(box, self.chunks,
                                                                          strict=True)]
        for index in itertools.product(*ranges):
            inside, source = [], []
            for i, s, c in zip(index, box, self.chunks, strict=True):
                lo, hi = max(s.start, i * c), min(s.stop, (i + 1) * c)
                inside.append(slice(lo - i * c, hi - i * c))
                source.append(slice(lo - s.start, hi - s.start))
            key = f"{self.path}/{'.'.join(map(str, index)) if index else '0'}"
            write = write_file if self.staged else write_atomic
            part = value[tuple(source)]
            if index not in self._open and part.shape == self.chunks:
                # a whole chunk in one write (block reads): no fill, no copy into a buffer
                write(key, _compress(part))
                continue
            entry = self._open.get(index)
            if entry is None:
                entry = self._open[index] = self._new_chunk(index)
            entry[0][tuple(inside)] = part
            entry[1] -= math.prod(sl.stop - sl.start for sl in inside)
            write(key, _compress(entry[0]))
            if entry[1] <= 0:
                del self._open[index]



def _fill_value(dtype: np.dtype) -> Any:
    if dtype.kind == "f":
        return np.nan
    if dtype.kind == "c":
        return complex(np.nan, np.nan)
    return None  # ints and bools have no "missing"; <dim>_clock marks taken points


def _dim_attrs(dims: tuple[str, ...], attrs: Mapping[str, Any] | None) -> dict[str, Any]:
    out = dict(attrs or {})
    out["_ARRAY_DIMENSIONS"] = list(dims)
    return out


class Variable:
    """One streamed data variable: a flat point buffer in front of a zarr array.

    The array is created on the first point, when the value's dtype and (for array
    reads) shape become known. Every later point must have the same shape.
    """

    def __init__(
        self,
        writer: RunWriter,
        name: str,
        sweep_dims: tuple[str, ...],
        sweep_shape: tuple[int, ...],
        inner_dims: tuple[str, ...] | None,
        attrs: Mapping[str, Any],
    ) -> None:
        self.writer = writer
        self.name = name
        self.sweep_dims = sweep_dims
        self.sweep_shape = sweep_shape
        self.inner_dims = inner_dims
        self.attrs = dict(attrs)
        self.array: Any = None
        self.buffer: np.ndarray | None = None
        self.base = 0  # flat index of buffer[0]
        self.count = 0  # points in the buffer
        self.limit = 0  # buffer points at which to write: a chunk, or what is left
        self.flushed = 0  # of which already written
        self.total = math.prod(sweep_shape)

    def _create(self, value: np.ndarray) -> None:
        inner_shape = value.shape
        if self.inner_dims is None or (not self.inner_dims and inner_shape):
            dims = tuple(f"{self.name}_dim{i}" for i in range(len(inner_shape)))
        else:
            dims = self.inner_dims
        if len(dims) != len(inner_shape):
            raise ValueError(
                f"variable {self.name!r}: declared dims {dims} but the parameter returned "
                f"an array of shape {inner_shape}"
            )
        if value.dtype.kind not in "biufc":
            raise TypeError(
                f"variable {self.name!r}: labstack stores numbers, the parameter returned "
                f"{value.dtype} ({value!r:.60})"
            )
        for dim, size in zip(dims, inner_shape, strict=True):
            self.writer._claim_dim(dim, size, self.name)
        point_bytes = max(1, value.nbytes)
        chunk_bytes = self.writer.chunk_bytes
        points = max(1, min(self.writer.flush_every, chunk_bytes // point_bytes))
        chunks = sweep_chunks(self.sweep_shape, points)
        inner_chunks = list(inner_shape)
        if inner_shape and point_bytes > chunk_bytes:
            row = point_bytes // inner_shape[0]
            inner_chunks[0] = max(1, chunk_bytes // max(1, row))
        self.array = self.writer._create_array(
            self.name,
            shape=self.sweep_shape + inner_shape,
            chunks=chunks + tuple(inner_chunks),
            dtype=value.dtype,
            fill_value=_fill_value(value.dtype),
            attributes=_dim_attrs(self.sweep_dims + dims, self.attrs),
        )
        self.inner_shape = inner_shape
        self.capacity = math.prod(chunks)
        self.limit = min(self.capacity, self.total - self.base)
        self.buffer = np.empty((self.capacity, *inner_shape), dtype=value.dtype)

    def append(self, value: Any) -> None:
        """Add the next point (in C order of the sweep dims)."""
        if self.buffer is None:
            self._create(np.asarray(value))
        if self.inner_shape and np.shape(value) != self.inner_shape:
            raise ValueError(
                f"variable {self.name!r}: point {self.base + self.count} has shape "
                f"{np.shape(value)}, earlier points had {self.inner_shape}"
            )
        self.buffer[self.count] = value  # type: ignore[index]
        self.count += 1
        if self.count == self.limit:
            self.flush()
            if self.writer._staged_store is not None:
                self.writer.unplaced = True  # the owner places the store (see RunWriter.place)
            self.base += self.count
            self.count = self.flushed = 0
            self.limit = min(self.capacity, self.total - self.base)

    def flush(self) -> None:
        """Write buffered points not yet on disk."""
        if self.count <= self.flushed:
            return
        assert self.buffer is not None
        start = self.base + self.flushed
        stop = self.base + self.count
        if stop > self.total:
            raise IndexError(f"variable {self.name!r}: more points than its {self.total}")
        pos = self.flushed
        for box in flat_boxes(start, stop, self.sweep_shape):
            shape = box_shape(box)
            n = math.prod(shape)
            self.array[box] = self.buffer[pos : pos + n].reshape(shape + self.inner_shape)
            pos += n
        self.flushed = self.count

    @property
    def points_written(self) -> int:
        return self.base + self.flushed


class RunWriter:
    """Creates a run folder and streams its dataset; the only code that writes runs."""

    def __init__(
        self,
        name: str,
        *,
        data_dir: str | os.PathLike[str] | None = None,
        attrs: Mapping[str, Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
        flush_every: int = DEFAULT_FLUSH_EVERY,
        chunk_bytes: int = DEFAULT_CHUNK_BYTES,
        created: datetime | None = None,
        info: Mapping[str, Any] | None = None,
        deferred: bool = False,
    ) -> None:
        """``info``: further fields of the first ``run.json`` (e.g. ``points_total``),
        so that a run does not rewrite its index just after creating it.

        ``deferred``: build the whole store in the run folder's staging directory and
        move it into place at the first flush of points (or at :meth:`close`), see
        the module docstring. For writers that flush soon (sequences); a writer whose
        store attributes must be readable from the start (a session record) keeps the
        default, a store in place at once."""
        if flush_every < 1:
            raise ValueError(f"flush_every must be >= 1 point, got {flush_every}")
        self.flush_every = int(flush_every)
        self.chunk_bytes = int(chunk_bytes)
        root = resolve_data_dir(data_dir)
        created = created or datetime.now(UTC)
        while True:
            self.id = new_run_id(created)
            self.path = root / self.id
            try:
                self.path.mkdir()
                break
            except FileExistsError:
                continue
            except FileNotFoundError:  # the data dir's first run
                root.mkdir(parents=True, exist_ok=True)
        self.store = self.path / STORE_NAME
        self.attrs: dict[str, Any] = {"run_id": self.id, **dict(attrs or {})}
        # JSON text of every metadata document as written, for the closing .zmetadata
        group_text = dumps({"zarr_format": ZARR_FORMAT})
        self._metadata: dict[str, str] = {".zgroup": group_text}
        self._attrs_text = dumps(self.attrs)
        self._attrs_keys = set(self.attrs)
        self._dir, self._store_dir = os.fspath(self.path), os.fspath(self.store)
        self.variables: dict[str, Variable] = {}
        self._arrays: dict[str, _V2Array] = {}
        # whether close looks for staging leftovers: a deferred store that is placed whole
        # has none, unless an array was staged on its own (after the store was placed)
        self._leftovers = not deferred
        #: the store's staging directory while the store is not in place yet (deferred)
        self._staged_store: str | None = self._stage(STORE_NAME)
        #: a filled chunk was written into the staged store: the owner is to place it
        self.unplaced = False
        if not deferred:
            self.place()
        self._adopted = False
        self._dims: dict[str, tuple[int, str]] = {}
        self.info: dict[str, Any] = {
            "format": RUN_FORMAT,
            "id": self.id,
            "name": name,
            "status": "running",
            "created_utc": created.isoformat(),
            "metadata": dict(metadata or {}),
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "points_flushed": 0,
            **dict(info or {}),
        }
        self._write_info()

    @property
    def run(self) -> Run:
        return Run(self.path)

    def _write_info(self) -> None:
        write_json_atomic(self.path / RUN_INDEX, self.info)

    def update_info(self, **fields: Any) -> None:
        self.info.update(fields)
        self._write_info()

    def _create_array(
        self,
        name: str,
        *,
        shape: tuple[int, ...],
        chunks: tuple[int, ...] | None,
        dtype: np.dtype,
        fill_value: Any,
        attributes: Mapping[str, Any],
        data: np.ndarray | None = None,
    ) -> _V2Array:
        """Create array ``name`` in staging, then move it into the store atomically.

        ``data`` (a coordinate's values, the whole array) is written before the move,
        so the array appears with its values.
        """
        in_store = self._staged_store  # not None: the whole store is still staged
        if in_store is not None:
            staged = f"{in_store}/{name}"
            os.mkdir(staged)
        else:
            staged = self._stage(name)
        array = _V2Array(staged, shape, chunks if chunks is not None else shape, dtype, fill_value)
        meta_text = dumps(array.metadata(), exact_nan=False)  # its one float, the fill, is text
        attrs_text = dumps(dict(attributes))
        write_file(f"{staged}/.zarray", meta_text.encode())
        write_file(f"{staged}/.zattrs", attrs_text.encode())
        if data is not None:
            array[...] = data
        if in_store is None:
            placed = f"{self._store_dir}/{name}"
            os.rename(staged, placed)
            array.path, array.staged = placed, False
        self._arrays[name] = array
        self._metadata[f"{name}/.zarray"] = meta_text
        self._metadata[f"{name}/.zattrs"] = attrs_text
        return array

    def _stage(self, name: str) -> str:
        """A fresh staging directory for ``name`` in the run folder (outside the store,
        on the same file system); a leftover of an interrupted creation is replaced."""
        staged = f"{self._dir}/.{name}{STAGING_SUFFIX}"
        if name != STORE_NAME:
            self._leftovers = True
        try:
            os.mkdir(staged)
        except FileExistsError:
            shutil.rmtree(staged)
            os.mkdir(staged)
        return staged

    def place(self, attrs_text: str | None = None, consolidated: str | None = None) -> None:
        """Move the staged store into place (once; later calls do nothing).

        Its group files are written first, ``.zattrs`` as ``attrs_text`` (default: the
        attributes at creation) and ``.zmetadata`` only when ``consolidated`` is
        given (at close), so the store appears whole, in one rename. From then on
        new arrays are staged one by one and chunks are replaced atomically.

        :meth:`flush` and :meth:`close` place the store. A chunk that fills before
        that is written into the staged store and sets :attr:`unplaced`; the owner
        places it when it sees fit (the runner: after that point, or at close when
        it was the run's last point, so a short run places its store once, closed).
        """
        staged = self._staged_store
        if staged is None:
            return
        write_file(f"{staged}/.zgroup", self._metadata[".zgroup"].encode())
        write_file(f"{staged}/.zattrs", (attrs_text or self._attrs_text).encode())
        if consolidated is not None:
            write_file(f"{staged}/.zmetadata", consolidated.encode())
        os.rename(staged, self._store_dir)
        self._staged_store = None
        self.unplaced = False
        for name, array in self._arrays.items():
            array.path, array.staged = f"{self._store_dir}/{name}", False

    def _remove_leftovers(self) -> None:
        """Remove staging directories an interrupted array creation left in the run folder."""
        if not self._leftovers:
            return
        with os.scandir(self.path) as entries:
            for entry in entries:
                if entry.name.startswith(".") and entry.name.endswith(STAGING_SUFFIX):
                    shutil.rmtree(entry.path, ignore_errors=True)

    def adopt_store(self) -> None:
        """The store was rewritten by another writer (xarray): read its metadata at close."""
        self._adopted = True
        self._staged_store = None  # the store is in place, whatever was staged is a leftover
        self._leftovers = True

    def _claim_dim(self, dim: str, size: int, who: str) -> None:
        have = self._dims.get(dim)
        if have is not None and have[0] != size:
            raise ValueError(
                f"dimension {dim!r} has length {have[0]} in {have[1]!r} but {size} in {who!r}"
            )
        self._dims.setdefault(dim, (size, who))

    def add_coord(
        self,
        name: str,
        dims: tuple[str, ...],
        values: Any,
        attrs: Mapping[str, Any] | None = None,
    ) -> None:
        """Write a coordinate (known before the run) in full."""
        arr = np.asarray(values)
        if arr.ndim != len(dims):
            raise ValueError(f"coordinate {name!r} has shape {arr.shape} for dims {dims}")
        for dim, size in zip(dims, arr.shape, strict=True):
            self._claim_dim(dim, size, name)
        if name in self._arrays:
            raise ValueError(f"{name!r} is already in the run's dataset")
        self._create_array(
            name,
            shape=arr.shape,
            chunks=arr.shape or None,
            dtype=arr.dtype,
            fill_value=_fill_value(arr.dtype),
            attributes=_dim_attrs(dims, attrs),
            data=arr,
        )

    def add_variable(
        self,
        name: str,
        sweep_dims: tuple[tuple[str, int], ...],
        inner_dims: tuple[str, ...] | None = None,
        attrs: Mapping[str, Any] | None = None,
    ) -> Variable:
        """Declare a streamed variable; ``inner_dims=None`` names array axes automatically."""
        if name in self.variables or name in self._arrays:
            raise ValueError(f"{name!r} is already in the run's dataset")
        dims = tuple(d for d, _ in sweep_dims)
        shape = tuple(int(n) for _, n in sweep_dims)
        for dim, size in sweep_dims:
            self._claim_dim(dim, size, name)
        var = Variable(self, name, dims, shape, inner_dims, attrs or {})
        self.variables[name] = var
        return var

    def flush(self, **progress: Any) -> None:
        """Write every buffered point, then record ``progress`` in ``run.json``."""
        for var in self.variables.values():
            var.flush()
        self.place()
        if progress:
            self.update_info(**progress)

    def close(
        self,
        status: str,
        attrs: Mapping[str, Any] | None = None,
        error: str | None = None,
        **info: Any,
    ) -> Run:
        """Flush, add final attributes, consolidate metadata and mark the run ``status``.

        Consolidation happens for failed runs too: whatever was written opens fast.
        """
        try:
            for var in self.variables.values():
                var.flush()
        finally:
            final = dict(attrs or {})
            final["status"] = status
            if error is not None:
                final["error"] = error
            group_attrs = self.store / ".zattrs"
            consolidated: str | None
            if self._adopted:
                self.attrs = json.loads(group_attrs.read_text())
                self.attrs.update(final)
                _write_json(group_attrs, self.attrs)
                consolidated = dumps(consolidated_metadata(self.store))
            else:
                text = _extend_json(self._attrs_text, self._attrs_keys, final)
                self.attrs.update(final)
                if text is None:
                    text = dumps(self.attrs)
                consolidated = _consolidated_text({**self._metadata, ".zattrs": text})
                if self._staged_store is not None:
                    self.place(text, consolidated)  # nothing flushed before: all in one go
                    consolidated = None
                else:
                    write_atomic(group_attrs, text.encode())
            if consolidated is not None:
                write_atomic(self.store / ".zmetadata", consolidated.encode())
            self._remove_leftovers()
            self.info.update(info)
            self.info["status"] = status
            if error is not None:
                self.info["error"] = error
            self._write_info()
        return self.run


def consolidated_metadata(store: Path) -> dict[str, Any]:
    """The ``.zmetadata`` document of a format-2 store: every group's and array's metadata."""
    metadata: dict[str, Any] = {}
    for root, dirs, files in os.walk(store):
        dirs.sort()
        rel = Path(root).relative_to(store)
        for name in sorted(files):
            if name in (".zgroup", ".zattrs", ".zarray"):
                key = name if rel == Path(".") else f"{rel.as_posix()}/{name}"
                metadata[key] = json.loads((Path(root) / name).read_text())
    return {"metadata": metadata, "zarr_consolidated_format": 1}
