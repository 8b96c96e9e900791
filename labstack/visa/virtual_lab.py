"""PyVISA backend ``@labstack``: the virtual lab's instruments as VISA resources.

``pyvisa.ResourceManager("seed=7,cells=16@labstack")`` opens a library whose
resources are the virtual lab's instruments, speaking SCPI, so the same
unmodified drivers that talk to hardware talk to the simulator. PyVISA keeps one
library object per backend and path, so every instrument opened on the same
``…@labstack`` string shares one virtual lab (as pyvisa-sim does with
``file.yaml@sim``). The part before ``@`` describes the lab; see
:meth:`labstack.sim.lab.VirtualLab.from_description`. PyVISA finds this
backend through the top-level shim module ``pyvisa_labstack``.

Resources are TCPIP sockets whose host's first label names the instrument:
``TCPIP0::qdac1.virtual::5025::SOCKET``, ``TCPIP0::ls372.virtual::7777::SOCKET``,
``TCPIP0::sampler.virtual::5025::SOCKET``, ``TCPIP0::clock.virtual::5025::SOCKET``.

Reads follow the message-based VISA model: a write queues the instrument's
answer; a read returns it (in ``count``-sized pieces, ending with
``success_termination_character_read`` or ``success``); a read with nothing
queued is a timeout, exactly what a real instrument gives a query it did not
answer.
"""

from __future__ import annotations

from typing import Any

from pyvisa import constants, rname
from pyvisa.constants import StatusCode
from pyvisa.errors import VisaIOError
from pyvisa.typing import VISARMSession, VISASession

from labstack.sim.instruments import RAW_SOCKET, ScpiDevice, VirtualInstruments
from labstack.sim.lab import VirtualLab
from labstack.visa.base import LabstackLibrary, Session
from labstack.visa.raw_socket import DROP, Handler


class _Session(Session):
    def __init__(self, name: str, parsed: rname.ResourceName, device: ScpiDevice) -> None:
        super().__init__(name, parsed)
        self.device = device
        self.outbox = bytearray()
        self.instrument = str(getattr(parsed, "host_address", "")).split(".")[0].lower()
        self.dead = False  # a dropped connection: every call fails until the resource is reopened
        self.truncated = False  # the queued answer lost its end: the next read times out


def resource_name(instrument: str) -> str:
    """The VISA address of a virtual instrument (``TCPIP0::qdac1.virtual::5025::SOCKET``)."""
    return f"TCPIP0::{instrument}.virtual::{7777 if instrument == 'ls372' else 5025}::SOCKET"


