"""Serve a dashboard with uvicorn: loopback by default, anywhere only when asked.

:class:`DashboardServer` runs the server in a thread (tests, benchmarks, a
notebook) or in the foreground (``labstack dashboard``); port 0 picks a free one.
Binding to anything but a loopback address needs ``allow_remote=True`` and prints
a warning: the page is read-only without the token, but it shows the lab's state
to whoever can reach the port.
"""

from __future__ import annotations

import ipaddress
import threading
import time
from pathlib import Path

import uvicorn

from labstack.presentation.dashboard.app import Dashboard, create_app

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8050


class RemoteBindRefused(ValueError):
    """A non-loopback address without the explicit flag that allows it."""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class DashboardServer:
    """A dashboard for ``data_dir`` on ``host:port`` (uvicorn, one process)."""

    def __init__(
        self,
        data_dir: str | Path,
        *,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        allow_remote: bool = False,
        control: bool = True,
        poll_s: float = 0.1,
        token: str | None = None,
    ) -> None:
        if not is_loopback(host) and not allow_remote:
            raise RemoteBindRefused(
                f"refusing to serve on {host}: the dashboard binds to 127.0.0.1 unless --allow-remote is given"
            )
        self.host = host
        self.dashboard = Dashboard(Path(data_dir), control=control, poll_s=poll_s)
        if token:
            self.dashboard.token = token
        hosts = ["*"] if not is_loopback(host) else None
        self.app = create_app(self.dashboard, allowed_hosts=hosts)
        config = uvicorn.Config(self.app, host=host, port=port, log_level="warning",
                                timeout_graceful_shutdown=2, access_log=False)
        self.server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        for server in getattr(self.server, "servers", []):
            for sock in server.sockets:
                return int(sock.getsockname()[1])
        return int(self.server.config.port)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def banner(self) -> str:
        """What ``labstack dashboard`` prints: where, the token, and a warning if remote."""
        d = self.dashboard
        lines = [f"labstack dashboard of {d.data_dir}", f"  {self.url}#token={d.token}"]
        if d.control:
            lines.append(f"  token for pause/resume/abort: {d.token}")
        else:
            lines.append("  read-only: pause/resume/abort are disabled")
        if not is_loopback(self.host):
            lines.append(f"  WARNING: serving on {self.host}: anyone who reaches this port sees the lab's state")
        return "\n".join(lines)

    def start(self, timeout: float = 20.0) -> DashboardServer:
        """Serve in a background thread; returns once the port is open."""
        self._thread = threading.Thread(target=self.server.run, name="labstack-dashboard", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the dashboard did not start on {self.host}")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.dashboard.stopping.set()
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)

    def run(self) -> None:
        """Serve until interrupted (Ctrl-C); the banner is printed once the port is open."""
        self.start()
        print(self.banner(), flush=True)
        try:
            while self._thread is not None and self._thread.is_alive():
                self._thread.join(0.5)
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()

    def __enter__(self) -> DashboardServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
