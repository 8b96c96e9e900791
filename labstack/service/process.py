"""The ``labstack serve`` process: a lab server, its station file and its service file.

A served lab keeps two files in its directory (default ``./labstack_service``):

``station.yaml``   the station file that reaches the served instruments
                   (:mod:`labstack.service.stationfile`): clients open it like any other
``service.json``   what the service is and how it is doing, rewritten every second:
                   pid, lab description, speed, addresses, lab time and calendar, traffic;
                   ``status`` is ``running`` or ``stopped`` (a dashboard reads it with
                   :func:`labstack.service.read_service_info`)

Restarted on the same directory, the service listens on the same ports (so the
station file and every client's addresses stay valid) and continues the lab's
calendar from where the last one stopped (its physics starts afresh, as after a
power cycle), so calibration ages stay meaningful. ``fresh=True`` starts the
calendar anew.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from labstack.data.runs import write_json_atomic
from labstack.service.server import DEFAULT_HOST, LabServer
from labstack.service.stationfile import served_station_yaml
from labstack.sim.instruments import VirtualInstruments
from labstack.sim.lab import VirtualLab
from labstack.station import StationConfigError, read_station_file

SERVICE_FILE = "service.json"
STATION_FILE = "station.yaml"
DEFAULT_SERVICE_DIR = "labstack_service"
#: wall seconds between rewrites of service.json
INFO_EVERY_S = 1.0


def read_service_info(directory: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The service file of a served lab's directory (None if there is none or it is unreadable)."""
    try:
        info = json.loads((Path(directory) / SERVICE_FILE).read_text())
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


