"""The virtual lab's instruments on loopback TCP sockets, as LAN instruments serve SCPI.

Each instrument listens on a port of its own and speaks SCPI over a raw socket,
so a host reaches it as ``TCPIP0::127.0.0.1::<port>::SOCKET`` through any VISA
library (pyvisa-py: ``visalib="@py"``), with the unmodified drivers. Messages end
with a newline (a trailing ``\\r`` is dropped, as instruments do); answers are the
instrument's bytes as they are, binary blocks included.

One thread runs every instrument (a ``selectors`` loop), because they share one
physical lab: every message is executed whole, one at a time, against the lab, so
no exchange is ever interleaved with another, whichever client sent it, and the
answer goes back on the connection that asked. The loop is fair and never waits
on a client:

* round robin: each pass executes at most one message per connection, so a client
  that floods waits behind everyone else's next message, not the other way round;
  the messages a client left unexecuted when its connection broke (TCP delivered
  them: the instrument executes them, answers discarded) take one turn per pass
  too, so a client that floods and vanishes holds no one up either;
* a connection with more than :data:`MAX_PENDING_IN` bytes of messages not yet
  executed is no longer read (TCP pushes back on that client alone), and one with
  more than :data:`MAX_PENDING_OUT` bytes of answers it has not read gets no more
  messages executed until it reads them;
* a client that connects and says nothing costs nothing;
* a message that arrives with nothing queued ahead of it (the usual exchange: a
  host waiting for its answer) is executed as soon as it is read and answered with
  one ``send``; the round robin and the idle tick cost nothing while there is
  nothing for them to do, so a socket exchange costs little more than the
  instrument's own work and the two context switches of a loopback round trip;
* nothing a client sends can stop the loop (an unexpected error in a handler
  becomes ``-300``).

Errors, malformed input included, are queued in the instrument's error queue as
IEEE 488.2 / SCPI-99 instruments queue them (the status byte's error-queue bit set,
``*STB?``; read with ``SYST:ERR?``), and a *query* that fails is also answered at
once with its error, as its reply line, so a host reads why instead of waiting out
its timeout:

* a well-formed message the instrument does not know or cannot execute: ``-113``
  Undefined header, ``-222`` Data out of range, ... (the instrument's own engine);
* binary junk, a NUL or any control character, a byte outside printable ASCII (so
  any non-UTF-8 text): ``-101`` Invalid character (the whole message is refused, as
  a parser rejects it before its header is read);
* a message longer than :data:`MAX_LINE`: ``-223`` Too much data, refused whole.

A message is a query when one of its commands' headers ends in ``?`` (for a refused
message: read as ASCII with anything else replaced; for an over-long one: its first
command). A failed query's reply is that error's line, e.g.
``-113,"Undefined header"`` or ``-101,"Invalid character; ..."``, ended as the
instrument ends its answers; the error stays queued for ``SYST:ERR?`` too. A raw
socket's only framing is the newline and a host takes whatever line comes next as
the answer to its next query, so exactly one line answers each query message and
nothing ever answers a command message (488.2's rule that a device speaks only when
asked): a failed command is only queued, and every exchange after it stays in step.
The drivers read such a reply as one they cannot parse, and labstack's retry layer
asks again and then names the instrument and command. (The in-process backend,
:mod:`labstack.visa.virtual_lab`, leaves a failed query unanswered, as hardware does;
no driver query of a healthy exchange fails, so the two give the same data.) A
query silenced by an injected ``timeout`` fault stays silent.

Fault injection (:mod:`labstack.sim.faults`, ``faults=`` in the lab description or
``server.lab.faults`` on demand) acts per message as in-process: a timeout sends
no answer, a garbled or truncated answer is sent damaged, a dropped connection is
reset (the client sees ``ECONNRESET``), and a stuck instrument holds its messages
(executed in order once it recovers, in lab time).

Binding is to 127.0.0.1 unless ``allow_remote`` is given: the sockets have no
authentication, as LAN instruments have none.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import selectors
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from labstack.service.timebase import MESSAGE_STEP_WALL_S, LabTime
from labstack.sim.instruments import ScpiDevice, VirtualInstruments
from labstack.sim.instruments.scpi import ScpiError
from labstack.sim.lab import VirtualLab

log = logging.getLogger("labstack.service")

#: longest message accepted (no SCPI message of these instruments comes near it)
MAX_LINE = 1 << 20
#: unexecuted input held per connection before it is no longer read
MAX_PENDING_IN = 4 << 20
#: unread answers held per connection before its messages wait
MAX_PENDING_OUT = 8 << 20
#: connections accepted per instrument; more are refused at once
MAX_CONNECTIONS = 64
READ_CHUNK = 1 << 16
NEWLINE = ord("\n")
#: control characters never valid in a program message (tab is white space; CR ends a line)
_CONTROL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
#: a queued line starting with this byte stands for an over-long message (its start follows);
#: no real line can hold it, and the check that refuses control characters catches it
_OVERLONG = b"\n"
#: bytes of an over-long message kept to tell whether it was a query
_OVERLONG_HEAD = 256
#: wall seconds between idle ticks (clock catch-up, ``on_tick``)
TICK_S = 0.05
DEFAULT_HOST = "127.0.0.1"


#: writes at the head of one connection executed before any query of a round (see _work)
WRITES_PER_ROUND = 64


class ServerConfigError(ValueError):
    """A server that cannot be set up as asked (address, port); the message says what to do."""


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or address) is this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def remote_warning(host: str) -> str:
    """What to tell a person who binds the lab's sockets to a non-loopback address."""
    return (
        f"WARNING: serving the lab's instruments on {host}: anyone who can reach this machine "
        "can drive its DACs and heater (raw SCPI sockets have no authentication)"
    )


