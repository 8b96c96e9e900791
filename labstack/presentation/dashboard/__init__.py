"""The live dashboard: a web page of a data directory, updated as calibrations run.

* :mod:`~labstack.presentation.dashboard.live`: what is running now, polled from
  the files the runner already writes (``run.json``, the state's ``current``);
* :mod:`~labstack.presentation.dashboard.views`: the graph's status, the state, the
  per-cell table, as JSON;
* :mod:`~labstack.presentation.dashboard.app`: the FastAPI application (page, JSON
  API, server-sent events, the token-guarded run control);
* :mod:`~labstack.presentation.dashboard.server`: uvicorn, bound to 127.0.0.1 unless
  told otherwise (``labstack dashboard``).

It reads only the data directory, so it shows a calibration running in any
process. Figures are the report's: each node's own, the chip, the histories.

Imports: presentation's figures, history, results and report; calibrate, data,
safety (the control file). Imported by cli.
"""

from labstack.presentation.dashboard.app import Dashboard, create_app
from labstack.presentation.dashboard.server import DashboardServer, RemoteBindRefused

__all__ = ["Dashboard", "DashboardServer", "RemoteBindRefused", "create_app"]