class LabstackVisaLibrary(LabstackLibrary):
    """VISA library over one :class:`~labstack.sim.lab.VirtualLab`."""

    DESCRIPTION = "labstack virtual lab"
    lab: VirtualLab
    instruments: VirtualInstruments

    def _init(self) -> None:
        super()._init()
        self.lab = VirtualLab.from_description(self.description)
        self.instruments = VirtualInstruments(self.lab)

    # -------------------------------------------------------------- sessions
    def list_resources(self, session: VISARMSession, query: str = "?*::INSTR") -> tuple[str, ...]:
        every = [
            *self.instruments.names(),
            *self.instruments.second_lab_names(),
            *self.instruments.array_lab_names(),
        ]
        names = tuple(resource_name(name) for name in every if name not in RAW_SOCKET)
        return rname.filter(names, query) if query not in ("?*::INSTR", "?*") else names

    def open(
        self,
        session: VISARMSession,
        resource_name: str,
        access_mode: constants.AccessModes = constants.AccessModes.no_lock,
        open_timeout: int = constants.VI_TMO_IMMEDIATE,
    ) -> tuple[VISASession, StatusCode]:
        try:
            parsed = rname.parse_resource_name(resource_name)
        except rname.InvalidResourceName:
            raise VisaIOError(StatusCode.error_invalid_resource_name) from None
        host = getattr(parsed, "host_address", "")
        name = str(host).split(".")[0].lower()
        try:
            device = self.instruments.get(name)
        except KeyError:
            raise VisaIOError(StatusCode.error_resource_not_found) from None
        return VISASession(self._new_session(_Session(resource_name, parsed, device))), StatusCode.success

    def raw_handler(self, address: str, port: int) -> Handler:
        """The twin named by ``address``'s first label, answering on a raw socket
        (QCoDeS ``IPInstrument`` drivers: the Triton), with the lab's fault injection."""
        name = str(address).split(".")[0].lower()
        if name not in RAW_SOCKET:
            raise KeyError(f"no raw-socket twin {name!r}; this lab has {sorted(RAW_SOCKET)}")
        device = self.instruments.get(name)
        faults = self.lab.faults

        def handle(text: str) -> bytes | None | object:
            if faults.is_stuck(name):
                return None
            is_query = text.lstrip().upper().startswith("READ") or text.strip().endswith("?")
            fault = faults.decide(name, text[:200], is_query)
            if fault == "dropped":
                return DROP
            if fault == "stuck":
                return None
            answer = device.handle(text)
            if answer is None or fault == "timeout":
                return None
            if fault in ("garbled", "truncated"):
                return faults.corrupt(answer, fault, device.read_termination.encode())
            return answer

        return handle

    # -------------------------------------------------------------------- I/O
    def _check_link(self, s: _Session) -> None:
        if s.dead:
            raise VisaIOError(StatusCode.error_connection_lost)
        if self.lab.faults.is_stuck(s.instrument):
            raise VisaIOError(StatusCode.error_timeout)

    def write(self, session: VISASession, data: bytes) -> tuple[int, StatusCode]:
        s: _Session = self._session(session)
        self._check_link(s)
        text = data.decode("ascii", errors="replace").rstrip("\r\n")
        lines = [part.strip() for part in text.splitlines() if part.strip()]
        is_query = any(c.split(" ")[0].endswith("?") for line in lines for c in line.split(";"))
        fault = self.lab.faults.decide(s.instrument, text[:200], is_query)
        if fault == "dropped":
            s.dead = True
            raise VisaIOError(StatusCode.error_connection_lost)
        if fault == "stuck":
            raise VisaIOError(StatusCode.error_timeout)
        # a message with a binary block goes whole, as bytes, to a twin that takes blocks
        # (its payload may hold any byte, line ends and ';' included)
        whole = getattr(s.device, "binary_blocks", False) and b"#" in data
        for line in [data] if whole else lines:
            answer = s.device.handle_binary(line) if whole else s.device.handle(line)
            if answer is None:
                continue
            if fault == "timeout":
                continue
            if fault in ("garbled", "truncated"):
                answer = self.lab.faults.corrupt(answer, fault, s.device.read_termination.encode())
                s.truncated = fault == "truncated"
            s.outbox += answer
        return len(data), StatusCode.success

    def read(self, session: VISASession, count: int) -> tuple[bytes, StatusCode]:
        s: _Session = self._session(session)
        self._check_link(s)
        if s.truncated and len(s.outbox) <= count:
            s.outbox.clear()  # the rest never comes: what arrived is lost with the timed-out read
            s.truncated = False
            raise VisaIOError(StatusCode.error_timeout)
        if not s.outbox:
            raise VisaIOError(StatusCode.error_timeout)
        termchar_enabled = s.attributes.get(constants.VI_ATTR_TERMCHAR_EN)
        end = len(s.outbox)
        status = StatusCode.success
        if termchar_enabled:
            termchar = s.attributes[constants.VI_ATTR_TERMCHAR]
            position = s.outbox.find(bytes([termchar]))
            if position >= 0 and position + 1 <= count:
                end = position + 1
                status = StatusCode.success_termination_character_read
        if end > count:
            end, status = count, StatusCode.success_max_count_read
        if end == len(s.outbox):  # the whole answer (a block in one read): one copy
            chunk = bytes(s.outbox)
            s.outbox.clear()
        else:
            with memoryview(s.outbox) as view:
                chunk = bytes(view[:end])
            del s.outbox[:end]
        return chunk, status

    def clear(self, session: VISASession) -> StatusCode:
        s: _Session = self._session(session)
        self._check_link(s)
        s.outbox.clear()
        s.truncated = False
        return StatusCode.success

    def read_stb(self, session: VISASession) -> tuple[int, StatusCode]:
        s: Any = self.sessions.get(session)
        return (4 if isinstance(s, _Session) and s.device.errors else 0), StatusCode.success
