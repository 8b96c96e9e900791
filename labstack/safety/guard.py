"""The last line of defence: every SCPI message to a guarded instrument is checked on the wire.

Validators and ramps live on QCoDeS parameters, but a driver method, a raw
``instrument.write`` or a binary list upload can reach the instrument without
passing a parameter. :class:`ScpiGuard` wraps the ``write_raw`` of the
instrument's PyVISA resource (layer ``guard`` of :mod:`labstack.safety.intercept`;
every pyvisa write, text or binary, ends there), parses
each command and refuses, before it is sent, any message that would

* set a guarded DAC channel outside its limits, by more than its maximum step from
  the value it has now, or sooner than its ramp rate allows after the last step
  (:class:`Channel` keeps the value and the time the channel may move again);
* move a guarded DAC channel by a mechanism the guard cannot check (lists,
  sweeps, AWG, triggered voltages, channel-list forms, ``*RST`` away from 0 V);
* put the cryostat heater on a range above the interlock or a closed-loop
  set-point above the maximum temperature (a Lake Shore 372's heater, or an Oxford
  Triton's loop and heater, whose set-point may also carry limits and a ramp).

A raw-socket instrument (QCoDeS ``IPInstrument``: the Triton) has no PyVISA
resource; its guard wraps the driver's ``_send`` instead, where every message it
writes to its socket passes (:meth:`ScpiGuard.install_socket`).

Each instrument model has a small dialect (the regular expressions of its
commands). Queries always pass. Unknown commands on an unguarded channel pass.

A binary block (a list upload) is judged by the command before it, unless the
dialect reads blocks (:attr:`Dialect.judges_blocks`: the DAC array of
:mod:`labstack.safety.array_dialect`, whose block sets every output at once): then
every value in it is checked against its channel as a written set-point would be,
the whole message is refused if one breaks a rule, and every value is committed.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from labstack.clock import Clock
from labstack.safety.config import Interlocks, RampSpec
from labstack.safety.errors import SafetyError
from labstack.safety.intercept import Interceptors, Method
from labstack.scpi_text import split_commands

#: tolerance on steps and times, so a ramp computed in floating point is not refused
REL_TOL = 1e-9

#: Lake Shore 372 sample-heater full-scale currents by RANGE index (A)
LS372_RANGES_A = {0: 0.0, 1: 31.6e-6, 2: 100e-6, 3: 316e-6, 4: 1e-3, 5: 3.16e-3, 6: 10e-3, 7: 31.6e-3, 8: 100e-3}


@dataclass
class Channel:
    """One guarded DAC output: its limits, ramp, last known value and when it may move next."""

    name: str
    low: float = -math.inf
    high: float = math.inf
    ramp: RampSpec | None = None
    known: float | None = None
    t_ready: float = -math.inf
    scpi_enforced: bool = False
    history: list[tuple[float, float]] = field(default_factory=list)

    def check(self, value: float, now: float, resolution: float = 0.0) -> None:
        """Raise :class:`SafetyError` unless ``value`` may be written at ``now``.

        ``resolution``: how finely the message carries the value (a float32 block cannot
        say 0.05 V exactly); limits and the step are judged that much more leniently,
        far below any DAC's own resolution.
        """
        if not math.isfinite(value):
            raise SafetyError(f"{self.name}: refused {value!r}: not a finite voltage")
        if not self.low - resolution <= value <= self.high + resolution:
            raise SafetyError(
                f"{self.name}: refused {value:g} V: outside the limits [{self.low:g}, {self.high:g}] V"
            )
        if self.ramp is None:
            return
        if self.known is None:
            raise SafetyError(f"{self.name}: refused {value:g} V: present value unknown")
        step = abs(value - self.known)
        if step > self.ramp.max_step * (1 + REL_TOL) + 1e-12 + resolution:
            raise SafetyError(
                f"{self.name}: refused {value:g} V: a step of {step:g} V from {self.known:g} V "
                f"exceeds max_step {self.ramp.max_step:g} V"
            )
        if now < self.t_ready - REL_TOL * max(1.0, abs(self.t_ready)):
            raise SafetyError(
                f"{self.name}: refused {value:g} V at t={now:.6g} s: the last step may not be "
                f"followed before t={self.t_ready:.6g} s (rate {self.ramp.rate:g} V/s)"
            )

    def commit(self, value: float, now: float) -> None:
        """Record that ``value`` was written at ``now`` (the same value again moves nothing:
        the time the channel may move next stays)."""
        if self.known is not None and value == self.known:
            self.history.append((now, value))
            return
        if self.ramp is not None and self.known is not None:
            self.t_ready = now + abs(value - self.known) / self.ramp.rate
        self.known = value
        self.history.append((now, value))


# ------------------------------------------------------------------ dialects
_NUM = r"([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|\S+)"


@dataclass
class Decision:
    """What the guard makes of one command: pass, or a channel write to check."""

    channel: int | None = None
    value: float | None = None
    refuse: str | None = None
    #: the channel is written its present value (an unchanged element of a block): it does
    #: not move, so only its record is kept, whatever its ramp's next allowed time
    hold: bool = False
    #: how finely the message carries ``value`` (V): :meth:`Channel.check`
    resolution: float = 0.0


def reset_decision(guard: ScpiGuard) -> Decision:
    """``*RST`` sends every output to 0 V at once: refused while a ramped channel is away
    from 0 V by more than one step (or at a voltage the guard has not seen)."""
    away = [
        c.name for c in guard.channels.values()
        if c.ramp is not None and (c.known is None or abs(c.known) > c.ramp.max_step)
    ]
    if away:
        return Decision(refuse=f"refused *RST: {', '.join(away)} would jump to 0 V")
    return Decision()


class Dialect:
    """How one instrument model's SCPI moves outputs. Subclasses fill in ``judge``."""

    #: whether :meth:`judge_block` reads binary blocks (otherwise only the text before one is judged)
    judges_blocks = False

    @classmethod
    def for_instrument(cls, instrument: Any) -> Dialect:
        """The dialect of ``instrument`` (a model whose dialect needs to know the instrument,
        such as its number of outputs, reads it here)."""
        return cls()

    def judge(self, command: str, guard: ScpiGuard) -> Decision:
        raise NotImplementedError

    def judge_block(self, command: str, payload: bytes | None, guard: ScpiGuard) -> list[Decision]:
        """The set-points a binary block carries (``payload`` None: a malformed block)."""
        raise NotImplementedError

    def read_query(self, channel: int) -> str:
        raise NotImplementedError

    def parse_reading(self, answer: str) -> float:
        """The value in the answer to :meth:`read_query`."""
        return float(answer)


