"""The one runner: carry out a sequence on a station, on its clock, into a run.

The sequence tree is compiled once into nested closures that hold the bound
``param.set`` / ``param.get`` methods and the variables' ``append``; the hot loop
then does little beyond the instrument calls (no per-point xarray, no dict lookups),
which is what makes it an order of magnitude faster than a QCoDeS ``do1d``.
Storage, flushing and crash-safety live in :mod:`labstack.data.store`.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from qcodes.parameters import ParameterBase
from tqdm.auto import tqdm

from labstack.clock import Clock, Stopwatch
from labstack.data.attrs import attr_value
from labstack.data.jsontext import dumps
from labstack.data.provenance import git_revision, package_versions
from labstack.data.runs import Run
from labstack.data.store import DEFAULT_FLUSH_EVERY, RunWriter
from labstack.measure.plan import Plan, SequenceError, contains_loop, validate
from labstack.measure.sequence import Read, Sequence, Set, Step, Sweep, Trace, Wait, as_sequence
from labstack.safety.control import RunControl
from labstack.safety.ramp import set_together
from labstack.station import LabStation

Thunk = Callable[[], None]

RESERVED_ATTRS = frozenset(
    {
        "run_id",
        "name",
        "start_utc",
        "end_utc",
        "clock",
        "clock_start",
        "snapshot",
        "sequence",
        "git_revision",
        "status",
        "error",
        "station_file",
        "station_source",
        "lab_description",
        "lab_seed",
        "calibration_state_version",
        "lab_s",
        "wall_s",
    }
)
PROGRESS_DELAY_S = 2.0  # a bar appears only for runs longer than this
TICK_S = 0.25  # how often the hot loop looks at the wall clock for flushing and the bar


def run_attrs(
    sequence: Sequence,
    station: LabStation,
    name: str,
    clock: Clock,
    metadata: Mapping[str, Any],
    state_version: int | None = None,
) -> dict[str, Any]:
    """Dataset attributes known at the start: provenance, snapshot, sequence, metadata.

    With the sequence they hold what :mod:`labstack.session.replay` needs to run it
    again: the station file's text, the virtual-lab description and seed, and (when
    the caller knows it) the calibration state version current when the run started.
    """
    snapshot = station.snapshot()
    attrs: dict[str, Any] = {
        "name": name,
        "start_utc": clock.utcnow().isoformat(),
        "clock": "virtual" if clock.is_virtual else "wall",
        "clock_start": float(clock.now()),
        "snapshot": dumps(snapshot, exact_nan=False),  # NaN -> null: see jsontext
        "sequence": sequence.to_json(),
    }
    for pkg, ver in package_versions().items():
        attrs[f"version_{pkg}"] = ver
    rev = git_revision()
    if rev:
        attrs["git_revision"] = rev
    origin, seed = station.provenance, station.seed
    attrs["station_file"] = origin.station_text
    attrs["station_source"] = origin.source
    attrs["lab_description"] = origin.lab
    attrs["lab_seed"] = seed
    if state_version is not None:
        attrs["calibration_state_version"] = int(state_version)
    for key, value in metadata.items():
        if key in RESERVED_ATTRS or key.startswith("version_"):
            raise ValueError(f"metadata key {key!r} is reserved for labstack's own attributes")
        attrs[key] = attr_value(value)
    if seed is not None:
        attrs.setdefault("seed", seed)
    return attrs


@dataclass(frozen=True)
class RunProgress:
    """What a subscriber of :func:`run_sequence` is told after every flush and at the end.

    Everything up to ``points_done`` is on disk, so ``Run(path).dataset()`` shows it.
    """

    run_id: str
    path: Path
    points_done: int
    points_total: int
    final: bool = False
    status: str = "running"


Subscriber = Callable[[RunProgress], None]


class _Notifier:
    """Calls subscribers; one that raises is dropped with a warning, the run goes on.

    A live plot that breaks must not cost the measurement it is watching.
    """

    def __init__(self, writer: RunWriter, total: int, subscribers: Iterable[Subscriber]) -> None:
        self.writer, self.total = writer, total
        self.subscribers = list(subscribers)

    def __call__(self, done: int, final: bool = False, status: str = "running") -> None:
        event = RunProgress(self.writer.id, self.writer.path, done, self.total, final, status)
        for sub in list(self.subscribers):
            try:
                sub(event)
            except Exception as exc:
                self.subscribers.remove(sub)
                warnings.warn(
                    f"run {self.writer.id}: subscriber {sub!r} raised {type(exc).__name__}: "
                    f"{exc}; it gets no further updates",
                    RuntimeWarning,
                    stacklevel=2,
                )


class _Pacer:
    """Counts points and, every ``TICK_S`` of wall time, flushes and moves the bar."""

    def __init__(
        self,
        writer: RunWriter,
        flush_interval: float,
        bar: Any,
        closes_at: int,
        notify: _Notifier | None = None,
        checkpoint: Thunk | None = None,
    ) -> None:
        self.writer = writer
        self.checkpoint = checkpoint  # run control between points (labstack.safety.control)
        self.flush_interval = flush_interval
        self.bar = bar
        self.notify = notify
        self.closes_at = closes_at  # the point count after which only close is left (-1: none)
        self.done = 0
        self.shown = 0
        now = time.perf_counter()
        self.next_tick = now + min(TICK_S, flush_interval)
        self.next_flush = now + flush_interval

    def tick(self, points: int) -> None:
        self.done += points
        if self.writer.unplaced and self.done != self.closes_at:
            # a chunk filled: its points are flushed once the store is in place (after
            # the run's last point, when nothing follows it, close places the store)
            self.writer.place()
        if self.checkpoint is not None:
            self.checkpoint()
        if time.perf_counter() >= self.next_tick:
            self._tick()

    def _tick(self) -> None:
        now = time.perf_counter()
        self.next_tick = now + min(TICK_S, self.flush_interval)
        if now >= self.next_flush:
            self.flush()
        if self.bar is not None:
            self.bar.update(self.done - self.shown)
            self.shown = self.done

    def flush(self) -> None:
        self.writer.flush(points_flushed=self.done)
        self.next_flush = time.perf_counter() + self.flush_interval
        if self.notify is not None and self.notify.subscribers:
            self.notify(self.done)


class _Compiler:
    def __init__(self, plan: Plan, writer: RunWriter, clock: Clock, pacer: _Pacer, t0: float):
        self.plan = plan
        self.writer = writer
        self.clock = clock
        self.pacer = pacer
        self.t0 = t0

    def steps(self, steps: Iterable[Step], path: tuple[int, ...]) -> Thunk:
        fns = [self.step(s, (*path, i)) for i, s in enumerate(steps)]
        if len(fns) == 1:
            return fns[0]

        def run_all() -> None:
            for f in fns:
                f()

        return run_all

    def step(self, step: Step, path: tuple[int, ...]) -> Thunk:
        if isinstance(step, Sequence):
            return self.steps(step.steps, path)
        if isinstance(step, Wait):
            sleep, seconds = self.clock.sleep, float(step.seconds)
            return lambda: sleep(seconds)
        if isinstance(step, Set):
            setter, value = self.plan.params[path][0].set, step.value
            return lambda: setter(value)
        if isinstance(step, Read):
            get = self.plan.params[path][0].get
            append = self.writer.variables[self.plan.var_names[path]].append

            def read() -> None:
                append(get())

            return read
        if isinstance(step, Sweep):
            return self._sweep(step, path)
        if isinstance(step, Trace):
            return self._trace(step, path)
        raise SequenceError(f"unknown step {step!r}")

    def _leaf(self, body: tuple[Step, ...]) -> int:
        return 0 if contains_loop(body) else 1

    def _sweep(self, step: Sweep, path: tuple[int, ...]) -> Thunk:
        setters = [p.set for p in self.plan.params[path]]
        columns = [v.tolist() for v in step.setpoints.values()]
        rows = columns[0] if len(setters) == 1 else list(zip(*columns, strict=True))
        body = self.steps(step.body, path) if step.body else None
        stamp = self.writer.variables[self.plan.var_names[path]].append
        now, sleep, t0, settle = self.clock.now, self.clock.sleep, self.t0, float(step.settle)
        tick, points = self.pacer.tick, self._leaf(step.body)

        if len(setters) == 1:
            setter = setters[0]

            def sweep() -> None:
                for value in rows:
                    setter(value)
                    if settle:
                        sleep(settle)
                    stamp(now() - t0)
                    if body is not None:
                        body()
                    tick(points)

        else:
            params = self.plan.params[path]

            def sweep() -> None:
                for row in rows:
                    set_together(params, row)  # the lines' ramps side by side
                    if settle:
                        sleep(settle)
                    stamp(now() - t0)
                    if body is not None:
                        body()
                    tick(points)

        return sweep

    def _trace(self, step: Trace, path: tuple[int, ...]) -> Thunk:
        body = self.steps(step.body, path) if step.body else None
        stamp = self.writer.variables[self.plan.var_names[path]].append
        now, sleep, t0 = self.clock.now, self.clock.sleep, self.t0
        n, interval = step.n, float(step.interval)
        tick, points = self.pacer.tick, self._leaf(step.body)

        def trace() -> None:
            start = now()
            for i in range(n):
                if interval:
                    wait = start + i * interval - now()
                    if wait > 0:
                        sleep(wait)
                stamp(now() - t0)
                if body is not None:
                    body()
                tick(points)

        return trace


def _ends_with_leaf(steps: tuple[Step, ...]) -> bool:
    """Whether the last leaf point of ``steps`` is the last thing they do (then the
    runner's close follows it at once: nothing waits, sets or reads after it)."""
    if not steps:
        return False
    last = steps[-1]
    if isinstance(last, Sequence):
        return _ends_with_leaf(last.steps)
    if isinstance(last, Sweep | Trace):
        return not contains_loop(last.body) or _ends_with_leaf(last.body)
    return False


def _realise(plan: Plan, writer: RunWriter) -> None:
    """Write coordinates (reading setpoint parameters now) and declare variables."""
    for spec in plan.coords.values():
        values = spec.values.get() if isinstance(spec.values, ParameterBase) else spec.values
        writer.add_coord(spec.name, spec.dims, np.asarray(values), spec.attrs)
    for var in plan.variables.values():
        writer.add_variable(var.name, var.sweep_dims, var.inner_dims, var.attrs)


def run_sequence(
    sequence: Step | Iterable[Step],
    station: LabStation | Any,
    *,
    name: str,
    data_dir: str | os.PathLike[str] | None = None,
    metadata: Mapping[str, Any] | None = None,
    clock: Clock | None = None,
    progress: bool = True,
    flush_every: int = DEFAULT_FLUSH_EVERY,
    flush_interval: float = 1.0,
    subscribers: Iterable[Subscriber] = (),
    control: RunControl | None = None,
    state_version: int | None = None,
) -> Run:
    """Validate ``sequence`` against ``station``, run it on the station's clock and
    stream the data into a new run in ``data_dir``; returns the finished :class:`Run`.

    ``station`` is a :class:`~labstack.station.LabStation` (a bare QCoDeS station is
    taken as one on wall time). ``state_version`` records which calibration state was
    current (the calibration engine passes it; ``labstack measure`` too).

    Points are flushed to disk every ``flush_every`` points (per variable, fewer for
    large arrays; on disk by the end of the point that filled the chunk) and at least
    every ``flush_interval`` seconds of wall time; a crash loses at most what arrived
    since. The run's store is staged until its first flush and then appears whole
    (a run shorter than that places it once, at the end: see :mod:`labstack.data.store`);
    ``run.json`` says ``running`` from the start. An exception (KeyboardInterrupt included) marks
    the run ``failed``, keeps what was measured, and propagates with a note naming
    the run.

    ``subscribers`` (e.g. a :class:`labstack.measure.live.LivePlot`) are called with a
    :class:`RunProgress` after every flush and once at the end (``final=True``).
    ``control`` (default: the station's, ``station.control``)
    is consulted before the first point and after every point: pause, resume, abort,
    suspenders and interlock trips (an abort raises
    :class:`~labstack.safety.errors.RunAborted` after putting the station in its safe state).
    """
    lab = LabStation.of(station)
    seq = as_sequence(sequence)
    plan = validate(seq, lab)
    clock = clock if clock is not None else lab.clock
    metadata = {**lab.run_metadata, **dict(metadata or {})}
    attrs = run_attrs(seq, lab, name, clock, metadata, state_version)
    # CF: non-index coordinates are listed in a global attribute so xarray reopens them
    # as coordinates, not data variables.
    extra = [c.name for c in plan.coords.values() if c.dims != (c.name,)]
    if extra:
        attrs["coordinates"] = " ".join(extra)
    t0 = attrs["clock_start"]
    watch = Stopwatch(clock)
    writer = RunWriter(
        name,
        data_dir=data_dir,
        attrs=attrs,
        metadata=metadata,
        flush_every=flush_every,
        info={"points_total": plan.leaf_points},  # progress for readers of run.json (dashboards)
        deferred=True,  # the store appears at the first flush of points, whole
    )
    bar = None
    notify = _Notifier(writer, plan.leaf_points, subscribers)
    try:
        _realise(plan, writer)
        if progress and plan.leaf_points:
            bar = tqdm(total=plan.leaf_points, desc=name, unit="pt", delay=PROGRESS_DELAY_S)
        control = control if control is not None else lab.control
        control.start(clock, writer.path.parent, writer)
        closes_at = plan.leaf_points if _ends_with_leaf(seq.steps) else -1
        pacer = _Pacer(writer, flush_interval, bar, closes_at, notify, control.checkpoint)
        execute = _Compiler(plan, writer, clock, pacer, t0).steps(seq.steps, ())
        control.checkpoint()
        execute()
    except BaseException as err:
        end = {"end_utc": clock.utcnow().isoformat(), **_cost(watch)}
        try:
            writer.close("failed", end, error=f"{type(err).__name__}: {err}", **_cost(watch))
        finally:
            if bar is not None:
                bar.close()
        err.add_note(f"labstack run {writer.id} ({writer.path}) was marked failed")
        if notify.subscribers:
            notify(0, final=True, status="failed")
        raise
    if bar is not None:
        bar.update(pacer.done - pacer.shown)
        bar.close()
    cost = _cost(watch)
    run = writer.close(
        "completed",
        {"end_utc": clock.utcnow().isoformat(), **cost},
        points_flushed=pacer.done,
        **cost,
    )
    if notify.subscribers:
        notify(pacer.done, final=True, status="completed")
    return run


def _cost(watch: Stopwatch) -> dict[str, float]:
    """The run's lab time (what it cost the fridge) and wall time, for its attrs and run.json."""
    spent = watch.elapsed()
    return {"lab_s": round(spent.lab_s, 6), "wall_s": round(spent.wall_s, 4)}
