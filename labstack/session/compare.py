"""Compare a run with its replay: data variable by variable, fitted values in sigmas.

Pure functions and plain dataclasses; nothing here opens a station or runs
anything (that is :mod:`labstack.session.replay`), so the comparison can be
tested, and used on two stored runs, on its own.

* every data variable of every run, pairwise (bit for bit, max and rms difference);
* every fitted value with its uncertainty: ``z = Δ / sqrt(σ₁² + σ₂²)``; a value
  passes if ``|z| <= z_max`` or ``|Δ| <= atol + rtol |original|``. A value stored
  without an uncertainty (e.g. a readout threshold) cannot be judged in sigmas: it
  is reported, and judged only against ``atol``/``rtol`` when they are given. A
  validity flag that changed fails.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

REPORT_JSON = "replay_report.json"
REPORT_TEXT = "replay_report.txt"
DEFAULT_Z_MAX = 5.0
DEFAULT_RTOL = 0.0


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
