"""Self-contained HTML reports of a run or a calibration, written for a physicist.

One file, no external assets (plots are base64 PNG in ``<img>`` tags, the style is
inline), so a report can be mailed, attached to an issue or opened in any browser
years later.

A calibration's report (see :mod:`labstack.session.record`) shows the graph with
each node's status, the chip as pictures (health, offsets), then one section per
node: its values, per cell, to the digits their errors support
(:mod:`labstack.presentation.tables`), and the node's own figures of its result
(:func:`labstack.presentation.figures.node_figures`: data, fit, residuals), from
its stored run re-fitted with the parameters it ran with. Raw variables are plotted
only for plain runs, where no node knows better.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import xarray as xr

from labstack.calibrate import STATE_DIRNAME, CalibrationState
from labstack.clock import format_duration
from labstack.data import Run, RunNotFoundError, load_run, resolve_data_dir
from labstack.presentation.figures import (
    chip_figure,
    figure_title,
    group_histograms,
    node_figures,
    png_tag,
    variable_figure,
)
from labstack.presentation.graph import graph_svg
from labstack.presentation.results import NodeData, node_runs, refit
from labstack.presentation.tables import entries_html
from labstack.session.record import session_of
from labstack.station.geometry import cell_positions, chip_wiring

REPORT_NAME = "report.html"
MAX_PLOTS = 8

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; max-width: 1200px; }
h1 { font-size: 1.5em; } h2 { font-size: 1.25em; margin-top: 1.8em; border-bottom: 1px solid #ccc; }
h3 { font-size: 1.05em; margin-top: 1.2em; }
table.ls { border-collapse: collapse; margin: .5em 0; font-size: .88em; }
table.ls td, table.ls th { border: 1px solid #ddd; padding: 2px 8px; text-align: left; }
table.ls th { background: #f3f3f3; font-weight: 600; }
tr.bad td, td.bad { background: #fdd; } tr.ok td { background: #efe; }
img.plot { max-width: 100%; border: 1px solid #eee; margin: .3em .3em .3em 0; }
pre { background: #f7f7f7; padding: .5em; overflow-x: auto; font-size: .85em; }
.note { color: #555; font-size: .9em; } .fail { color: #b00; font-weight: bold; }
.pass { color: #070; font-weight: bold; }
"""


# ----------------------------------------------------------------- pieces
def table(rows: list[list[Any]], header: list[str], classes: list[str] | None = None) -> str:
    """Rows of text as an HTML table (everything escaped)."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = []
    for i, row in enumerate(rows):
        cls = f' class="{classes[i]}"' if classes and classes[i] else ""
        cells = "".join(f"<td>{html.escape('' if c is None else str(c))}</td>" for c in row)
        body.append(f"<tr{cls}>{cells}</tr>")
    return f'<table class="ls"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def figures_html(figures: list[Any]) -> str:
    return "\n".join(png_tag(fig, figure_title(fig)) for fig in figures)


def node_section_html(data: NodeData, *, level: int = 3) -> str:
    """A node's figures of its stored result, or why there are none."""
    h = f"h{level}"
    if not data.ok:
        return f'<p class="note">{html.escape(data.error)}</p>'
    figures = node_figures(data.name, data.results, data.dataset)
    if not figures:
        return f'<p class="note">{html.escape(data.name)} draws no figure of run {data.run_id}.</p>'
    return f"<{h} class=\"figs\">figures (run {html.escape(str(data.run_id))})</{h}>\n" + figures_html(figures)


def _plottable(ds: xr.Dataset) -> list[str]:
    return [
        str(n) for n in ds.data_vars
        if not str(n).endswith("_clock") and ds[n].dtype.kind in "fiub" and ds[n].size
    ]


def run_plots(run: Run, ds: xr.Dataset | None = None) -> list[str]:
    """A node's run: the node's figures; a plain run: each variable, labelled, none empty."""
    ds = ds if ds is not None else run.dataset()
    if run.metadata.get("calibration"):
        data = refit(run)
        if data.ok:
            return [png_tag(f, figure_title(f)) for f in node_figures(data.name, data.results, data.dataset)]
    out = []
    for name in _plottable(ds)[:MAX_PLOTS]:
        fig = variable_figure(ds[name])
        if fig is not None:
            out.append(png_tag(fig, figure_title(fig)))
    return out


