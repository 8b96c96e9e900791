"""The dashboard's API: numbers equal the state, bad requests get 4xx, changes need the token.

A small calibration (bias_scurve and what it needs, 4 cells) gives the data
directory; the API is exercised in process (FastAPI's TestClient) and over real
sockets against uvicorn on a free loopback port.
"""

from __future__ import annotations

import json
import re
import socket

import httpx
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from qcodes.instrument import Instrument

from labstack.calibrate import CalibrationState
from labstack.cli import main
from labstack.fit.precision import format_value
from labstack.presentation.dashboard import (
    Dashboard,
    DashboardServer,
    RemoteBindRefused,
    create_app,
)
from labstack.presentation.dashboard.app import MAX_BODY
from labstack.presentation.dashboard.live import leaf_points
from labstack.safety.control import CONTROL_FILE
from labstack.session import calibrate_station
from labstack.visa import open_station
from tests.conftest import lab_description
from tests.golden.scripts import CALIBRATION_NAMES, CALIBRATION_PARAMS


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("dashboard")
    station = open_station("virtual", lab=lab_description(seed=7, cells=4, instance="dashboard-api"))
    calibrate_station(station, data_dir=root, names=CALIBRATION_NAMES, params=CALIBRATION_PARAMS, progress=False)
    station.close()
    Instrument.close_all()
    return root


@pytest.fixture(scope="module")
def server(data_dir):
    with DashboardServer(data_dir, port=0) as running:
        yield running


def test_api_numbers_equal_the_calibration_state(data_dir):
    state = CalibrationState.load(data_dir / "calibration_state")
    with TestClient(create_app(Dashboard(data_dir)), base_url="http://127.0.0.1") as client:
        got = client.get("/api/state").json()
        summary = client.get("/api/summary").json()
    assert got["version"] == state.version and set(got["entries"]) == set(state.entries)
    for key, e in state.entries.items():
        shown = got["entries"][key]
        assert (shown["value"], shown["stderr"], shown["unit"], shown["valid"]) == (e.value, e.stderr, e.unit, e.valid)
        assert shown["text"] == (format_value(e.value, e.stderr, e.unit) if e.valid else "flagged")
    cells = {v["key"]: v["text"] for row in summary["cells"]["rows"] for v in row["values"]}
    for i in range(4):
        e = state.get(f"cells.{i}.bias_offset_V")
        assert cells[f"cells.{i}.bias_offset_V"] == format_value(e.value, e.stderr, "V")
    status = {n["name"]: n["status"] for n in summary["nodes"]}
    assert status["bias_scurve"] == "fresh" and status["validation"] == "never"
    # an in-process virtual lab's clock died with its process: as of the state's last update, and said so
    assert summary["clock"] == "virtual" and "last state update" in summary["note"]
    assert summary["as_of"] == state.history()[-1].utc
    bias = next(n for n in summary["nodes"] if n["name"] == "bias_scurve")
    assert bias["calibrated_utc"] == state.node_record("bias_scurve").calibrated_utc and bias["valid_until_utc"]


def test_history_has_a_point_per_calibration(data_dir):
    with TestClient(create_app(Dashboard(data_dir)), base_url="http://127.0.0.1") as client:
        series = client.get("/api/history", params={"param": "V0"}).json()
        svg = client.get("/api/history.svg", params={"param": "V0"}).text
    assert len(series["events"]) == 1 and all(len(points) == 1 for points in series["cells"].values())
    assert svg.count('id="history-cell-') == 4


def test_bad_requests_get_4xx_with_a_reason(data_dir):
    with TestClient(create_app(Dashboard(data_dir)), base_url="http://127.0.0.1") as client:
        assert client.get("/api/history", params={"param": "nope"}).status_code == 400
        assert "choose one of" in client.get("/api/history.svg", params={"param": "x"}).json()["error"]
        assert client.get("/api/chip.svg", params={"color": "plaid"}).status_code == 400
        assert client.get("/api/runs", params={"limit": "many"}).status_code == 422
        assert client.get("/api/runs", params={"limit": 0}).status_code == 400
        assert client.get("/api/runs/..%2F..%2Fetc/figures").status_code == 404
        assert client.get("/reports/20260101-000000-abcdef").status_code == 404
        assert client.get("/no/such/page").status_code == 404
        assert client.get("/api/live", headers={"Host": "evil.example"}).status_code == 400  # DNS rebinding


def test_changes_need_the_token_printed_at_start(data_dir):
    dash = Dashboard(data_dir)
    control = data_dir / CONTROL_FILE
    with TestClient(create_app(dash), base_url="http://127.0.0.1") as client:
        assert client.post("/api/control/pause").status_code == 403
        assert client.post("/api/control/pause", headers={"X-Labstack-Token": "guess"}).status_code == 403
        assert not control.exists()
        token = {"X-Labstack-Token": dash.token}
        assert client.post("/api/control/explode", headers=token).status_code == 404
        assert client.post("/api/control/pause", headers=token, content=b"{not json").status_code == 400
        done = client.post("/api/control/pause", headers=token, json={"reason": "fridge check"})
        assert done.status_code == 200 and control.read_text().startswith("pause fridge check")
        dash.watcher.poll()  # what its thread does every 0.1 s
        assert client.get("/api/live").json()["control"].startswith("pause")
    control.unlink()
    read_only = Dashboard(data_dir, control=False)
    with TestClient(create_app(read_only), base_url="http://127.0.0.1") as client:
        assert client.post("/api/control/abort", headers={"X-Labstack-Token": read_only.token}).status_code == 403
    assert not control.exists()