class QDac2Dialect(Dialect):
    """QDevil QDAC-II as driven by qcodes_contrib_drivers' ``QDac2``."""

    SET = re.compile(r"SOUR(?:CE)?(\d+):VOLT(?:AGE)?(?::IMM(?:EDIATE)?)?(?::AMPL(?:ITUDE)?)?\s+(.*)", re.I)
    MODE = re.compile(r"SOUR(?:CE)?(\d+):VOLT(?:AGE)?:MODE\s+(\S+)", re.I)
    SAFE = re.compile(
        r"SOUR(?:CE)?(\d+):(?:RANG(?:E)?|FILT(?:ER)?|VOLT(?:AGE)?:SLEW|DC:ABOR(?:T)?|ALL:ABOR(?:T)?)(?:\s.*)?",
        re.I,
    )
    CHANNEL = re.compile(r"SOUR(?:CE)?(\d+):", re.I)
    ANY_SOURCE = re.compile(r"SOUR(?:CE)?\b|SOUR(?:CE)?:", re.I)
    RESET = re.compile(r"\*RST", re.I)

    def judge(self, command: str, guard: ScpiGuard) -> Decision:
        m = self.SET.fullmatch(command)
        if m:
            ch = int(m.group(1))
            if ch not in guard.channels:
                return Decision()
            text = m.group(2).strip()
            try:
                value = float(text)
            except ValueError:
                return Decision(refuse=f"ch{ch}: refused {command!r}: {text!r} is not a voltage")
            return Decision(ch, value)
        m = self.MODE.fullmatch(command)
        if m:
            ch = int(m.group(1))
            if ch in guard.channels and not m.group(2).upper().startswith("FIX"):
                return Decision(refuse=f"ch{ch}: refused {command!r}: only fixed (DC) mode is guarded")
            return Decision()
        if self.SAFE.fullmatch(command):
            return Decision()
        m = self.CHANNEL.match(command)
        if m:
            ch = int(m.group(1))
            if ch in guard.channels:
                return Decision(refuse=f"ch{ch}: refused {command!r}: it could move a guarded output unchecked")
            return Decision()
        if self.ANY_SOURCE.match(command) and guard.channels:
            return Decision(refuse=f"refused {command!r}: channel-list source commands are not guarded")
        if self.RESET.fullmatch(command):
            return reset_decision(guard)
        return Decision()

    def read_query(self, channel: int) -> str:
        return f"sour{channel}:volt?"


