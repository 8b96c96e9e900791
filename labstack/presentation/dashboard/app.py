"""The dashboard's web application (FastAPI): the page, its JSON API, its event stream.

Read-only by default: every ``GET`` reads the data directory and changes nothing.
The one request that changes anything, ``POST /api/control/{pause|resume|abort}``,
needs the token printed when the server starts (header ``X-Labstack-Token``); it
writes ``<data_dir>/labstack.control`` exactly as ``labstack control`` does, and
the running run acts on it between points.

Live updates: ``GET /api/events`` is a server-sent event stream; each event is the
watcher's snapshot (:mod:`labstack.presentation.dashboard.live`) whenever it
changed: progress of the running node, a new state version, a new run, the served
lab's clock moving on (its service file, rewritten every second).

Node status (``GET /api/nodes``, and in ``/api/summary``) is judged by the clock of
the data directory's lab, and says which (``clock``, ``note``): a served lab's clock
now (``labstack serve``: read from its service file, so nodes go stale between
passes as it runs on), an in-process virtual lab's as of the state's last update
(that clock lived in the calibrating process), or, on hardware, now.

Everything the page loads is served from this package (``static/``): no CDN, so
the page works on a lab machine without internet access. Bad input (an unknown
parameter, a malformed run id or body, a wrong token or method, a body over
:data:`MAX_BODY`) gets a 4xx answer naming what was wrong;
a failure inside one request is that request's 500, never the server's end.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from starlette.middleware.trustedhost import TrustedHostMiddleware

from labstack.calibrate import STATE_DIRNAME
from labstack.data import load_run
from labstack.presentation.dashboard.live import Watcher
from labstack.presentation.dashboard.views import (
    cells_view,
    nodes_view,
    page_clock,
    session_clock,
    state_view,
)
from labstack.presentation.figures import (
    chip_figure,
    figure_png,
    figure_svg,
    figure_title,
    history_figure,
    node_figures,
)
from labstack.presentation.history import PARAMETERS, StateHistory
from labstack.presentation.report import chip_health, chip_values, report_html
from labstack.presentation.results import ResultCache
from labstack.safety.control import COMMANDS, write_command
from labstack.station.geometry import cell_positions, chip_wiring

#: largest body a change request may carry (a reason is a line of text): more is 413, unread
MAX_BODY = 16 << 10
RUN_ID = re.compile(r"^\d{8}-\d{6}-[0-9a-f]{6}$")
TOKEN_HEADER = "X-Labstack-Token"
LOOPBACK_HOSTS = ["127.0.0.1", "localhost", "::1", "[::1]"]
CHIP_COLOURS = {
    "health": ("health", None, ""),
    "V0": ("bias_offset_V", "V0", "V"),
    "width": ("scurve_width_V", "width", "V"),
    "alpha": ("alpha_K_per_V", "gain α", "K/V"),
    "tau_c": ("tau_c_s", "τ_c", "s"),
    "fidelity": ("readout_fidelity", "readout fidelity", ""),
}
#: matplotlib draws one figure at a time per lock: the live views (history, chip:
#: small, redrawn on every state change) never queue behind the slow ones (a node's
#: figures, a report), which draw under their own lock. Separate Figure objects
#: with the Agg renderer may be drawn in parallel threads.
_DRAW = threading.Lock()
_DRAW_SLOW = threading.Lock()


@dataclass
class Dashboard:
    """The state of one dashboard: its data directory, watcher, token and caches."""

    data_dir: Path
    token: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    control: bool = True
    poll_s: float = 0.1
    watcher: Watcher = field(init=False)
    history: StateHistory = field(init=False)
    results: ResultCache = field(init=False)
    stopping: threading.Event = field(default_factory=threading.Event)
    _cache: dict[tuple[str, ...], Any] = field(default_factory=dict)
    #: the node view last judged, with its (state version, clock tick)
    nodes_memo: tuple[tuple[str, str], dict[str, Any]] | None = None

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir).resolve()
        self.watcher = Watcher(self.data_dir, interval=self.poll_s)
        self.history = StateHistory(self.data_dir / STATE_DIRNAME)
        self.results = ResultCache(self.data_dir)

    def cached(self, key: tuple[str, ...], make: Any) -> Any:
        """``make()`` once per ``key`` (keys include the state version or a finished run id)."""
        if key not in self._cache:
            if len(self._cache) > 256:
                self._cache.clear()
            self._cache[key] = make()
        return self._cache[key]

    def chip(self) -> tuple[list[tuple[float, float]], list[tuple[int, int]], int] | None:
        """Positions, couplings and cell count from the newest calibration's station file."""
        session = self.watcher.snapshot().get("session")
        if not session:
            return None
        try:
            attrs = json.loads((self.data_dir / session["id"] / "data.zarr" / ".zattrs").read_text())
            n, pairs = chip_wiring(attrs.get("station_file") or "")
        except Exception:
            return None
        return cell_positions(n, pairs), pairs, n