class LabService:
    """A :class:`LabServer` with its directory: station file, service file, restarts."""

    def __init__(
        self,
        description: str,
        directory: str | os.PathLike[str] = DEFAULT_SERVICE_DIR,
        *,
        speed: float = 0.0,
        host: str = DEFAULT_HOST,
        allow_remote: bool = False,
        base_port: int | None = None,
        fresh: bool = False,
        station: str | os.PathLike[str] | None = None,
    ) -> None:
        """``station``: a virtual station file to serve (its instruments, roles and safety)
        instead of the default station, e.g. the shipped ``oxford_lockin``."""
        self.description = description
        self.template, served = _station_template(station)
        self.directory = Path(directory).resolve()
        self.directory.mkdir(parents=True, exist_ok=True)
        previous = None if fresh else read_service_info(self.directory)
        ports: dict[str, int] = {}
        start_utc = None
        if previous is not None:
            ports = {k: int(v["port"]) for k, v in (previous.get("instruments") or {}).items()}
            if previous.get("lab") == description and previous.get("lab_utc"):
                start_utc = _aware(datetime.fromisoformat(previous["lab_utc"]))
        lab = VirtualLab.from_description(description, start_utc=start_utc)
        twins = VirtualInstruments(lab)
        known = [*twins.names(), *twins.second_lab_names()]
        unknown = [n for n in served or () if n not in known]
        if unknown:
            raise StationConfigError(
                f"{station}: no virtual twin serves instrument(s) {unknown} on this lab "
                f"(it has {', '.join(known)})"
            )
        if base_port is not None:
            names = served or twins.names()
            ports = {name: base_port + i for i, name in enumerate(names)}
        self.server = LabServer(
            lab, host=host, ports=ports, speed=speed, allow_remote=allow_remote, on_tick=self._tick,
            instruments=served,
        )
        self.resumed_utc = start_utc
        self.started_utc = datetime.now(UTC)
        self._last_info = 0.0
        self._pace_mark: tuple[float, float] | None = None  # (monotonic, idle lab seconds) at the last write
        self._stop = threading.Event()

    @property
    def station_file(self) -> Path:
        return self.directory / STATION_FILE

    @property
    def service_file(self) -> Path:
        return self.directory / SERVICE_FILE

    def start(self) -> LabService:
        """Bind the ports and write the station and service files."""
        self.server.start()
        text = served_station_yaml(
            self.description, self.server.addresses, speed=self.server.speed, service_file=self.service_file,
            template=self.template,
        )
        tmp = self.station_file.with_name(f".{STATION_FILE}.tmp-{os.getpid()}")
        tmp.write_text(text)
        os.replace(tmp, self.station_file)
        self.write_info("running")
        return self

    def info(self, status: str) -> dict[str, Any]:
        server = self.server
        return {
            "status": status,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "lab": self.description,
            "started_utc": self.started_utc.isoformat(),
            "updated_utc": datetime.now(UTC).isoformat(),
            "bind": server.host,
            "station_file": str(self.station_file),
            "instruments": {
                name: {"address": address, "port": server.ports[name]} for name, address in server.addresses.items()
            },
            **self._with_pace(server.status()),
        }

    def _with_pace(self, status: dict[str, Any]) -> dict[str, Any]:
        """``status`` plus ``pace``: idle lab seconds per wall second since the last write.

        It is ``speed`` while the machine keeps up and less when it cannot (the clock
        lags, :mod:`labstack.service.timebase`); whoever extrapolates the clock from this
        file (:func:`labstack.service.status.served_lab_now`) uses it, so a judged time
        does not run ahead of the lab and then jump back when the file is rewritten.
        """
        now, idle = time.monotonic(), float(status.get("idle_total_s", 0.0))
        pace, mark = float(self.server.speed), self._pace_mark
        if mark is None or now - mark[0] > 0.2:
            if mark is not None:
                pace = min(pace, max(0.0, (idle - mark[1]) / (now - mark[0])))
            self._pace_mark = (now, idle)
        return {**status, "pace": pace}

    def write_info(self, status: str) -> None:
        write_json_atomic(self.service_file, self.info(status))

    def _tick(self, server: LabServer) -> None:
        now = time.monotonic()
        if now - self._last_info >= INFO_EVERY_S:
            self._last_info = now
            self.write_info("running")

    def serve_forever(self) -> None:
        """Serve until :meth:`stop` (or a signal handler calling it); the service file says stopped."""
        try:
            self.server.serve_forever(self._stop)
        finally:
            self.write_info("stopped")

    def run_in_thread(self) -> LabService:
        self.start()
        self._thread = threading.Thread(target=self.serve_forever, name="labstack-lab-service", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        thread = getattr(self, "_thread", None)
        if thread is not None and thread is not threading.current_thread():
            thread.join(10)

    def describe(self, print_: Callable[[str], None] = print) -> None:
        """Print what a person needs to use the service: addresses, station file, next commands."""
        server = self.server
        truth_cells = server.lab.truth.n_cells
        speed = f"clock speed {server.speed:g} lab s per wall s" if server.speed else "clock moves only when asked (speed 0)"
        print_(f"labstack lab service: virtual lab '{self.description}' ({truth_cells} cells), {speed}")
        if self.resumed_utc is not None:
            print_(f"  lab calendar continues from {self.resumed_utc.isoformat()} (same directory as before)")
        width = max(len(n) for n in server.addresses)
        for name, address in server.addresses.items():
            print_(f"  {name:<{width}}  {address}")
        print_(f"station file: {self.station_file}")
        print_(f"service file: {self.service_file}")
        print_(f"  connect:   labstack.station.load_station({str(self.station_file)!r})")
        print_(f"  calibrate: labstack calibrate --station {self.station_file}")
        print_(f"  maintain:  labstack watch --station {self.station_file}")
        print_(f"serving on {server.host} until Ctrl-C or SIGTERM")


def _aware(when: datetime) -> datetime:
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _station_template(station: str | os.PathLike[str] | None) -> tuple[str | None, list[str] | None]:
    """A virtual station file's text and its instruments (None, None: the default station).

    The file is read and checked as any station file is (a malformed one is refused
    with its file and line), and only virtual instruments can be served.
    """
    if station is None:
        return None, None
    spec = read_station_file(station)
    real = [n for n, inst in spec.instruments.items() if "@labstack" not in str((inst.get("init") or {}).get("visalib", ""))]
    if real:
        raise StationConfigError(f"{spec.path}: instrument(s) {real} are not virtual (no @labstack visalib): "
                         "labstack serve serves virtual twins only")
    return spec.text, list(spec.instruments)
