"""Rich notebook display: the calibration graph, a node's result, a calibration, a replay.

Each ``_repr_html_`` in labstack (``CalibrationGraph``, ``CalibrationReport``,
``NodeResult``, ``ReplayReport``; ``Run`` and ``CalibrationState`` have their own)
renders through here, so a notebook shows tables with status colours and the
routine's own plots (S-curves with fits) as inline PNG instead of reprs.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Any

from labstack.report import figure_png, table

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
@dataclass
class NodeResult:
    """One node's fit results with the data they came from; displays as table + plot."""

    name: str
    results: Any
    dataset: Any = None
    module: Any = None
    run_id: str | None = None

    def table(self) -> str:
        if self.module is not None and hasattr(self.module, "table"):
            return str(self.module.table(self.results))
        return repr(self.results)

    def figure(self) -> Any:
        if self.module is None or self.dataset is None or not hasattr(self.module, "plot"):
            return None
        return self.module.plot(self.results, self.dataset)

    def _repr_html_(self) -> str:
        parts = [f"<h4>{html.escape(self.name)}" + (f" <small>run {self.run_id}</small>" if self.run_id else "") + "</h4>"]
        parts.append(f"<pre>{html.escape(self.table())}</pre>")
        fig = self.figure()
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
            parts.append(report.result(name)._repr_html_())
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
