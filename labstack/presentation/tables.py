"""Calibration values as tables a person reads: one row per cell, values to their digits.

A state's keys are ``cells.<i>.<quantity>``, ``couplers.<k>.<quantity>`` and chip-wide
``<group>.<quantity>``. Per-item keys are pivoted (rows: cells or couplers, columns:
quantities) and chip-wide ones listed; every number is written with
:func:`labstack.fit.precision.format_value`, so no value shows more digits than
its error supports. Matrices and per-cell rows of them (crosstalk) are not
dumped as numbers: the node's heat map shows them.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping
from typing import Any

from labstack.fit.precision import format_value

_ITEM = re.compile(r"^(cells|couplers)\.(\d+)\.(.+)$")


def cell(entry: Mapping[str, Any]) -> str:
    """One entry (``value``, ``stderr``, ``unit``, ``valid``, ``note``) as table text."""
    if not entry.get("valid", True):
        return "flagged"
    return format_value(entry.get("value"), entry.get("stderr"), entry.get("unit", ""))


def _is_matrix(entry: Mapping[str, Any]) -> bool:
    value = entry.get("value")
    return isinstance(value, list) and bool(value) and not all(isinstance(v, int | bool) for v in value)


def split(entries: Mapping[str, Mapping[str, Any]]) -> tuple[dict[str, dict[int, dict[str, Any]]], dict[str, Any], list[str]]:
    """(per-item ``{group: {index: {quantity: entry}}}``, chip-wide ``{key: entry}``, matrix keys)."""
    items: dict[str, dict[int, dict[str, Any]]] = {}
    chip: dict[str, Any] = {}
    matrices: list[str] = []
    for key, entry in entries.items():
        if _is_matrix(entry):
            matrices.append(key)
            continue
        m = _ITEM.match(key)
        if m:
            items.setdefault(m.group(1), {}).setdefault(int(m.group(2)), {})[m.group(3)] = entry
        else:
            chip[key] = entry
    return items, chip, matrices


def entries_html(entries: Mapping[str, Mapping[str, Any]]) -> str:
    """Per-item pivot tables, then chip-wide values; flagged entries in red with why."""
    items, chip, matrices = split(entries)
    parts = []
    for group, rows in sorted(items.items()):
        quantities = sorted({q for row in rows.values() for q in row})
        head = "".join(f"<th>{html.escape(q)}</th>" for q in quantities)
        body = []
        for index in sorted(rows):
            tds = []
            for q in quantities:
                e = rows[index].get(q)
                if e is None:
                    tds.append("<td></td>")
                elif not e.get("valid", True):
                    tds.append(f'<td class="bad" title="{html.escape(str(e.get("note", "")))}">flagged</td>')
                else:
                    tds.append(f"<td>{html.escape(cell(e))}</td>")
            body.append(f"<tr><th>{group[:-1]} {index}</th>{''.join(tds)}</tr>")
        parts.append(f'<table class="ls"><thead><tr><th></th>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>')
    if chip:
        rows_html = "".join(
            f'<tr class="{"" if e.get("valid", True) else "bad"}"><td>{html.escape(k)}</td>'
            f"<td>{html.escape(cell(e))}</td><td>{html.escape(str(e.get('note') or ''))}</td></tr>"
            for k, e in sorted(chip.items())
        )
        parts.append(f'<table class="ls"><thead><tr><th>quantity</th><th>value</th><th>note</th></tr></thead><tbody>{rows_html}</tbody></table>')
    if matrices:
        parts.append(f"<p class=\"note\">{len(matrices)} matrix entries ({html.escape(', '.join(sorted(matrices)[:3]))}"
                     f"{', …' if len(matrices) > 3 else ''}) are shown as heat maps.</p>")
    return "\n".join(parts)