class KeysightB2962ADialect(Dialect):
    """Keysight B2962A two-channel source as driven by QCoDeS's ``KeysightB2962A``.

    A guarded channel may only be moved by ``SOURce<n>:VOLT``; switching it to current
    mode would drive the line at a voltage nothing checks, and a reset would jump it to
    0 V, so both are refused while the channel is away from 0 V by more than a step.
    """

    SET = re.compile(r":?SOUR(?:CE)?(\d):VOLT(?:AGE)?(?::LEV(?:EL)?)?(?::IMM(?:EDIATE)?)?\s+(.*)", re.I)
    MODE = re.compile(r":?SOUR(?:CE)?(\d):FUNC(?:TION)?:MODE\s+(\S+)", re.I)
    RESET = re.compile(r"\*RST", re.I)

    def judge(self, command: str, guard: ScpiGuard) -> Decision:
        m = self.SET.fullmatch(command)
        if m:
            ch = int(m.group(1))
            if ch not in guard.channels:
                return Decision()
            try:
                return Decision(ch, float(m.group(2).strip()))
            except ValueError:
                return Decision(refuse=f"ch{ch}: refused {command!r}: {m.group(2).strip()!r} is not a voltage")
        m = self.MODE.fullmatch(command)
        if m and int(m.group(1)) in guard.channels and not m.group(2).upper().startswith("VOLT"):
            return Decision(refuse=f"ch{m.group(1)}: refused {command!r}: only voltage mode is guarded")
        if self.RESET.fullmatch(command):
            return reset_decision(guard)
        return Decision()

    def read_query(self, channel: int) -> str:
        return f"SOURCE{channel}:VOLT?"


class SR86xDialect(Dialect):
    """The sine output of a Stanford Research SR86x lock-in, which excites a cold readout line.

    Channel 1 is the amplitude (``SLVL``, V rms), channel 2 the DC offset (``SOFF``):
    both are limited, stepped and rate-limited like a DAC, since the line they drive
    ends at the chip.
    """

    SET = re.compile(r"(SLVL|SOFF)\s+(.*)", re.I)
    CHANNELS = {"SLVL": 1, "SOFF": 2}

    def judge(self, command: str, guard: ScpiGuard) -> Decision:
        m = self.SET.fullmatch(command)
        if not m:
            return Decision()
        ch = self.CHANNELS[m.group(1).upper()]
        if ch not in guard.channels:
            return Decision()
        try:
            return Decision(ch, float(m.group(2).strip()))
        except ValueError:
            return Decision(refuse=f"refused {command!r}: {m.group(2).strip()!r} is not a voltage")

    def read_query(self, channel: int) -> str:
        return {1: "SLVL?", 2: "SOFF?"}[channel]


class Lakeshore372Dialect(Dialect):
    """Lake Shore 372 heater commands, against the station's interlocks."""

    RANGE = re.compile(r"RANGE\s*(\d+)\s*,\s*(.*)", re.I)
    SETP = re.compile(r"SETP\s*(\d+)\s*,\s*(.*)", re.I)

    def __init__(self, interlocks: Interlocks) -> None:
        self.interlocks = interlocks
        self.max_range = max_heater_range(interlocks)

    def judge(self, command: str, guard: ScpiGuard) -> Decision:
        m = self.RANGE.fullmatch(command)
        if m and self.max_range is not None:
            try:
                r = int(m.group(2).strip())
            except ValueError:
                return Decision(refuse=f"refused {command!r}: not a range index")
            if r > self.max_range:
                return Decision(refuse=f"refused {command!r}: heater range {r} is above the interlock (max {self.max_range})")
            return Decision()
        m = self.SETP.fullmatch(command)
        if m and self.interlocks.max_temperature_K is not None:
            try:
                t = float(m.group(2).strip())
            except ValueError:
                return Decision(refuse=f"refused {command!r}: not a temperature")
            if not t <= self.interlocks.max_temperature_K:
                return Decision(
                    refuse=f"refused {command!r}: set-point {t:g} K is above max_temperature_K "
                    f"{self.interlocks.max_temperature_K:g} K"
                )
        return Decision()