def _raw(port: int, payload: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(payload)
        chunks = []
        while True:
            try:
                data = sock.recv(65536)
            except TimeoutError:
                break
            if not data:
                break
            chunks.append(data)
        return b"".join(chunks)


@pytest.mark.parametrize("payload", [
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage-not-http\r\n\r\n",  # a TLS hello
    b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: -5\r\n\r\n",
    b"GET /api/live HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: abc\r\n\r\n",
    b"GET /api/live\x00 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    b"POST /api/control/pause HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"GET /api/live HTTP/1.1\r\nHost: 127.0.0.1\r\nBad Header Line\r\n\r\n",
])
def test_malformed_http_gets_4xx_and_the_server_stays_up(server, payload):
    answer = _raw(server.port, payload)
    assert answer.startswith(b"HTTP/1.1 4"), answer[:200]
    ok = httpx.get(f"{server.url}api/live", timeout=10)
    assert ok.status_code == 200 and "state_version" in ok.json()


def test_wrong_methods_and_oversized_bodies_get_4xx_and_change_nothing(server, data_dir):
    token = {"X-Labstack-Token": server.dashboard.token}
    control = data_dir / CONTROL_FILE
    assert httpx.get(f"{server.url}api/control/pause", headers=token, timeout=10).status_code == 405
    assert httpx.delete(f"{server.url}api/state", headers=token, timeout=10).status_code == 405
    assert httpx.put(f"{server.url}api/control/abort", headers=token, timeout=10).status_code == 405
    big = b'{"reason": "' + b"x" * (MAX_BODY + 1) + b'"}'
    declared = httpx.post(f"{server.url}api/control/pause", headers=token, content=big, timeout=10)
    assert declared.status_code == 413 and str(MAX_BODY) in declared.json()["error"]

    def chunks():  # no Content-Length: counted as it arrives
        for _ in range(64):
            yield b"x" * 4096

    streamed = httpx.post(f"{server.url}api/control/pause", headers=token, content=chunks(), timeout=10)
    assert streamed.status_code == 413
    wrong = httpx.post(f"{server.url}api/control/pause", headers={"X-Labstack-Token": "x"}, content=big, timeout=10)
    assert wrong.status_code == 403  # the token is checked before the body is read
    assert not control.exists()
    ok = httpx.get(f"{server.url}api/live", timeout=10)
    assert ok.status_code == 200 and "state_version" in ok.json()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(payload=st.one_of(
    st.binary(min_size=1, max_size=256),
    st.tuples(st.sampled_from([b"GET", b"POST", b"PUT", b"\xff\xfe", b""]), st.binary(max_size=64),
              st.sampled_from([b" HTTP/1.1\r\n", b" HTTP/9\r\n", b"\r\n"]), st.binary(max_size=128))
    .map(b"".join),
))
def test_fuzzed_http_never_stops_the_dashboard(server, data_dir, payload):
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(payload)
        sock.shutdown(socket.SHUT_WR)  # that is all: a complete request or not
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    # nothing, or an error status (random bytes are never a request this server accepts)
    assert answer == b"" or re.match(rb"HTTP/1\.1 4\d\d ", answer), answer[:200]
    assert not (data_dir / CONTROL_FILE).exists()
    ok = httpx.get(f"{server.url}api/live", timeout=10)
    assert ok.status_code == 200 and "state_version" in ok.json()


def test_the_event_stream_sends_the_live_snapshot(server, data_dir):
    state = CalibrationState.load(data_dir / "calibration_state")
    with httpx.stream("GET", f"{server.url}api/events", timeout=10) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = response.iter_lines()
        assert next(lines) == "event: update"
        snapshot = json.loads(next(lines).removeprefix("data: "))
    assert snapshot["state_version"] == state.version and snapshot["running"] is None
    assert snapshot["session"]["status"] == "completed"


def test_serves_loopback_only_unless_told_and_then_warns(data_dir, capsys):
    with pytest.raises(RemoteBindRefused):
        DashboardServer(data_dir, host="0.0.0.0")
    remote = DashboardServer(data_dir, host="0.0.0.0", port=0, allow_remote=True)  # never started
    assert "WARNING" in remote.banner() and remote.dashboard.token in remote.banner()
    assert main(["dashboard", "--data-dir", str(data_dir), "--host", "0.0.0.0"]) == 2
    assert "--allow-remote" in capsys.readouterr().err


def test_points_are_counted_as_the_runner_counts_them():
    sweep = {"type": "sweep", "setpoints": [["a", [1, 2, 3]]], "body": [
        {"type": "trace", "n": 4, "body": [{"type": "read", "param": "x"}]}, {"type": "read", "param": "y"}]}
    assert leaf_points(sweep) == 12
    assert leaf_points({"type": "sequence", "steps": [sweep, {"type": "trace", "n": 5, "body": []}]}) == 17


def test_an_empty_data_directory_shows_an_empty_page_not_errors(tmp_path):
    with TestClient(create_app(Dashboard(tmp_path)), base_url="http://127.0.0.1") as client:
        for url in ("/", "/api/live", "/api/summary", "/api/history.svg?param=V0", "/api/runs", "/api/state"):
            assert client.get(url).status_code == 200, url
        assert {n["status"] for n in client.get("/api/summary").json()["nodes"]} == {"never"}
        chip = client.get("/api/chip.svg")
        assert chip.status_code == 404 and "no calibration" in chip.json()["error"]
    assert list(tmp_path.iterdir()) == []  # reading created nothing
