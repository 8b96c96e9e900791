"""PyVISA backend ``@labstack``: the virtual lab's instruments as VISA resources.

``pyvisa.ResourceManager("seed=7,cells=16@labstack")`` opens a library whose
resources are the virtual lab's instruments, speaking SCPI, so the same
unmodified drivers that talk to hardware talk to the simulator. PyVISA keeps one
library object per backend and path, so every instrument opened on the same
``…@labstack`` string shares one virtual lab (as pyvisa-sim does with
``file.yaml@sim``). The part before ``@`` describes the lab; see
:meth:`labstack.sim.lab.VirtualLab.from_description`.

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

import itertools
import random
from typing import Any

from pyvisa import attributes, constants, highlevel, rname
from pyvisa.constants import StatusCode
from pyvisa.errors import VisaIOError
from pyvisa.typing import VISARMSession, VISASession

from labstack.sim.instruments import ScpiDevice, VirtualInstruments
from labstack.sim.lab import VirtualLab

_DEFAULT_ATTRIBUTES: dict[int, Any] = {
    constants.VI_ATTR_TMO_VALUE: 2000,
    constants.VI_ATTR_TERMCHAR: ord("\n"),
    constants.VI_ATTR_TERMCHAR_EN: constants.VI_FALSE,
    constants.VI_ATTR_SEND_END_EN: constants.VI_TRUE,
    constants.VI_ATTR_SUPPRESS_END_EN: constants.VI_FALSE,
    constants.VI_ATTR_IO_PROT: constants.IOProtocol.normal,
    constants.VI_ATTR_TCPIP_NODELAY: constants.VI_TRUE,
    constants.VI_ATTR_TCPIP_KEEPALIVE: constants.VI_FALSE,
}


class _Session:
    def __init__(self, name: str, parsed: rname.ResourceName, device: ScpiDevice | None) -> None:
        self.name = name
        self.parsed = parsed
        self.device = device
        self.outbox = bytearray()
        self.instrument = str(getattr(parsed, "host_address", "")).split(".")[0].lower()
        self.dead = False  # a dropped connection: every call fails until the resource is reopened
        self.truncated = False  # the queued answer lost its end: the next read times out
        self.attributes = dict(_DEFAULT_ATTRIBUTES)
        self.attributes[constants.VI_ATTR_RSRC_NAME] = name
        self.attributes[constants.VI_ATTR_INTF_TYPE] = parsed.interface_type_const
        self.attributes[constants.VI_ATTR_RSRC_CLASS] = parsed.resource_class


class LabstackVisaLibrary(highlevel.VisaLibraryBase):
    """VISA library over one :class:`~labstack.sim.lab.VirtualLab`."""

    lab: VirtualLab
    instruments: VirtualInstruments

    @staticmethod
    def get_library_paths() -> tuple[highlevel.LibraryPath, ...]:
        return (highlevel.LibraryPath("unset"),)

    @staticmethod
    def get_debug_info() -> dict[str, str]:
        from labstack import __version__

        return {"Version": __version__, "Backend": "labstack virtual lab"}

    def _init(self) -> None:
        description = "" if str(self.library_path) == "unset" else str(self.library_path)
        self.lab = VirtualLab.from_description(description)
        self.instruments = VirtualInstruments(self.lab)
        self.sessions: dict[int, Any] = {}
        self._ids = itertools.count(random.randint(1, 2**20))

    def _new_session(self, obj: Any) -> int:
        session = next(self._ids)
        self.sessions[session] = obj
        return session

    # -------------------------------------------------------------- sessions
    def open_default_resource_manager(self) -> tuple[VISARMSession, StatusCode]:
        return VISARMSession(self._new_session(None)), StatusCode.success

    def list_resources(self, session: VISARMSession, query: str = "?*::INSTR") -> tuple[str, ...]:
        names = tuple(
            f"TCPIP0::{name}.virtual::{7777 if name == 'ls372' else 5025}::SOCKET"
            for name in self.instruments.names()
        )
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

    def close(self, session: Any) -> StatusCode:
        if self.sessions.pop(session, "missing") == "missing":
            return StatusCode.error_invalid_object
        return StatusCode.success

    def _session(self, session: Any) -> _Session:
        obj = self.sessions.get(session)
        if not isinstance(obj, _Session):
            raise VisaIOError(StatusCode.error_invalid_object)
        return obj

    # -------------------------------------------------------------------- I/O
    def _check_link(self, s: _Session) -> None:
        if s.dead:
            raise VisaIOError(StatusCode.error_connection_lost)
        if self.lab.faults.is_stuck(s.instrument):
            raise VisaIOError(StatusCode.error_timeout)

    def write(self, session: VISASession, data: bytes) -> tuple[int, StatusCode]:
        s = self._session(session)
        assert s.device is not None
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
        for line in lines:
            answer = s.device.handle(line)
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
        s = self._session(session)
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
        chunk = bytes(s.outbox[:end])
        del s.outbox[:end]
        return chunk, status

    def clear(self, session: VISASession) -> StatusCode:
        s = self._session(session)
        self._check_link(s)
        s.outbox.clear()
        s.truncated = False
        return StatusCode.success

    def flush(self, session: VISASession, mask: constants.BufferOperation) -> StatusCode:
        return StatusCode.success

    def read_stb(self, session: VISASession) -> tuple[int, StatusCode]:
        s = self._session(session)
        return (4 if s.device is not None and s.device.errors else 0), StatusCode.success

    def assert_trigger(self, session: VISASession, protocol: constants.TriggerProtocol) -> StatusCode:
        return StatusCode.success

    def lock(self, session: VISASession, lock_type: constants.Lock, timeout: int, requested_key: str | None = None) -> tuple[str, StatusCode]:
        return "", StatusCode.success

    def unlock(self, session: VISASession) -> StatusCode:
        return StatusCode.success

    def disable_event(self, session: VISASession, event_type: constants.EventType, mechanism: constants.EventMechanism) -> StatusCode:
        return StatusCode.success

    def discard_events(self, session: VISASession, event_type: constants.EventType, mechanism: constants.EventMechanism) -> StatusCode:
        return StatusCode.success

    # ------------------------------------------------------------- attributes
    def get_attribute(self, session: VISASession, attribute: constants.ResourceAttribute) -> tuple[Any, StatusCode]:
        obj = self.sessions.get(session)
        if not isinstance(obj, _Session):
            return None, StatusCode.error_invalid_object
        if attribute in obj.attributes:
            return obj.attributes[attribute], StatusCode.success
        return None, StatusCode.error_nonsupported_attribute

    def set_attribute(self, session: VISASession, attribute: constants.ResourceAttribute, attribute_state: Any) -> StatusCode:
        obj = self.sessions.get(session)
        if not isinstance(obj, _Session):
            return StatusCode.error_invalid_object
        if attribute not in attributes.AttributesByID and attribute not in _DEFAULT_ATTRIBUTES:
            return StatusCode.error_nonsupported_attribute
        obj.attributes[attribute] = attribute_state
        return StatusCode.success
