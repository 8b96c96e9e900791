"""HTML for notebooks: calibration reports, node results, replays (see also labstack.report)."""

from __future__ import annotations

import html
from typing import Any


def calibration_report_html(report: Any) -> str:
    return f"<pre>{html.escape(report.render())}</pre>"


def replay_report_html(report: Any) -> str:
    return f"<pre>{html.escape(report.text())}</pre>"
