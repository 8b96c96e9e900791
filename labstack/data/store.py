"""Stream a run into zarr, chunk by chunk, so that a killed process loses little.

Crash-safety rests on three facts:

* every array is created at its full final shape (sweep lengths are known before the
  run starts), so array metadata is written once, up front, and never rewritten while
  points arrive; only chunk files change during the run;
* every file (chunk, metadata) is written to a temporary name and renamed into place,
  so it is either the old or the new version, never half of one;
* a new array (``.zarray`` and ``.zattrs``) is created in a staging group next to the
  store and its directory renamed into the store in one step, so a reader or a kill
  never meets an array without its dimension names (xarray would refuse the whole
  store);
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
"""

from __future__ import annotations

import itertools
import json
import math
import os
import secrets
import shutil
import socket
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import numcodecs
import numpy as np

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
STAGING_NAME = ".staging.zarr"
DEFAULT_FLUSH_EVERY = 10_000
DEFAULT_CHUNK_BYTES = 32 * 2**20


COMPRESSOR: Final = {"id": "blosc", "cname": "lz4", "clevel": 5, "shuffle": 1, "blocksize": 0}
"""zarr-python's default compressor for format 2, so the files are the ones it would write."""


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def _write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary name and a rename (never half a file)."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.partial")
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _write_json(path: Path, data: Mapping[str, Any]) -> None:
    _write_atomic(path, json.dumps(data, default=_json_default).encode())


def _fill_json(fill: Any) -> Any:
    """A fill value as zarr format 2 writes it in ``.zarray`` (NaN as the string "NaN")."""
    if fill is None:
        return None
    if isinstance(fill, complex):
        return [_fill_json(fill.real), _fill_json(fill.imag)]
    if isinstance(fill, float) and math.isnan(fill):
        return "NaN"
    return fill


class _V2Array:
    """One zarr format-2 array on disk, written chunk by chunk without zarr-python.

    Chunks that are being filled stay in memory (initialised to the fill value) and
    are rewritten whole, atomically, on every write that touches them; a chunk whose
    every element has been written is dropped from memory.
    """

    def __init__(self, path: Path, shape: tuple[int, ...], chunks: tuple[int, ...],
                 dtype: np.dtype, fill_value: Any) -> None:
        self.path = path
        self.shape = tuple(int(n) for n in shape)
        self.chunks = tuple(int(c) for c in chunks) if self.shape else ()
        self.dtype = np.dtype(dtype)
        self.fill_value = fill_value
        self.codec = numcodecs.get_codec(dict(COMPRESSOR))
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

    def _new_chunk(self, index: tuple[int, ...]) -> list[Any]:
        data = np.full(self.chunks, 0 if self.fill_value is None else self.fill_value, self.dtype)
        valid = math.prod(min(c, n - i * c) for i, c, n in zip(index, self.chunks, self.shape,
                                                              strict=True))
        return [data, valid]

    def __setitem__(self, box: Any, value: Any) -> None:
        """Write ``value`` into the hyper-rectangle ``box`` (slices, or ``...`` for all)."""
        box = () if box is Ellipsis else tuple(box)
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
            key = ".".join(map(str, index)) if index else "0"
            part = value[tuple(source)]
            if index not in self._open and part.shape == self.chunks:
                # a whole chunk in one write (block reads): no fill, no copy into a buffer
                _write_atomic(self.path / key, self.codec.encode(np.ascontiguousarray(part)))
                continue
            entry = self._open.get(index)
            if entry is None:
                entry = self._open[index] = self._new_chunk(index)
            entry[0][tuple(inside)] = part
            entry[1] -= math.prod(sl.stop - sl.start for sl in inside)
            _write_atomic(self.path / key, self.codec.encode(np.ascontiguousarray(entry[0])))
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
    ) -> None:
        if flush_every < 1:
            raise ValueError(f"flush_every must be >= 1 point, got {flush_every}")
        self.flush_every = int(flush_every)
        self.chunk_bytes = int(chunk_bytes)
        root = resolve_data_dir(data_dir)
        root.mkdir(parents=True, exist_ok=True)
        created = created or datetime.now(UTC)
        while True:
            self.id = new_run_id(created)
            self.path = root / self.id
            try:
                self.path.mkdir()
                break
            except FileExistsError:
                continue
        self.store = self.path / STORE_NAME
        self.store.mkdir()
        _write_json(self.store / ".zgroup", {"zarr_format": ZARR_FORMAT})
        self.attrs: dict[str, Any] = {"run_id": self.id, **dict(attrs or {})}
        _write_json(self.store / ".zattrs", self.attrs)
        self.variables: dict[str, Variable] = {}
        self._arrays: dict[str, _V2Array] = {}
        self._metadata: dict[str, Any] = {".zgroup": {"zarr_format": ZARR_FORMAT}}
        self._adopted = False
        self._staging: Path | None = None
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
    ) -> _V2Array:
        """Create array ``name`` in staging, then move it into the store atomically."""
        if self._staging is None:
            self._staging = self.path / STAGING_NAME  # outside the store, same file system
            self._staging.mkdir(exist_ok=True)
        staged = self._staging / name
        staged.mkdir()
        array = _V2Array(staged, shape, chunks if chunks is not None else shape, dtype, fill_value)
        meta, dim_attrs = array.metadata(), dict(attributes)
        _write_json(staged / ".zarray", meta)
        _write_json(staged / ".zattrs", dim_attrs)
        os.rename(staged, self.store / name)
        array.path = self.store / name
        self._arrays[name] = array
        self._metadata[f"{name}/.zarray"] = meta
        self._metadata[f"{name}/.zattrs"] = json.loads(json.dumps(dim_attrs, default=_json_default))
        return array

    def adopt_store(self) -> None:
        """The store was rewritten by another writer (xarray): read its metadata at close."""
        self._adopted = True

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
        z = self._create_array(
            name,
            shape=arr.shape,
            chunks=arr.shape or None,
            dtype=arr.dtype,
            fill_value=_fill_value(arr.dtype),
            attributes=_dim_attrs(dims, attrs),
        )
        z[...] = arr

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
            if self._adopted:
                self.attrs = json.loads(group_attrs.read_text())
            self.attrs.update(final)
            _write_json(group_attrs, self.attrs)
            if self._adopted:
                consolidated = consolidated_metadata(self.store)
            else:
                meta = {**self._metadata, ".zattrs": json.loads(json.dumps(self.attrs, default=_json_default))}
                consolidated = {"metadata": meta, "zarr_consolidated_format": 1}
            _write_json(self.store / ".zmetadata", consolidated)
            if self._staging is not None:
                shutil.rmtree(self._staging, ignore_errors=True)
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