def run_summary_html(run: Run, *, plots: bool = True, level: int = 2) -> str:
    """A run as an HTML fragment: what, when, where, its variables and plots."""
    info, attrs = run.info, run.attrs
    h = f"h{level}"
    rows = [
        ["run", run.id],
        ["name", run.name],
        ["status", run.status],
        ["start (UTC)", attrs.get("start_utc")],
        ["end (UTC)", attrs.get("end_utc")],
        ["clock", attrs.get("clock")],
        ["virtual lab", attrs.get("lab_description")],
        ["seed", attrs.get("lab_seed")],
        ["calibration state at start", attrs.get("calibration_state_version")],
        ["lab time (fridge)", _duration(attrs.get("lab_s"))],
        ["wall time", _duration(attrs.get("wall_s"))],
        ["points", info.get("points_flushed")],
        ["git", attrs.get("git_revision")],
    ]
    if info.get("error"):
        rows.append(["error", info["error"]])
    parts = [f"<{h}>{html.escape(run.name)} <small>{run.id}</small></{h}>"]
    parts.append(table([r for r in rows if r[1] not in (None, "")], ["", ""]))
    if run.metadata:
        meta = {k: v for k, v in run.metadata.items() if k != "runs"}
        text = json.dumps(meta, indent=1, default=str)
        parts.append(f"<details><summary>metadata</summary><pre>{html.escape(text[:3000])}</pre></details>")
    if attrs.get("kind") == "calibration":
        return "\n".join(parts)
    ds = run.dataset()
    var_rows = [
        [str(n), " × ".join(f"{d} {ds.sizes[d]}" for d in ds[n].dims), str(ds[n].dtype),
         ds[n].attrs.get("units", "")]
        for n in ds.data_vars
    ]
    parts.append(table(var_rows, ["variable", "dims", "dtype", "unit"]))
    if attrs.get("sequence"):
        parts.append(f"<details><summary>sequence</summary><pre>{html.escape(_sequence_text(attrs['sequence']))}</pre></details>")
    if plots:
        parts += run_plots(run, ds)
    return "\n".join(parts)


def _sequence_text(text: str) -> str:
    """The stored sequence with long value lists shortened, for reading."""
    def shorten(x: Any) -> Any:
        if isinstance(x, list) and len(x) > 6 and all(isinstance(v, int | float) for v in x):
            return f"[{x[0]:.4g}, {x[1]:.4g}, … {x[-1]:.4g}] ({len(x)} values)"
        if isinstance(x, list):
            return [shorten(v) for v in x]
        if isinstance(x, dict):
            return {k: shorten(v) for k, v in x.items()}
        return x

    return json.dumps(shorten(json.loads(text)), indent=1)


