"""Toy nodes over a toy lab whose true parameters a test controls (for tests and demos).

Each node measures one true number. Its data are *bad* when the node is broken or
when any node it (transitively) depends on has a stored value far from the truth:
that is how an upstream fault shows up downstream in a real setup. Nothing here
touches an instrument; time passes only on the context clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from labstack.calibrate import (
    CalibrationState,
    Context,
    Mode,
    Node,
    Spec,
    StateChange,
    Tolerance,
    Verdict,
)

TOL = 0.1


@dataclass
class ToyData:
    run_id: str
    value: float
    bad: bool
    mode: Mode


@dataclass
class ToyLab:
    truth: dict[str, float] = field(default_factory=dict)
    deps: dict[str, tuple[str, ...]] = field(default_factory=dict)
    broken: set[str] = field(default_factory=set)
    acquisitions: list[tuple[str, str]] = field(default_factory=list)
    crash: set[str] = field(default_factory=set)

    def ancestors(self, name: str) -> set[str]:
        out: set[str] = set()
        for d in self.deps.get(name, ()):
            out |= {d} | self.ancestors(d)
        return out

    def upstream_wrong(self, name: str, state: CalibrationState) -> bool:
        for a in self.ancestors(name):
            key = f"toy.{a}.value"
            if key not in state or abs(state.value(key) - self.truth[a]) > TOL:
                return True
        return False


def toy_node(lab: ToyLab, name: str, deps: tuple[str, ...] = (), timeout_s: float = 100.0) -> Node:
    lab.truth.setdefault(name, 1.0)
    lab.deps[name] = deps
    key = f"toy.{name}.value"

    def acquire(ctx: Context, params: object, mode: Mode) -> ToyData:
        if name in lab.crash:
            raise RuntimeError(f"instrument for {name} not responding")
        lab.acquisitions.append((name, str(mode)))
        ctx.clock.sleep(1.0 if mode is Mode.CHECK else 10.0)
        n = len(lab.acquisitions)
        bad = name in lab.broken or lab.upstream_wrong(name, ctx.state)
        return ToyData(f"run-{n:04d}", lab.truth[name], bad, mode)

    def fit(data: ToyData, params: object) -> ToyData:
        return data

    def check(results: ToyData, params: object, state: CalibrationState) -> Verdict:
        if results.bad:
            return Verdict(Spec.BAD_DATA, "no feature in the data")
        e = state.get(key)
        return Tolerance(TOL).judge(key, results.value, 0.001, e.value, e.stderr)

    def update(results: ToyData, params: object) -> StateChange:
        if results.bad:
            return StateChange().flag(key, "no feature in the data").fail("fit failed")
        return StateChange().set(key, results.value, 0.001, "V")

    return Node(name, acquire, fit, check, update, depends_on=deps, timeout_s=timeout_s)


# --------------------------------------------------------------------------- a cyclic pair
@dataclass
class LoopLab:
    """Two per-cell quantities that are each measured *around* the other's stored value.

    Cell ``i`` has a true offset ``x[i]`` and a true coupler zero ``z[i]``. The
    offset is measured with the coupler idling at its stored zero, so a wrong stored
    zero shifts it: ``x_meas = x + k (z - z_stored)``; the zero is measured around
    the stored offset: ``z_meas = z + m (x - x_stored)``. Starting from nothing
    stored (zero 0), one pass leaves an error ``k m`` times the last one, so the
    pair converges for ``|k m| < 1`` and runs away for ``|k m| > 1``, just like the
    bias offsets and coupler zeros of a chip whose neighbours pull on each other.
    Noise is Gaussian with standard deviation ``sigma`` and reported as the stderr.
    """

    n_cells: int = 8
    k: float = 0.6
    m: float = 0.6
    sigma: float = 0.001
    seed: int = 0
    dead: set[int] = field(default_factory=set)
    #: (node, call number) pairs that raise once, to inject a fault mid-pass
    crash_at: set[tuple[str, int]] = field(default_factory=set)
    calls: list[tuple[str, str, tuple[int, ...]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        import numpy as np

        self.rng = np.random.default_rng(self.seed)
        self.x = {i: float(v) for i, v in enumerate(self.rng.uniform(-0.2, 0.2, self.n_cells))}
        self.z = {i: float(v) for i, v in enumerate(self.rng.uniform(-0.3, 0.3, self.n_cells))}

    def stored(self, state: CalibrationState, cell: int, what: str) -> float:
        key = f"cells.{cell}.{what}"
        if key in state and state.get(key).valid:
            return float(state.value(key))
        return 0.0

    def measure(self, node: str, cell: int, state: CalibrationState, noise: float) -> float:
        if node == "offsets":
            err = self.k * (self.z[cell] - self.stored(state, cell, "zero"))
            true = self.x[cell]
        else:
            err = self.m * (self.x[cell] - self.stored(state, cell, "offset"))
            true = self.z[cell]
        return true + err + float(self.rng.normal(0.0, noise))


def loop_node(lab: LoopLab, name: str, deps: tuple[str, ...] = (), per_cell: bool = True) -> Node:
    """``offsets`` (key ``cells.<i>.offset``) or ``zeros`` (``cells.<i>.zero``) of a :class:`LoopLab`."""
    what = {"offsets": "offset", "zeros": "zero"}[name]

    def acquire(ctx: Context, params: object, mode: Mode) -> dict[int, tuple[float, float] | None]:
        cells = tuple(sorted(ctx.selection)) if ctx.selection else tuple(range(lab.n_cells))
        lab.calls.append((name, str(mode), cells))
        if (name, len(lab.calls)) in lab.crash_at:
            lab.crash_at.discard((name, len(lab.calls)))
            raise RuntimeError(f"{name}: sampler timed out")
        ctx.clock.sleep(0.1 * len(cells))
        noise = lab.sigma * (2.0 if mode is Mode.CHECK else 1.0)
        return {
            c: None if c in lab.dead else (lab.measure(name, c, ctx.state, noise), noise) for c in cells
        }

    def fit(data: dict[int, tuple[float, float] | None], params: object) -> dict:
        return data

    def check(results: dict, params: object, state: CalibrationState) -> Verdict:
        from labstack.calibrate import combine

        verdicts = []
        for c, r in results.items():
            key = f"cells.{c}.{what}"
            if key not in state or not state.get(key).valid:
                continue
            if r is None:
                verdicts.append(Verdict(Spec.OUT_OF_SPEC, f"cell {c}: no switching").about(c))
                continue
            e = state.get(key)
            verdicts.append(Tolerance(5 * lab.sigma).judge(key, r[0], r[1], e.value, e.stderr).about(c))
        return combine(verdicts)

    def update(results: dict, params: object) -> StateChange:
        change = StateChange()
        for c, r in results.items():
            key = f"cells.{c}.{what}"
            if r is None:
                change.flag(key, "dead: no switching")
            else:
                change.set(key, r[0], r[1], "V")
        return change

    return Node(name, acquire, fit, check, update, depends_on=deps, timeout_s=3600.0, per_cell=per_cell)
