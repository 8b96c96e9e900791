"""Faults on demand and at random: what goes wrong in a real lab, reproducibly.

Communication faults happen in the PyVISA backend (:mod:`labstack.visa.virtual_lab`),
one decision per message written to an instrument:

``timeout``    a query is executed but its answer never comes (the host times out)
``garbled``    the answer's first bytes arrive corrupted (framing intact, content unreadable)
``truncated``  the answer is cut short and its terminator lost (the host times out mid-read)
``dropped``    the connection drops before the message is delivered; the session stays
               dead until it is reopened
``stuck``      the instrument stops answering (and executing) for 0.1-1 s of lab time

Physical faults act on the lab: ``excursion`` (a heat burst lifts the mixing
chamber by 20-80 mK, then it cools back) and ``cell_death`` (a cell stops giving
signal, mid-run).

Random faults: ``VirtualLab.from_description("...,faults=0.01,fault_seed=3")``
gives each message a 1 % chance of a fault drawn uniformly from ``fault_kinds``
(default: every communication fault and ``excursion``; ``cell_death`` only on
request, e.g. ``fault_kinds=timeout+cell_death``). Messages to the lab's
``clock`` are exempt: on hardware the station clock is the computer's own.
Random faults begin once lab time has started to move (after the station is
loaded; loading takes no lab time), so the drivers' connection handshakes, which
labstack does not wrap, are not hit; on-demand faults act at once.

On demand: ``lab.faults.inject("timeout", "ls372", count=2)``,
``lab.faults.stick("qdac1", seconds)``, ``lab.faults.excursion(0.05)``,
``lab.faults.kill_cell(3)``. Every fault is logged in ``lab.faults.log``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

COMM_KINDS = ("timeout", "garbled", "truncated", "dropped", "stuck")
PHYSICAL_KINDS = ("excursion", "cell_death")
ALL_KINDS = COMM_KINDS + PHYSICAL_KINDS
DEFAULT_KINDS = (*COMM_KINDS, "excursion")
#: kinds that need an answer to act on
QUERY_ONLY = ("timeout", "garbled", "truncated")


class FaultConfigError(ValueError):
    """A fault description that cannot be used."""


@dataclass
class FaultEvent:
    kind: str
    instrument: str
    command: str
    t: float  # lab time (s)


def parse_kinds(text: str) -> tuple[str, ...]:
    kinds = tuple(k.strip() for k in text.replace("|", "+").split("+") if k.strip())
    unknown = [k for k in kinds if k not in ALL_KINDS]
    if unknown or not kinds:
        raise FaultConfigError(f"fault_kinds {text!r}: unknown {unknown}; use {'+'.join(ALL_KINDS)}")
    return kinds


class FaultInjector:
    """Decides, per message, whether and how it fails; applies physical faults to the lab."""

    def __init__(
        self,
        now: Callable[[], float],
        *,
        rate: float = 0.0,
        seed: int = 0,
        kinds: tuple[str, ...] = DEFAULT_KINDS,
        on_excursion: Callable[[float], None] | None = None,
        on_cell_death: Callable[[int | None], int | None] | None = None,
        exempt: tuple[str, ...] = ("clock",),
    ) -> None:
        if not 0.0 <= rate <= 1.0:
            raise FaultConfigError(f"faults={rate}: a probability per message, 0..1")
        self.now = now
        self.rate = rate
        self.kinds = kinds
        self.rng = np.random.default_rng(seed)
        self.exempt = exempt
        self.on_excursion = on_excursion
        self.on_cell_death = on_cell_death
        self.pending: list[tuple[str, str]] = []  # (kind, instrument or "*")
        self.stuck_until: dict[str, float] = {}
        self.log: list[FaultEvent] = []

    # ------------------------------------------------------------- on demand
    def inject(self, kind: str, instrument: str = "*", count: int = 1) -> None:
        """Make the next ``count`` suitable messages to ``instrument`` ("*": any) fail as ``kind``."""
        if kind not in COMM_KINDS:
            raise FaultConfigError(f"inject({kind!r}): use one of {COMM_KINDS}, or excursion()/kill_cell()")
        self.pending.extend([(kind, instrument)] * count)

    def stick(self, instrument: str, seconds: float) -> None:
        """``instrument`` answers nothing for ``seconds`` of lab time."""
        self.stuck_until[instrument] = self.now() + seconds
        self._record("stuck", instrument, f"for {seconds:g} s")

    def excursion(self, delta_K: float) -> None:
        """Lift the mixing chamber by ``delta_K`` at once (it then cools back by itself)."""
        if self.on_excursion is not None:
            self.on_excursion(delta_K)
        self._record("excursion", "cryostat", f"+{delta_K:g} K")

    def kill_cell(self, cell: int | None = None) -> int | None:
        """Cell ``cell`` (default: a random live one) stops giving signal. Returns it."""
        killed = self.on_cell_death(cell) if self.on_cell_death is not None else None
        if killed is not None:
            self._record("cell_death", "chip", f"cell {killed}")
        return killed

    # ------------------------------------------------------------- per message
    def is_stuck(self, instrument: str) -> bool:
        return self.now() < self.stuck_until.get(instrument, -np.inf)

    def decide(self, instrument: str, command: str, is_query: bool) -> str | None:
        """The communication fault (if any) this message suffers; physical ones act at once."""
        for i, (kind, who) in enumerate(self.pending):
            if who in ("*", instrument) and (is_query or kind not in QUERY_ONLY):
                del self.pending[i]
                return self._comm(kind, instrument, command)
        if self.rate <= 0 or instrument in self.exempt or self.now() <= 0.0:
            return None
        if self.rng.random() >= self.rate:
            return None
        kinds = [k for k in self.kinds if is_query or k not in QUERY_ONLY]
        if not kinds:
            return None
        kind = kinds[int(self.rng.integers(len(kinds)))]
        if kind == "excursion":
            self.excursion(float(self.rng.uniform(0.02, 0.08)))
            return None
        if kind == "cell_death":
            self.kill_cell()
            return None
        return self._comm(kind, instrument, command)

    def _comm(self, kind: str, instrument: str, command: str) -> str:
        if kind == "stuck":
            self.stuck_until[instrument] = self.now() + float(self.rng.uniform(0.1, 1.0))
        self._record(kind, instrument, command)
        return kind

    def corrupt(self, answer: bytes, kind: str, termination: bytes) -> bytes:
        """The answer as it arrives after a ``garbled`` or ``truncated`` fault."""
        body = answer[: -len(termination)] if termination and answer.endswith(termination) else answer
        if kind == "garbled":
            n = max(1, min(3, len(body)))
            junk = bytes(self.rng.integers(0x80, 0x100, n, dtype=np.uint8))
            return junk + body[n:] + termination
        keep = int(self.rng.integers(0, max(1, len(body))))
        return body[:keep]  # no terminator: the host waits for the rest and times out

    def _record(self, kind: str, instrument: str, command: str) -> None:
        self.log.append(FaultEvent(kind, instrument, command, self.now()))

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for e in self.log:
            out[e.kind] = out.get(e.kind, 0) + 1
        return out
