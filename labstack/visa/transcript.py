"""Record every SCPI exchange of a session, and play the drivers back against it.

Two PyVISA backends wrap the VISA layer, below every driver:

``"<file.jsonl>|<inner>@labstack_record"``
    Passes every call to the inner library (``""``: PyVISA's default, i.e. real
    hardware; ``"seed=7@labstack"``: the virtual lab) and appends each open, write
    and read to a JSON-lines transcript.
``"<file.jsonl>@labstack_playback"``
    No instrument at all: each write must be the one the transcript holds next for
    that instrument, and each read returns the recorded answer. The first write
    that differs raises :class:`TranscriptMismatch`, naming the instrument, the
    transcript line, the exchange number and the expected and actual command.

:func:`labstack.visa.record_station` and :func:`labstack.visa.playback_station`
load a station file with every instrument wrapped this way;
:func:`labstack.visa.verify_playback` checks at the end that the drivers also sent
everything the transcript expects. Because the seam is PyVISA,
QCoDeS's unmodified drivers (QDAC-II, Lakeshore 372) and ours are what is recorded
and checked: a driver upgrade that changes one command is caught without hardware.

Raw-socket instruments (QCoDeS ``IPInstrument`` drivers, the Oxford Triton) do not
go through PyVISA; both backends serve them on a loopback socket
(:meth:`~labstack.visa.base.LabstackLibrary.raw_socket`) and record or check their
lines the same way, as resource ``RAW::<address>::<port>`` of the station file. The
recorder passes each line on to the inner library's twin, or, on hardware, to the
instrument's own address. A line that differs from the transcript resets the
driver's connection (it fails at once instead of waiting out its timeout) and is
reported by :func:`labstack.visa.verify_playback`.

Transcript format (``labstack-scpi-transcript/1``), one JSON object per line
(gzip-compressed if the file name ends in ``.gz``)::

    {"format": "labstack-scpi-transcript/1", "inner": "seed=7@labstack"}
    {"op": "open", "resource": "TCPIP0::qdac1.virtual::5025::SOCKET"}
    {"op": "write", "resource": "...", "data": "sour1:volt 0.1\\n"}
    {"op": "read", "resource": "...", "data": "0.1\\n", "status": 0}
    {"op": "read", "resource": "...", "b64": "...", "status": 0}    # binary answers
    {"op": "read", "resource": "...", "error": -1073807339}         # e.g. a timeout
    {"op": "instruments", "map": {"TCPIP0::qdac1.virtual::5025::SOCKET": "qdac1"}}
"""

from __future__ import annotations

import base64
import gzip
import json
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from pyvisa import constants, highlevel, rname
from pyvisa.constants import StatusCode
from pyvisa.errors import VisaIOError

from labstack.visa.base import LabstackLibrary, Session
from labstack.visa.raw_socket import DROP, Handler, forwarding_handler, raw_resource

FORMAT = "labstack-scpi-transcript/1"
RECORD_BACKEND = "labstack_record"
PLAYBACK_BACKEND = "labstack_playback"


class TranscriptMismatch(AssertionError):
    """A driver sent something other than what the transcript recorded."""


def _payload(data: bytes) -> dict[str, str]:
    """Text when the bytes are printable ASCII (with CR/LF/TAB), else base64."""
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        return {"b64": base64.b64encode(data).decode("ascii")}
    if all(c.isprintable() or c in "\r\n\t" for c in text):
        return {"data": text}
    return {"b64": base64.b64encode(data).decode("ascii")}


def _bytes(event: dict[str, Any]) -> bytes:
    if "b64" in event:
        return base64.b64decode(event["b64"])
    return str(event.get("data", "")).encode("ascii")


def _show(event: dict[str, Any] | None) -> str:
    if event is None:
        return "nothing (the transcript ends here)"
    if "b64" in event:
        return f"{event['op']} <{len(base64.b64decode(event['b64']))} binary bytes>"
    return f"{event['op']} {str(event.get('data', '')).rstrip()!r}"


def _open(path: Path, mode: str) -> IO[str]:
    """A transcript file; gzip-compressed when its name ends in ``.gz`` (10x smaller)."""
    if path.suffix == ".gz":
        return gzip.open(path, mode + "t", encoding="utf-8")  # type: ignore[return-value]
    return open(path, mode, encoding="utf-8", buffering=1 if mode == "w" else -1)


def _path_of(library_path: str) -> str:
    """The transcript file of a library path: drop a ``#token`` that only makes it unique."""
    return library_path.split("#", 1)[0]


