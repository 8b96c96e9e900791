"""Verdicts a node returns, and the tolerances it judges them by.

Optimus (Kelly et al., arXiv:1803.03226) has ``check_data`` answer one of three
things, and the graph walk depends on telling them apart:

* ``in_spec``: the data are good and the calibrated values still hold;
* ``out_of_spec``: the data are good but the values have moved beyond tolerance,
  so this node alone needs recalibrating;
* ``bad_data``: the data cannot be interpreted (the fit failed, or the model does
  not describe them), which usually means something *upstream* is wrong, so the
  dependencies are diagnosed before this node is recalibrated.

:class:`Tolerance` and :class:`FitQuality` are the two judgements most nodes need:
"did the value move further than I care about, and significantly?" and "does the
model describe the data at all?". :func:`family_n_sigma` sets a :class:`Tolerance`'s
significance when one check judges many values at once.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from scipy import stats

from labstack.fit.result import FitResult


class Spec(StrEnum):
    """The three answers of ``check_data``."""

    IN_SPEC = "in_spec"
    OUT_OF_SPEC = "out_of_spec"
    BAD_DATA = "bad_data"


class Mode(StrEnum):
    """What an acquisition is for: a cheap check, or a full calibration."""

    CHECK = "check"
    CALIBRATE = "calibrate"


@dataclass(frozen=True)
class Verdict:
    """A :class:`Spec` with the reason, so the execution log says *why*.

    ``cells`` names the cells an ``out_of_spec`` verdict is about (cell -> reason).
    Empty means the node as a whole; non-empty lets the engine recalibrate only
    those cells (Optimus's per-qubit nodes) when the node supports it.

    ``refresh`` (``out_of_spec`` only): the check's own data measured the moved values
    as a calibration would, only with fewer samples, and found nothing else wrong
    (fits good, every cell as healthy as before). The engine then updates the state
    from the check's result (its stated errors) instead of taking a full calibration:
    the readout levels an amplifier walked by a few mV over a week cost the fridge the
    check alone, not a 3-minute recalibration on top of it.
    """

    spec: Spec
    reason: str = ""
    cells: Mapping[int, str] = field(default_factory=dict, hash=False)
    refresh: bool = False

    @classmethod
    def coerce(cls, value: Verdict | Spec | str) -> Verdict:
        """Accept a bare :class:`Spec` (or its string) from simple nodes."""
        if isinstance(value, Verdict):
            return value
        return cls(Spec(value))

    def about(self, cell: int) -> Verdict:
        """This verdict, marked as concerning ``cell`` alone (when it is out of spec)."""
        if self.spec is not Spec.OUT_OF_SPEC:
            return self
        return Verdict(self.spec, self.reason, {int(cell): self.reason})


def combine(verdicts: Iterable[Verdict]) -> Verdict:
    """The verdict of several checks (e.g. one per cell): the worst one wins.

    ``bad_data`` outranks ``out_of_spec`` because bad data may have an upstream
    cause that recalibrating this node cannot fix. No verdicts at all is bad data:
    a check that looked at nothing cannot vouch for anything. An out-of-spec verdict
    refreshes from the check (``refresh``) only when every out-of-spec part may.
    """
    verdicts = list(verdicts)
    if not verdicts:
        return Verdict(Spec.BAD_DATA, "no checks were made")
    for spec in (Spec.BAD_DATA, Spec.OUT_OF_SPEC):
        worst = [v for v in verdicts if v.spec is spec]
        if worst:
            reason = "; ".join(v.reason for v in worst if v.reason)
            # per-cell only if every out-of-spec verdict names its cells: one chip-wide
            # verdict (or any bad data) makes the whole node the subject
            cells: dict[int, str] = {}
            if spec is Spec.OUT_OF_SPEC and all(v.cells for v in worst):
                for v in worst:
                    for cell, why in v.cells.items():
                        cells[cell] = "; ".join(r for r in (cells.get(cell, ""), why) if r)
            refresh = spec is Spec.OUT_OF_SPEC and all(v.refresh for v in worst)
            return Verdict(spec, reason, cells, refresh)
    return Verdict(Spec.IN_SPEC, "")


@dataclass(frozen=True)
class Tolerance:
    """How far a value may move before it is out of spec.

    A value is out of spec when it moved by more than ``abs`` *and* the move is
    significant (more than ``n_sigma`` combined standard errors). The second
    condition keeps a noisy cheap check from triggering recalibrations on noise;
    the first keeps a precise check from recalibrating for moves too small to matter.

    ``guard_sigma`` > 0 turns the first condition into "not shown to be within ``abs``":
    a significant move counts as out of spec once ``|move| + guard_sigma * sigma``
    exceeds ``abs``. A value that drifts steadily is then recalibrated before the check's
    own noise can hide that it crossed the tolerance (a check that measures 9 mV with a
    1.5 mV error has not shown the value to be within 10 mV).
    """

    abs: float
    n_sigma: float = 3.0
    guard_sigma: float = 0.0

    def judge(
        self,
        name: str,
        new: float,
        new_err: float,
        old: float,
        old_err: float | None = None,
    ) -> Verdict:
        if not math.isfinite(new):
            return Verdict(Spec.BAD_DATA, f"{name}: new value is {new}")
        delta = new - old
        sigma = math.hypot(new_err if math.isfinite(new_err) else 0.0, old_err or 0.0)
        if abs(delta) + self.guard_sigma * sigma > self.abs and abs(delta) > self.n_sigma * sigma:
            return Verdict(
                Spec.OUT_OF_SPEC,
                f"{name} moved {delta:+.4g} (tolerance {self.abs:.3g}, sigma {sigma:.3g})",
            )
        return Verdict(Spec.IN_SPEC)


def family_n_sigma(n_values: int, alpha: float = 0.01, floor: float = 3.0) -> float:
    """Sigma threshold so that ``n_values`` unchanged values all pass with probability 1 - alpha.

    A check that compares hundreds of calibrated numbers (every entry of a crosstalk
    matrix, every coupler) at a fixed 3 sigma flags some of them on noise alone on most
    runs: 200 entries at 3 sigma give a false "out of spec" ~40 % of the time. This
    threshold keeps the family-wise false-alarm rate at ``alpha`` (Bonferroni on a
    two-sided normal test), so a recalibration means something moved. Use it as
    ``Tolerance(abs, n_sigma=family_n_sigma(n))``.
    """
    if n_values <= 0:
        return floor
    return max(floor, float(stats.norm.isf(alpha / (2 * n_values))))


@dataclass(frozen=True)
class FitQuality:
    """Whether a fit describes its data well enough to be believed.

    ``max_chi2_reduced`` only applies when the fit knew its data's errors (an
    unweighted fit's chi-square merely estimates the noise); ``min_runs_p`` rejects
    residuals whose signs come in long runs, the signature of a wrong model.
    """

    max_chi2_reduced: float = 3.0
    min_runs_p: float = 1e-3

    def judge(self, name: str, fit: FitResult) -> Verdict:
        if not fit.success:
            return Verdict(Spec.BAD_DATA, f"{name}: fit failed: {fit.message}")
        if fit.absolute_sigma and fit.chi2_reduced > self.max_chi2_reduced:
            return Verdict(
                Spec.BAD_DATA,
                f"{name}: chi2_red {fit.chi2_reduced:.3g} > {self.max_chi2_reduced:g}",
            )
        runs_p = fit.checks.get("runs_p", math.nan)
        if math.isfinite(runs_p) and runs_p < self.min_runs_p:
            return Verdict(Spec.BAD_DATA, f"{name}: residual runs test p={runs_p:.2g}")
        return Verdict(Spec.IN_SPEC)
