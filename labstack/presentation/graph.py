"""The calibration graph as an SVG: nodes in columns by depth, coloured by status.

Shared by the notebook display, the reports and the dashboard. Inline SVG for
HTML5 (no namespace URL, so a report holds no link to anywhere); each node is a
``<g data-node=... data-status=...>`` so a page can restyle it live.
"""

from __future__ import annotations

import html


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
        f'<svg class="graph" width="{width}" height="{height}" '
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
            f'<g data-node="{html.escape(name)}" data-status="{html.escape(status.get(name, ""))}">'
            f"<title>{html.escape(name)}: {html.escape(status.get(name, ''))}</title>"
            f'<rect x="{x}" y="{y}" width="{w}" height="{h}" rx="5" fill="{fill}" stroke="#444"/>'
            f'<text x="{x + w / 2}" y="{y + h / 2 + 4}" text-anchor="middle">'
            f"{html.escape(name)}</text></g>"
        )
    parts.append("</svg>")
    return "".join(parts)


