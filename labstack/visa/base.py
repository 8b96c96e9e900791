"""What labstack's three PyVISA backends share: sessions, attributes, the calls with nothing to do.

``@labstack`` (the virtual lab), ``@labstack_record`` and ``@labstack_playback`` are
all :class:`pyvisa.highlevel.VisaLibraryBase` subclasses. PyVISA asks every backend
for the same bookkeeping (session handles, VISA attributes such as the timeout and
termination character, locks and events that an in-process backend can grant at
once); it lives here once.
"""

from __future__ import annotations

import itertools
import random
import threading
from typing import Any

from pyvisa import attributes, constants, highlevel, rname
from pyvisa.constants import StatusCode
from pyvisa.errors import VisaIOError

from labstack.visa.raw_socket import Handler, LineServer, raw_resource

#: VISA attributes every session starts with (those drivers read or set)
DEFAULT_ATTRIBUTES: dict[int, Any] = {
    constants.VI_ATTR_TMO_VALUE: 2000,
    constants.VI_ATTR_TERMCHAR: ord("\n"),
    constants.VI_ATTR_TERMCHAR_EN: constants.VI_FALSE,
    constants.VI_ATTR_SEND_END_EN: constants.VI_TRUE,
    constants.VI_ATTR_SUPPRESS_END_EN: constants.VI_FALSE,
    constants.VI_ATTR_IO_PROT: constants.IOProtocol.normal,
    constants.VI_ATTR_TCPIP_NODELAY: constants.VI_TRUE,
    constants.VI_ATTR_TCPIP_KEEPALIVE: constants.VI_FALSE,
}


class Session:
    """One open resource: its name and its VISA attributes."""

    def __init__(self, name: str, parsed: rname.ResourceName | None = None) -> None:
        self.name = name
        self.attributes = dict(DEFAULT_ATTRIBUTES)
        self.attributes[constants.VI_ATTR_RSRC_NAME] = name
        if parsed is not None:
            self.attributes[constants.VI_ATTR_INTF_TYPE] = parsed.interface_type_const
            self.attributes[constants.VI_ATTR_RSRC_CLASS] = parsed.resource_class


class LabstackLibrary(highlevel.VisaLibraryBase):
    """Base of labstack's backends: handles map to :class:`Session` objects (None: a manager)."""

    #: what ``get_debug_info`` reports as the backend
    DESCRIPTION = "labstack"

    @staticmethod
    def get_library_paths() -> tuple[highlevel.LibraryPath, ...]:
        return (highlevel.LibraryPath("unset"),)

    @classmethod
    def get_debug_info(cls) -> dict[str, str]:  # type: ignore[override]
        from labstack import __version__

        return {"Version": __version__, "Backend": cls.DESCRIPTION}

    @property
    def description(self) -> str:
        """The library path PyVISA was given (the part before ``@``), ``""`` if none."""
        return "" if str(self.library_path) == "unset" else str(self.library_path)

    def _init(self) -> None:
        self.sessions: dict[int, Session | None] = {}
        self._ids = itertools.count(random.randint(1, 2**20))
        self.raw_lock = threading.RLock()
        self._raw: dict[str, LineServer] = {}

    # ----------------------------------------------------------- raw sockets
    def raw_handler(self, address: str, port: int) -> Handler:
        """The handler of a raw-socket instrument's lines (:mod:`labstack.visa.raw_socket`).

        Raises ``KeyError`` when this library has nothing behind ``address``.
        """
        raise KeyError(f"{type(self).__name__} serves no raw-socket instruments")

    def raw_socket(self, address: str, port: int) -> tuple[str, int]:
        """The loopback (host, port) where the raw-socket instrument at ``address:port`` is
        answered by this library; started on first use, the same for every later call."""
        key = raw_resource(address, port)
        with self.raw_lock:
            if key not in self._raw:
                self._raw[key] = LineServer(key, self.raw_handler(address, port), self.raw_lock)
            return self._raw[key].address

    def _new_session(self, obj: Session | None) -> int:
        handle = next(self._ids)
        self.sessions[handle] = obj
        return handle

    def _session(self, session: Any) -> Any:
        obj = self.sessions.get(session)
        if not isinstance(obj, Session):
            raise VisaIOError(StatusCode.error_invalid_object)
        return obj

    # ----------------------------------------------------------- sessions
    def open_default_resource_manager(self) -> tuple[Any, StatusCode]:
        return self._new_session(None), StatusCode.success

    def close(self, session: Any) -> StatusCode:
        if self.sessions.pop(session, "missing") == "missing":
            return StatusCode.error_invalid_object
        return StatusCode.success

    # ----------------------------------------------------------- nothing to do in-process
    def clear(self, session: Any) -> StatusCode:
        return StatusCode.success

    def flush(self, session: Any, mask: constants.BufferOperation) -> StatusCode:
        return StatusCode.success

    def read_stb(self, session: Any) -> tuple[int, StatusCode]:
        return 0, StatusCode.success

    def assert_trigger(self, session: Any, protocol: constants.TriggerProtocol) -> StatusCode:
        return StatusCode.success

    def lock(self, session: Any, lock_type: Any, timeout: int, requested_key: Any = None) -> Any:
        return "", StatusCode.success

    def unlock(self, session: Any) -> StatusCode:
        return StatusCode.success

    def disable_event(self, session: Any, event_type: Any, mechanism: Any) -> StatusCode:
        return StatusCode.success

    def discard_events(self, session: Any, event_type: Any, mechanism: Any) -> StatusCode:
        return StatusCode.success

    # ----------------------------------------------------------- attributes
    def get_attribute(self, session: Any, attribute: Any) -> tuple[Any, StatusCode]:
        obj = self.sessions.get(session)
        if not isinstance(obj, Session):
            return None, StatusCode.error_invalid_object
        if attribute in obj.attributes:
            return obj.attributes[attribute], StatusCode.success
        return None, StatusCode.error_nonsupported_attribute

    def set_attribute(self, session: Any, attribute: Any, attribute_state: Any) -> StatusCode:
        obj = self.sessions.get(session)
        if not isinstance(obj, Session):
            return StatusCode.error_invalid_object
        if attribute not in attributes.AttributesByID and attribute not in DEFAULT_ATTRIBUTES:
            return StatusCode.error_nonsupported_attribute
        obj.attributes[attribute] = attribute_state
        return StatusCode.success
