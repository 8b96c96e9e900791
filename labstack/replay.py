"""Replay a recorded run against the virtual lab and say what came out different.

A measurement run stores its sequence, the station file's text, the virtual-lab
description and seed (:func:`labstack.measure.run_sequence`); a calibration is
recorded as a run of its own that also stores the state it started from, the
routines and their parameters, the runs it made and the values it fitted
(:mod:`labstack.calibration_record`). :func:`replay_run` builds the same station
again on a *fresh* virtual lab, re-executes the sequence or the calibration into
a new data directory, and compares:

* every data variable of every run, pairwise (bit for bit, max and rms difference);
* every fitted value with its uncertainty: ``z = Δ / sqrt(σ₁² + σ₂²)``; a value
  passes if ``|z| <= z_max`` or ``|Δ| <= atol + rtol |original|``. A value stored
  without an uncertainty (e.g. a readout threshold) cannot be judged in sigmas: it
  is reported, and judged only against ``atol``/``rtol`` when they are given. A
  validity flag that changed fails.

The report passes when every fitted value passes and, if the replay ran on the very
same virtual chip and seed (no ``truth``/``lab`` override) from a fresh lab, the
data are bit-for-bit identical: the virtual lab is deterministic, so any other
outcome means the code changed what it measures. On another chip (``truth=`` a
ground-truth file with one parameter moved) the data differ by design and the
report names the fitted parameters that moved beyond their uncertainties.
"""

from __future__ import annotations

import json
import math
import secrets
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from labstack.calibrate.state import CURRENT, version_file
from labstack.calibration_record import session_of
from labstack.clock import clock_of
from labstack.data import Run, load_run, resolve_data_dir

REPORT_JSON = "replay_report.json"
REPORT_TEXT = "replay_report.txt"
REPLAYS_DIRNAME = "replays"
DEFAULT_Z_MAX = 5.0
DEFAULT_RTOL = 0.0


class ReplayError(ValueError):
    """A run that cannot be replayed (it lacks what a replay needs); the message says what."""


@dataclass
class VariableDiff:
    """One data variable (or coordinate) of one run, original against replay."""

    original_run: str
    replay_run: str
    name: str
    identical: bool
    shape_match: bool = True
    max_abs: float = 0.0
    rms: float = 0.0
    rel_rms: float = 0.0

    def line(self) -> str:
        if not self.shape_match:
            return f"  {self.name:<24} shape differs"
        if self.identical:
            return f"  {self.name:<24} identical"
        return (
            f"  {self.name:<24} max|Δ| {self.max_abs:.4g}  rms Δ {self.rms:.4g}"
            f"  (rel {self.rel_rms:.3g})"
        )


@dataclass
class ParameterDiff:
    """One fitted value of the calibration state, original against replay."""

    key: str
    original: Any
    original_err: float | None
    replay: Any
    replay_err: float | None
    unit: str = ""
    delta: float = math.nan
    z: float = math.nan
    passed: bool = True
    reason: str = ""

    def line(self) -> str:
        def show(v: Any, e: float | None) -> str:
            if isinstance(v, float):
                return f"{v:.6g}" + (f" ± {e:.2g}" if e is not None else "")
            return str(v)

        verdict = "ok" if self.passed else "DIFFERS"
        z = f"z {self.z:+.2f}" if math.isfinite(self.z) else ("z inf" if self.z else "")
        return (
            f"  {self.key:<32} {show(self.original, self.original_err):>22}  "
            f"{show(self.replay, self.replay_err):>22} {self.unit:<3} {z:<10} {verdict}"
            + (f" ({self.reason})" if self.reason else "")
        )


