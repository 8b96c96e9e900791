"""The safety dialect of the on-chip DAC array: every element of a block write is checked.

The array (``labstack.drivers.array_dac``) moves all its outputs with one message,
``SOURce:VOLTage:ARRay <block>``, whose float32 payload holds one value per element.
A guard that judged only the header would let any voltage through, so this dialect
reads the payload: every guarded element is checked against its channel (limits,
max step, rate) exactly as the same value written alone with
``SOURce:VOLTage:ELEMent <i>,<V>`` would be, with the same :class:`Channel` objects,
so ramps, interlocks and the safe state see one set of present values. One element
that breaks a rule refuses the whole message, naming that element's line; a sent
block commits every guarded element. An element whose value the block repeats (equal
at float32 precision; the array keeps it exactly) does not move, so it is recorded
but not held to its ramp's next allowed time. A float32 cannot carry most
decimals exactly (0.05 V is 0.050000001 V), so an element is judged at float32
precision: a block stepping exactly ``max_step`` passes.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from labstack.safety.guard import Decision, Dialect, ScpiGuard, reset_decision


class ArrayDacDialect(Dialect):
    """labstack DAC array: element writes as text, every element at once as a float32 block."""

    judges_blocks = True

    ELEMENT = re.compile(r"SOUR(?:CE)?:VOLT(?:AGE)?:ELEM(?:ENT)?\s+(\S+?)\s*,\s*(.*)", re.I)
    BLOCK = re.compile(r"SOUR(?:CE)?:VOLT(?:AGE)?:ARR(?:AY)?", re.I)
    SAFE = re.compile(r"SOUR(?:CE)?:FILT(?:ER)?\s+\S+", re.I)
    ANY_SOURCE = re.compile(r"SOUR(?:CE)?\b|SOUR(?:CE)?:", re.I)
    RESET = re.compile(r"\*RST", re.I)

    def __init__(self, n_elements: int | None = None) -> None:
        #: the array's length (None: unknown, any length is judged by its elements)
        self.n_elements = n_elements

    @classmethod
    def for_instrument(cls, instrument: Any) -> ArrayDacDialect:
        return cls(int(instrument.n_elements))

    def judge(self, command: str, guard: ScpiGuard) -> Decision:
        m = self.ELEMENT.fullmatch(command)
        if m:
            try:
                element = int(m.group(1))
            except ValueError:
                return Decision(refuse=f"refused {command!r}: {m.group(1)!r} is not an element number")
            if element not in guard.channels:
                return Decision()
            try:
                return Decision(element, float(m.group(2).strip()))
            except ValueError:
                return Decision(refuse=f"{guard.channels[element].name}: refused {command!r}: not a voltage")
        if self.SAFE.fullmatch(command):
            return Decision()
        if self.RESET.fullmatch(command):
            return reset_decision(guard)
        if self.ANY_SOURCE.match(command) and guard.channels:
            return Decision(refuse=f"refused {command!r}: it could move guarded elements unchecked")
        return Decision()

    def judge_block(self, command: str, payload: bytes | None, guard: ScpiGuard) -> list[Decision]:
        if not self.BLOCK.fullmatch(command.strip()):
            if guard.channels:
                return [Decision(refuse=f"refused {command!r} with a binary block: only SOURce:VOLTage:ARRay takes one")]
            return []
        if payload is None:
            return [Decision(refuse=f"refused {command!r}: its block header is malformed or announces more than was sent")]
        if len(payload) % 4:
            return [Decision(refuse=f"refused {command!r}: {len(payload)} bytes are not whole float32 values")]
        values = np.frombuffer(payload, dtype="<f4")
        if self.n_elements is not None and values.size != self.n_elements:
            return [
                Decision(
                    refuse=f"refused {command!r}: the block holds {values.size} elements, the array has {self.n_elements}"
                )
            ]
        decisions = []
        for i in sorted(guard.channels):
            if i >= values.size:
                continue
            known = guard.channels[i].known
            if known is not None and np.float32(known) == values[i]:
                decisions.append(Decision(i, known, hold=True))  # unchanged: the array keeps it
            else:  # judged at float32 precision: two spacings at the larger of value and start
                larger = max(abs(float(values[i])), abs(known) if known is not None else 0.0)
                resolution = 2.0 * float(np.spacing(np.float32(larger)))
                decisions.append(Decision(i, float(values[i]), resolution=resolution))
        return decisions

    def read_query(self, channel: int) -> str:
        return f"SOUR:VOLT:ELEM? {channel}"