class TritonDialect(Dialect):
    """Oxford Triton loop and heater writes (``SET:DEV:...``), against the station's interlocks.

    * ``SET:DEV:T<n>:TEMP:LOOP:TSET:<K>``: refused above ``max_temperature_K``; checked
      as guarded channel 1 (limits, max step, rate) when ``labstack.limits`` or
      ``labstack.ramps`` name the driver's ``pid_setpoint``;
    * ``SET:DEV:T<n>:TEMP:LOOP:RANGE:<mA>``: refused when the range's full-scale power
      ``I^2 R`` exceeds ``heater_max_power_W`` (the Lake Shore's range index,
      ``heater_max_range``, does not apply to the Triton's ranges);
    * ``SET:DEV:H<n>:HTR:SIG:POWR:<uW>`` (manual heater power): refused above
      ``heater_max_power_W``.
    """

    SETPOINT = 1
    TSET = re.compile(r"SET:DEV:T(\d+):TEMP:LOOP:TSET:(.*)", re.I)
    RANGE = re.compile(r"SET:DEV:T(\d+):TEMP:LOOP:RANGE:(.*)", re.I)
    POWER = re.compile(r"SET:DEV:H(\d+):HTR:SIG:POWR:(.*)", re.I)
    NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")

    def __init__(self, interlocks: Interlocks | None = None) -> None:
        self.interlocks = interlocks or Interlocks()
        self.loop_channel = 8

    def _number(self, command: str, text: str, what: str) -> float | Decision:
        try:
            value = float(text.strip())
        except ValueError:
            return Decision(refuse=f"refused {command!r}: {text.strip()!r} is not {what}")
        if not math.isfinite(value):
            return Decision(refuse=f"refused {command!r}: {text.strip()!r} is not {what}")
        return value

    def judge(self, command: str, guard: ScpiGuard) -> Decision:
        lock = self.interlocks
        max_power = lock.heater_max_power_W
        m = self.TSET.fullmatch(command)
        if m:
            self.loop_channel = int(m.group(1))
            value = self._number(command, m.group(2), "a temperature")
            if isinstance(value, Decision):
                return value
            if lock.max_temperature_K is not None and not value <= lock.max_temperature_K:
                return Decision(
                    refuse=f"refused {command!r}: set-point {value:g} K is above max_temperature_K "
                    f"{lock.max_temperature_K:g} K"
                )
            return Decision(self.SETPOINT, value) if self.SETPOINT in guard.channels else Decision()
        m = self.RANGE.fullmatch(command)
        if m and max_power is not None and lock.heater_resistance_ohm is not None:
            value = self._number(command, m.group(2), "a heater range in mA")
            if isinstance(value, Decision):
                return value
            power = (value * 1e-3) ** 2 * lock.heater_resistance_ohm
            if power > max_power * (1 + REL_TOL):
                return Decision(
                    refuse=f"refused {command!r}: heater range {value:g} mA gives up to {power:.3g} W, "
                    f"above heater_max_power_W {max_power:g} W"
                )
            return Decision()
        m = self.POWER.fullmatch(command)
        if m and max_power is not None:
            value = self._number(command, m.group(2), "a power in uW")
            if isinstance(value, Decision):
                return value
            if value < 0 or value * 1e-6 > max_power * (1 + REL_TOL):
                return Decision(
                    refuse=f"refused {command!r}: heater power {value:g} uW is outside [0, "
                    f"{max_power * 1e6:g}] uW (heater_max_power_W)"
                )
        return Decision()

    def read_query(self, channel: int) -> str:
        return f"READ:DEV:T{self.loop_channel}:TEMP:LOOP:TSET"

    def parse_reading(self, answer: str) -> float:
        found = self.NUMBER.findall(answer.rsplit(":", 1)[-1])
        if not found:
            raise ValueError(f"no set-point in the Triton's answer {answer!r}")
        return float(found[0])


def max_heater_range(interlocks: Interlocks) -> int | None:
    """The highest heater range the interlocks allow (power via full-scale I^2 R), or None."""
    allowed = [interlocks.heater_max_range] if interlocks.heater_max_range is not None else []
    if interlocks.heater_max_power_W is not None and interlocks.heater_resistance_ohm is not None:
        by_power = max(
            r for r, amps in LS372_RANGES_A.items()
            if amps**2 * interlocks.heater_resistance_ohm <= interlocks.heater_max_power_W
        )
        allowed.append(by_power)
    return min(allowed) if allowed else None


