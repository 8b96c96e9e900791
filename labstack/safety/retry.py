"""Retry what is safe to retry, reconnect dropped sessions, and otherwise fail clearly.

Every VISA instrument of a station is hardened at load time (layer ``retry`` of
:mod:`labstack.safety.intercept`):

* its ``write_raw`` and ``ask_raw`` (QCoDeS's lowest instrument-level calls) retry on
  VISA I/O errors (timeout, dropped connection), connections reset or refused
  (an instrument on a socket that went away), socket timeouts and undecodable
  replies; raw-socket drivers (QCoDeS ``IPInstrument``: the Triton) are hardened
  the same way, their socket reopened between attempts;
* every gettable parameter's ``get`` retries on a reply its parser cannot read
  (garbled or truncated), and on I/O errors of drivers that use the PyVISA
  resource directly (the sampler's binary block).

Queries are always safe to retry. Writes are retried only if idempotent: a
set-point is, but ``INIT``, ``*TRG`` and ``CLOCk:ADVance`` are not (doing them twice
is not doing them once), so those fail at the first error. Between attempts the
session's buffers are cleared, a dropped session (or any session on a raw socket
through pyvisa-py) is reopened (same resource manager, same address, same
terminations and timeout, guard re-applied), and the
retry waits ``backoff_s * factor**k`` (at most ``max_backoff_s``) on the station
clock. After ``attempts`` tries, :class:`~labstack.safety.errors.InstrumentFault`
names the instrument and the command.
"""

from __future__ import annotations

import contextlib
import re
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pyvisa import constants
from pyvisa.errors import VisaIOError
from qcodes.instrument import IPInstrument, VisaInstrument
from qcodes.parameters import Parameter

from labstack.clock import Clock
from labstack.safety.config import RetrySpec
from labstack.safety.errors import InstrumentFault, SafetyError
from labstack.safety.intercept import Interceptors, Method

T = TypeVar("T")

NON_IDEMPOTENT = re.compile(r"\s*(?:INIT(?:IATE)?\b|\*TRG\b|TRIG(?:GER)?\b|CLOC(?:K)?:ADV)", re.I)
RETRYABLE: tuple[type[BaseException], ...] = (
    VisaIOError, ValueError, struct.error, EOFError, ConnectionError, TimeoutError
)
_RECONNECT_CODES = {
    constants.StatusCode.error_connection_lost,
    constants.StatusCode.error_invalid_object,
    constants.StatusCode.error_closing_failed,
}


@dataclass
class FaultStats:
    """What the hardening layer saw: errors it retried, sessions it reopened, what it gave up on."""

    errors: int = 0
    recovered: int = 0
    reconnects: int = 0
    failures: int = 0
    log: list[str] = field(default_factory=list)


def is_idempotent(command: str) -> bool:
    return not any(NON_IDEMPOTENT.match(part) for part in command.split(";"))


