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
