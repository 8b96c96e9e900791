"""Virtual biases: desired per-cell fields -> DAC voltages, through the calibrated crosstalk.

A cell's field, in volts of its own line, is the *detuning*
``u_i = V_i - V0_i + sum_j C_ij V_j`` with ``C_ij = Xt_ij / alpha_i`` (V/V), so that
``h_i = alpha_i u_i`` (kelvin) and ``P(+1) = sigmoid(u_i / w_i)`` for an isolated
cell of single-line S-curve width ``w_i = T_eff / (2 alpha_i)``. Everything here is in
volts, so no gain ``alpha`` is needed: the dimensionless field ``theta_i = h_i / T_eff``
is ``u_i / (2 w_i)``. Only a field in kelvin needs ``alpha`` (from the state, when the
effective-temperature node has measured it).

Programming fields is the inverse map ``(1 + C) V = u + V0``, solved for the lines of
cells that are calibrated while the lines of flagged cells stay where the caller
puts them (0 V by default): those lines still cross-talk onto their neighbours, and
the solve accounts for it.

Not a node: a helper the coupler and validation nodes share. It reads the bias
S-curve's ``cells.<i>.bias_offset_V`` / ``scurve_width_V`` and, once the crosstalk node
has run, ``crosstalk.matrix_V_per_V`` (before that: no crosstalk).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from labstack.calibrate import CalibrationState


def _entry(state: CalibrationState, key: str) -> tuple[float, float, bool]:
    """(value, stderr, valid) of a scalar entry; NaN and invalid if missing."""
    if key not in state:
        return np.nan, np.nan, False
    e = state.get(key)
    value = np.nan if e.value is None else float(e.value)
    stderr = np.nan if e.stderr is None else float(e.stderr)
    return value, stderr, bool(e.valid) and np.isfinite(value)


@dataclass(frozen=True)
class BiasModel:
    """What the calibration knows about the bias lines of an ``n``-cell chip."""

    offset_V: np.ndarray  # V0_i: the line voltage that zeroes h_i with every other line at 0 V
    width_V: np.ndarray  # w_i = T_eff / (2 alpha_i): single-line logistic width
    crosstalk: np.ndarray  # C_ij = Xt_ij / alpha_i (V/V), zero diagonal
    valid: np.ndarray  # cells whose offset and width are calibrated
    alpha_K_per_V: np.ndarray | None = None
    crosstalk_calibrated: bool = False

    @property
    def n(self) -> int:
        return len(self.offset_V)

    @classmethod
    def from_state(cls, state: CalibrationState, n_cells: int) -> BiasModel:
        """The best model the state holds: crosstalk-corrected once the crosstalk node ran.

        Offsets and widths are recomputed here from the *current* bias S-curve and the
        stored crosstalk, ``V0_i = V0'_i (1 + sum_j C_ij)`` and ``w_i = w'_i (1 + sum_j
        C_ij)`` (see :mod:`labstack.calibrations.crosstalk`), so a re-run S-curve (a cell's
        offset jumped) takes effect without re-measuring the crosstalk.
        """
        offset, width = np.full(n_cells, np.nan), np.full(n_cells, np.nan)
        valid = np.zeros(n_cells, dtype=bool)
        for i in range(n_cells):
            v0, _, ok0 = _entry(state, f"cells.{i}.bias_offset_V")
            w, _, ok1 = _entry(state, f"cells.{i}.scurve_width_V")
            offset[i], width[i], valid[i] = v0, w, ok0 and ok1
        key = "crosstalk.matrix_V_per_V"
        have_xt = key in state and state.get(key).valid
        xt = np.zeros((n_cells, n_cells))
        if have_xt:
            xt = np.asarray(state.value(key), dtype=float)
            if xt.shape != (n_cells, n_cells):
                raise ValueError(f"crosstalk matrix is {xt.shape}, chip has {n_cells} cells")
            rows = [
                f"cells.{i}.crosstalk_row_V_per_V" in state
                and state.get(f"cells.{i}.crosstalk_row_V_per_V").valid
                for i in range(n_cells)
            ]
            valid &= np.array(rows, dtype=bool)
            xt = np.where(valid[:, None], xt, 0.0)
            scale = 1.0 + xt.sum(axis=1)
            offset, width = offset * scale, width * scale
        alpha = np.array([_entry(state, f"cells.{i}.alpha_K_per_V")[0] for i in range(n_cells)])
        return cls(
            offset_V=np.where(valid, offset, 0.0),
            width_V=np.where(valid, width, np.nan),
            crosstalk=xt,
            valid=valid,
            alpha_K_per_V=alpha if valid.any() and np.isfinite(alpha[valid]).all() else None,
            crosstalk_calibrated=have_xt,
        )

    # ------------------------------------------------------------- forward
    def detuning_V(self, volts: np.ndarray) -> np.ndarray:
        """``u = V - V0 + C V`` for line voltages ``volts`` (NaN for uncalibrated cells)."""
        v = np.asarray(volts, dtype=float)
        u = v - self.offset_V + self.crosstalk @ v
        return np.where(self.valid, u, np.nan)

    def theta(self, volts: np.ndarray) -> np.ndarray:
        """Dimensionless fields ``h_i / T_eff = u_i / (2 w_i)`` the voltages give."""
        return self.detuning_V(volts) / (2.0 * self.width_V)

    # ------------------------------------------------------------- inverse
    def voltages_for_detuning(self, detuning_V: np.ndarray, fixed_V: np.ndarray | float = 0.0) -> np.ndarray:
        """Line voltages giving calibrated cells the detuning ``detuning_V``.

        Lines of uncalibrated cells are held at ``fixed_V`` (their entries of
        ``detuning_V`` are ignored); their crosstalk onto calibrated cells is compensated.
        """
        u = np.asarray(detuning_V, dtype=float)
        a = self.valid
        v = np.broadcast_to(np.asarray(fixed_V, dtype=float), (self.n,)).copy()
        if a.any():
            c_aa = self.crosstalk[np.ix_(a, a)]
            c_af = self.crosstalk[np.ix_(a, ~a)]
            rhs = u[a] + self.offset_V[a] - c_af @ v[~a]
            v[a] = np.linalg.solve(np.eye(int(a.sum())) + c_aa, rhs)
        return v

    def voltages_for_theta(self, theta: np.ndarray, fixed_V: np.ndarray | float = 0.0) -> np.ndarray:
        """Line voltages for dimensionless fields ``theta_i = h_i / T_eff`` (no alpha needed)."""
        theta = np.asarray(theta, dtype=float)
        u = np.where(self.valid, 2.0 * theta * np.nan_to_num(self.width_V), 0.0)
        return self.voltages_for_detuning(u, fixed_V)

    def voltages_for_field_K(self, h_K: np.ndarray, fixed_V: np.ndarray | float = 0.0) -> np.ndarray:
        """Line voltages for fields in kelvin; needs the gains ``alpha`` in the state."""
        if self.alpha_K_per_V is None:
            raise ValueError(
                "fields in kelvin need cells.<i>.alpha_K_per_V in the calibration state; "
                "use voltages_for_theta (h / T_eff) instead"
            )
        u = np.where(self.valid, np.asarray(h_K, dtype=float) / self.alpha_K_per_V, 0.0)
        return self.voltages_for_detuning(u, fixed_V)


def coupler_zeros(state: CalibrationState, n_couplers: int) -> np.ndarray:
    """Each coupler's zero-coupling voltage: calibrated, else its last value, else 0 V.

    A coupler flagged because a cell it joins is dead keeps ``None`` as value; it idles at 0 V.
    """
    out = np.zeros(n_couplers)
    for k in range(n_couplers):
        value = state.value(f"couplers.{k}.zero_coupling_V", None)
        out[k] = 0.0 if value is None else float(value)
    return out