# ------------------------------------------------------------------ recording
class RecordingVisaLibrary(LabstackLibrary):
    """Wraps another VISA library and writes every exchange to a transcript.

    Every call goes to the inner library (sessions and attributes included); only
    opens, writes and reads are also logged.
    """

    DESCRIPTION = "labstack SCPI transcript recorder"

    def _init(self) -> None:
        head, sep, inner = str(self.library_path).partition("|")
        if not sep:
            raise ValueError(
                f"{self.library_path!r}: a recording library path is '<file.jsonl>|<inner visalib>'"
            )
        LabstackLibrary._init(self)  # the raw-socket bookkeeping; sessions are the inner library's
        self.path = Path(_path_of(head))
        self.inner = highlevel.open_visa_library(inner)
        self.names: dict[int, str] = {}
        self._file = _open(self.path, "w")
        self._log({"format": FORMAT, "inner": inner})

    def _log(self, event: dict[str, Any]) -> None:
        with self.raw_lock:  # raw-socket lines are logged from their server's thread
            self._file.write(json.dumps(event) + "\n")

    def raw_handler(self, address: str, port: int) -> Handler:
        """Pass a raw-socket instrument's lines on (the inner twin, or the hardware) and log them."""
        inner = getattr(self.inner, "raw_handler", None)
        handler = inner(address, port) if inner is not None else forwarding_handler(address, port)
        resource = raw_resource(address, port)
        self._log({"op": "open", "resource": resource})

        def record(text: str) -> bytes | None | object:
            self._log({"op": "write", "resource": resource, **_payload((text + "\r\n").encode())})
            answer = handler(text)
            if answer is DROP:
                self._log({"op": "read", "resource": resource, "error": int(StatusCode.error_connection_lost)})
            elif not isinstance(answer, bytes):
                self._log({"op": "read", "resource": resource, "error": int(StatusCode.error_timeout)})
            else:
                self._log({"op": "read", "resource": resource, **_payload(answer), "status": 0})
            return answer

        return record

    def annotate(self, instruments: dict[str, str]) -> None:
        """Record which instrument each resource is (for readable playback errors)."""
        self._log({"op": "instruments", "map": instruments})

    def close_transcript(self) -> None:
        if not self._file.closed:
            self._file.close()

    # sessions
    def open_default_resource_manager(self) -> tuple[Any, StatusCode]:
        return self.inner.open_default_resource_manager()

    def list_resources(self, session: Any, query: str = "?*::INSTR") -> tuple[str, ...]:
        return self.inner.list_resources(session, query)

    def open(
        self,
        session: Any,
        resource_name: str,
        access_mode: constants.AccessModes = constants.AccessModes.no_lock,
        open_timeout: int = constants.VI_TMO_IMMEDIATE,
    ) -> tuple[Any, StatusCode]:
        handle, status = self.inner.open(session, resource_name, access_mode, open_timeout)
        self.names[handle] = resource_name
        self._log({"op": "open", "resource": resource_name})
        return handle, status

    def close(self, session: Any) -> StatusCode:
        self.names.pop(session, None)
        return self.inner.close(session)

    # I/O
    def write(self, session: Any, data: bytes) -> tuple[int, StatusCode]:
        event = {"op": "write", "resource": self.names.get(session, "?"), **_payload(bytes(data))}
        self._log(event)
        return self.inner.write(session, data)

    def read(self, session: Any, count: int) -> tuple[bytes, StatusCode]:
        resource = self.names.get(session, "?")
        try:
            data, status = self.inner.read(session, count)
        except VisaIOError as exc:
            self._log({"op": "read", "resource": resource, "error": int(exc.error_code)})
            raise
        self._log({"op": "read", "resource": resource, **_payload(bytes(data)), "status": int(status)})
        return data, status

    def clear(self, session: Any) -> StatusCode:
        return self.inner.clear(session)

    def flush(self, session: Any, mask: constants.BufferOperation) -> StatusCode:
        return self.inner.flush(session, mask)

    def read_stb(self, session: Any) -> tuple[int, StatusCode]:
        return self.inner.read_stb(session)

    def assert_trigger(self, session: Any, protocol: constants.TriggerProtocol) -> StatusCode:
        return self.inner.assert_trigger(session, protocol)

    def lock(self, session: Any, lock_type: Any, timeout: int, requested_key: Any = None) -> Any:
        return self.inner.lock(session, lock_type, timeout, requested_key)

    def unlock(self, session: Any) -> StatusCode:
        return self.inner.unlock(session)

    def disable_event(self, session: Any, event_type: Any, mechanism: Any) -> StatusCode:
        return self.inner.disable_event(session, event_type, mechanism)

    def discard_events(self, session: Any, event_type: Any, mechanism: Any) -> StatusCode:
        return self.inner.discard_events(session, event_type, mechanism)

    def get_attribute(self, session: Any, attribute: Any) -> tuple[Any, StatusCode]:
        return self.inner.get_attribute(session, attribute)

    def set_attribute(self, session: Any, attribute: Any, attribute_state: Any) -> StatusCode:
        return self.inner.set_attribute(session, attribute, attribute_state)


# ------------------------------------------------------------------- playback
@dataclass
class _Resource:
    name: str
    events: deque[tuple[int, dict[str, Any]]] = field(default_factory=deque)
    done: int = 0  # exchanges (writes and reads) consumed


class _Session(Session):
    def __init__(self, resource: _Resource) -> None:
        super().__init__(resource.name)
        self.resource = resource


