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
from labstack.data import Run
from labstack.presentation.report import calibration_html, figure_png, run_summary_html, table
from labstack.session import CalibrationReport, NodeResult, ReplayReport

STATUS_CLASS = {"fresh": "ok", "stale": "", "failed": "bad", "never": ""}
STYLE = (
    "<style>table.ls{border-collapse:collapse;font-size:.9em}"
    "table.ls td,table.ls th{border:1px solid #ddd;padding:2px 8px;text-align:left}"
    "tr.bad td{background:#fdd}tr.ok td{background:#efe}</style>"
)


# ----------------------------------------------------------------- graph
def graph_svg(order: list[str], deps: dict[str, tuple[str, ...]], status: dict[str, str]) -> str:
    """Nodes in columns by depth (dependencies to the left), arrows along dependencies."""
    depth: dict[str, int] = {}
    for name in order:  # topological: dependencies already placed
        depth[name] = 1 + max((depth[d] for d in deps[name]), default=-1)
    columns: dict[int, list[str]] = {}
    for name in order:
        columns.setdefault(depth[name], []).append(name)
    w, h, gap_x, gap_y = 130, 28, 50, 14
    pos = {
        name: (10 + col * (w + gap_x), 10 + row * (h + gap_y))
        for col, names in columns.items()
        for row, name in enumerate(names)
    }
    width = 20 + len(columns) * (w + gap_x)
    height = 20 + max(len(v) for v in columns.values()) * (h + gap_y) if columns else 40
    colour = {"fresh": "#cfc", "stale": "#ffd98a", "failed": "#f99", "never": "#ddd"}
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        'font-family="sans-serif" font-size="11">',
        '<defs><marker id="a" markerWidth="8" markerHeight="8" refX="8" refY="4" orient="auto">'
        '<path d="M0,0 L8,4 L0,8 z" fill="#666"/></marker></defs>',
    ]
    for name in order:
        x, y = pos[name]
        for d in deps[name]:
            dx, dy = pos[d]
            parts.append(
                f'<line x1="{dx + w}" y1="{dy + h / 2}" x2="{x}" y2="{y + h / 2}" '
                'stroke="#666" marker-end="url(#a)"/>'
            )
    for name in order:
        x, y = pos[name]
        fill = colour.get(status.get(name, ""), "#eee")
        parts.append(
            f'<rect x="{x}" y="{y}" width="{w}" height="{h}" rx="5" fill="{fill}" stroke="#444"/>'
            f'<text x="{x + w / 2}" y="{y + h / 2 + 4}" text-anchor="middle">'
            f"{html.escape(name)}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


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
    """One node's results: the routine's table and its plot."""
    run = f" <small>run {result.run_id}</small>" if result.run_id else ""
    parts = [f"<h4>{html.escape(result.name)}{run}</h4>", f"<pre>{html.escape(result.table())}</pre>"]
    fig = result.figure()
    if fig is not None:
        parts.append(figure_png(fig))
    return "\n".join(parts)


def calibration_report_html(report: Any) -> str:
    """A finished ``calibrate_station``: node status, flagged items, each node's result."""
    rows, classes = [], []
    for name, st in report.status.items():
        did = "calibrated" if name in report.calibrated else "kept (still valid)"
        flagged = ", ".join(report.flagged.get(name, []))
        rows.append([name, st.value, did, flagged])
        classes.append("bad" if flagged else STATUS_CLASS.get(st.value, ""))
    parts = [STYLE, table(rows, ["node", "status", "this run", "flagged"], classes)]
    parts.append(
        f"<p>calibration state v{report.state_version} ({html.escape(report.state_path)}); "
        f"recorded as run <code>{html.escape(report.run_id)}</code></p>"
    )
    for name in report.calibrated:
        try:
            parts.append(node_result_html(report.result(name)))
        except (KeyError, FileNotFoundError) as exc:
            parts.append(f"<p>{html.escape(name)}: no stored result ({html.escape(str(exc))})</p>")
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
