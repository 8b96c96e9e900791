"""Calibration values as tables a person reads: one row per cell, values to their digits.

A state's keys are ``cells.<i>.<quantity>``, ``couplers.<k>.<quantity>`` and chip-wide
``<group>.<quantity>``. Per-item keys are pivoted (rows: cells or couplers, columns:
quantities) and chip-wide ones listed; every number is written with
:func:`labstack.fit.precision.format_value`, so no value shows more digits than
its error supports. Matrices and per-cell rows of them (crosstalk) are not
dumped as numbers: the node's heat map shows them. Past :data:`MAX_ROWS` cells (or
couplers) a group is summarised per quantity instead (:func:`summary_html`): nobody
reads a table of a thousand rows; the chip maps and histograms show the spread, and
every value stays in the calibration state.
"""

from __future__ import annotations

import html
import re
from collections import Counter
from collections.abc import Mapping
from typing import Any

import numpy as np

from labstack.fit.precision import format_value

_ITEM = re.compile(r"^(cells|couplers)\.(\d+)\.(.+)$")

#: past this many cells (or couplers) a group's values are summarised, not listed
MAX_ROWS = 256


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


def numbers(entries: Any) -> np.ndarray:
    """The valid, finite numeric values among ``entries`` (dicts with ``value`` and ``valid``)."""
    out = [
        float(e["value"]) for e in entries
        if e.get("valid", True) and isinstance(e.get("value"), int | float) and not isinstance(e.get("value"), bool)
    ]
    arr = np.asarray(out, dtype=float)
    return arr[np.isfinite(arr)]


def summary_rows(rows: Mapping[int, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per quantity of a big group: how many values, how many flagged, and their spread.

    Numbers give the median and the 5-95 % range over the items (four significant
    digits: a spread, not a measurement) and the median stated error; words (a health
    verdict) give their counts.
    """
    quantities = sorted({q for row in rows.values() for q in row})
    out = []
    for q in quantities:
        es = [row[q] for row in rows.values() if q in row]
        flagged = sum(1 for e in es if not e.get("valid", True))
        vals = numbers(es)
        unit = next((e.get("unit", "") for e in es if e.get("unit")), "")
        words = Counter(str(e["value"]) for e in es if e.get("valid", True) and isinstance(e.get("value"), str))
        if vals.size:
            errs = np.asarray([e["stderr"] for e in es if isinstance(e.get("stderr"), int | float)], float)
            err = float(np.median(errs)) if errs.size else None
            lo, mid, hi = np.percentile(vals, [5, 50, 95])
            spread = f"{format_value(lo, None, unit)} … {format_value(hi, None, unit)}"
            median = format_value(mid, None, unit)
            median_err = format_value(err, None, unit) if err is not None else ""
        elif words:
            spread, median, median_err = ", ".join(f"{w} {n}" for w, n in words.most_common()), "", ""
        else:
            spread, median, median_err = "", "", ""
        out.append({"quantity": q, "values": len(es), "flagged": flagged, "median": median,
                    "spread": spread, "median_error": median_err})
    return out


def summary_html(group: str, rows: Mapping[int, Mapping[str, Any]]) -> str:
    """A big group as one line per quantity (see :func:`summary_rows`)."""
    body = "".join(
        f'<tr class="{"bad" if r["flagged"] else ""}"><td>{html.escape(r["quantity"])}</td><td>{r["values"]}</td>'
        f'<td>{r["flagged"] or ""}</td><td>{html.escape(r["median"])}</td><td>{html.escape(r["spread"])}</td>'
        f'<td>{html.escape(r["median_error"])}</td></tr>'
        for r in summary_rows(rows)
    )
    return (f'<p class="note">{len(rows)} {html.escape(group)}: summarised per quantity (more than {MAX_ROWS} '
            f"rows); the chip maps and histograms show them, the calibration state holds every value.</p>"
            f'<table class="ls"><thead><tr><th>quantity</th><th>values</th><th>flagged</th><th>median</th>'
            f"<th>5–95 % (or counts)</th><th>median error</th></tr></thead><tbody>{body}</tbody></table>")


def entries_html(entries: Mapping[str, Mapping[str, Any]]) -> str:
    """Per-item pivot tables, then chip-wide values; flagged entries in red with why."""
    items, chip, matrices = split(entries)
    parts = []
    for group, rows in sorted(items.items()):
        if len(rows) > MAX_ROWS:
            parts.append(summary_html(group, rows))
            continue
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
