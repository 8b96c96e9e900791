"""Presentation: self-contained HTML reports and notebook display of labstack's objects.

* :mod:`~labstack.presentation.report`: one HTML file per run or calibration, plots
  embedded (``labstack report``).
* :mod:`~labstack.presentation.display`: HTML views of the graph, a calibration, a
  node's result, the state, a run, a replay; registered as IPython formatters.
* :mod:`~labstack.presentation.figures` (each node's own figures, the chip, the
  histories), :mod:`~labstack.presentation.graph`, :mod:`~labstack.presentation.tables`
  (values to the digits their errors support), :mod:`~labstack.presentation.history`
  and :mod:`~labstack.presentation.results` (a node's result re-fitted from disk):
  what the report, the notebook and the dashboard share.
* :mod:`~labstack.presentation.dashboard`: the live web page (``labstack dashboard``).

In a notebook: ``%load_ext labstack.presentation`` (or
``labstack.presentation.display.register()``).

Imports: session, calibrate, station, safety, data, fit (below). Imported only by cli
and notebooks: nothing below it renders HTML.
"""

from typing import Any

from labstack.presentation.display import register, to_html
from labstack.presentation.report import report_html, write_report


def load_ipython_extension(shell: Any) -> None:
    """``%load_ext labstack.presentation``: labstack objects display as HTML."""
    register(shell)


__all__ = ["load_ipython_extension", "register", "report_html", "to_html", "write_report"]