# ----------------------------------------------------------------- the chip
def end_entries(run: Run, data_dir: Path, session: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every entry of the state the calibration ended with (its own results if that is gone)."""
    chip = run.metadata.get("chip")
    state_dir = data_dir / "chips" / str(chip) / STATE_DIRNAME if chip else data_dir / STATE_DIRNAME
    end = session.get("state_end_version")
    try:
        if not (state_dir / "current").is_file():  # a report reads; it never creates a state
            raise FileNotFoundError(state_dir)
        state = CalibrationState.load(state_dir)
        view = state if end == state.version else state.at(int(end))
        return {k: e.to_dict() for k, e in view.entries.items()}
    except (KeyError, ValueError, TypeError, OSError):
        return dict(session.get("results", {}))


def chip_health(entries: dict[str, dict[str, Any]], n: int) -> list[str]:
    """Per cell: the readout's verdict, ``flagged`` if any of its values is invalid."""
    out = []
    for i in range(n):
        prefix = f"cells.{i}."
        verdict = entries.get(prefix + "health", {}).get("value") or "unknown"
        invalid = any(not e.get("valid", True) for k, e in entries.items() if k.startswith(prefix))
        out.append("flagged" if verdict == "ok" and invalid else str(verdict))
    return out


def chip_values(entries: dict[str, dict[str, Any]], n: int, suffix: str) -> tuple[list[float | None], list[float | None], str]:
    values, errors, unit = [], [], ""
    for i in range(n):
        e = entries.get(f"cells.{i}.{suffix}")
        ok = e is not None and e.get("valid", True) and isinstance(e.get("value"), int | float)
        values.append(float(e["value"]) if ok else None)
        errors.append(e.get("stderr") if ok else None)
        unit = unit or (e or {}).get("unit", "")
    return values, errors, unit


def chip_maps(run: Run, entries: dict[str, dict[str, Any]]) -> list[Any]:
    """The chip coloured by health and by offset V0, laid out from the stored station file."""
    try:
        n, pairs = chip_wiring(run.attrs.get("station_file") or "")
    except Exception:
        return []
    positions = cell_positions(n, pairs)
    out = [chip_figure(positions, pairs, title="chip: health (readout verdict, flagged values)",
                       health=chip_health(entries, n))]
    values, errors, unit = chip_values(entries, n, "bias_offset_V")
    if any(v is not None for v in values):
        out.append(chip_figure(positions, pairs, title="chip: bias offset V0", values=values, errors=errors,
                               label="V0", unit=unit or "V"))
    return out


# ----------------------------------------------------------------- calibrations
def calibration_html(run: Run, data_dir: Path, *, plots: bool = True) -> str:
    """A recorded calibration: graph and chip, then each node's values and figures."""
    session = session_of(run) or {}
    parts = [run_summary_html(run, plots=False)]
    status = session.get("status", {})
    calibrated = set(session.get("calibrated", []))
    if status:
        order = list(status)
        deps = _dependencies(order)
        costs = _node_costs(session.get("costs") or {})
        rows = [[n, s, "calibrated" if n in calibrated else "kept (still valid)",
                 _duration(costs.get(n, (None, None))[0]), _duration(costs.get(n, (None, None))[1])]
                for n, s in status.items()]
        classes = ["ok" if s == "fresh" else "bad" for s in status.values()]
        parts += ["<h2>Calibration graph</h2>", graph_svg(order, deps, status),
                  table(rows, ["node", "status", "this run", "lab time", "wall time"], classes)]
    parts.append(
        f"<p>calibration state v{run.attrs.get('calibration_state_version')} → "
        f"v{session.get('state_end_version')}</p>"
    )
    entries = end_entries(run, data_dir, session)
    if plots:
        maps = chip_maps(run, entries)
        if maps:
            parts += ["<h2>Chip</h2>", figures_html(maps)]
    runs: list[Run] = []
    missing = []
    for rid in session.get("runs", []):
        try:
            runs.append(load_run(rid, data_dir))
        except RunNotFoundError:
            missing.append(rid)
    chosen = node_runs(runs)
    results = session.get("results", {})
    for name in status or sorted({e.get("node") for e in results.values() if e.get("node")}):
        mine = {k: e for k, e in results.items() if e.get("node") == name}
        parts.append(f"<h2>{html.escape(name)} <small>{html.escape(status.get(name, ''))}</small></h2>")
        if name not in calibrated:
            parts.append('<p class="note">kept: still valid, not recalibrated in this run.</p>')
        if mine:
            parts.append(entries_html(mine))
            if plots:  # a group too big to list is drawn: one histogram per quantity
                parts.append(figures_html(group_histograms(mine, node=name)))
        if plots and name in chosen:
            parts.append(node_section_html(refit(chosen[name])))
    if runs:
        rows = [[r.id, r.metadata.get("calibration", r.name), r.metadata.get("mode", ""), r.status,
                 r.info.get("points_flushed"), _duration(r.info.get("lab_s")),
                 "merged from " + ", ".join(r.metadata["derived_from"])
                 if r.metadata.get("derived_from") else ""] for r in runs]
        parts += ["<h2>Acquisitions</h2>",
                  table(rows, ["run", "node", "mode", "status", "points", "lab time", "note"])]
    parts += [f"<p class=\"note\">run {html.escape(rid)} is not stored here</p>" for rid in missing]
    return "\n".join(parts)


def _dependencies(order: list[str]) -> dict[str, tuple[str, ...]]:
    from labstack.session import routines

    modules = routines()
    return {n: tuple(d for d in getattr(modules.get(n), "DEPENDS_ON", ()) if d in order) for n in order}


# ----------------------------------------------------------------- documents
def report_html(run: Run, data_dir: str | Path | None = None, *, plots: bool = True) -> str:
    """A complete HTML document for ``run`` (a measurement or a calibration)."""
    root = run.path.parent if data_dir is None else resolve_data_dir(data_dir)
    body = (
        calibration_html(run, root, plots=plots)
        if run.attrs.get("kind") == "calibration"
        else run_summary_html(run, plots=plots)
    )
    title = f"labstack {run.name} {run.id}"
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head>"
        f"<body><h1>{html.escape(title)}</h1>\n{body}\n"
        "<p><small>written by labstack; plots are embedded, the file stands alone</small></p>"
        "</body></html>\n"
    )


def write_report(
    run_id: str, data_dir: str | Path | None = None, output: str | Path | None = None
) -> Path:
    """Write the report of run ``run_id``; default ``<data_dir>/<run_id>/report.html``."""
    run = load_run(run_id, data_dir)
    path = Path(output) if output else run.path / REPORT_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(report_html(run, data_dir), encoding="utf-8")
    return path


def _duration(seconds: Any) -> str | None:
    """A lab or wall duration as a person reads it (None: not recorded, row left out)."""
    return None if seconds is None else format_duration(float(seconds))


def _node_costs(costs: dict[str, dict[str, dict[str, float]]]) -> dict[str, tuple[float, float]]:
    """Each node's (lab s, wall s) over every function the walk ran on it."""
    return {
        name: (sum(f.get("lab_s") or 0.0 for f in by_fn.values()), sum(f.get("wall_s") or 0.0 for f in by_fn.values()))
        for name, by_fn in costs.items()
    }