# ----------------------------------------------------------------------- guard
class ScpiGuard:
    """Guards one instrument's PyVISA resource; re-applied after every reconnect."""

    def __init__(
        self,
        name: str,
        dialect: Dialect,
        clock: Clock,
        interceptors: Interceptors,
        channels: dict[int, Channel] | None = None,
    ) -> None:
        self.name = name
        self.interceptors = interceptors
        self.dialect = dialect
        self.clock = clock
        self.channels: dict[int, Channel] = channels or {}
        self.refused: list[str] = []
        for c in self.channels.values():
            c.scpi_enforced = True

    def install(self, resource: Any) -> None:
        """Wrap ``resource.write_raw`` (every write of a pyvisa message resource ends there)."""

        def make(original: Method) -> Method:
            def guarded_write_raw(message: bytes) -> Any:
                commits = self.check(message, resource)
                result = original(message)
                for channel, value, now in commits:
                    channel.commit(value, now)
                return result

            return guarded_write_raw

        self.interceptors.wrap(resource, "write_raw", "guard", make)

    def install_socket(self, instrument: Any) -> None:
        """Wrap a raw-socket driver's ``_send`` (QCoDeS ``IPInstrument``: every message it
        writes to its socket, command or query, goes through it)."""
        dialect = self.dialect

        class _Reader:  # what check() asks a channel's present value through
            @staticmethod
            def query(command: str) -> str:
                return str(instrument.ask(command))

        def make(original: Method) -> Method:
            def guarded_send(cmd: str) -> Any:
                commits = self.check(cmd.encode("ascii", errors="replace"), _Reader, dialect.parse_reading)
                result = original(cmd)
                for channel, value, now in commits:
                    channel.commit(value, now)
                return result

            return guarded_send

        self.interceptors.wrap(instrument, "_send", "guard", make)

    def check(
        self, message: bytes, resource: Any, parse: Any = float
    ) -> list[tuple[Channel, float, float]]:
        """Refuse ``message`` or return the channel writes to commit once it is sent."""
        commits: list[tuple[Channel, float, float]] = []
        pending: dict[int, float] = {}
        sent_at: float | None = None  # one message reaches the instrument at one time: read once
        for command, decision in self._decisions(message):
            if decision.refuse:
                self._refuse(decision.refuse)
            if decision.channel is None or decision.value is None:
                continue
            channel = self.channels[decision.channel]
            if channel.ramp is not None and channel.known is None:
                channel.known = parse(resource.query(self.dialect.read_query(decision.channel)))
            now = 0.0
            if channel.ramp is not None:
                if sent_at is None:
                    sent_at = self.clock.now()
                now = sent_at
            if decision.channel in pending:
                self._refuse(f"{channel.name}: refused {command!r}: two set-points in one message")
            try:
                if not decision.hold:
                    channel.check(decision.value, now, decision.resolution)
            except SafetyError as exc:
                self._refuse(str(exc))
            pending[decision.channel] = decision.value
            commits.append((channel, decision.value, now))
        return commits

    def _decisions(self, message: bytes) -> Iterator[tuple[str, Decision]]:
        """(command, decision) of every command of ``message`` that is not a query, in order."""
        block = split_block(message) if self.dialect.judges_blocks else None
        if block is None:
            head = message[:65536]
            if b"#" in head and not head.isascii():  # a binary block: judge only its header
                head = head.split(b"#", 1)[0]
            text, header, payload, rest = head.decode("ascii", errors="replace"), None, None, b""
        else:
            text, payload, rest = block
            commands = split_commands(text)
            ends_command = bool(commands) and not text.rstrip().endswith(";")
            header = commands[-1] if ends_command else ""
            text = ";".join(commands[:-1] if ends_command else commands)
        for command in split_commands(text):
            if not command.split(" ")[0].endswith("?"):
                yield command, self.dialect.judge(command, self)
        if header is None:
            return
        if rest.strip(b"\r\n"):
            yield header, Decision(refuse=f"refused {header!r}: commands after a binary block are not guarded")
        for decision in self.dialect.judge_block(header, payload, self):
            yield header, decision

    def _refuse(self, reason: str) -> None:
        self.refused.append(reason)
        raise SafetyError(f"{self.name}: {reason}")


def split_block(message: bytes) -> tuple[str, bytes | None, bytes] | None:
    """``<text>#<n><len><payload><rest>`` as (text, payload, rest); None without a ``#``.

    The payload is None when the block header is malformed or announces more bytes than
    the message holds (a dialect that reads blocks refuses it).
    """
    position = message.find(b"#")
    if position < 0:
        return None
    text = message[:position].decode("ascii", errors="replace")
    block = message[position:]
    digits = int(block[1:2]) if block[1:2].isdigit() else 0
    field = block[2 : 2 + digits]
    if not digits or len(field) < digits or not field.isdigit():
        return text, None, b""
    start, length = 2 + digits, int(field)
    if len(block) < start + length:
        return text, None, b""
    return text, block[start : start + length], block[start + length :]
