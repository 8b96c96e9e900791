"""Helpers for the lab-service tests: raw SCPI clients, served stations, waiting."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from labstack.service import LabServer
from labstack.service.stationfile import served_station_yaml
from labstack.station import LabStation, load_station


class RawClient:
    """A bare TCP client, speaking SCPI to one served instrument byte by byte if asked."""

    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = 5.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = b""

    def send(self, data: bytes | str) -> None:
        self.sock.sendall(data.encode() if isinstance(data, str) else data)

    def line(self) -> bytes:
        """One answer up to and including its newline."""
        while b"\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"closed with {self.buffer!r} pending")
            self.buffer += chunk
        answer, _, self.buffer = self.buffer.partition(b"\n")
        return answer + b"\n"

    def exactly(self, n: int) -> bytes:
        while len(self.buffer) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed early")
            self.buffer += chunk
        out, self.buffer = self.buffer[:n], self.buffer[n:]
        return out

    def ask(self, command: str) -> str:
        self.send(command + "\n")
        return self.line().decode().strip()

    def block(self, command: str) -> bytes:
        """An IEEE 488.2 definite block answer, payload only (its terminator consumed)."""
        self.send(command + "\n")
        head = self.exactly(2)
        assert head[:1] == b"#", head
        digits = int(head[1:2])
        length = int(self.exactly(digits))
        payload = self.exactly(length)
        assert self.exactly(1) == b"\n"
        return payload

    def close(self) -> None:
        self.sock.close()


def served_station(server: LabServer, description: str, tmp: Path, name: str = "served.yaml") -> LabStation:
    """Open a station on ``server``'s sockets through pyvisa-py (what a client of labstack serve does)."""
    path = tmp / name
    path.write_text(served_station_yaml(description, server.addresses, speed=server.speed))
    return load_station(path)


def wait_for(condition: Callable[[], Any], timeout: float, what: str, every: float = 0.05) -> Any:
    """Poll ``condition`` until it returns something truthy; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None