class PlaybackVisaLibrary(LabstackLibrary):
    """Answers from a transcript and checks that every write is the recorded one."""

    DESCRIPTION = "labstack SCPI transcript playback"

    def _init(self) -> None:
        super()._init()
        self.path = Path(_path_of(str(self.library_path)))
        self.instruments: dict[str, str] = {}
        self.resources: dict[str, _Resource] = {}
        self.mismatches: list[str] = []
        with _open(self.path, "r") as f:
            for lineno, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                event = json.loads(line)
                if "format" in event:
                    if event["format"] != FORMAT:
                        raise ValueError(f"{self.path}:{lineno}: not a {FORMAT} transcript")
                    continue
                if event["op"] == "instruments":
                    self.instruments.update(event["map"])
                    continue
                res = self.resources.setdefault(event["resource"], _Resource(event["resource"]))
                if event["op"] in ("write", "read"):
                    res.events.append((lineno, event))

    def instrument(self, resource: str) -> str:
        return self.instruments.get(resource, resource)

    def raw_handler(self, address: str, port: int) -> Handler:
        """Answer a raw-socket instrument's lines from the transcript, checking each one."""
        name = raw_resource(address, port)
        if name not in self.resources:
            message = f"SCPI playback: {name} was never opened in transcript {self.path.name} (it holds {sorted(self.resources)})"
            self.mismatches.append(message)
            raise TranscriptMismatch(message)
        res = self.resources[name]

        def play(text: str) -> bytes | None | object:
            data = (text + "\r\n").encode()
            lineno, expected = res.events[0] if res.events else (None, None)
            if expected is None or expected["op"] != "write" or _bytes(expected) != data:
                try:
                    self._fail(res, lineno, expected, _show({"op": "write", **_payload(data)}))
                except TranscriptMismatch:
                    return DROP  # the driver fails at once; verify() reports the mismatch
            res.events.popleft()
            res.done += 1
            lineno, answer = res.events[0] if res.events else (None, None)
            if answer is None or answer["op"] != "read":
                return None
            res.events.popleft()
            res.done += 1
            if "error" in answer:
                return DROP if answer["error"] == int(StatusCode.error_connection_lost) else None
            return _bytes(answer)

        return play

    def _fail(self, resource: _Resource, lineno: int | None, expected: Any, got: str) -> None:
        where = f"transcript {self.path.name} line {lineno}" if lineno else f"end of {self.path.name}"
        message = (
            f"SCPI playback mismatch on instrument {self.instrument(resource.name)!r} "
            f"({resource.name}), {where}, exchange {resource.done + 1} of that instrument: "
            f"expected {_show(expected)}, got {got}"
        )
        self.mismatches.append(message)
        raise TranscriptMismatch(message)

    def list_resources(self, session: Any, query: str = "?*::INSTR") -> tuple[str, ...]:
        return tuple(self.resources)

    def open(
        self,
        session: Any,
        resource_name: str,
        access_mode: constants.AccessModes = constants.AccessModes.no_lock,
        open_timeout: int = constants.VI_TMO_IMMEDIATE,
    ) -> tuple[Any, StatusCode]:
        if resource_name not in self.resources:
            message = (
                f"SCPI playback: {resource_name} was never opened in transcript {self.path.name} "
                f"(it holds {sorted(self.resources)})"
            )
            self.mismatches.append(message)
            raise TranscriptMismatch(message)
        rname.parse_resource_name(resource_name)
        return self._new_session(_Session(self.resources[resource_name])), StatusCode.success

    def close(self, session: Any) -> StatusCode:
        self.sessions.pop(session, None)
        return StatusCode.success

    def write(self, session: Any, data: bytes) -> tuple[int, StatusCode]:
        res = self._session(session).resource
        got = {"op": "write", **_payload(bytes(data))}
        lineno, expected = res.events[0] if res.events else (None, None)
        if expected is None or expected["op"] != "write" or _bytes(expected) != bytes(data):
            self._fail(res, lineno, expected, _show(got))
        res.events.popleft()
        res.done += 1
        return len(data), StatusCode.success

    def read(self, session: Any, count: int) -> tuple[bytes, StatusCode]:
        res = self._session(session).resource
        lineno, expected = res.events[0] if res.events else (None, None)
        if expected is None or expected["op"] != "read":
            self._fail(res, lineno, expected, "read")
        res.events.popleft()
        res.done += 1
        if "error" in expected:  # type: ignore[operator]
            raise VisaIOError(expected["error"])  # type: ignore[index]
        return _bytes(expected), StatusCode(expected.get("status", 0))  # type: ignore[union-attr]

    def verify(self) -> None:
        """Raise if a mismatch happened or the drivers left recorded exchanges unsent."""
        problems = list(self.mismatches)
        for res in self.resources.values():
            if res.events:
                lineno, event = res.events[0]
                problems.append(
                    f"instrument {self.instrument(res.name)!r} ({res.name}): {len(res.events)} "
                    f"recorded exchange(s) never happened, from transcript line {lineno}: "
                    f"{_show(event)}"
                )
        if problems:
            raise TranscriptMismatch("\n".join(problems))