@dataclass
class ReplayReport:
    """What a replay found. ``passed`` is the verdict; ``differences`` name what moved."""

    original: str
    replay: str
    kind: str
    lab: str
    out_dir: str
    expect_identical: bool
    z_max: float = DEFAULT_Z_MAX
    atol: float = 0.0
    rtol: float = DEFAULT_RTOL
    variables: list[VariableDiff] = field(default_factory=list)
    parameters: list[ParameterDiff] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def identical(self) -> bool:
        """Every compared variable bit-for-bit equal (and at least one compared)."""
        return bool(self.variables) and all(v.identical for v in self.variables)

    @property
    def differences(self) -> list[ParameterDiff]:
        """Fitted values out of tolerance, largest ``|z|`` first."""
        bad = [p for p in self.parameters if not p.passed]
        return sorted(bad, key=lambda p: -abs(p.z) if not math.isnan(p.z) else -math.inf)

    @property
    def passed(self) -> bool:
        if self.differences:
            return False
        return not (self.expect_identical and not self.identical)

    def text(self) -> str:
        lines = [
            f"replay of {self.kind} run {self.original} on virtual lab '{self.lab}'",
            f"  -> run {self.replay} in {self.out_dir}",
        ]
        n_same = sum(v.identical for v in self.variables)
        runs = len({v.original_run for v in self.variables})
        lines.append(
            f"data: {len(self.variables)} variables in {runs} run(s), {n_same} bit-for-bit "
            f"identical" + (" (expected: same chip, same seed)" if self.expect_identical else "")
        )
        current = None
        for v in self.variables:
            if v.identical:
                continue
            if v.original_run != current:
                current = v.original_run
                lines.append(f" run {v.original_run} -> {v.replay_run}")
            lines.append(v.line())
        if self.parameters:
            bad = self.differences
            lines.append(
                f"fitted parameters: {len(self.parameters)} compared, {len(bad)} out of tolerance"
                f" (|z| > {self.z_max:g} and |Δ| > {self.atol:g} + {self.rtol:g}·|value|)"
            )
            shown = bad if bad else []
            if shown:
                lines.append(
                    f"  {'key':<32} {'original':>22}  {'replay':>22} unit z          verdict"
                )
                lines += [p.line() for p in shown]
        for note in self.notes:
            lines.append(f"note: {note}")
        lines.append(f"result: {'PASS' if self.passed else 'FAIL'}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["passed"] = self.passed
        out["identical"] = self.identical
        out["differences"] = [p.key for p in self.differences]
        return out

    def save(self, directory: str | Path | None = None) -> Path:
        """Write ``replay_report.json`` and ``replay_report.txt``; returns the JSON path."""
        where = Path(directory or self.out_dir)
        where.mkdir(parents=True, exist_ok=True)
        (where / REPORT_TEXT).write_text(self.text() + "\n")
        path = where / REPORT_JSON
        path.write_text(json.dumps(self.to_dict(), indent=1, default=_json_default))
        return path

    def _repr_html_(self) -> str:
        from labstack.display import replay_report_html

        return replay_report_html(self)


def _json_default(x: Any) -> Any:
    if isinstance(x, np.generic):
        return x.item()
    return str(x)


# --------------------------------------------------------------------- compare
def compare_datasets(a: xr.Dataset, b: xr.Dataset, a_id: str, b_id: str) -> list[VariableDiff]:
    """Every data variable and coordinate of ``a`` against ``b``."""
    out = []
    names = list(a.data_vars) + [c for c in a.coords if c not in a.data_vars]
    for name in names:
        if name not in b.variables:
            out.append(VariableDiff(a_id, b_id, str(name), False, shape_match=False))
            continue
        x, y = np.asarray(a[name].values), np.asarray(b[name].values)
        if x.shape != y.shape:
            out.append(VariableDiff(a_id, b_id, str(name), False, shape_match=False))
            continue
        if x.dtype.kind in "fc":
            same = bool(np.array_equal(x, y, equal_nan=True))
        else:
            same = bool(np.array_equal(x, y))
        if same or x.dtype.kind not in "fciub":
            out.append(VariableDiff(a_id, b_id, str(name), same))
            continue
        d = np.abs(x.astype(np.float64) - y.astype(np.float64))
        scale = float(np.sqrt(np.nanmean(np.abs(x.astype(np.float64)) ** 2))) if x.size else 0.0
        rms = float(np.sqrt(np.nanmean(d**2))) if d.size else 0.0
        out.append(
            VariableDiff(
                a_id,
                b_id,
                str(name),
                False,
                max_abs=float(np.nanmax(d)) if d.size else 0.0,
                rms=rms,
                rel_rms=rms / scale if scale > 0 else math.inf,
            )
        )
    return out


def compare_results(
    original: dict[str, dict[str, Any]],
    replay: dict[str, dict[str, Any]],
    z_max: float = DEFAULT_Z_MAX,
    atol: float = 0.0,
    rtol: float = DEFAULT_RTOL,
) -> list[ParameterDiff]:
    """Fitted values by state key: ``{key: {value, stderr, unit, valid}}`` on both sides."""
    out = []
    for key in sorted(set(original) | set(replay), key=_natural):
        a, b = original.get(key), replay.get(key)
        if a is None or b is None:
            have = a or b or {}
            out.append(
                ParameterDiff(
                    key,
                    a and a.get("value"),
                    a and a.get("stderr"),
                    b and b.get("value"),
                    b and b.get("stderr"),
                    have.get("unit", ""),
                    passed=False,
                    reason="only in the original" if b is None else "only in the replay",
                )
            )
            continue
        diff = ParameterDiff(
            key, a.get("value"), a.get("stderr"), b.get("value"), b.get("stderr"), a.get("unit", "")
        )
        if bool(a.get("valid", True)) != bool(b.get("valid", True)):
            diff.passed = False
            diff.reason = f"valid {_yes(a.get('valid'))} -> {_yes(b.get('valid'))}"
        va, vb = diff.original, diff.replay
        if _number(va) and _number(vb):
            delta = float(vb) - float(va)
            sigma = math.hypot(float(a.get("stderr") or 0.0), float(b.get("stderr") or 0.0))
            diff.delta = delta
            diff.z = delta / sigma if sigma > 0 else (0.0 if delta == 0 else math.copysign(math.inf, delta))
            close = abs(delta) <= atol + rtol * abs(float(va))
            if sigma == 0 and delta != 0 and atol == 0 and rtol == 0:
                diff.reason = "no uncertainty recorded: not judged"
            elif diff.passed and abs(diff.z) > z_max and not close:
                diff.passed = False
                diff.reason = f"moved {delta:+.4g} {diff.unit}".rstrip()
        elif va != vb and diff.passed:
            diff.passed = False
            diff.reason = "value differs"
        out.append(diff)
    return out


def _number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(float(x))


def _yes(v: Any) -> str:
    return "yes" if v is None or v else "NO"


def _natural(key: str) -> list[Any]:
    return [(0, int(p), "") if p.isdigit() else (1, 0, p) for p in key.split(".")]


# --------------------------------------------------------------------- the lab
def fresh_lab(description: str | None, token: str) -> str:
    """``description`` with its ``instance`` replaced, so PyVISA builds a new lab."""
    text = (description or "").strip()
    instance = f"instance=replay-{token}"
    if text.endswith(".json"):
        return f"truth={text},{instance}"
    items = [i for i in (p.strip() for p in text.split(",")) if i and not i.startswith("instance=")]
    return ",".join([*items, instance])


def _station_file(attrs: dict[str, Any], out_dir: Path, station: str | None, run_id: str) -> str:
    if station is not None:
        return station
    text = attrs.get("station_file") or ""
    if not text:
        raise ReplayError(
            f"run {run_id} does not record its station file (made before labstack recorded "
            "replay information?); pass station= / --station"
        )
    path = out_dir / "station.yaml"
    path.write_text(text)
    return str(path)


def _lab_for(attrs: dict[str, Any], truth: str | Path | None, lab: str | None, token: str) -> str:
    if truth is not None:
        return f"truth={Path(truth).resolve()},instance=replay-{token}"
    if lab is not None:
        return fresh_lab(lab, token)
    recorded = attrs.get("lab_description")
    if recorded is None:
        raise ReplayError(
            "the run was not made on the virtual lab (no lab description); give lab= / --lab "
            "or truth= / --truth to replay it against one"
        )
    if recorded.strip().endswith(".json") and not Path(recorded).exists():
        raise ReplayError(f"the run's chip file {recorded} is gone; give truth= / --truth")
    return fresh_lab(recorded, token)


def _check_no_open_instruments(station_file: str) -> None:
    """QCoDeS names instruments globally: a replay cannot open 'qdac1' while it is open."""
    import yaml
    from qcodes.instrument import Instrument

    from labstack.station import station_path

    names = set((yaml.safe_load(station_path(station_file).read_text()) or {}).get("instruments", {}))
    busy = sorted(n for n in names if Instrument.exist(n))
    if busy:
        raise ReplayError(
            f"instrument(s) {', '.join(busy)} are open in this process; close that station "
            "first (labstack.station.close_station) or replay from the command line"
        )


def _catch_up_clock(station: Any, start: float, notes: list[str]) -> None:
    """Start the replay at the original's simulated time, so ages and timeouts agree."""
    if start <= 0:
        return
    clock = clock_of(station)
    lag = start - clock.now()
    if clock.is_virtual and lag > 0:
        clock.sleep(lag)
        notes.append(
            f"the original started {start:.4g} s into its lab's life; the replay lab was advanced "
            "to the same time, but its noise history differs, so data cannot be bit-for-bit equal"
        )


# --------------------------------------------------------------------- replay
def replay_run(
    run_id: str,
    data_dir: str | Path | None = None,
    *,
    out_dir: str | Path | None = None,
    truth: str | Path | None = None,
    lab: str | None = None,
    station: str | None = None,
    z_max: float = DEFAULT_Z_MAX,
    atol: float = 0.0,
    rtol: float = DEFAULT_RTOL,
    progress: bool = False,
    save: bool = True,
) -> ReplayReport:
    """Re-execute run ``run_id`` (a measurement or a calibration) on a fresh virtual lab.

    ``truth`` (a ground-truth JSON) or ``lab`` (a lab description) replays on another
    chip; ``station`` another station file. The replay's runs go to ``out_dir``
    (default ``<data_dir>/replays/<run_id>-<token>``); the report is saved there too.
    """
    from labstack.station import close_station, load_station

    root = resolve_data_dir(data_dir)
    original = load_run(run_id, root)
    attrs = original.attrs
    token = secrets.token_hex(3)
    where = Path(out_dir) if out_dir else root / REPLAYS_DIRNAME / f"{original.id}-{token}"
    where.mkdir(parents=True, exist_ok=True)
    station_file = _station_file(attrs, where, station, original.id)
    description = _lab_for(attrs, truth, lab, token)
    expect_identical = truth is None and lab is None and station is None
    notes: list[str] = []
    if attrs.get("clock") != "virtual":
        expect_identical = False
        notes.append("the original ran on wall-clock hardware: data are compared, not expected equal")
    if float(attrs.get("clock_start") or 0.0) > 0:
        expect_identical = False
    session = session_of(original)
    _check_no_open_instruments(station_file)
    st = load_station(station_file, lab=description)
    try:
        _catch_up_clock(st, float(attrs.get("clock_start") or 0.0), notes)
        if session is not None:
            report = _replay_calibration(original, session, st, root, where, progress)
        else:
            report = _replay_measurement(original, attrs, st, root, where, progress)
    finally:
        close_station(st)
    replay_id, variables, parameters, extra = report
    result = ReplayReport(
        original=original.id,
        replay=replay_id,
        kind="calibration" if session is not None else "measurement",
        lab=description,
        out_dir=str(where),
        expect_identical=expect_identical,
        z_max=z_max,
        atol=atol,
        rtol=rtol,
        variables=variables,
        parameters=(
            compare_results(*parameters, z_max=z_max, atol=atol, rtol=rtol) if parameters else []
        ),
        notes=notes + extra,
    )
    if save:
        result.save(where)
    return result


_Outcome = tuple[str, list[VariableDiff], tuple[dict[str, Any], dict[str, Any]] | None, list[str]]


def _replay_measurement(
    original: Run, attrs: dict[str, Any], station: Any, root: Path, out: Path, progress: bool
) -> _Outcome:
    from labstack.measure import run_sequence, step_from_json

    if not attrs.get("sequence"):
        raise ReplayError(f"run {original.id} holds no sequence to replay")
    sequence = step_from_json(attrs["sequence"])
    again = run_sequence(
        sequence,
        station,
        name=original.name,
        data_dir=out,
        metadata={**original.metadata, "replay_of": original.id},
        progress=progress,
    )
    variables = compare_datasets(original.dataset(), again.dataset(), original.id, again.id)
    notes = []
    if any(not v.shape_match for v in variables):
        notes.append(
            "shapes differ: a setting made outside the sequence (e.g. a sample count) is not "
            "replayed; put it in the sequence as a Set step"
        )
    return again.id, variables, None, notes


def _replay_calibration(
    original: Run, session: dict[str, Any], station: Any, root: Path, out: Path, progress: bool
) -> _Outcome:
    from labstack.calibration_run import calibrate_station

    start = original.attrs.get("calibration_state_start") or ""
    version = int(original.attrs.get("calibration_state_version") or 0)
    if start and version:
        state_dir = out / "calibration_state"
        state_dir.mkdir(parents=True, exist_ok=True)
        (state_dir / version_file(version)).write_text(start)
        (state_dir / CURRENT).write_text(version_file(version) + "\n")
    report = calibrate_station(
        station,
        data_dir=out,
        progress=progress,
        names=session.get("names"),
        force=bool(session.get("force")),
        params=session.get("params") or None,
    )
    again = session_of(load_run(report.run_id, out))
    assert again is not None
    notes: list[str] = []
    variables: list[VariableDiff] = []
    ours, theirs = session["runs"], again["runs"]
    if len(ours) != len(theirs):
        notes.append(f"the original made {len(ours)} runs, the replay {len(theirs)}")
    for a_id, b_id in zip(ours, theirs, strict=False):
        try:
            a = load_run(a_id, root)
        except KeyError:
            notes.append(f"original run {a_id} is not stored next to the calibration: not compared")
            continue
        variables += compare_datasets(a.dataset(), load_run(b_id, out).dataset(), a_id, b_id)
    return report.run_id, variables, (session["results"], again["results"]), notes
