"""Rich notebook display: the calibration graph, a node's result, a calibration, a replay.

The engine, the runner and the session know nothing of HTML. This module renders
their objects (:func:`to_html`) and registers those renderers as IPython HTML
formatters (:func:`register`; ``%load_ext labstack.presentation`` in a notebook),
as bluesky keeps its callbacks out of the RunEngine. A notebook then shows tables
with status colours and the routine's own plots (S-curves with fits) as inline PNG
instead of reprs.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import Any

from labstack.calibrate import CalibrationGraph, CalibrationState, StateDiff
from labstack.calibrate.render import COLUMNS, entries_rows
from labstack.clock import format_duration
from labstack.data import Run
from labstack.presentation.figures import figure_title, node_figures, png_tag
from labstack.presentation.graph import graph_svg
from labstack.presentation.report import calibration_html, run_summary_html, table
from labstack.session import CalibrationReport, NodeResult, ReplayReport

STATUS_CLASS = {"fresh": "ok", "stale": "", "failed": "bad", "never": ""}
STYLE = (
    "<style>table.ls{border-collapse:collapse;font-size:.9em}"
    "table.ls td,table.ls th{border:1px solid #ddd;padding:2px 8px;text-align:left}"
    "tr.bad td{background:#fdd}tr.ok td{background:#efe}</style>"
)


def graph_html(graph: Any) -> str:
    """The graph as an SVG of its nodes coloured by status, and a table with why."""
    order = graph.order()
    status = {k: v.value for k, v in graph.status().items()}
    reasons = graph.explain()
    deps = {n: graph.dependencies(n) for n in order}
    rows, classes = [], []
    for name in order:
        rec = graph.context.state.node_record(name)
        node = graph[name]
        rows.append([
            name, status[name], ", ".join(deps[name]) or "-", ", ".join(graph.dependents(name)) or "-",
            f"{node.timeout_s:g} s", (rec.calibrated_utc or "")[:19] if rec else "",
            reasons.get(name, "") if status[name] != "fresh" else "",
        ])
        classes.append(STATUS_CLASS.get(status[name], ""))
    header = ["node", "status", "depends on", "needed by", "timeout", "calibrated (UTC)", "why not fresh"]
    return STYLE + graph_svg(order, deps, status) + table(rows, header, classes)


# ----------------------------------------------------------------- node results
def node_result_html(result: NodeResult) -> str:
    """One node's results: the routine's table and its own figures."""
    run = f" <small>run {result.run_id}</small>" if result.run_id else ""
    parts = [f"<h4>{html.escape(result.name)}{run}</h4>", f"<pre>{html.escape(result.table())}</pre>"]
    for fig in node_figures(result.name, result.results, result.dataset):
        parts.append(png_tag(fig, figure_title(fig)))
    return "\n".join(parts)


def calibration_report_html(report: Any) -> str:
    """A finished ``calibrate_station``: node status, flagged items, each node's result.

    A node's result comes from the graph that ran (``report.graph.results``) with the
    dataset it was fitted on; a node made of several runs has that dataset stored
    as one merged run, so every calibrated node displays.
    """
    rows, classes = [], []
    for name, st in report.status.items():
        did = "calibrated" if name in report.calibrated else "kept (still valid)"
        flagged = ", ".join(report.flagged.get(name, []))
        spent = getattr(report, "costs", {}).get(name)
        rows.append([name, st.value, did, format_duration(spent.lab_s) if spent else "",
                     format_duration(spent.wall_s) if spent else "", flagged])
        classes.append("bad" if flagged else STATUS_CLASS.get(st.value, ""))
    parts = [STYLE, table(rows, ["node", "status", "this run", "lab time", "wall time", "flagged"], classes)]
    cost = getattr(report, "cost", None)
    took = f"; fridge time {format_duration(cost.lab_s)} (wall {format_duration(cost.wall_s)})" if cost else ""
    parts.append(
        f"<p>calibration state v{report.state_version} ({html.escape(report.state_path)}); "
        f"recorded as run <code>{html.escape(report.run_id)}</code>{took}</p>"
    )
    for name in report.calibrated:
        try:
            parts.append(node_result_html(report.result(name)))
        except (KeyError, FileNotFoundError) as exc:
            parts.append(f"<p>{html.escape(name)}: its result cannot be shown ({html.escape(str(exc))})</p>")
    return "\n".join(parts)


def replay_report_html(report: Any) -> str:
    verdict = "pass" if report.passed else "fail"
    parts = [STYLE, f'<p class="{verdict}"><b>replay {verdict.upper()}</b>: {html.escape(report.kind)} run '
             f"<code>{report.original}</code> → <code>{report.replay}</code> on <code>{html.escape(report.lab)}</code></p>"]
    changed = [v for v in report.variables if not v.identical]
    parts.append(
        f"<p>{len(report.variables) - len(changed)} of {len(report.variables)} variables bit-for-bit identical"
        + (" (expected)" if report.expect_identical else "") + "</p>"
    )
    if changed:
        parts.append(table([[v.original_run, v.name, v.max_abs, v.rms, v.rel_rms] for v in changed],
                           ["run", "variable", "max |Δ|", "rms Δ", "relative"]))
    if report.parameters:
        rows = [[p.key, p.original, p.original_err, p.replay, p.replay_err, p.z, "ok" if p.passed else "DIFFERS"]
                for p in report.parameters]
        classes = ["" if p.passed else "bad" for p in report.parameters]
        parts.append(table(rows, ["key", "original", "±", "replay", "±", "z", "verdict"], classes))
    parts += [f"<p>note: {html.escape(n)}</p>" for n in report.notes]
    return "\n".join(parts)


def state_html(state: CalibrationState) -> str:
    """Every entry of a calibration state, invalid ones in red."""
    rows = entries_rows(state.entries)
    classes = ["bad" if row[4] == "NO" else "" for row in rows]
    return STYLE + f"<p>calibration state v{state.version}</p>" + table(rows, list(COLUMNS), classes)


def state_diff_html(diff: StateDiff) -> str:
    rows = diff.rows()
    classes = ["bad" if row[-1] == "NO" else "" for row in rows]
    caption = f"<p>diff v{diff.v1} → v{diff.v2}</p>"
    return STYLE + caption + table(rows, list(diff.HEADER), classes)


def run_html(run: Run) -> str:
    """A run: summary, variables and plots; a calibration run: its nodes and values."""
    if run.attrs.get("kind") == "calibration":
        return calibration_html(run, run.path.parent, plots=False)
    return run_summary_html(run)


#: what :func:`to_html` and the IPython formatters know how to show
RENDERERS: dict[type, Callable[[Any], str]] = {
    CalibrationGraph: graph_html,
    CalibrationReport: calibration_report_html,
    NodeResult: node_result_html,
    ReplayReport: replay_report_html,
    CalibrationState: state_html,
    StateDiff: state_diff_html,
    Run: run_html,
}


def to_html(obj: Any) -> str:
    """The HTML labstack shows for ``obj`` in a notebook (TypeError if it has none)."""
    for cls in type(obj).__mro__:
        if cls in RENDERERS:
            return RENDERERS[cls](obj)
    raise TypeError(f"labstack has no HTML view of {type(obj).__name__}")


def register(shell: Any = None) -> bool:
    """Register the renderers as IPython HTML formatters; False outside IPython."""
    if shell is None:
        try:
            from IPython import get_ipython
        except ImportError:
            return False
        shell = get_ipython()
    if shell is None:
        return False
    formatter = shell.display_formatter.formatters["text/html"]
    for cls, render in RENDERERS.items():
        formatter.for_type(cls, render)
    return True