def visa_address(host: str, port: int) -> str:
    """``TCPIP0::<host>::<port>::SOCKET`` (a wildcard bind is reached on loopback)."""
    reach = DEFAULT_HOST if host in ("0.0.0.0", "", "::") else host
    return f"TCPIP0::{reach}::{port}::SOCKET"


@dataclass(eq=False)  # by identity: a key of the server's queues
class _Endpoint:
    """One instrument's listening socket and the messages its vanished clients left."""

    name: str
    device: ScpiDevice
    sock: socket.socket
    port: int
    backlog: deque[bytes] = field(default_factory=deque)  # executed, answers discarded
    connections: int = 0


@dataclass(eq=False)  # by identity: a key of the server's queues
class _Connection:
    endpoint: _Endpoint
    sock: socket.socket
    peer: str
    partial: bytearray = field(default_factory=bytearray)
    lines: deque[bytes] = field(default_factory=deque)
    pending_in: int = 0
    outbox: bytearray = field(default_factory=bytearray)
    discarding: bool = False  # inside a message longer than MAX_LINE
    eof: bool = False  # the client closed its side: answer what it sent, then close
    closed: bool = False
    events: int = 0  # selector interest currently registered


@dataclass
class ServerStats:
    """What the server has seen (``service.json`` shows it)."""

    connections: int = 0
    refused: int = 0
    messages: int = 0
    errors: int = 0
    bytes_in: int = 0
    bytes_out: int = 0