class Hardener:
    """Retry policy and bookkeeping shared by every instrument of one station."""

    def __init__(
        self,
        spec: RetrySpec,
        clock: Clock | None,
        interceptors: Interceptors,
        on_reconnect: Callable[[VisaInstrument], None] | None = None,
    ) -> None:
        self.spec = spec
        self.interceptors = interceptors
        self.clock = clock
        self.stats = FaultStats()
        self.on_reconnect = on_reconnect
        #: the last command each instrument was sent (a failed get names it)
        self.last_sent: dict[str, str] = {}

    def call(self, instrument: VisaInstrument, command: str, fn: Callable[[], T], retry_ok: bool = True) -> T:
        attempt = 0
        while True:
            try:
                result = fn()
            except SafetyError:
                raise
            except RETRYABLE as exc:
                attempt += 1
                self.stats.errors += 1
                self.stats.log.append(f"{instrument.name}: {command!r}: {type(exc).__name__}: {exc}")
                if not retry_ok or attempt >= self.spec.attempts:
                    self.stats.failures += 1
                    # the session is left in step even when we give up: a reply that comes
                    # after its timeout would otherwise be read as the answer to the next
                    # query (a clock reading taken for a UTC time, a voltage for a current)
                    self._resync(instrument, exc)
                    last = self.last_sent.get(instrument.name)
                    if last is not None and last != command:  # a parameter's get: name its SCPI too
                        command = f"{command} (last sent {last!r})"
                    raise InstrumentFault(instrument.name, command, attempt, exc) from exc
                self._recover(instrument, exc)
                self._backoff(instrument, attempt)
                continue
            if attempt:
                self.stats.recovered += 1
            return result

    def _backoff(self, instrument: VisaInstrument, attempt: int) -> None:
        delay = min(self.spec.backoff_s * self.spec.factor ** (attempt - 1), self.spec.max_backoff_s)
        clock = self.clock
        if delay > 0 and clock is not None and clock is not instrument:
            clock.sleep(delay)

    def _resync(self, instrument: VisaInstrument, exc: BaseException) -> None:
        """After a failure we give up on: bring the session back in step if it may be out.

        Only an I/O failure can leave a late answer on the way (a timeout, a dropped
        line); a reply that arrived whole but could not be parsed was the answer to its
        own query, so nothing is pending. Recovery may fail too (the instrument is gone):
        the fault being raised says what happened, so that failure is not raised over it.
        """
        if not isinstance(exc, (VisaIOError, OSError)):  # timeouts, resets, refusals
            return
        try:
            self._recover(instrument, exc)
        except Exception:  # the original fault is what the caller needs to see
            pass

    def _recover(self, instrument: VisaInstrument, exc: BaseException) -> None:
        if isinstance(instrument, IPInstrument):
            self.reconnect_socket(instrument)
            return
        if isinstance(exc, ConnectionError) or _raw_socket(instrument):
            # a raw socket has no device clear (VXI-11 and HiSLIP have one); pyvisa-py's
            # clear drains it until it is quiet, which never ends once the instrument has
            # closed its side. Reopening the connection is the clear: stale bytes go with it.
            self.reconnect(instrument)
            return
        if isinstance(exc, VisaIOError) and exc.error_code in _RECONNECT_CODES:
            self.reconnect(instrument)
            return
        try:
            instrument.visa_handle.clear()
        except Exception:  # a session that cannot even clear is reopened
            self.reconnect(instrument)

    def reconnect_socket(self, instrument: IPInstrument) -> None:
        """Reopen a raw-socket driver's connection (``IPInstrument``): a late or damaged
        answer goes with the old socket, so the next exchange starts in step."""
        old = instrument._socket
        instrument._socket = None
        if old is not None:
            with contextlib.suppress(OSError):
                old.close()
        instrument._connect()
        self.stats.reconnects += 1

    def reconnect(self, instrument: VisaInstrument) -> None:
        """Reopen ``instrument``'s session with the same manager, address and settings."""
        old = instrument.visa_handle
        name = getattr(old, "_resource_name", None) or instrument.address
        settings = {
            "read_termination": old.read_termination,
            "write_termination": old.write_termination,
            "timeout": old.timeout,
        }
        manager = old._resource_manager  # pyvisa: the manager that opened it
        try:
            old.close()
        except Exception:
            pass  # the old session is dead either way
        new = manager.open_resource(name)
        for key, value in settings.items():
            setattr(new, key, value)
        instrument._visa_handle = new  # what QCoDeS's own set_address assigns
        no_delay(instrument)
        self.stats.reconnects += 1
        if self.on_reconnect is not None:
            self.on_reconnect(instrument)

    # ------------------------------------------------------------------ install
    def harden(self, instrument: VisaInstrument) -> None:
        """Wrap the instrument's ``write_raw``/``ask_raw`` and its parameters' ``get``."""
        if self.interceptors.is_wrapped(instrument, "write_raw", "retry"):
            return

        def command(method: Method) -> Method:
            def hardened(cmd: str) -> Any:
                self.last_sent[instrument.name] = cmd
                return self.call(instrument, cmd, lambda: method(cmd), retry_ok=is_idempotent(cmd))

            return hardened

        self.interceptors.wrap(instrument, "write_raw", "retry", command)
        self.interceptors.wrap(instrument, "ask_raw", "retry", command)
        if isinstance(instrument, IPInstrument):
            replies: list[str] = []
            self.interceptors.wrap(instrument, "_recv", "retry", _closed_is_an_error(instrument, replies))
            self.interceptors.wrap(instrument, "write_raw", "confirm", _refusal_is_an_error(instrument, replies))
        for parameter in _parameters(instrument):
            if parameter.gettable:
                self._harden_get(instrument, parameter)

    def _harden_get(self, instrument: VisaInstrument, parameter: Parameter) -> None:
        what = f"get {parameter.full_name}"

        def make(get: Method) -> Method:
            def hardened_get() -> Any:
                return self.call(instrument, what, get)

            return hardened_get

        self.interceptors.wrap(parameter, "get", "retry", make)


