"""Raw-socket instruments in-process: a loopback line server in front of a message handler.

Some drivers do not speak through PyVISA at all: QCoDeS's ``IPInstrument`` (the
Oxford Triton's driver) opens a TCP socket itself and exchanges text lines on it.
So that such a driver reaches the virtual lab unmodified, and so that its SCPI can
be recorded and played back like every VISA exchange, labstack's VISA libraries
answer :meth:`raw_socket`: they start a :class:`LineServer` on 127.0.0.1 (a free
port) whose every received line goes to a *handler* (the twin's SCPI engine, a
recorder around it, or a transcript), and the station opener points the driver at
that address instead of the one in the station file.

The server is deliberately small: one daemon thread per connection, every
exchange executed whole under the library's lock (the lab is shared with the
in-process VISA path; a driver waiting for its answer holds nothing else up). With
the lab clock at speed 0 everything stays deterministic: the line server only
passes messages, the twin advances with the lab clock. The long-lived, many-client
``labstack serve`` has its own socket loop (:mod:`labstack.service.server`).
"""

from __future__ import annotations

import socket
import socketserver
import struct
import threading
from collections.abc import Callable

LOOPBACK = "127.0.0.1"

#: a handler's answer: the reply bytes, None (no reply: the host times out) or DROP
Handler = Callable[[str], "bytes | None | object"]
#: returned by a handler to reset the connection (a dropped link)
DROP = object()


class LineServer:
    """Serve ``handler`` on a loopback port: one text line in, its answer (if any) out."""

    def __init__(self, name: str, handler: Handler, lock: threading.RLock | None = None) -> None:
        self.name = name
        self.handler = handler
        self.lock = lock or threading.RLock()
        outer = self

        class _Connection(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                for raw in iter(self.rfile.readline, b""):
                    text = raw.decode("ascii", errors="replace").rstrip("\r\n")
                    if not text.strip():
                        continue
                    with outer.lock:
                        answer = outer.handler(text)
                    if answer is DROP:  # a reset, not an orderly close: the host fails at once
                        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                        self.connection.close()
                        return
                    if isinstance(answer, bytes) and answer:
                        self.wfile.write(answer)
                        self.wfile.flush()

        class _Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

        self._server = _Server((LOOPBACK, 0), _Connection)
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, name=f"labstack-raw-{name}", daemon=True, kwargs={"poll_interval": 0.2}
        )
        self._thread.start()

    @property
    def address(self) -> tuple[str, int]:
        return LOOPBACK, self.port

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def forwarding_handler(host: str, port: int, timeout_s: float = 20.0, terminator: str = "\r\n") -> Handler:
    """A handler that passes each line on to a real instrument at ``host:port`` and returns
    its one-line answer (recording a hardware session through the transcript recorder)."""
    state: dict[str, socket.socket] = {}

    def forward(text: str) -> bytes | None:
        sock = state.get("sock")
        if sock is None:
            sock = state["sock"] = socket.create_connection((host, port), timeout=timeout_s)
        sock.sendall((text + terminator).encode("ascii"))
        answer = bytearray()
        try:
            while not answer.endswith(b"\n"):
                chunk = sock.recv(4096)
                if not chunk:
                    break
                answer += chunk
        except TimeoutError:
            pass
        return bytes(answer) or None

    return forward


def raw_resource(address: str, port: int) -> str:
    """How a raw-socket instrument is named in transcripts: ``RAW::<address>::<port>``."""
    return f"RAW::{address}::{port}"