class LabServer:
    """Serve a :class:`VirtualLab`'s instruments, one loopback TCP port each.

    ``ports`` asks for a port per instrument (missing or 0: any free port); ``speed``
    lets lab time run on while idle (:class:`~labstack.service.timebase.LabTime`);
    ``on_tick(server)`` is called about every :data:`TICK_S` from the loop. Use
    :meth:`run_in_thread` (tests, notebooks) or :meth:`serve_forever` (the
    ``labstack serve`` process). Code that touches ``server.lab`` from another thread
    holds ``server.lock`` while it does.
    """

    def __init__(
        self,
        lab: VirtualLab,
        *,
        host: str = DEFAULT_HOST,
        ports: Mapping[str, int] | None = None,
        speed: float = 0.0,
        allow_remote: bool = False,
        on_tick: Callable[[LabServer], None] | None = None,
        instruments: Sequence[str] | None = None,
    ) -> None:
        if not is_loopback(host) and not allow_remote:
            raise ServerConfigError(
                f"refusing to serve the lab on {host!r}: only loopback (127.0.0.1) by default; "
                "pass allow_remote (labstack serve --allow-remote) to bind elsewhere"
            )
        self.lab = lab
        self.host = host
        self.time = LabTime(lab, speed)
        self.instruments = VirtualInstruments(lab)
        self.on_tick = on_tick
        #: which twins to serve (default: the default station's); the second lab's, the
        #: Triton included, by name (its driver reaches it on the raw socket directly)
        self.served = list(instruments) if instruments is not None else self.instruments.names()
        self.lock = threading.RLock()
        self.stats = ServerStats()
        self._requested = dict(ports or {})
        self._endpoints: dict[str, _Endpoint] = {}
        self._connections: list[_Connection] = []
        #: connections with messages waiting (insertion-ordered: round robin), endpoints with a backlog
        self._queued: dict[_Connection, None] = {}
        self._backlogged: dict[_Endpoint, None] = {}
        self._ended = False  # a connection closed or reached its end: reap it
        self._selector: selectors.BaseSelector | None = None
        self._batch = False  # several sockets were ready in this wakeup: no message runs on read
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = False

    @classmethod
    def from_description(cls, description: str, **kwargs: object) -> LabServer:
        """A server over a fresh lab (``"seed=7,cells=16"``, see :meth:`VirtualLab.from_description`)."""
        start_utc = kwargs.pop("start_utc", None)
        lab = VirtualLab.from_description(description, start_utc=start_utc)  # type: ignore[arg-type]
        return cls(lab, **kwargs)  # type: ignore[arg-type]

    # ------------------------------------------------------------------ setup
    @property
    def speed(self) -> float:
        return self.time.speed

    @property
    def ports(self) -> dict[str, int]:
        return {name: ep.port for name, ep in self._endpoints.items()}

    @property
    def addresses(self) -> dict[str, str]:
        """Each instrument's VISA address, e.g. ``TCPIP0::127.0.0.1::50123::SOCKET``."""
        return {name: visa_address(self.host, ep.port) for name, ep in self._endpoints.items()}

    def start(self) -> LabServer:
        """Bind every instrument's port (nothing is served until the loop runs)."""
        if self._started:
            return self
        selector = selectors.DefaultSelector()
        try:
            for name in self.served:
                port = int(self._requested.get(name, 0))
                sock = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET, socket.SOCK_STREAM)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    sock.bind((self.host, port))
                except OSError as exc:
                    sock.close()
                    raise ServerConfigError(
                        f"{name}: cannot listen on {self.host}:{port} ({exc.strerror or exc}); "
                        "another service may hold it: stop it, or serve on other ports"
                    ) from None
                sock.listen(16)
                sock.setblocking(False)
                endpoint = _Endpoint(name, self.instruments.get(name), sock, sock.getsockname()[1])
                self._endpoints[name] = endpoint
                selector.register(sock, selectors.EVENT_READ, endpoint)
        except BaseException:
            for endpoint in self._endpoints.values():
                endpoint.sock.close()
            self._endpoints.clear()
            selector.close()
            raise
        self._selector = selector
        self._started = True
        return self

    # ------------------------------------------------------------------ running
    def serve_forever(self, stop: threading.Event | None = None) -> None:
        """Run the loop in this thread until ``stop`` (or :meth:`stop`) is set.

        A message is executed as soon as it is read and its answer written with one
        ``send``, when nothing is queued ahead of it; everything else (round robin over
        queued messages, the idle tick, reaping) costs nothing while there is none of it.
        """
        self.start()
        if stop is not None:
            self._stop = stop
        monotonic, stopped = time.monotonic, self._stop.is_set
        next_tick = monotonic()
        try:
            while not stopped():
                if (self._queued or self._backlogged) and self._has_work():
                    timeout = 0.0
                else:
                    timeout = max(0.0, next_tick - monotonic())
                self._serve_once(timeout)
                if monotonic() >= next_tick:
                    self._tick()
                    next_tick = monotonic() + TICK_S
                if self._ended:
                    self._reap()
        finally:
            self._shutdown()

    def _serve_once(self, timeout: float) -> int:
        """One wakeup: wait up to ``timeout`` s, read every ready socket, run one round.

        Returns how many sockets were ready. Several ready at once are all read before
        anything executes, so that writes go before queries (see :meth:`_work`).
        """
        selector = self._selector
        assert selector is not None
        events = selector.select(timeout)
        self._batch = len(events) > 1
        for key, mask in events:
            target = key.data
            if type(target) is _Connection:
                self._on_ready(target, mask)
            else:
                self._accept(target)
        self._batch = False
        if self._queued or self._backlogged:
            self._work()
        return len(events)

    def run_in_thread(self) -> LabServer:
        """Start the loop in a daemon thread; :meth:`stop` ends it."""
        self.start()
        self._thread = threading.Thread(target=self.serve_forever, name="labstack-lab-server", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop serving: every connection is reset (clients fail at once), ports are freed."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
            self._thread = None

    def __enter__(self) -> LabServer:
        return self.run_in_thread()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ connections
    def _accept(self, endpoint: _Endpoint) -> None:
        try:
            sock, peer = endpoint.sock.accept()
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:  # e.g. out of file descriptors: refuse this one, keep serving
            log.warning("%s: accept failed: %s", endpoint.name, exc)
            return
        if endpoint.connections >= MAX_CONNECTIONS:
            self.stats.refused += 1
            _reset(sock)
            return
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = _Connection(endpoint, sock, f"{peer[0]}:{peer[1]}")
        endpoint.connections += 1
        self.stats.connections += 1
        self._connections.append(conn)
        self._interest(conn)

    def _interest(self, conn: _Connection) -> None:
        """Read unless too much input waits (or the client is done); write while answers wait."""
        if conn.closed:
            return
        events = 0
        if not conn.eof and conn.pending_in < MAX_PENDING_IN:
            events |= selectors.EVENT_READ
        if conn.outbox:
            events |= selectors.EVENT_WRITE
        if events == conn.events:
            return
        assert self._selector is not None
        if conn.events and events:
            self._selector.modify(conn.sock, events, conn)
        elif events:
            self._selector.register(conn.sock, events, conn)
        else:
            self._selector.unregister(conn.sock)
        conn.events = events

    def _on_ready(self, conn: _Connection, mask: int) -> None:
        try:
            if mask & selectors.EVENT_READ:
                self._receive(conn)
            if mask & selectors.EVENT_WRITE and not conn.closed:
                self._flush(conn)
        except OSError:  # reset by the peer, or any socket error: this client is gone
            self._close(conn, abrupt=True)
        if not conn.closed:
            self._interest(conn)

    def _receive(self, conn: _Connection) -> None:
        try:
            data = conn.sock.recv(READ_CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        if not data:
            conn.eof = True  # answer what was sent, then close (see _reap)
            self._ended = True
            return
        self.stats.bytes_in += len(data)
        if (
            not self._batch and not conn.lines and not conn.partial and not conn.discarding
            and data.count(b"\n") == 1 and data[-1] == NEWLINE and len(data) <= MAX_LINE
            and self._may_execute(conn)
        ):  # one whole message, nothing ahead of it: this pass's message of this connection, now
            self._execute(conn.endpoint, data[:-1], conn)
            return
        parts = (bytes(conn.partial) + data).split(b"\n") if conn.partial else data.split(b"\n")
        tail = parts.pop()
        conn.partial = bytearray(tail) if tail or conn.partial else conn.partial
        for part in parts:
            if conn.discarding:  # the tail of an over-long message
                conn.discarding = False
                continue
            if len(part) > MAX_LINE:
                part = _OVERLONG + part[:_OVERLONG_HEAD]
            conn.lines.append(part)
            conn.pending_in += len(part) + 1
        if len(conn.partial) > MAX_LINE:  # refused now, in its place; the rest is dropped as it comes
            conn.lines.append(_OVERLONG + bytes(conn.partial[:_OVERLONG_HEAD]))
            conn.pending_in += _OVERLONG_HEAD + 2
            conn.partial.clear()
            conn.discarding = True
        if conn.lines:
            self._queued[conn] = None

    def _may_execute(self, conn: _Connection) -> bool:
        """Whether ``conn``'s next message may run now (its answers read, its instrument not stuck).

        A vanished client's backlog does not hold it: that takes its turn in the round robin.
        """
        endpoint = conn.endpoint
        return len(conn.outbox) < MAX_PENDING_OUT and not self._stuck(endpoint)

    def _flush(self, conn: _Connection) -> None:
        while conn.outbox:
            try:
                sent = conn.sock.send(conn.outbox)
            except (BlockingIOError, InterruptedError):
                return
            if sent <= 0:
                return
            self.stats.bytes_out += sent
            del conn.outbox[:sent]

    def _close(self, conn: _Connection, *, abrupt: bool = False, reset: bool = False) -> None:
        """Forget ``conn``; messages it sent that were not executed yet still are (if not reset)."""
        if conn.closed:
            return
        conn.closed = True
        self._ended = True
        self._queued.pop(conn, None)
        if not reset and conn.lines:
            conn.endpoint.backlog.extend(conn.lines)  # TCP delivered them: the instrument executes them
            self._backlogged[conn.endpoint] = None
        conn.lines.clear()
        conn.pending_in = 0
        if conn.events and self._selector is not None:
            try:
                self._selector.unregister(conn.sock)
            except (KeyError, ValueError):
                pass
        conn.events = 0
        if reset or abrupt:
            _reset(conn.sock)
        else:
            conn.sock.close()
        conn.endpoint.connections -= 1

    def _reap(self) -> None:
        """Close connections whose client is done and answered; forget closed ones."""
        keep = []
        waiting = False  # a client that is done still has answers coming
        for conn in self._connections:
            if conn.eof and not conn.closed:
                if not conn.lines and not conn.outbox:
                    self._close(conn)
                else:
                    waiting = True
            if not conn.closed:
                keep.append(conn)
        self._connections = keep
        self._ended = waiting

    # ------------------------------------------------------------------ messages
    def _has_work(self) -> bool:
        for endpoint in self._backlogged:
            if not self._stuck(endpoint):
                return True
        return any(not c.closed and len(c.outbox) < MAX_PENDING_OUT and not self._stuck(c.endpoint)
                   for c in self._queued)

    def _stuck(self, endpoint: _Endpoint) -> bool:
        faults = self.lab.faults
        return bool(faults.stuck_until) and faults.is_stuck(endpoint.name)

    def _work(self) -> None:
        """One round: at most one message per connection (and per instrument's backlog)."""
        for endpoint in list(self._backlogged):
            if not self._stuck(endpoint):
                self._execute(endpoint, endpoint.backlog.popleft(), None)
            if not endpoint.backlog:
                self._backlogged.pop(endpoint, None)
        # writes before queries: a client that wrote to one instrument and then asked another
        # sent the write first, but both can be read in one wakeup, and executed in queue order
        # the query could see the lab before the write (a wait before the bias it waits for).
        # So the writes at the head of every connection run first (a few: a client writes and
        # then asks; at most WRITES_PER_ROUND, so a flood of writes holds no one up).
        for conn in list(self._queued):
            done = 0
            while (
                done < WRITES_PER_ROUND and conn.lines and not conn.closed
                and not _query_first_line(conn) and self._may_execute(conn)
            ):
                line = conn.lines.popleft()
                conn.pending_in -= len(line) + 1
                self._execute(conn.endpoint, line, conn)
                done += 1
            if not conn.lines:
                self._queued.pop(conn, None)
        for conn in list(self._queued):
            if conn.closed or not conn.lines:
                self._queued.pop(conn, None)
                continue
            if not self._may_execute(conn):
                continue  # older messages to this instrument go first; a stuck one holds them
            line = conn.lines.popleft()
            conn.pending_in -= len(line) + 1
            if not conn.lines:
                self._queued.pop(conn, None)
            self._execute(conn.endpoint, line, conn)
            if not conn.closed:
                self._interest(conn)

    def _execute(self, endpoint: _Endpoint, line: bytes, conn: _Connection | None) -> None:
        """Execute one message against the lab, as the in-process backend does; answer at once."""
        if line[-1:] == b"\r":
            line = line[:-1]
        if not line.isascii() or _CONTROL.search(line):  # binary junk, a NUL, an over-long message
            self._refuse(endpoint, line, conn)
            return
        text = line.decode("ascii")
        command = text.strip()
        if not command:
            return
        self.stats.messages += 1
        clock = self.time
        with self.lock:
            if clock.speed > 0:
                clock.catch_up(MESSAGE_STEP_WALL_S)
            try:
                answer = self._answer(endpoint, text, command, conn)
            except Exception as exc:  # a bug in a handler must not take the lab down
                self.stats.errors += 1
                log.exception("%s: %r raised", endpoint.name, command[:80])
                endpoint.device.errors.append(ScpiError(-300, f"Device-specific error; {type(exc).__name__}"))
                answer = None
            finally:
                if clock.speed > 0:
                    clock.exchange_done()
        if answer and conn is not None and not conn.closed:
            self._send(conn, answer)

    def _refuse(self, endpoint: _Endpoint, line: bytes, conn: _Connection | None) -> None:
        """Queue the error of a message no parser would read; answer it at once if it was a query."""
        if line[:1] == _OVERLONG:
            error = ScpiError(-223, f"Too much data; a message longer than {MAX_LINE} bytes was refused")
            head = line[1:].decode("ascii", "replace").split(";", 1)[0]
            query = _is_query(head)
        else:
            error = ScpiError(-101, "Invalid character; a message held a byte that is not printable ASCII")
            query = _is_query(line.decode("ascii", "replace"))
        self.stats.messages += 1
        self.stats.errors += 1
        with self.lock:
            endpoint.device.errors.append(error)
        if query and conn is not None and not conn.closed:
            self._send(conn, _error_line(error, endpoint.device))

    def _send(self, conn: _Connection, answer: bytes) -> None:
        """Write ``answer`` with one ``send`` if nothing is waiting before it; keep what does not fit."""
        if not conn.outbox:
            try:
                sent = conn.sock.send(answer)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:  # reset by the peer: this client is gone
                self._close(conn, abrupt=True)
                return
            self.stats.bytes_out += sent
            if sent == len(answer):
                return
            answer = answer[sent:]
        conn.outbox += answer
        self._interest(conn)

    def _answer(self, endpoint: _Endpoint, text: str, command: str, conn: _Connection | None) -> bytes | None:
        faults = self.lab.faults
        name = endpoint.name
        is_query = _is_query(text)
        fault = faults.decide(name, text[:200], is_query)
        if fault == "dropped":
            if conn is not None:
                self._close(conn, reset=True)
            return None
        if fault == "stuck":  # it stopped executing: this message waits for it (in lab time)
            if conn is not None:
                conn.lines.appendleft(text.encode())
                conn.pending_in += len(text) + 1
                self._queued[conn] = None
            else:
                endpoint.backlog.appendleft(text.encode())
                self._backlogged[endpoint] = None
            return None
        device = endpoint.device
        errors = device.errors
        newest = errors[-1] if errors else None
        answer = device.handle(command)
        if answer is None:
            if is_query and fault is None and errors and errors[-1] is not newest:
                return _error_line(errors[-1], device)  # a failed query: its error is its reply
            return None
        if fault == "timeout":
            return None
        if fault in ("garbled", "truncated"):
            answer = faults.corrupt(answer, fault, endpoint.device.read_termination.encode())
        return answer

    # ------------------------------------------------------------------ idle time
    def _tick(self) -> None:
        if self.time.speed > 0:
            with self.lock:
                self.time.catch_up()
        if self.on_tick is not None:
            try:
                self.on_tick(self)
            except Exception:  # bookkeeping must never stop the lab
                log.exception("on_tick failed")

    def _shutdown(self) -> None:
        for conn in self._connections:
            self._close(conn, reset=True)
        self._connections.clear()
        self._queued.clear()
        self._backlogged.clear()
        for endpoint in self._endpoints.values():
            endpoint.sock.close()
        if self._selector is not None:
            self._selector.close()
            self._selector = None
        self._started = False

    # ------------------------------------------------------------------ status
    def status(self) -> dict[str, object]:
        """What a status page shows of the service: lab clock, speed, traffic."""
        with self.lock:
            now, utc = self.lab.clock.now(), self.lab.clock.utcnow().isoformat()
        return {
            "lab_time_s": now,
            "lab_utc": utc,
            "speed": self.speed,
            "lag_s": self.time.lag_s,
            "idle_total_s": self.time.idle_total_s,
            "clients": len(self._connections),
            "connections": self.stats.connections,
            "refused": self.stats.refused,
            "messages": self.stats.messages,
            "errors": self.stats.errors,
            "bytes_in": self.stats.bytes_in,
            "bytes_out": self.stats.bytes_out,
        }


def _query_first_line(conn: _Connection) -> bool:
    """Whether ``conn``'s next message asks for an answer (undecodable: treated as one)."""
    if not conn.lines:
        return False
    try:
        return _is_query(conn.lines[0].decode("ascii"))
    except UnicodeDecodeError:
        return True


def _is_query(text: str) -> bool:
    """Whether a message asks for an answer: one of its commands' headers ends in ``?``."""
    if ";" in text:
        return any(c.strip().split(" ", 1)[0].endswith("?") for c in text.split(";"))
    return text.strip().split(" ", 1)[0].endswith("?")


def _error_line(error: ScpiError, device: ScpiDevice) -> bytes:
    """The reply line of a failed query: the error as ``SYST:ERR?`` shows it, ended as answers are.

    One line, whatever the error's text holds: a second line would answer the next query.
    """
    text = str(error).replace("\r", " ").replace("\n", " ")
    return text.encode("ascii", "replace") + device.read_termination.encode()


def _reset(sock: socket.socket) -> None:
    """Close with a TCP reset, so the other side fails at once instead of waiting out a timeout."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()
