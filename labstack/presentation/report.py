"""Self-contained HTML reports of a run or a calibration, plots embedded as PNG.

One file, no external assets (plots are base64 PNG in ``<img>`` tags, the style is
inline), so a report can be mailed, attached to an issue or opened in any browser
years later. The same fragments give the notebook display of a run
(:mod:`labstack.presentation.display`).

A calibration run (see :mod:`labstack.session.record`) reports its nodes'
status, the values it fitted with their uncertainties, and each acquisition it
made, plotted by the routine's own ``plot(results, dataset)`` when it has one
(S-curves with their fits for ``bias_scurve``), generically otherwise.
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import Any

import xarray as xr

from labstack.data import Run, load_run, resolve_data_dir
from labstack.session.record import session_of
from labstack.session.run import routines

REPORT_NAME = "report.html"
MAX_PLOTS = 8

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; max-width: 1100px; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 1.6em; border-bottom: 1px solid #ccc; }
table.ls { border-collapse: collapse; margin: .5em 0; font-size: .9em; }
table.ls td, table.ls th { border: 1px solid #ddd; padding: 2px 8px; text-align: left; }
table.ls th { background: #f3f3f3; }
tr.bad td { background: #fdd; } tr.ok td { background: #efe; }
img.plot { max-width: 100%; border: 1px solid #eee; margin: .3em 0; }
pre { background: #f7f7f7; padding: .5em; overflow-x: auto; font-size: .85em; }
.pass { color: #070; font-weight: bold; } .fail { color: #b00; font-weight: bold; }
"""


# ----------------------------------------------------------------- pieces
def figure_png(fig: Any, dpi: int = 80) -> str:
    """A matplotlib figure as a base64 PNG ``<img>`` tag; the figure is closed."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img class="plot" alt="plot" src="data:image/png;base64,{data}">'


def table(rows: list[list[Any]], header: list[str], classes: list[str] | None = None) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = []
    for i, row in enumerate(rows):
        cls = f' class="{classes[i]}"' if classes and classes[i] else ""
        cells = "".join(f"<td>{html.escape(_fmt(c))}</td>" for c in row)
        body.append(f"<tr{cls}>{cells}</tr>")
    return f'<table class="ls"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def _fmt(x: Any) -> str:
    if x is None:
        return ""
    if isinstance(x, float):
        return f"{x:.6g}"
    return str(x)


def _plottable(ds: xr.Dataset) -> list[str]:
    return [
        str(n) for n in ds.data_vars
        if not str(n).endswith("_clock") and ds[n].dtype.kind in "fiub" and ds[n].size
    ]


def variable_figure(da: xr.DataArray) -> Any:
    """A quick look at one variable: line for 1-D, lines or image for 2-D (more dims averaged)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    extra = list(da.dims[2:])
    if extra:
        da = da.mean(dim=extra)
    fig, ax = plt.subplots(figsize=(6, 3.2))
    label = f"{da.name} ({da.attrs.get('units', '')})" if da.attrs.get("units") else str(da.name)
    if da.ndim == 0:
        ax.text(0.5, 0.5, f"{float(da):.6g}", ha="center")
    elif da.ndim == 1:
        ax.plot(da[da.dims[0]].values, da.values, ".-", ms=3)
        ax.set_xlabel(da.dims[0])
        ax.set_ylabel(label)
    else:
        x, y = da.dims
        if da.sizes[y] <= 16:
            for j in range(da.sizes[y]):
                ax.plot(da[x].values, da.isel({y: j}).values, lw=1, label=f"{y} {j}")
            ax.set_xlabel(x)
            ax.set_ylabel(label)
            if da.sizes[y] <= 8:
                ax.legend(fontsize=7)
        else:
            mesh = ax.pcolormesh(da[x].values, da[y].values, da.values.T, shading="auto")
            fig.colorbar(mesh, ax=ax, label=label)
            ax.set_xlabel(x)
            ax.set_ylabel(y)
    if extra:
        ax.set_title(f"{da.name}, mean over {', '.join(map(str, extra))}", fontsize=9)
    fig.tight_layout()
    return fig


def routine_figure(run: Run, ds: xr.Dataset) -> Any | None:
    """The calibration routine's own plot of this run, if it made the run and has one."""
    name = run.metadata.get("calibration")
    if not name:
        return None
    module = routines().get(name)
    if module is None or not hasattr(module, "plot"):
        return None
    params = None
    if hasattr(module, "Parameters") and isinstance(run.metadata.get("parameters"), dict):
        params = module.Parameters(**run.metadata["parameters"])
    return module.plot(module.fit(ds, params), ds)


def run_plots(run: Run, ds: xr.Dataset | None = None) -> list[str]:
    ds = ds if ds is not None else run.dataset()
    out = []
    fig = routine_figure(run, ds)
    if fig is not None:
        out.append(figure_png(fig))
    for name in _plottable(ds)[:MAX_PLOTS]:
        out.append(figure_png(variable_figure(ds[name])))
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
        ["points", info.get("points_flushed")],
        ["git", attrs.get("git_revision")],
    ]
    if info.get("error"):
        rows.append(["error", info["error"]])
    parts = [f"<{h}>{html.escape(run.name)} <small>{run.id}</small></{h}>"]
    parts.append(table([r for r in rows if r[1] not in (None, "")], ["", ""]))
    if run.metadata:
        meta = {k: v for k, v in run.metadata.items() if k != "runs"}
        parts.append(f"<pre>{html.escape(json.dumps(meta, indent=1, default=str)[:3000])}</pre>")
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


def calibration_html(run: Run, data_dir: Path, *, plots: bool = True) -> str:
    """A recorded calibration: node status, fitted values, then each acquisition."""
    session = session_of(run) or {}
    parts = [run_summary_html(run, plots=False)]
    status = session.get("status", {})
    if status:
        rows = [[n, s, "calibrated" if n in session.get("calibrated", []) else "kept"] for n, s in status.items()]
        classes = ["ok" if s == "fresh" else "bad" for s in status.values()]
        parts += ["<h2>Nodes</h2>", table(rows, ["node", "status", "this run"], classes)]
    results = session.get("results", {})
    if results:
        rows, classes = [], []
        for key in sorted(results, key=_natural):
            e = results[key]
            rows.append([key, e.get("value"), e.get("stderr"), e.get("unit"), "yes" if e.get("valid") else "NO", e.get("note")])
            classes.append("" if e.get("valid") else "bad")
        parts.append(
            f"<h2>Fitted values</h2><p>state v{run.attrs.get('calibration_state_version')} → "
            f"v{session.get('state_end_version')}</p>"
        )
        parts.append(table(rows, ["key", "value", "± stderr", "unit", "valid", "note"], classes))
    for rid in session.get("runs", []):
        try:
            child = load_run(rid, data_dir)
        except KeyError:
            parts.append(f"<p>run {html.escape(rid)} is not stored here</p>")
            continue
        parts.append(run_summary_html(child, plots=plots, level=3))
    return "\n".join(parts)


def _natural(key: str) -> list[Any]:
    return [(0, int(p), "") if p.isdigit() else (1, 0, p) for p in key.split(".")]


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
