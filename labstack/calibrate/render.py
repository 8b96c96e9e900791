"""Readable text tables of calibration entries (terminal, logs); HTML lives in labstack.presentation."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from labstack.calibrate.records import Entry

COLUMNS = ("key", "value", "± stderr", "unit", "valid", "node", "run_id", "utc", "note")


def format_number(x: Any, digits: int = 6) -> str:
    if x is None:
        return ""
    if isinstance(x, bool):
        return str(x)
    if isinstance(x, float):
        return f"{x:.{digits}g}"
    if isinstance(x, (list, tuple)):
        text = "[" + ", ".join(format_number(v, 3) for v in x[:4]) + (", …]" if len(x) > 4 else "]")
        return text
    return str(x)


def entry_row(key: str, e: Entry) -> list[str]:
    return [
        key,
        format_number(e.value),
        format_number(e.stderr, 2),
        e.unit,
        "yes" if e.valid else "NO",
        e.node or "",
        e.run_id or "",
        (e.utc or "")[:19],
        e.note,
    ]


def text_table(rows: list[list[str]], header: tuple[str, ...] = COLUMNS) -> str:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=False)]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(header, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    for row in rows:
        lines.append("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return "\n".join(lines)


def entries_rows(entries: Mapping[str, Entry]) -> list[list[str]]:
    return [entry_row(k, entries[k]) for k in sorted(entries, key=_natural)]


def _natural(key: str) -> list[Any]:
    """Sort ``cells.10`` after ``cells.9``."""
    return [(0, int(p), "") if p.isdigit() else (1, 0, p) for p in key.split(".")]