def _run_id(value: str) -> str:
    if not RUN_ID.match(value):
        raise HTTPException(404, f"no run {value!r}: run ids look like 20260101-120000-ab12cd")
    return value


def create_app(dash: Dashboard, *, allowed_hosts: list[str] | None = None) -> FastAPI:
    """The application serving ``dash``; ``allowed_hosts`` guards against DNS rebinding."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        dash.watcher.start()
        try:
            yield
        finally:
            dash.stopping.set()
            dash.watcher.stop()

    app = FastAPI(title="labstack dashboard", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts or LOOPBACK_HOSTS)
    static = resources.files("labstack.presentation.dashboard") / "static"
    app.mount("/static", StaticFiles(directory=str(static)), name="static")

    @app.get("/", response_class=HTMLResponse)
    def index() -> str:
        return (static / "index.html").read_text(encoding="utf-8")

    @app.get("/favicon.ico")
    def favicon() -> Response:
        return Response(status_code=204)

    @app.get("/api/live")
    def live() -> dict[str, Any]:
        return {**dash.watcher.snapshot(), "control_enabled": dash.control}

    @app.get("/api/events")
    async def events(request: Request) -> StreamingResponse:
        async def stream() -> AsyncIterator[str]:
            last = -1
            quiet = 0.0
            while not dash.stopping.is_set():
                snap = dash.watcher.snapshot()
                if snap.get("seq", 0) != last:
                    last = snap.get("seq", 0)
                    quiet = 0.0
                    yield f"event: update\ndata: {json.dumps(snap)}\n\n"
                elif quiet > 15:
                    quiet = 0.0
                    yield ": keep-alive\n\n"
                if await request.is_disconnected():
                    return
                await asyncio.sleep(0.05)
                quiet += 0.05

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    @app.get("/api/state")
    def state() -> dict[str, Any]:
        return state_view(dash.history.refresh())

    def node_status(st: Any) -> dict[str, Any]:
        snap = dash.watcher.snapshot()
        kind = session_clock(dash.data_dir, (snap.get("session") or {}).get("id"))
        served = snap.get("lab_service")
        if served:  # a served lab's clock runs on: judged afresh (a few ms) at most twice a second,
            # and at once when its service file changes (the service stopped, say)
            tick = f"served:{_mtime(served.get('service_file'))}:{time.time() // 0.5}"
        else:  # on wall time a node can time out with no new version: re-judge every 10 s
            tick = f"wall:{time.time() // 10}" if kind == "wall" else kind
        key = (str(st.version), tick)
        memo = dash.nodes_memo  # one slot: a ticking clock must not crowd the figures out of the cache
        if memo is not None and memo[0] == key:
            return memo[1]
        view = nodes_view(dash.data_dir, st, page_clock(dash.data_dir, st, kind, served))
        dash.nodes_memo = (key, view)
        return view

    @app.get("/api/nodes")
    def nodes() -> dict[str, Any]:
        st = dash.history.refresh()
        return {"state_version": st.version, **node_status(st)}

    @app.get("/api/summary")
    def summary() -> dict[str, Any]:
        st = dash.history.refresh()
        return {"state_version": st.version, "data_dir": str(dash.data_dir),
                **node_status(st), "cells": cells_view(st), "control_enabled": dash.control,
                "parameters": {k: p.label for k, p in PARAMETERS.items()},
                "chip_colours": {k: v[1] or "health" for k, v in CHIP_COLOURS.items()}}

    @app.get("/api/history")
    def history(param: str = "V0") -> dict[str, Any]:
        if param not in PARAMETERS:
            raise HTTPException(400, f"unknown parameter {param!r}; choose one of {sorted(PARAMETERS)}")
        return dash.history.series(param)

    @app.get("/api/history.svg")
    def history_svg(param: str = "V0") -> Response:
        if param not in PARAMETERS:
            raise HTTPException(400, f"unknown parameter {param!r}; choose one of {sorted(PARAMETERS)}")
        version = str(dash.history.refresh().version)

        def draw() -> str:
            with _DRAW:
                return figure_svg(history_figure(dash.history.series(param)))

        return Response(dash.cached(("history", param, version), draw), media_type="image/svg+xml")

    @app.get("/api/chip.svg")
    def chip_svg(color: str = "health") -> Response:
        if color not in CHIP_COLOURS:
            raise HTTPException(400, f"unknown colouring {color!r}; choose one of {sorted(CHIP_COLOURS)}")
        st = dash.history.refresh()
        layout = dash.chip()
        if layout is None:
            raise HTTPException(404, "no calibration in this data directory yet: the chip's layout is unknown")
        positions, pairs, n = layout
        suffix, label, unit = CHIP_COLOURS[color]
        entries = {k: e.to_dict() for k, e in st.entries.items()}

        def draw() -> str:
            with _DRAW:
                if color == "health":
                    fig = chip_figure(positions, pairs, title=f"chip: health (state v{st.version})",
                                      health=chip_health(entries, n))
                else:
                    values, errors, stored_unit = chip_values(entries, n, suffix)
                    fig = chip_figure(positions, pairs, title=f"chip: {label} (state v{st.version})",
                                      values=values, errors=errors, label=label or suffix, unit=stored_unit or unit)
                return figure_svg(fig)

        return Response(dash.cached(("chip", color, str(st.version)), draw), media_type="image/svg+xml")

    @app.get("/api/runs")
    def runs(limit: int = 15) -> dict[str, Any]:
        if not 1 <= limit <= 500:
            raise HTTPException(400, "limit must be between 1 and 500")
        ordered = dash.watcher.ordered_runs()
        parts = {p: r.id for r in ordered for p in (r.metadata.get("derived_from") or [])}
        shown = [{**r.as_json(), "part_of": parts.get(r.id), "report": f"/reports/{r.id}"} for r in ordered[-limit:]]
        return {"runs": shown[::-1], "count": len(ordered)}

    @app.get("/api/runs/{run_id}/figures")
    def run_figures(run_id: str) -> dict[str, Any]:
        titles = _figures(dash, _run_id(run_id))[0]
        return {"run_id": run_id, "figures": [{"title": t, "png": f"/api/runs/{run_id}/figures/{k}.png"}
                                              for k, t in enumerate(titles)]}

    @app.get("/api/runs/{run_id}/figures/{index}.png")
    def run_figure(run_id: str, index: int) -> Response:
        titles, pngs = _figures(dash, _run_id(run_id))
        if not 0 <= index < len(pngs):
            raise HTTPException(404, f"run {run_id} has {len(pngs)} figures")
        return Response(pngs[index], media_type="image/png")

    @app.get("/reports/{run_id}", response_class=HTMLResponse)
    def report(run_id: str) -> str:
        run = _load(dash, _run_id(run_id))

        def draw() -> str:
            with _DRAW_SLOW:
                return report_html(run, dash.data_dir)

        return draw() if run.status == "running" else dash.cached(("report", run_id), draw)

    @app.post("/api/control/{action}")
    async def control(action: str, request: Request) -> dict[str, Any]:
        if not dash.control:
            raise HTTPException(403, "this dashboard is read-only (started with --read-only)")
        given = request.headers.get(TOKEN_HEADER, "")
        if not secrets.compare_digest(given.encode(), dash.token.encode()):
            raise HTTPException(403, f"a change needs the token printed at start, in the {TOKEN_HEADER} header")
        if action not in COMMANDS:
            raise HTTPException(404, f"unknown action {action!r}; use one of {list(COMMANDS)}")
        reason = ""
        body = await _small_body(request)
        if body:
            try:
                payload = json.loads(body)
            except ValueError:
                raise HTTPException(400, "the body must be JSON, e.g. {\"reason\": \"fridge check\"}") from None
            if not isinstance(payload, dict) or not isinstance(payload.get("reason", ""), str):
                raise HTTPException(400, "the body must be a JSON object with a text 'reason'")
            reason = payload.get("reason", "")
        path = write_command(dash.data_dir, action, f"{reason} (dashboard)".strip())
        return {"ok": True, "action": action, "file": str(path)}

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code)

    return app


async def _small_body(request: Request) -> bytes:
    """The request's body if it is at most :data:`MAX_BODY` bytes; 413 otherwise, without reading the rest."""
    too_big = HTTPException(413, f"the body is limited to {MAX_BODY} bytes (a JSON object with a 'reason')")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY:
        raise too_big
    body = bytearray()
    async for chunk in request.stream():  # a chunked body declares no length: count as it comes
        body += chunk
        if len(body) > MAX_BODY:
            raise too_big
    return bytes(body)


def _mtime(path: str | None) -> int | None:
    try:
        return Path(path).stat().st_mtime_ns if path else None
    except OSError:
        return None


def _load(dash: Dashboard, run_id: str) -> Any:
    try:
        return load_run(run_id, dash.data_dir)
    except KeyError:
        raise HTTPException(404, f"no run {run_id} in {dash.data_dir}") from None


def _figures(dash: Dashboard, run_id: str) -> tuple[list[str], list[bytes]]:
    """A node run's figures (titles, PNGs), drawn once: a finished run never changes."""
    run = _load(dash, run_id)
    if not run.metadata.get("calibration"):
        return [], []

    def draw() -> tuple[list[str], list[bytes]]:
        data = dash.results.get(run_id)
        if not data.ok:
            return [], []
        with _DRAW_SLOW:
            figs = node_figures(data.name, data.results, data.dataset)
            return [figure_title(f) for f in figs], [figure_png(f) for f in figs]

    if run.status == "running":
        return [], []
    return dash.cached(("figures", run_id), draw)