def _closed_is_an_error(instrument: IPInstrument, replies: list[str]) -> Callable[[Method], Method]:
    """An ``IPInstrument`` reads an empty string from a socket the instrument closed (and a
    write takes it as its confirmation); make it the connection error it is, so it is retried.
    The last answer is kept in ``replies`` for the write's confirmation check."""

    def make(recv: Method) -> Method:
        def checked_recv() -> str:
            answer = recv()
            if answer == "":
                raise ConnectionResetError(f"{instrument.name}: the instrument closed the connection")
            replies[:] = [answer]
            return answer

        return checked_recv

    return make


def _refusal_is_an_error(instrument: IPInstrument, replies: list[str]) -> Callable[[Method], Method]:
    """A raw-socket instrument that confirms every write (the Triton answers ``...:VALID`` or
    ``...:INVALID``) and refuses one: the driver ignores the answer, so a set-point that was
    never applied would pass in silence. It is an error naming the instrument and command."""

    def make(write: Method) -> Method:
        def confirmed(cmd: str) -> Any:
            replies.clear()
            result = write(cmd)
            answer = replies[0].strip() if replies else ""
            if answer.upper().endswith(":INVALID"):
                raise InstrumentFault(instrument.name, cmd, 1, ValueError(f"the instrument refused it: {answer!r}"))
            return result

        return confirmed

    return make


def _raw_socket(instrument: VisaInstrument) -> bool:
    """Whether ``instrument`` talks through pyvisa-py over a raw TCPIP socket."""
    return _socket_of(getattr(instrument, "visa_handle", None)) is not None


def _socket_of(handle: Any) -> socket.socket | None:
    """The TCP socket under a pyvisa-py TCPIP SOCKET resource (None for any other resource)."""
    module = type(getattr(handle, "visalib", None)).__module__
    name = str(getattr(handle, "resource_name", "") or "")
    if not (module.startswith("pyvisa_py") and name.upper().endswith("::SOCKET")):
        return None
    session = getattr(handle.visalib, "sessions", {}).get(getattr(handle, "session", None))
    interface = getattr(session, "interface", None)
    return interface if isinstance(interface, socket.socket) else None


def no_delay(instrument: Any) -> None:
    """Send each message at once on an instrument's raw socket (``TCP_NODELAY``).

    NI-VISA does by default; pyvisa-py leaves Nagle's algorithm on and cannot set the
    attribute (0.8), so two writes in a row (a ramp's steps) wait for the delayed
    acknowledgement of the first, 40 ms each: a calibration over a served lab ran 10x
    slower. Nothing to do for any other resource.
    """
    sock = _socket_of(getattr(instrument, "visa_handle", None))
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _parameters(instrument: Any) -> list[Parameter]:
    out: list[Parameter] = []
    stack = [instrument]
    while stack:
        node = stack.pop()
        out.extend(p for p in getattr(node, "parameters", {}).values() if isinstance(p, Parameter))
        stack.extend(getattr(node, "submodules", {}).values())
    return out
