"""labstack as a lab service: the virtual lab on real sockets, and a loop that keeps a chip calibrated.

* :mod:`~labstack.service.server`: :class:`LabServer`, the virtual lab's instruments,
  each on its own loopback TCP port speaking raw SCPI, as LAN instruments do
  (``TCPIP0::127.0.0.1::<port>::SOCKET``); the unmodified drivers reach it through
  pyvisa-py. Several clients at once; nothing a client sends stops it.
* :mod:`~labstack.service.timebase`: the served clock: exact for every operation,
  free-running at ``speed`` x wall time while idle.
* :mod:`~labstack.service.stationfile`: the station file that points at a served lab.
* :mod:`~labstack.service.process`: :class:`LabService`, the ``labstack serve``
  process: server, station file, ``service.json``, restarts on the same ports.
* :mod:`~labstack.service.watch`: :class:`Watcher`, the ``labstack watch`` loop:
  ``maintain`` on a schedule in lab time and when something asks for it, each pass
  recorded, stopped cleanly by a signal, reconnecting when the lab goes away;
  :mod:`~labstack.service.livestatus` writes what it is doing now.
* :mod:`~labstack.service.status`: read-only views for dashboards: the service,
  the watch loop (node now running, progress, passes), the state's history, the runs.

Imports: session, visa, calibrate, station, data, sim (below). Imported by cli (and
presentation, for dashboards).
"""

from labstack.service.process import LabService, read_service_info
from labstack.service.server import LabServer, ServerConfigError

__all__ = ["LabServer", "LabService", "ServerConfigError", "read_service_info"]
